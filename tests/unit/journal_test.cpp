// Tests lib/journal: to_json/from_json round trips, refusal of invalid journals (counts
// that disagree, bad hex, another block size or version, wrong types), the atomic
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

Journal sample(std::uint64_t verified) {
  Journal j;
  j.path = "dir/file.bin";
  j.identity = "size=5000000,mtime_ns=1700000000123456789";
  j.size = 5'000'000;
  j.verified = verified;
  for (std::uint64_t i = 0; i < verified / kJournalBlock; ++i) j.blocks.push_back(0x0123456789abcdefull * (i + 1));
  if (verified % kJournalBlock) j.tail = 0xfedcba9876543210ull;
  return j;
}

void expect_same(const Journal& a, const Journal& b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.identity, b.identity);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.verified, b.verified);
  EXPECT_EQ(a.blocks, b.blocks);
  EXPECT_EQ(a.tail, b.tail);
}

struct DirFd {
  explicit DirFd(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~DirFd() {
    if (fd >= 0) ::close(fd);
  }
  int fd;
};

TEST(Journal, JsonRoundTrip) {
  for (std::uint64_t verified :
       {std::uint64_t{0}, std::uint64_t{1}, kJournalBlock - 1, kJournalBlock, kJournalBlock + 1, 3 * kJournalBlock,
        4 * kJournalBlock + 12345, std::uint64_t{5'000'000}}) {
    auto j = sample(verified);
    auto back = Journal::from_json(j.to_json());
    ASSERT_TRUE(back) << verified << ": " << back.error().message();
    expect_same(*back, j);
  }
}

TEST(Journal, JsonIsTheDocumentedShape) {
  auto text = sample(kJournalBlock + 5).to_json();
  json j = json::parse(text);
  EXPECT_EQ(j.at("ferry_journal"), 1);
  EXPECT_EQ(j.at("block_size"), kJournalBlock);
  EXPECT_EQ(j.at("verified"), kJournalBlock + 5);
  ASSERT_EQ(j.at("blocks").size(), 1u);
  EXPECT_EQ(j.at("blocks")[0], "0123456789abcdef");  // canonical hex
  EXPECT_EQ(j.at("tail"), "fedcba9876543210");
  EXPECT_FALSE(json::parse(sample(kJournalBlock).to_json()).contains("tail"));
}

void expect_invalid(const std::string& text, const std::string& what) {
  auto r = Journal::from_json(text);
  ASSERT_FALSE(r) << "accepted " << what << ": " << text.substr(0, 200);
  EXPECT_EQ(r.error().code, Errc::local_io) << what;
  EXPECT_NE(r.error().message().find("invalid journal"), std::string::npos) << r.error().message();
}

json valid_json(std::uint64_t verified = 2 * kJournalBlock + 7) {
  return json::parse(sample(verified).to_json());
}

TEST(Journal, CountsThatDisagreeAreRefused) {
  {
    auto j = valid_json();
    j["blocks"].erase(1);  // 2 MiB + 7 verified but one block
    expect_invalid(j.dump(), "a block missing");
  }
  {
    auto j = valid_json();
    j["blocks"].push_back("0000000000000000");
    expect_invalid(j.dump(), "a block too many");
  }
  {
    auto j = valid_json();
    j.erase("tail");
    expect_invalid(j.dump(), "no tail for a partial block");
  }
  {
    auto j = valid_json(2 * kJournalBlock);
    j["tail"] = "0000000000000000";
    expect_invalid(j.dump(), "a tail after whole blocks");
  }
  {
    auto j = valid_json();
    j["verified"] = 5'000'001;  // more than the size
    j["size"] = 5'000'000;
    j["blocks"] = json::array({"0000000000000000", "0000000000000001", "0000000000000002", "0000000000000003"});
    expect_invalid(j.dump(), "verified > size");
  }
  {
    auto j = valid_json();
    j["size"] = 10;
    expect_invalid(j.dump(), "verified > size");
  }
}

TEST(Journal, BadHexIsRefused) {
  for (const char* h : {"", "0", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", "zzzzzzzzzzzzzzzz"}) {
    auto j = valid_json();
    j["blocks"][0] = h;
    expect_invalid(j.dump(), std::string("block '") + h + "'");
    auto t = valid_json();
    t["tail"] = h;
    expect_invalid(t.dump(), std::string("tail '") + h + "'");
  }
}

TEST(Journal, WrongBlockSizeOrVersionIsRefused) {
  for (std::uint64_t bs : {std::uint64_t{0}, std::uint64_t{4096}, kJournalBlock * 2}) {
    auto j = valid_json();
    j["block_size"] = bs;
    expect_invalid(j.dump(), "block_size " + std::to_string(bs));
  }
  for (int v : {0, 2}) {
    auto j = valid_json();
    j["ferry_journal"] = v;
    expect_invalid(j.dump(), "version " + std::to_string(v));
  }
}

TEST(Journal, MalformedDocumentsAreRefused) {
  for (const char* text : {"", "{", "[]", "null", "1", "\"x\"", "{}"}) expect_invalid(text, "text");
  for (const char* key : {"ferry_journal", "path", "identity", "size", "block_size", "verified", "blocks"}) {
    auto j = valid_json();
    j.erase(key);
    expect_invalid(j.dump(), std::string("without ") + key);
  }
  const json j0 = valid_json();
  for (const char* key : {"ferry_journal", "path", "identity", "size", "block_size", "verified", "blocks", "tail"}) {
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
  auto j = sample(3 * kJournalBlock + 99);
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

// The old journal is replaced by a rename, never rewritten in place: a reader holding
// the old file still sees the old, complete text, and the name now points to a new inode.
TEST(Journal, SaveReplacesByRename) {
  TempDir t;
  DirFd d(t.path());
  const std::string name = ".f.ferry-journal";
  auto old_j = sample(kJournalBlock);
  ASSERT_TRUE(old_j.save(d.fd, name));
  const std::string old_text = test::read_file(t.path() + "/" + name);
  int held = ::open((t.path() + "/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  struct stat before {};
  ASSERT_EQ(::fstat(held, &before), 0);

  auto new_j = sample(4 * kJournalBlock + 1);
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
  auto old_j = sample(kJournalBlock);
  ASSERT_TRUE(old_j.save(d.fd, name));
  ASSERT_EQ(::mkdir((t.path() + "/" + name + ".tmp").c_str(), 0700), 0);  // in the way
  auto s = sample(2 * kJournalBlock).save(d.fd, name);
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
  auto s = sample(0).save(d.fd, ".f.ferry-journal");
  EXPECT_FALSE(s);
  EXPECT_FALSE(test::exists_nofollow(target)) << "save wrote through a symlink";
}

TEST(Journal, LoadOfInvalidFileIsAnError) {
  TempDir t;
  DirFd d(t.path());
  test::write_file(t.path() + "/.f.ferry-journal", "{\"ferry_journal\":1,");
  auto r = Journal::load(d.fd, ".f.ferry-journal");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::local_io);
}

}  // namespace
}  // namespace ferry
