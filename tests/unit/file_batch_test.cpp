// Tests lib/fs/file_batch (commit_batch) on real files in a mkdtemp directory: files land
// with their bytes, mode and mtime (empty ones too, in nested directories created on the
// way, over an existing file); a failing file (parent is a file, final name is a
// directory, a reserved or unsafe name, a symlinked parent) fails alone with its path and
// leaves no temporary; no temporary remains after success; no_fsync; the durability step:
// an fdatasync per file for a small batch, one syncfs for a large one, and with a planted
// fdatasync or syncfs failure no final name changes; temporaries live in ferry's own
// namespace; batches over more than 32 directories commit in rounds within the
// descriptor budget; version 6's directory items are made in batch order (one already
// there is fine, a file or symlink in the way fails that item alone).
#include "lib/fs/file_batch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "lib/fs/fd_io.hpp"
#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

// The process's umask, which the receiver applies to every offered mode.
mode_t current_umask() {
  const mode_t u = ::umask(0);
  ::umask(u);
  return u;
}


using test::exists_nofollow;
using test::read_file;
using test::TempDir;
using test::write_file;

constexpr std::int64_t kMtime = 1'700'000'000'123'456'789;

StagedFile staged(const std::string& path, const std::string& bytes, std::uint32_t mode = 0640,
                  std::int64_t mtime_ns = kMtime) {
  StagedFile f;
  f.wire_path = path;
  f.mode = mode;
  f.mtime_ns = mtime_ns;
  const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
  f.data.assign(p, p + bytes.size());
  return f;
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
  std::vector<Result<void>> commit(std::vector<StagedFile>& files, const BatchSync& sync = {}) {
    return commit_batch(*dir, files, sync);
  }
};

// Every name under `root` (recursively) that is one of ferry's temporaries.
std::vector<std::string> temp_files_under(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (is_ferry_temp_name(e.path().filename().string())) out.push_back(e.path().string());
  }
  return out;
}

struct stat lstat_of(const std::string& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

void expect_all_ok(const std::vector<Result<void>>& results) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i].error().message();
  }
}

// Planted system calls (plain function pointers: the state is file-level).
int fdatasync_calls = 0;
int syncfs_calls = 0;
int fail_every = 0;  // fail calls number fail_every, 2*fail_every, ... (0: never)
std::vector<std::string> synced_names;
std::size_t max_open_fds = 0;

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

int counting_fdatasync(int fd) {
  ++fdatasync_calls;
  max_open_fds = std::max(max_open_fds, open_fd_count());
  std::string link(4096, '\0');
  auto n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link.data(), link.size());
  if (n > 0) synced_names.push_back(std::filesystem::path(link.substr(0, static_cast<std::size_t>(n))).filename());
  if (fail_every > 0 && fdatasync_calls % fail_every == 0) {
    errno = EIO;
    return -1;
  }
  return ::fdatasync(fd);
}

int counting_syncfs(int fd) {
  ++syncfs_calls;
  max_open_fds = std::max(max_open_fds, open_fd_count());
  return ::syncfs(fd);
}

int failing_syncfs(int) {
  ++syncfs_calls;
  errno = EIO;
  return -1;
}

BatchSync counting(std::size_t syncfs_from = kSyncfsFromFiles) {
  fdatasync_calls = syncfs_calls = fail_every = 0;
  synced_names.clear();
  max_open_fds = 0;
  return BatchSync{syncfs_from, counting_fdatasync, counting_syncfs};
}

TEST(FileBatch, FilesLandWithBytesModeAndMtime) {
  Fixture f;
  std::vector<StagedFile> files{staged("a.txt", "alpha", 0640), staged("b.sh", "#!/bin/sh\n", 0755, kMtime + 7),
                                staged("c", std::string(4096, 'c'), 0600)};
  expect_all_ok(f.commit(files));
  EXPECT_EQ(read_file(f.dest + "/a.txt"), "alpha");
  EXPECT_EQ(read_file(f.dest + "/b.sh"), "#!/bin/sh\n");
  EXPECT_EQ(read_file(f.dest + "/c"), std::string(4096, 'c'));
  EXPECT_EQ(lstat_of(f.dest + "/a.txt").st_mode & 0777, 0640u);
  EXPECT_EQ(lstat_of(f.dest + "/b.sh").st_mode & 0777, 0755u);
  EXPECT_EQ(lstat_of(f.dest + "/c").st_mode & 0777, 0600u);
  EXPECT_EQ(mtime_ns(lstat_of(f.dest + "/a.txt")), kMtime);
  EXPECT_EQ(mtime_ns(lstat_of(f.dest + "/b.sh")), kMtime + 7);
  EXPECT_EQ(test::list_dir(f.dest), (std::vector<std::string>{"a.txt", "b.sh", "c"}));
}

