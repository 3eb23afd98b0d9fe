// Tests lib/journal (format 2): to_json/from_json round trips with held blocks, refusal
// of invalid journals (counts that disagree, held blocks out of place or too many, bad
// hex, a block size out of range, format 1 or another version, wrong types), the atomic
// save() (temp file then rename, nothing left behind, old journal intact on failure)
// and load() of a missing, valid or invalid file.
#include "lib/fs/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using json = nlohmann::json;
using test::TempDir;

constexpr std::uint64_t kBlock = 256 * 1024;
constexpr std::uint64_t kSize = 5'000'000;  // 19 whole blocks and a short one

// A journal with `verified` contiguous bytes and held blocks at the given block indexes.
Journal sample(std::uint64_t verified, std::vector<std::uint64_t> held_blocks = {}) {
  Journal j;
  j.path = "dir/file.bin";
  j.identity = "size=5000000,mtime_ns=1700000000123456789";
  j.size = kSize;
  j.block_size = kBlock;
  j.verified = verified;
  for (std::uint64_t i = 0; i < (verified + kBlock - 1) / kBlock; ++i) j.blocks.push_back(0x0123456789abcdefull * (i + 1));
  for (auto k : held_blocks) j.held.push_back({k * kBlock, 0xfedcba9876543210ull ^ k});
  return j;
}

void expect_same(const Journal& a, const Journal& b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.identity, b.identity);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.block_size, b.block_size);
  EXPECT_EQ(a.verified, b.verified);
  EXPECT_EQ(a.blocks, b.blocks);
  EXPECT_EQ(a.held, b.held);
}

