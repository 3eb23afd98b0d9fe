// Tests the trust rules of lib/fs/file_sink (docs/SECURITY.md "Files in DEST") on real
// files: temporary names no sent name can produce (the long-name hash collision of
// issue #11), the one-writer key, exclusive creation, untrusted files at a partial's,
// a journal's or a final name (FIFO, symlink, hard link, another user's) set aside
// and never opened blocking, the umask on offered modes, stale partials removed, and
// no hidden partial left when nothing was written.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "lib/fs/file_sink.hpp"
#include "lib/fs/owned_file.hpp"
#include "protocol/wire_path.hpp"
#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using protocol::Bytes;
using protocol::EntryKind;
using protocol::Offer;
using test::exists_nofollow;
using test::list_dir;
using test::TempDir;

constexpr std::uint64_t kBlock = 1024;
constexpr std::int64_t kMtime = 1'700'000'000'123'456'789;

Offer file_offer(const std::string& path, std::uint64_t size, std::uint32_t mode = 0640) {
  return Offer{1, path, EntryKind::file, size, kMtime, mode, "id-1", static_cast<std::uint32_t>(kBlock)};
}

struct Fixture {
  TempDir tmp;
  std::string dest = tmp.path() + "/dest";
  std::shared_ptr<DestDir> dir;
  explicit Fixture(DestOptions options = {}) {
    auto d = DestDir::open(dest, options);
    if (!d) throw std::runtime_error(d.error().message());
    dir = *d;
  }
  std::string at(const std::string& rel) const { return dest + "/" + rel; }
};

// Writes all of `d` into `p` block by block and commits.
void write_all_and_commit(PartialFile& p, const std::vector<std::byte>& d) {
  for (std::uint64_t off = 0; off < d.size(); off += kBlock) {
    auto b = Bytes(d).subspan(off, std::min<std::uint64_t>(kBlock, d.size() - off));
    ASSERT_TRUE(p.write(off, b, protocol::block_digest(b, off)));
  }
  auto c = p.commit();
  ASSERT_TRUE(c) << c.error().message();
}

std::string as_string(const std::vector<std::byte>& d) { return {reinterpret_cast<const char*>(d.data()), d.size()}; }

void age(const std::string& path, long seconds) {
  timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= seconds;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
}

TEST(DestTrust, LongNameAndItsHashNameNeverShareATempName) {
  const std::string long_leaf(240, 'L');
  const auto hex = protocol::hex64(protocol::xxh3_64(std::as_bytes(std::span(long_leaf.data(), long_leaf.size()))));
  const std::string short_leaf = "ferry-" + hex;  // the old hashed base without its dot
  EXPECT_NE(partial_name(long_leaf), partial_name(short_leaf));
  EXPECT_NE(journal_name(long_leaf), journal_name(short_leaf));
  EXPECT_NE(on_disk_key(long_leaf), on_disk_key(short_leaf));
  EXPECT_NE(on_disk_key("d/" + long_leaf), on_disk_key("d/" + short_leaf));
  // The only plain leaf whose temp names equal the long leaf's is refused.
  const std::string clash = hex + ".ferry-long";
  EXPECT_EQ(partial_name(clash), partial_name(long_leaf));
  EXPECT_TRUE(is_ferry_temp_name(clash));
  Fixture f;
  PartialState st;
  EXPECT_FALSE(f.dir->open_partial(file_offer(clash, 10), st));
  for (auto suffix : protocol::kReservedSuffixes) {
    EXPECT_TRUE(protocol::reserved_name("x" + std::string(suffix)));
    EXPECT_TRUE(is_ferry_temp_name(partial_name("x")) && is_ferry_temp_name(journal_name("x")));
  }
  EXPECT_FALSE(protocol::reserved_name("x.ferry-parts"));
}

TEST(DestTrust, OnDiskKeyFollowsTheReceiversNameMapping) {
  EXPECT_EQ(on_disk_key("a/b/c.txt"), "a/b/.c.txt");
  EXPECT_EQ(on_disk_key("c.txt"), ".c.txt");
  EXPECT_EQ(on_disk_key(std::string(250, 'x')), partial_name(std::string(250, 'x')).substr(0, 28));
}

// A partial another user could have made (here: a hard link to a file outside DEST, a
// symlink) is removed and the file starts over; the outside file is untouched.
TEST(DestTrust, HardLinkedOrSymlinkedPartialIsSetAside) {
  Fixture f;
  const std::string outside = f.tmp.path() + "/outside";
  test::write_file(outside, "precious");
  ASSERT_EQ(::link(outside.c_str(), f.at(".h.bin.ferry-part").c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), f.at(".s.bin.ferry-part").c_str()), 0);
  const auto d = test::pseudo_random_bytes(3000, 1);
  for (const char* leaf : {"h.bin", "s.bin"}) {
    PartialState st;
    auto p = f.dir->open_partial(file_offer(leaf, d.size()), st);
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_NE(st.note.find("not the receiver's own"), std::string::npos) << st.note;
    EXPECT_EQ(st.offset, 0u);
    write_all_and_commit(**p, d);
    EXPECT_EQ(test::read_file(f.at(leaf)), as_string(d));
  }
  EXPECT_EQ(test::read_file(outside), "precious");
}