TEST(FileBatch, EmptyFilesAndMtimeBeforeTheEpoch) {
  Fixture f;
  std::vector<StagedFile> files{staged("empty", ""), staged("old", "x", 0644, -1'500'000'000)};
  expect_all_ok(f.commit(files));
  EXPECT_EQ(lstat_of(f.dest + "/empty").st_size, 0);
  EXPECT_TRUE(S_ISREG(lstat_of(f.dest + "/empty").st_mode));
  EXPECT_EQ(mtime_ns(lstat_of(f.dest + "/old")), -1'500'000'000);
  EXPECT_TRUE(temp_files_under(f.dest).empty());
}

TEST(FileBatch, NestedDirectoriesAreCreatedOnTheWay) {
  Fixture f;
  std::vector<StagedFile> files{staged("a/b/c/deep", "1"), staged("a/b/mid", "2"), staged("a/b/c/deep2", "3"),
                                staged("x/y", "4")};
  expect_all_ok(f.commit(files));
  EXPECT_EQ(read_file(f.dest + "/a/b/c/deep"), "1");
  EXPECT_EQ(read_file(f.dest + "/a/b/mid"), "2");
  EXPECT_EQ(read_file(f.dest + "/a/b/c/deep2"), "3");
  EXPECT_EQ(read_file(f.dest + "/x/y"), "4");
  EXPECT_TRUE(temp_files_under(f.dest).empty());
}

TEST(FileBatch, ExistingFileIsReplaced) {
  Fixture f;
  write_file(f.dest + "/same", "old contents, longer than the new ones");
  std::vector<StagedFile> files{staged("same", "new", 0604)};
  expect_all_ok(f.commit(files));
  EXPECT_EQ(read_file(f.dest + "/same"), "new");
  EXPECT_EQ(lstat_of(f.dest + "/same").st_mode & 0777, 0604u);
  EXPECT_EQ(test::list_dir(f.dest), (std::vector<std::string>{"same"}));
}

TEST(FileBatch, FailingFilesFailAloneAndLeaveNoTemporary) {
  Fixture f;
  write_file(f.dest + "/plain", "a file, not a directory");
  ASSERT_EQ(::mkdir((f.dest + "/taken").c_str(), 0755), 0);
  std::vector<StagedFile> files{staged("ok1", "1"),   staged("plain/x", "2"),         staged("taken", "3"),
                                staged("d/ok2", "4"), staged("d/.y.ferry-part", "5"), staged("d/../escape", "6"),
                                staged("ok3", "7")};
  auto r = f.commit(files);
  ASSERT_EQ(r.size(), files.size());
  EXPECT_TRUE(r[0].ok());
  ASSERT_FALSE(r[1].ok());
  EXPECT_EQ(r[1].error().code, Errc::protocol);
  EXPECT_NE(r[1].error().message().find("plain/x"), std::string::npos) << r[1].error().message();
  ASSERT_FALSE(r[2].ok());  // rename(2) over a directory
  EXPECT_EQ(r[2].error().code, Errc::local_io);
  EXPECT_EQ(r[2].error().message(), "rename(" + f.dest + "/taken): " + std::strerror(EISDIR));
  EXPECT_TRUE(r[3].ok());
  ASSERT_FALSE(r[4].ok());  // a reserved name in an already open directory
  EXPECT_EQ(r[4].error().code, Errc::protocol);
  ASSERT_FALSE(r[5].ok());
  EXPECT_EQ(r[5].error().code, Errc::protocol);
  EXPECT_TRUE(r[6].ok());
  EXPECT_EQ(read_file(f.dest + "/ok1"), "1");
  EXPECT_EQ(read_file(f.dest + "/d/ok2"), "4");
  EXPECT_EQ(read_file(f.dest + "/ok3"), "7");
  EXPECT_EQ(read_file(f.dest + "/plain"), "a file, not a directory");
  EXPECT_TRUE(std::filesystem::is_empty(f.dest + "/taken"));
  EXPECT_TRUE(temp_files_under(f.tmp.path()).empty());
  EXPECT_FALSE(exists_nofollow(f.tmp.path() + "/escape"));
}

TEST(FileBatch, SymlinkedParentIsRefused) {
  Fixture f;
  const std::string outside = f.tmp.path() + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (f.dest + "/link").c_str()), 0);
  ASSERT_EQ(::mkdir((f.dest + "/real").c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (f.dest + "/real/inner").c_str()), 0);
  std::vector<StagedFile> files{staged("link/f", "1"), staged("real/inner/g", "2"), staged("real/h", "3")};
  auto r = f.commit(files);
  ASSERT_FALSE(r[0].ok());
  EXPECT_EQ(r[0].error().code, Errc::protocol);
  ASSERT_FALSE(r[1].ok());
  EXPECT_EQ(r[1].error().code, Errc::protocol);
  EXPECT_TRUE(r[2].ok());
  EXPECT_TRUE(std::filesystem::is_empty(outside));
  EXPECT_EQ(read_file(f.dest + "/real/h"), "3");
}

TEST(FileBatch, NoFsyncCommitsWithoutAnySync) {
  Fixture f(DestOptions{.no_fsync = true});
  std::vector<StagedFile> files;
  for (int i = 0; i < 20; ++i) files.push_back(staged("n/f" + std::to_string(i), std::to_string(i), 0620));
  auto sync = counting();
  expect_all_ok(f.commit(files, sync));
  EXPECT_EQ(fdatasync_calls, 0);
  EXPECT_EQ(syncfs_calls, 0);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(read_file(f.dest + "/n/f" + std::to_string(i)), std::to_string(i));
  EXPECT_EQ(lstat_of(f.dest + "/n/f3").st_mode & 0777, 0620u & ~current_umask()) << "the mode goes through the umask";
  EXPECT_TRUE(temp_files_under(f.dest).empty());
}

TEST(FileBatch, SmallBatchSyncsEachFileInFerrysTempNamespace) {
  Fixture f;
  std::vector<StagedFile> files{staged("a", "1"), staged("d/b", "2"), staged("d/c", "")};
  auto sync = counting();
  expect_all_ok(f.commit(files, sync));
  EXPECT_EQ(fdatasync_calls, 3);
  EXPECT_EQ(syncfs_calls, 0);
  ASSERT_EQ(synced_names.size(), 3u);
  for (const auto& name : synced_names) {
    EXPECT_TRUE(is_ferry_temp_name(name)) << name;  // synced before the rename, under a hidden name
  }
  EXPECT_TRUE(temp_files_under(f.dest).empty());
}

TEST(FileBatch, LargeBatchSyncsTheFileSystemOnce) {
  Fixture f;
  std::vector<StagedFile> files;
  for (std::size_t i = 0; i < kSyncfsFromFiles; ++i) files.push_back(staged("many/f" + std::to_string(i), "x"));
  auto sync = counting();
  expect_all_ok(f.commit(files, sync));
  EXPECT_EQ(fdatasync_calls, 0);
  EXPECT_EQ(syncfs_calls, 1);
  EXPECT_EQ(test::list_dir(f.dest + "/many").size(), kSyncfsFromFiles);
}

int syncfs_failing_after_the_first(int fd) {
  if (++syncfs_calls == 1) return ::syncfs(fd);
  errno = EIO;
  return -1;
}

// Renamed into two directories: their names are made durable by one more syncfs, not a
// fsync of each directory.
TEST(FileBatch, LargeBatchInSeveralDirectoriesSyncsTheirNamesTogether) {
  Fixture f;
  std::vector<StagedFile> files{staged("a/f0", "0"), staged("a/f1", "1"), staged("b/f2", "2"), staged("b/f3", "3")};
  auto sync = counting();
  expect_all_ok(f.commit(files, sync));
  EXPECT_EQ(syncfs_calls, 2);  // the data, then the names
  EXPECT_EQ(fdatasync_calls, 0);
  EXPECT_EQ(read_file(f.dest + "/b/f3"), "3");

  // That second syncfs fails: the files are in place but not durably, so each fails.
  std::vector<StagedFile> more{staged("a/g0", "0"), staged("a/g1", "1"), staged("b/g2", "2"), staged("b/g3", "3")};
  syncfs_calls = 0;
  BatchSync failing{kSyncfsFromFiles, counting_fdatasync, syncfs_failing_after_the_first};
  auto r = f.commit(more, failing);
  EXPECT_EQ(syncfs_calls, 2);
  for (std::size_t i = 0; i < r.size(); ++i) {
    ASSERT_FALSE(r[i].ok()) << i;
    EXPECT_EQ(r[i].error().sys_errno, EIO);
    EXPECT_NE(r[i].error().what.find("after renaming"), std::string::npos) << r[i].error().what;
  }
  EXPECT_EQ(read_file(f.dest + "/b/g3"), "3");  // renamed: a failure is not undone
}

// A stream of batches: each large batch leaves its names to the next one's syncfs (one
// sync per batch), a last batch's names are synced alone.
TEST(FileBatch, PipelinedBatchesShareOneSyncfsEach) {
  Fixture f;
  std::vector<StagedFile> first{staged("a/f0", "0"), staged("a/f1", "1"), staged("b/f2", "2"), staged("b/f3", "3")};
  auto sync = counting();
  auto one = commit_batch_pipelined(*f.dir, first, /*prior_names_pending=*/false, sync);
  expect_all_ok(one.results);
  EXPECT_TRUE(one.names_pending);
  EXPECT_EQ(syncfs_calls, 1);  // the data only: no fsync or syncfs for the names yet
  EXPECT_EQ(read_file(f.dest + "/b/f3"), "3");

  // One file, below the syncfs threshold: with names pending it still takes one
  // syncfs, which makes its data and the first batch's names durable.
  std::vector<StagedFile> second{staged("c/g", "g")};
  auto two = commit_batch_pipelined(*f.dir, second, /*prior_names_pending=*/true, sync);
  expect_all_ok(two.results);
  EXPECT_TRUE(two.prior.ok());
  EXPECT_TRUE(two.names_pending);
  EXPECT_EQ(syncfs_calls, 2);
  EXPECT_EQ(fdatasync_calls, 0);

  // Nothing more: the names alone.
  auto three = commit_batch_pipelined(*f.dir, std::span<StagedFile>{}, /*prior_names_pending=*/true, sync);
  EXPECT_TRUE(three.prior.ok());
  EXPECT_FALSE(three.names_pending);
  EXPECT_EQ(syncfs_calls, 3);

  // A small batch with nothing pending syncs its own file and directory as before.
  std::vector<StagedFile> small{staged("d/h", "h")};
  auto four = commit_batch_pipelined(*f.dir, small, /*prior_names_pending=*/false, sync);
  expect_all_ok(four.results);
  EXPECT_FALSE(four.names_pending);
  EXPECT_EQ(syncfs_calls, 3);
  EXPECT_EQ(fdatasync_calls, 1);
}

// The syncfs that was to make the earlier batch's names durable fails: `prior` says so
// (the caller fails those files), and this batch's own files are not renamed.
TEST(FileBatch, PipelinedBatchReportsAFailedSyncOfThePriorNames) {
  Fixture f;
  std::vector<StagedFile> files{staged("a/f0", "0"), staged("b/f1", "1")};
  BatchSync sync{kSyncfsFromFiles, counting_fdatasync, failing_syncfs};
  syncfs_calls = fdatasync_calls = 0;
  auto out = commit_batch_pipelined(*f.dir, files, /*prior_names_pending=*/true, sync);
  EXPECT_EQ(syncfs_calls, 1);
  ASSERT_FALSE(out.prior.ok());
  EXPECT_EQ(out.prior.error().message(), "syncfs(" + f.dest + "): " + std::strerror(EIO));
  for (const auto& r : out.results) EXPECT_FALSE(r.ok());
  EXPECT_FALSE(out.names_pending);
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/a/f0"));
  EXPECT_FALSE(sync_names(*f.dir, sync).ok());
  EXPECT_TRUE(temp_files_under(f.dest).empty());
}

TEST(FileBatch, FailedFdatasyncRenamesNothingItDidNotMakeDurable) {
  Fixture f;
  write_file(f.dest + "/keep", "old");
  std::vector<StagedFile> files{staged("keep", "new"), staged("fresh", "1")};
  auto sync = counting();
  fail_every = 1;  // every fdatasync fails
  auto r = f.commit(files, sync);
  ASSERT_FALSE(r[0].ok());
  ASSERT_FALSE(r[1].ok());
  EXPECT_EQ(r[0].error().message(), "fdatasync(" + f.dest + "/keep): " + std::strerror(EIO));
  EXPECT_EQ(read_file(f.dest + "/keep"), "old");
  EXPECT_EQ(test::list_dir(f.dest), (std::vector<std::string>{"keep"}));

  // Every second one fails: those alone stay unrenamed.
  std::vector<StagedFile> more{staged("m0", "0"), staged("m1", "1"), staged("m2", "2"), staged("m3", "3")};
  sync = counting(/*syncfs_from=*/100);
  fail_every = 2;
  r = f.commit(more, sync);
  EXPECT_TRUE(r[0].ok());
  EXPECT_FALSE(r[1].ok());
  EXPECT_TRUE(r[2].ok());
  EXPECT_FALSE(r[3].ok());
  EXPECT_EQ(test::list_dir(f.dest), (std::vector<std::string>{"keep", "m0", "m2"}));
}

TEST(FileBatch, FailedSyncfsRenamesNothing) {
  Fixture f;
  write_file(f.dest + "/keep", "old");
  std::vector<StagedFile> files{staged("keep", "new")};
  for (int i = 0; i < 15; ++i) files.push_back(staged("sub/f" + std::to_string(i), "x"));
  BatchSync sync{kSyncfsFromFiles, counting_fdatasync, failing_syncfs};
  syncfs_calls = fdatasync_calls = 0;
  auto r = f.commit(files, sync);
  EXPECT_EQ(syncfs_calls, 1);
  EXPECT_EQ(fdatasync_calls, 0);
  for (std::size_t i = 0; i < r.size(); ++i) {
    ASSERT_FALSE(r[i].ok()) << i;
    EXPECT_EQ(r[i].error().sys_errno, EIO);
    EXPECT_NE(r[i].error().what.find("syncfs(" + f.dest + ")"), std::string::npos) << r[i].error().what;
  }
  EXPECT_EQ(read_file(f.dest + "/keep"), "old");
  EXPECT_TRUE(std::filesystem::is_empty(f.dest + "/sub"));  // created on the way, nothing renamed into it
  EXPECT_TRUE(temp_files_under(f.dest).empty());
}

// 256 files in 40 directories: more directories than a round opens, so several rounds;
// the fdatasync mode (forced) never holds more than the descriptor budget.
TEST(FileBatch, ManyDirectoriesCommitInRoundsWithinTheDescriptorBudget) {
  Fixture f;
  std::vector<StagedFile> files;
  for (int i = 0; i < 256; ++i) {
    files.push_back(staged("d" + std::to_string(i % 40) + "/f" + std::to_string(i), std::to_string(i)));
  }
  const std::size_t baseline = open_fd_count();
  for (std::size_t syncfs_from : {std::size_t{1}, std::size_t{100'000}}) {
    auto sync = counting(syncfs_from);
    expect_all_ok(f.commit(files, sync));
    EXPECT_LE(max_open_fds, baseline + 66) << "syncfs_from " << syncfs_from;
    if (syncfs_from == 1) {
      EXPECT_EQ(syncfs_calls, 4);  // 32 directories in the first round, 8 in the second; data, then names
    } else {
      EXPECT_EQ(fdatasync_calls, 256);
    }
  }
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(read_file(f.dest + "/d" + std::to_string(i % 40) + "/f" + std::to_string(i)), std::to_string(i));
  }
  EXPECT_TRUE(temp_files_under(f.dest).empty());
  EXPECT_EQ(open_fd_count(), baseline);
}

// Version 6's eager directories.
StagedFile staged_dir(const std::string& path) {
  StagedFile f;
  f.wire_path = path;
  f.directory = true;
  return f;
}

// A directory item is made in batch order, so the files after it land inside it; an
// empty one is made too. With an fdatasync per file (a small batch), one syncfs (a
// large one) and no_fsync.
TEST(FileBatch, DirectoryItemIsMadeBeforeTheFilesAfterIt) {
  struct Mode {
    const char* name;
    DestOptions options;
    std::size_t syncfs_from;
  };
  for (const Mode& m : {Mode{"fdatasync", {}, 100}, Mode{"syncfs", {}, 1},
                        Mode{"no_fsync", DestOptions{.no_fsync = true}, kSyncfsFromFiles}}) {
    SCOPED_TRACE(m.name);
    Fixture f(m.options);
    std::vector<StagedFile> files{staged_dir("a/d"), staged("a/d/f1", "one"), staged("a/d/f2", "two"),
                                  staged_dir("a/empty")};
    auto sync = counting(m.syncfs_from);
    expect_all_ok(f.commit(files, sync));
    EXPECT_TRUE(S_ISDIR(lstat_of(f.dest + "/a/d").st_mode));
    EXPECT_EQ(lstat_of(f.dest + "/a/d").st_mode & 0777, 0755u & ~current_umask());
    EXPECT_EQ(read_file(f.dest + "/a/d/f1"), "one");
    EXPECT_EQ(read_file(f.dest + "/a/d/f2"), "two");
    EXPECT_EQ(test::list_dir(f.dest + "/a/d"), (std::vector<std::string>{"f1", "f2"}));
    ASSERT_TRUE(S_ISDIR(lstat_of(f.dest + "/a/empty").st_mode));
    EXPECT_TRUE(std::filesystem::is_empty(f.dest + "/a/empty"));
    EXPECT_TRUE(temp_files_under(f.dest).empty());
    if (m.options.no_fsync) {
      EXPECT_EQ(fdatasync_calls + syncfs_calls, 0);
    } else if (m.syncfs_from == 1) {
      EXPECT_EQ(fdatasync_calls, 0);
      EXPECT_GE(syncfs_calls, 1);
    } else {
      EXPECT_EQ(fdatasync_calls, 2) << "the files' data only: a directory has none";
    }
  }
}

// The same through commit_batch_pipelined (the receiver's call).
TEST(FileBatch, PipelinedBatchMakesItsDirectoryItems) {
  Fixture f;
  std::vector<StagedFile> files{staged_dir("t/s"), staged("t/s/f", "f"), staged_dir("t/s/u"), staged("t/s/u/g", "g")};
  auto sync = counting();
  auto out = commit_batch_pipelined(*f.dir, files, /*prior_names_pending=*/false, sync);
  expect_all_ok(out.results);
  EXPECT_EQ(read_file(f.dest + "/t/s/f"), "f");
  EXPECT_EQ(read_file(f.dest + "/t/s/u/g"), "g");
  EXPECT_EQ(test::list_dir(f.dest + "/t/s"), (std::vector<std::string>{"f", "u"}));
  EXPECT_TRUE(out.names_pending) << "four items: one syncfs, the names left to the next";
  EXPECT_TRUE(sync_names(*f.dir, sync).ok());
}

TEST(FileBatch, DirectoryItemAlreadyThereIsFine) {
  Fixture f;
  ASSERT_EQ(::mkdir((f.dest + "/d").c_str(), 0700), 0);
  write_file(f.dest + "/d/old", "kept");
  std::vector<StagedFile> files{staged_dir("d"), staged("d/new", "new"), staged_dir("d")};
  auto r = f.commit(files);
  expect_all_ok(r);
  EXPECT_EQ(lstat_of(f.dest + "/d").st_mode & 0777, 0700u) << "an existing directory is left as it is";
  EXPECT_EQ(read_file(f.dest + "/d/old"), "kept");
  EXPECT_EQ(read_file(f.dest + "/d/new"), "new");
}

// A regular file or a symlink where a directory item goes fails that item (and the
// files meant to go inside it), not the rest of the batch; nothing goes through the link.
TEST(FileBatch, FileOrSymlinkInTheWayOfADirectoryItemFailsThatItemAlone) {
  Fixture f;
  const std::string outside = f.tmp.path() + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((f.dest + "/t").c_str(), 0755), 0);
  write_file(f.dest + "/t/plain", "a file, not a directory");
  ASSERT_EQ(::symlink(outside.c_str(), (f.dest + "/t/link").c_str()), 0);
  std::vector<StagedFile> files{staged("t/ok1", "1"),       staged_dir("t/plain"), staged("t/plain/x", "2"),
                                staged_dir("t/link"),       staged("t/link/y", "3"), staged_dir("t/fresh"),
                                staged("t/fresh/z", "4"),   staged("t/ok2", "5")};
  auto r = f.commit(files);
  ASSERT_EQ(r.size(), files.size());
  EXPECT_TRUE(r[0].ok());
  for (std::size_t i : {1u, 3u}) {
    ASSERT_FALSE(r[i].ok()) << i;
    EXPECT_EQ(r[i].error().code, Errc::protocol) << r[i].error().message();
    EXPECT_NE(r[i].error().message().find("in the way"), std::string::npos) << r[i].error().message();
    EXPECT_NE(r[i].error().message().find(files[i].wire_path), std::string::npos) << r[i].error().message();
  }
  EXPECT_FALSE(r[2].ok());
  EXPECT_FALSE(r[4].ok());
  EXPECT_TRUE(r[5].ok());
  EXPECT_TRUE(r[6].ok());
  EXPECT_TRUE(r[7].ok());
  EXPECT_EQ(read_file(f.dest + "/t/plain"), "a file, not a directory");
  EXPECT_TRUE(S_ISLNK(lstat_of(f.dest + "/t/link").st_mode));
  EXPECT_TRUE(std::filesystem::is_empty(outside));
  EXPECT_EQ(read_file(f.dest + "/t/ok1"), "1");
  EXPECT_EQ(read_file(f.dest + "/t/fresh/z"), "4");
  EXPECT_EQ(read_file(f.dest + "/t/ok2"), "5");
  EXPECT_TRUE(temp_files_under(f.tmp.path()).empty());
}

// Two steps: a prepared batch holds no descriptor and shows nothing under a final name;
// the next batch is prepared before the first one finishes (as the receiver overlaps
// them), and finishing it with the first one's names pending takes one syncfs for both.
TEST(FileBatch, PreparedBatchesOverlapAndHoldNoDescriptor) {
  Fixture f;
  auto sync = counting();
  const std::size_t baseline = open_fd_count();
  std::vector<StagedFile> first{staged("a/f0", "0"), staged("a/f1", "1"), staged("b/f2", "2"), staged("b/f3", "3")};
  auto one = prepare_batch(*f.dir, first, /*syncfs_follows=*/false, sync);
  EXPECT_EQ(one.size(), 4U);
  EXPECT_EQ(open_fd_count(), baseline);
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/a/f0"));
  EXPECT_EQ(temp_files_under(f.dest).size(), 4U);

  std::vector<StagedFile> second{staged("a/g", "g"), staged("c/h", "h")};
  auto two = prepare_batch(*f.dir, second, /*syncfs_follows=*/true, sync);
  EXPECT_EQ(open_fd_count(), baseline);
  EXPECT_EQ(fdatasync_calls + syncfs_calls, 0);  // both wait for a syncfs

  auto done_one = finish_batch(one, /*prior_names_pending=*/false);
  expect_all_ok(done_one.results);
  EXPECT_TRUE(done_one.names_pending);
  EXPECT_EQ(syncfs_calls, 1);
  EXPECT_EQ(read_file(f.dest + "/b/f3"), "3");
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/c/h"));  // prepared, not finished

  auto done_two = finish_batch(two, /*prior_names_pending=*/true);
  expect_all_ok(done_two.results);
  EXPECT_TRUE(done_two.prior.ok());
  EXPECT_EQ(syncfs_calls, 2);
  EXPECT_EQ(fdatasync_calls, 0);
  EXPECT_EQ(read_file(f.dest + "/c/h"), "h");
  EXPECT_EQ(read_file(f.dest + "/a/g"), "g");
  EXPECT_TRUE(temp_files_under(f.dest).empty());
  EXPECT_EQ(open_fd_count(), baseline);
  EXPECT_FALSE(finish_batch(two, true).prior.ok());  // once only
}

// A prepared batch dropped without its finish step (a receiver shutting down), or
// replaced by another one, removes its temporaries and puts nothing in place.
TEST(FileBatch, DroppedPreparedBatchLeavesNoTemporary) {
  Fixture f;
  std::vector<StagedFile> files{staged("a/f0", "0"), staged("b/f1", "1"), staged("top", "t")};
  {
    auto batch = prepare_batch(*f.dir, files, /*syncfs_follows=*/false, counting());
    EXPECT_EQ(temp_files_under(f.dest).size(), 3U);
    std::vector<StagedFile> other{staged("c/f2", "2")};
    batch = prepare_batch(*f.dir, other, /*syncfs_follows=*/false, counting());  // replaces the first
    EXPECT_EQ(temp_files_under(f.dest).size(), 1U);
  }
  EXPECT_TRUE(temp_files_under(f.dest).empty());
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/a/f0"));
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/top"));
}

// A directory replaced between the two steps: its files fail with the reason and none
// appears in the directory now under that name; the other directory's files commit.
TEST(FileBatch, DirectoryReplacedBetweenTheStepsFailsItsFiles) {
  Fixture f;
  std::vector<StagedFile> files{staged("a/f0", "0"), staged("b/f1", "1")};
  auto batch = prepare_batch(*f.dir, files, /*syncfs_follows=*/false, counting());
  ASSERT_EQ(::rename((f.dest + "/a").c_str(), (f.dest + "/moved").c_str()), 0);
  ASSERT_EQ(::mkdir((f.dest + "/a").c_str(), 0755), 0);
  auto out = finish_batch(batch, /*prior_names_pending=*/false);
  ASSERT_FALSE(out.results[0].ok());
  EXPECT_NE(out.results[0].error().what.find("was replaced"), std::string::npos) << out.results[0].error().what;
  EXPECT_TRUE(out.results[1].ok());
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/a/f0"));
  EXPECT_FALSE(std::filesystem::exists(f.dest + "/moved/f0"));
  EXPECT_EQ(read_file(f.dest + "/b/f1"), "1");
}

// A small batch (fdatasync mode) whose only news in a directory is a directory item:
// the prepare step closed that directory, and the finish step opens it again to fsync
// the new entry.
TEST(FileBatch, PreparedDirectoryItemAloneInItsParentIsSynced) {
  Fixture f;
  auto sync = counting();
  std::vector<StagedFile> files{staged("a/f0", "0"), staged_dir("b/d")};
  auto batch = prepare_batch(*f.dir, files, /*syncfs_follows=*/false, sync);
  auto out = finish_batch(batch, /*prior_names_pending=*/false);
  expect_all_ok(out.results);
  EXPECT_FALSE(out.names_pending);
  EXPECT_EQ(syncfs_calls, 0);
  EXPECT_EQ(fdatasync_calls, 1);
  EXPECT_TRUE(std::filesystem::is_directory(f.dest + "/b/d"));
  EXPECT_EQ(read_file(f.dest + "/a/f0"), "0");
}

// A batch over more directories than one round holds open is written round by round
// and made durable by one syncfs in all, through either entry point; no descriptor is
// left behind.
TEST(FileBatch, BatchOverManyDirectoriesTakesOneSyncfs) {
  Fixture f;
  const std::size_t baseline = open_fd_count();
  std::vector<StagedFile> files;
  for (int d = 0; d < 80; ++d) files.push_back(staged("d" + std::to_string(d) + "/f", std::to_string(d)));
  auto sync = counting();
  auto out = commit_batch_pipelined(*f.dir, files, /*prior_names_pending=*/false, sync);
  expect_all_ok(out.results);
  EXPECT_TRUE(out.names_pending);
  EXPECT_EQ(syncfs_calls, 1);
  EXPECT_LE(max_open_fds, baseline + 40);  // one round's directories at most

  std::vector<StagedFile> more;
  for (int d = 0; d < 80; ++d) more.push_back(staged("e" + std::to_string(d) + "/f", std::to_string(d)));
  auto batch = prepare_batch(*f.dir, more, /*syncfs_follows=*/true, sync);
  auto two = finish_batch(batch, /*prior_names_pending=*/true);
  expect_all_ok(two.results);
  EXPECT_TRUE(two.prior.ok());
  EXPECT_EQ(syncfs_calls, 2);
  EXPECT_EQ(read_file(f.dest + "/d79/f"), "79");
  EXPECT_EQ(read_file(f.dest + "/e0/f"), "0");
  EXPECT_EQ(open_fd_count(), baseline);
}

}  // namespace
}  // namespace ferry