struct DirFd {
  explicit DirFd(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~DirFd() {
    if (fd >= 0) ::close(fd);
  }
  int fd;
};

TEST(Journal, JsonRoundTrip) {
  for (std::uint64_t verified : {std::uint64_t{0}, kBlock, 3 * kBlock, 19 * kBlock, kSize}) {
    for (bool with_held : {false, true}) {
      std::vector<std::uint64_t> held;
      if (with_held && verified < 17 * kBlock) held = {verified / kBlock + 1, verified / kBlock + 3, 19};
      auto j = sample(verified, held);
      auto back = Journal::from_json(j.to_json());
      ASSERT_TRUE(back) << verified << ": " << back.error().message();
      expect_same(*back, j);
    }
  }
}

TEST(Journal, JsonIsTheDocumentedShape) {
  auto text = sample(2 * kBlock, {4, 7}).to_json();
  json j = json::parse(text);
  EXPECT_EQ(j.at("ferry_journal"), 2);
  EXPECT_EQ(j.at("block_size"), kBlock);
  EXPECT_EQ(j.at("size"), kSize);
  EXPECT_EQ(j.at("verified"), 2 * kBlock);
  ASSERT_EQ(j.at("blocks").size(), 2u);
  EXPECT_EQ(j.at("blocks")[0], "0123456789abcdef");  // canonical hex
  EXPECT_EQ(j.at("held"), json::parse(R"([[1048576, "fedcba9876543214"], [1835008, "fedcba9876543217"]])"));
  EXPECT_FALSE(j.contains("tail"));
  EXPECT_EQ(json::parse(sample(0).to_json()).at("held"), json::array());
}

void expect_invalid(const std::string& text, const std::string& what, const std::string& why = "") {
  auto r = Journal::from_json(text);
  ASSERT_FALSE(r) << "accepted " << what << ": " << text.substr(0, 200);
  EXPECT_EQ(r.error().code, Errc::local_io) << what;
  EXPECT_NE(r.error().message().find("invalid journal"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
}

json valid_json(std::uint64_t verified = 2 * kBlock, std::vector<std::uint64_t> held = {5, 9}) {
  return json::parse(sample(verified, std::move(held)).to_json());
}

TEST(Journal, CountsThatDisagreeAreRefused) {
  {
    auto j = valid_json();
    j["blocks"].erase(1);
    expect_invalid(j.dump(), "a block missing");
  }
  {
    auto j = valid_json();
    j["blocks"].push_back("0000000000000000");
    expect_invalid(j.dump(), "a block too many");
  }
  {
    auto j = valid_json();
    j["verified"] = 2 * kBlock + 7;  // neither a multiple of the block size nor the size
    j["blocks"].push_back("0000000000000000");
    expect_invalid(j.dump(), "verified inside a block");
  }
  {
    auto j = valid_json(kSize, {});
    j["verified"] = kSize + 1;
    expect_invalid(j.dump(), "verified > size");
  }
  {
    auto j = valid_json();
    j["size"] = 10;
    expect_invalid(j.dump(), "verified > size");
  }
}

TEST(Journal, HeldBlocksOutOfPlaceAreRefused) {
  const std::pair<json, const char*> cases[] = {
      {json::array({json::array({3 * kBlock + 1, "0000000000000000"})}), "misaligned"},
      {json::array({json::array({2 * kBlock, "0000000000000000"})}), "at verified"},
      {json::array({json::array({kBlock, "0000000000000000"})}), "below verified"},
      {json::array({json::array({20 * kBlock, "0000000000000000"})}), "past the end"},
      {json::array({json::array({5 * kBlock, "0000000000000000"}), json::array({4 * kBlock, "0000000000000000"})}),
       "out of order"},
      {json::array({json::array({5 * kBlock, "0000000000000000"}), json::array({5 * kBlock, "0000000000000000"})}),
       "twice"},
      {json::array({json::array({5 * kBlock})}), "no digest"},
      {json::array({json::array({5 * kBlock, "0000000000000000", 1})}), "three elements"},
      {json::array({json::array({-1, "0000000000000000"})}), "negative offset"},
      {json::array({json::array({"5", "0000000000000000"})}), "string offset"},
      {json::array({json::array({5 * kBlock, 7})}), "numeric digest"},
      {json::array({5 * kBlock}), "not a pair"},
  };
  for (const auto& [held, what] : cases) {
    auto j = valid_json();
    j["held"] = held;
    expect_invalid(j.dump(), what);
  }
  auto j = valid_json(0, {});
  j["size"] = (kMaxHeldBlocks + 2) * kBlock;
  for (std::uint64_t k = 1; k <= kMaxHeldBlocks + 1; ++k) j["held"].push_back(json::array({k * kBlock, "0000000000000000"}));
  expect_invalid(j.dump(), "too many held blocks", "too many");
}

TEST(Journal, BadHexIsRefused) {
  for (const char* h : {"", "0", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", "zzzzzzzzzzzzzzzz"}) {
    auto j = valid_json();
    j["blocks"][0] = h;
    expect_invalid(j.dump(), std::string("block '") + h + "'");
    auto t = valid_json();
    t["held"][0][1] = h;
    expect_invalid(t.dump(), std::string("held '") + h + "'");
  }
}

TEST(Journal, WrongBlockSizeOrVersionIsRefused) {
  for (std::uint64_t bs : {std::uint64_t{0}, std::uint64_t{1023}, std::uint64_t{16 * 1024 * 1024 + 1}}) {
    auto j = valid_json();
    j["block_size"] = bs;
    expect_invalid(j.dump(), "block_size " + std::to_string(bs));
  }
  for (int v : {0, 3}) {
    auto j = valid_json();
    j["ferry_journal"] = v;
    expect_invalid(j.dump(), "version " + std::to_string(v), "unknown journal version");
  }
}

// A format 1 journal (1 MiB XXH3-64 blocks and a tail) is refused by name: the partial
// then starts over.
TEST(Journal, Format1IsRefused) {
  const std::string v1 = R"({"ferry_journal":1,"path":"f","identity":"i","size":3000000,"block_size":1048576,)"
                         R"("verified":1048580,"blocks":["0123456789abcdef"],"tail":"fedcba9876543210"})";
  expect_invalid(v1, "format 1", "format 1 from an older ferry");
}

TEST(Journal, MalformedDocumentsAreRefused) {
  for (const char* text : {"", "{", "[]", "null", "1", "\"x\"", "{}"}) expect_invalid(text, "text");
  for (const char* key : {"ferry_journal", "path", "identity", "size", "block_size", "verified", "blocks", "held"}) {
    auto j = valid_json();
    j.erase(key);
    expect_invalid(j.dump(), std::string("without ") + key);
  }
  const json j0 = valid_json();
  for (const char* key : {"ferry_journal", "path", "identity", "size", "block_size", "verified", "blocks", "held"}) {
    for (const json& wrong : {json(nullptr), json::object(), json(true), json(-1), json(1.0), json("1")}) {
      if (wrong.is_string() && j0.at(key).is_string()) continue;
      auto j = valid_json();
      j[key] = wrong;
      expect_invalid(j.dump(), std::string(key) + " = " + wrong.dump());
    }
  }
  auto j = valid_json();
  j["blocks"] = json::array({1, 2});
  expect_invalid(j.dump(), "numeric blocks");
}

TEST(Journal, LoadOfMissingFileIsNullopt) {
  TempDir t;
  DirFd d(t.path());
  auto r = Journal::load(d.fd, ".x.ferry-journal");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->has_value());
}

TEST(Journal, SaveThenLoad) {
  TempDir t;
  DirFd d(t.path());
  auto j = sample(3 * kBlock, {6, 19});
  auto s = j.save(d.fd, ".f.ferry-journal");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(test::list_dir(t.path()), std::vector<std::string>{".f.ferry-journal"}) << "a temp file was left";
  auto r = Journal::load(d.fd, ".f.ferry-journal");
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(r->has_value());
  expect_same(**r, j);
  struct stat st {};
  ASSERT_EQ(::stat((t.path() + "/.f.ferry-journal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// durable = false (--no-fsync) skips the fsync only: the save is still atomic.
TEST(Journal, SaveWithoutFsync) {
  TempDir t;
  DirFd d(t.path());
  auto j = sample(kBlock, {3});
  ASSERT_TRUE(j.save(d.fd, ".f.ferry-journal", false));
  EXPECT_EQ(test::list_dir(t.path()), std::vector<std::string>{".f.ferry-journal"});
  auto r = Journal::load(d.fd, ".f.ferry-journal");
  ASSERT_TRUE(r && r->has_value());
  expect_same(**r, j);
}

// The old journal is replaced by a rename, never rewritten in place: a reader holding
// the old file still sees the old, complete text, and the name now points to a new inode.
TEST(Journal, SaveReplacesByRename) {
  TempDir t;
  DirFd d(t.path());
  const std::string name = ".f.ferry-journal";
  auto old_j = sample(kBlock);
  ASSERT_TRUE(old_j.save(d.fd, name));
  const std::string old_text = test::read_file(t.path() + "/" + name);
  int held = ::open((t.path() + "/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  struct stat before {};
  ASSERT_EQ(::fstat(held, &before), 0);

  auto new_j = sample(kSize);
  ASSERT_TRUE(new_j.save(d.fd, name));
  struct stat after {};
  ASSERT_EQ(::stat((t.path() + "/" + name).c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino) << "the journal was rewritten in place";
  std::string still(old_text.size() + 16, '\0');
  ssize_t n = ::pread(held, still.data(), still.size(), 0);
  ::close(held);
  ASSERT_GE(n, 0);
  still.resize(static_cast<std::size_t>(n));
  EXPECT_EQ(still, old_text);
  auto r = Journal::load(d.fd, name);
  ASSERT_TRUE(r && r->has_value());
  expect_same(**r, new_j);
  EXPECT_EQ(test::list_dir(t.path()), std::vector<std::string>{name});
}

// When the temp file cannot be written, save fails and the old journal stays intact.
TEST(Journal, FailedSaveLeavesTheOldJournal) {
  TempDir t;
  DirFd d(t.path());
  const std::string name = ".f.ferry-journal";
  auto old_j = sample(kBlock);
  ASSERT_TRUE(old_j.save(d.fd, name));
  ASSERT_EQ(::mkdir((t.path() + "/" + name + ".tmp").c_str(), 0700), 0);  // in the way
  auto s = sample(2 * kBlock).save(d.fd, name);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::local_io);
  auto r = Journal::load(d.fd, name);
  ASSERT_TRUE(r && r->has_value());
  expect_same(**r, old_j);
}

// The temp file is opened with O_NOFOLLOW: a symlink planted at its name is not followed.
TEST(Journal, SaveDoesNotFollowASymlinkedTemp) {
  TempDir t, elsewhere;
  DirFd d(t.path());
  const std::string target = elsewhere.path() + "/victim";
  ASSERT_EQ(::symlink(target.c_str(), (t.path() + "/.f.ferry-journal.tmp").c_str()), 0);
  // The temp file is created exclusively: the symlink is removed, never followed.
  auto s = sample(0).save(d.fd, ".f.ferry-journal");
  EXPECT_TRUE(s);
  EXPECT_FALSE(test::exists_nofollow(target)) << "save wrote through a symlink";
  EXPECT_TRUE(Journal::load(d.fd, ".f.ferry-journal"));
}

TEST(Journal, LoadOfInvalidFileIsAnError) {
  TempDir t;
  DirFd d(t.path());
  test::write_file(t.path() + "/.f.ferry-journal", "{\"ferry_journal\":2,");
  auto r = Journal::load(d.fd, ".f.ferry-journal");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::local_io);
}

}  // namespace
}  // namespace ferry