// A FIFO at the journal's or the partial's name is never opened (that would block a
// pool thread for good): removed, the file starts over.
TEST(DestTrust, FifoAtTempNamesDoesNotBlock) {
  Fixture f;
  ASSERT_EQ(::mkfifo(f.at(".j.bin.ferry-journal").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(f.at(".p.bin.ferry-part").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(f.at(".t.bin.ferry-journal.tmp").c_str(), 0600), 0);
  const auto d = test::pseudo_random_bytes(2500, 2);
  auto run = std::async(std::launch::async, [&] {
    for (const char* leaf : {"j.bin", "p.bin", "t.bin"}) {
      PartialState st;
      auto p = f.dir->open_partial(file_offer(leaf, d.size()), st);
      if (!p) return std::string(leaf) + ": " + p.error().message();
      write_all_and_commit(**p, d);
    }
    return std::string();
  });
  ASSERT_EQ(run.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "blocked on a FIFO";
  EXPECT_EQ(run.get(), "");
  EXPECT_EQ(list_dir(f.dest), (std::vector<std::string>{"j.bin", "p.bin", "t.bin"}));
}

// The final name holding a FIFO, or a hard link of the offered size and mtime, is not
// adopted as already complete: the transfer replaces it.
TEST(DestTrust, FinalNameIsAdoptedOnlyWhenOurs) {
  Fixture f;
  const auto d = test::pseudo_random_bytes(2000, 3);
  test::write_file(f.at("linked.bin"), as_string(d));
  ASSERT_EQ(::link(f.at("linked.bin").c_str(), (f.tmp.path() + "/other").c_str()), 0);
  timespec times[2] = {{0, UTIME_NOW}, {kMtime / 1'000'000'000, kMtime % 1'000'000'000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.at("linked.bin").c_str(), times, 0), 0);
  ASSERT_EQ(::mkfifo(f.at("fifo.bin").c_str(), 0600), 0);
  for (const char* leaf : {"linked.bin", "fifo.bin"}) {
    PartialState st;
    auto p = f.dir->open_partial(file_offer(leaf, d.size()), st);
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(st.offset, 0u) << leaf << " adopted as complete";
    write_all_and_commit(**p, d);
    struct stat fst {};
    ASSERT_EQ(::lstat(f.at(leaf).c_str(), &fst), 0);
    EXPECT_TRUE(S_ISREG(fst.st_mode));
    EXPECT_EQ(fst.st_nlink, 1u);
  }
}

TEST(DestTrust, ModeGoesThroughTheUmask) {
  const mode_t old = ::umask(027);
  Fixture f;  // reads the umask when DEST is opened
  ::umask(old);
  const auto d = test::pseudo_random_bytes(100, 4);
  PartialState st;
  auto p = f.dir->open_partial(file_offer("x.sh", d.size(), 0777), st);
  ASSERT_TRUE(p);
  write_all_and_commit(**p, d);
  struct stat fst {};
  ASSERT_EQ(::stat(f.at("x.sh").c_str(), &fst), 0);
  EXPECT_EQ(fst.st_mode & 07777, 0750u);
  EXPECT_EQ(read_umask(), old);
}

// Stale: in DEST's top level at open (only ours, only old ones), and any partial when
// its file is opened.
TEST(DestTrust, StalePartialsAreRemoved) {
  TempDir tmp;
  const std::string dest = tmp.path() + "/dest";
  ASSERT_EQ(::mkdir(dest.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dest + "/sub").c_str(), 0755), 0);
  for (const char* name : {".a.ferry-part", ".a.ferry-journal", ".b.ferry-part", "keep.txt", "sub/.c.ferry-part"}) {
    test::write_file(dest + "/" + name, "x");
  }
  for (const char* name : {".a.ferry-part", ".a.ferry-journal", "keep.txt", "sub/.c.ferry-part"}) {
    age(dest + "/" + name, 7200);
  }
  auto d = DestDir::open(dest, DestOptions{.stale_partial_age = std::chrono::hours(1)});
  ASSERT_TRUE(d);
  EXPECT_EQ((*d)->stale_removed(), 2u);
  EXPECT_EQ(list_dir(dest), (std::vector<std::string>{".b.ferry-part", "keep.txt", "sub"}));
  PartialState st;
  auto p = (*d)->open_partial(file_offer("sub/c", 10), st);
  ASSERT_TRUE(p);
  EXPECT_NE(st.note.find("stale"), std::string::npos) << st.note;
  // Age 0: never.
  age(dest + "/.b.ferry-part", 7200);
  auto never = DestDir::open(dest, DestOptions{.stale_partial_age = std::chrono::seconds(0)});
  ASSERT_TRUE(never);
  EXPECT_EQ((*never)->stale_removed(), 0u);
  EXPECT_TRUE(exists_nofollow(dest + "/.b.ferry-part"));
}

// Nothing written (e.g. the first write failed with ENOSPC): no hidden partial stays.
TEST(DestTrust, NothingWrittenLeavesNoPartial) {
  Fixture f;
  PartialState st;
  auto p = f.dir->open_partial(file_offer("e.bin", 5000), st);
  ASSERT_TRUE(p);
  EXPECT_TRUE(exists_nofollow(f.at(".e.bin.ferry-part")));
  (*p)->close_keep();
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{});
}

TEST(DestTrust, OpenOwnedReportsWhy) {
  TempDir t;
  UniqueFd dfd(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_EQ(::mkfifo((t.path() + "/fifo").c_str(), 0600), 0);
  test::write_file(t.path() + "/mine", "x");
  auto fifo = open_owned(dfd.get(), "fifo", O_RDONLY, "fifo");
  ASSERT_TRUE(fifo);
  EXPECT_EQ(fifo->why, "a FIFO");
  auto mine = open_owned(dfd.get(), "mine", O_RDWR, "mine");
  ASSERT_TRUE(mine);
  EXPECT_TRUE(mine->fd);
  EXPECT_EQ(mine->why, "");
  auto absent = open_owned(dfd.get(), "absent", O_RDONLY, "absent");
  ASSERT_TRUE(absent);
  EXPECT_FALSE(absent->fd);
  EXPECT_EQ(absent->why, "");
}

}  // namespace
}  // namespace ferry
