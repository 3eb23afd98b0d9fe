// Tests lib/spool_scan: the spool listing (nested directories in wire-path order,
// hidden names and excluded directories ignored, symlinks, FIFOs, sockets, non-UTF-8
// names and unreadable directories skipped with a reason, files vanishing during a
// scan, the limits), parse_on_sent, and apply_on_sent (remove, keep, move with parents
// created, name collisions, a file changed or gone since it was sent, symlinks in the
// target, and the copy across filesystems to /dev/shm).
#include "sender/spool/spool_scan.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using test::exists_nofollow;
using test::read_file;
using test::TempDir;
using test::write_file;

void mkdirs(const std::string& base, std::initializer_list<const char*> dirs) {
  for (const char* d : dirs) ASSERT_EQ(::mkdir((base + "/" + d).c_str(), 0755), 0) << d;
}

std::vector<std::string> wire_paths(const SpoolListing& l) {
  std::vector<std::string> out;
  for (const auto& e : l.files) out.push_back(e.wire_path);
  return out;
}

bool skipped_has(const SpoolListing& l, const std::string& line_start, const std::string& why) {
  for (const auto& s : l.skipped) {
    if (s.rfind(line_start + ": ", 0) == 0 && s.find(why) != std::string::npos) return true;
  }
  return false;
}

std::string all_skipped(const SpoolListing& l) {
  std::string out;
  for (const auto& s : l.skipped) out += s + "\n";
  return out;
}

void set_mtime(const std::string& p, std::int64_t sec, long nsec) {
  const timespec times[2] = {{0, UTIME_OMIT}, {sec, nsec}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << p;
}

// scan_spool's listing; a failure throws (the test fails with its message).
SpoolListing scan_ok(const std::string& dir, const std::vector<std::string>& exclude = {},
                     const SpoolLimits& limits = {}) {
  auto l = scan_spool(dir, exclude, limits);
  if (!l) throw std::runtime_error(l.error().message());
  return std::move(*l);
}

const SourceEntry& entry_of(const SpoolListing& l, const std::string& wire) {
  for (const auto& e : l.files)
    if (e.wire_path == wire) return e;
  throw std::runtime_error("not listed: " + wire);
}

// ---------------------------------------------------------------------------
// scan_spool

TEST(SpoolScan, NestedFilesInWirePathOrderWithTheirSignatures) {
  TempDir t;
  const std::string s = t.path();
  mkdirs(s, {"b", "b/d", "a", "empty"});
  write_file(s + "/z", "zz");
  write_file(s + "/b/c", "ccc");
  write_file(s + "/b/d/e", "");
  write_file(s + "/a.txt", "1");
  write_file(s + "/a/x", "x");
  ASSERT_EQ(::chmod((s + "/b/c").c_str(), 0640), 0);
  set_mtime(s + "/b/c", 1'600'000'000, 123'456'789);

  const SpoolListing l = scan_ok(s);
  // Sorted as strings: "a.txt" < "a/x" ('.' < '/'), unlike a depth-first walk.
  EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"a.txt", "a/x", "b/c", "b/d/e", "z"}));
  EXPECT_TRUE(l.skipped.empty()) << all_skipped(l);
  const SourceEntry& c = entry_of(l, "b/c");
  struct stat st {};
  ASSERT_EQ(::stat((s + "/b/c").c_str(), &st), 0);
  EXPECT_EQ(c.local_path, s + "/b/c");
  EXPECT_EQ(c.kind, protocol::EntryKind::file);
  EXPECT_EQ(c.size, 3u);
  EXPECT_EQ(c.mtime_ns, 1'600'000'000'123'456'789);
  EXPECT_EQ(c.ctime_ns, static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec);
  EXPECT_EQ(c.inode, static_cast<std::uint64_t>(st.st_ino));
  EXPECT_EQ(c.mode, 0640u);
  EXPECT_EQ(c.identity, source_identity(3, c.mtime_ns));
  EXPECT_EQ(entry_of(l, "b/d/e").size, 0u);
}

TEST(SpoolScan, TrailingSlashesDoNotDoubleTheSeparator) {
  TempDir t;
  write_file(t.path() + "/f", "f");
  const SpoolListing l = scan_ok(t.path() + "//");
  ASSERT_EQ(l.files.size(), 1u);
  EXPECT_EQ(l.files[0].local_path, t.path() + "/f");
}

TEST(SpoolScan, HiddenNamesAndTheSentDirectoryAreIgnoredSilently) {
  TempDir t;
  const std::string s = t.path();
  mkdirs(s, {".sent", ".sent/a", ".partial-dir", "a", "a/.cache"});
  write_file(s + "/.sent/a/done", "d");
  write_file(s + "/.partial-dir/f", "p");
  write_file(s + "/.incoming.tmp", "i");
  write_file(s + "/a/.f.swp", "swap");
  write_file(s + "/a/.cache/x", "x");
  write_file(s + "/a/real", "r");
  ASSERT_EQ(::mkfifo((s + "/.hidden-fifo").c_str(), 0600), 0);  // hidden: not even skipped
  const SpoolListing l = scan_ok(s);
  EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"a/real"}));
  EXPECT_TRUE(l.skipped.empty()) << all_skipped(l);
}

// A move:DIR target inside the spool is never listed, whatever the spelling of its
// path: it is compared by device and inode.
TEST(SpoolScan, ExcludedDirectoriesAreComparedByInode) {
  TempDir t;
  const std::string s = t.path() + "/spool";
  mkdirs(t.path(), {"spool", "spool/done", "spool/done/sub", "spool/keep"});
  write_file(s + "/done/sent-before", "1");
  write_file(s + "/done/sub/deeper", "2");
  write_file(s + "/keep/new", "3");
  ASSERT_EQ(::symlink((s + "/done").c_str(), (t.path() + "/alias").c_str()), 0);
  for (const std::string& spelling : {s + "/done", s + "/./done/", s + "/keep/../done", t.path() + "/alias",
                                      std::string("relative-does-not-exist")}) {
    const SpoolListing l = scan_ok(s, {spelling, t.path() + "/not-there"});
    if (spelling == "relative-does-not-exist") {
      EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"done/sent-before", "done/sub/deeper", "keep/new"}));
    } else {
      EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"keep/new"})) << spelling;
    }
  }
}

TEST(SpoolScan, SymlinksSpecialFilesAndNonUtf8NamesAreSkippedWithReasons) {
  TempDir t;
  const std::string s = t.path();
  mkdirs(s, {"d",
             "bad\xff"
             "dir"});
  write_file(s + "/real", "r");
  write_file(s + "/bad\xff"
                 "dir/inside",
             "never seen");
  write_file(s + "/d/caf\xc3\xa9", "utf-8 is fine");
  write_file(s + "/d/a\xfe", "not utf-8");
  ASSERT_EQ(::symlink("real", (s + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("d", (s + "/dirlink").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent", (s + "/d/dangling").c_str()), 0);
  ASSERT_EQ(::mkfifo((s + "/d/fifo").c_str(), 0600), 0);
  const std::string sock_path = s + "/sock";
  int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock_path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(sock);

  const SpoolListing l = scan_ok(s);
  EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"d/caf\xc3\xa9", "real"}));
  EXPECT_EQ(l.skipped.size(), 7u) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l, "link", "symlink not sent")) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l, "dirlink", "symlink not sent")) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l, "d/dangling", "symlink not sent")) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l, "d/fifo", "FIFO not sent")) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l, "sock", "socket not sent")) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l, "d/a\xfe", "not valid UTF-8")) << all_skipped(l);
  EXPECT_TRUE(skipped_has(l,
                          "bad\xff"
                          "dir",
                          "not valid UTF-8"))
      << all_skipped(l);
}

// Runs `fn` as user nobody in a child process when we are root (root reads any
// directory), else here; returns what it printed.
template <class Fn>
std::string run_unprivileged(Fn fn) {
  if (::geteuid() != 0) return fn();
  int p[2];
  if (::pipe(p) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    std::string out = (::setgid(65534) == 0 && ::setuid(65534) == 0) ? fn() : std::string("setuid failed");
    (void)!::write(p[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

TEST(SpoolScan, UnreadableSubdirectoryIsSkippedNotFatal) {
  TempDir t;
  const std::string s = t.path();
  ASSERT_EQ(::chmod(s.c_str(), 0755), 0);
  mkdirs(s, {"open", "locked"});
  write_file(s + "/open/f", "f");
  write_file(s + "/locked/secret", "s");
  ASSERT_EQ(::chmod((s + "/open/f").c_str(), 0644), 0);
  ASSERT_EQ(::chmod((s + "/locked").c_str(), 0), 0);
  const std::string out = run_unprivileged([&] {
    auto l = scan_spool(s, {});
    if (!l) return "error: " + l.error().message();
    std::string r;
    for (const auto& w : wire_paths(*l)) r += "file " + w + "\n";
    return r + all_skipped(*l);
  });
  ::chmod((s + "/locked").c_str(), 0755);
  EXPECT_EQ(out, "file open/f\nlocked: open: Permission denied\n");
}

TEST(SpoolScan, SpoolThatCannotBeOpenedIsALocalIoError) {
  TempDir t;
  write_file(t.path() + "/file", "f");
  for (const std::string& dir : {t.path() + "/missing", t.path() + "/file"}) {
    auto l = scan_spool(dir, {});
    ASSERT_FALSE(l) << dir;
    EXPECT_EQ(l.error().code, Errc::local_io);
    EXPECT_NE(l.error().message().find(dir), std::string::npos) << l.error().message();
  }
}

// Files and directories that come and go while the spool is scanned are listed or
// absent, never an error or a skip line.
TEST(SpoolScan, EntriesVanishingDuringTheScanAreSimplyAbsent) {
  TempDir t;
  const std::string s = t.path();
  write_file(s + "/stable", "s");
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    for (unsigned i = 0; !stop.load(); ++i) {
      const std::string f = s + "/f" + std::to_string(i % 50);
      const std::string d = s + "/d" + std::to_string(i % 7);
      write_file(f, "x");
      ::mkdir(d.c_str(), 0755);
      write_file(d + "/inner", "y");
      ::unlink(f.c_str());
      ::unlink((d + "/inner").c_str());
      ::rmdir(d.c_str());
    }
  });
  for (int round = 0; round < 300; ++round) {
    const SpoolListing l = scan_ok(s);
    EXPECT_TRUE(l.skipped.empty()) << all_skipped(l);
    bool saw_stable = false;
    for (const auto& e : l.files) saw_stable |= e.wire_path == "stable";
    EXPECT_TRUE(saw_stable);
  }
  stop = true;
  churn.join();
}

TEST(SpoolScan, FileCountLimitStopsTheListingWithALine) {
  TempDir t;
  for (int i = 0; i < 5; ++i) write_file(t.path() + "/f" + std::to_string(i), "x");
  SpoolLimits lim;
  lim.max_files = 3;
  const SpoolListing l = scan_ok(t.path(), {}, lim);
  EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"f0", "f1", "f2"}));
  ASSERT_EQ(l.skipped.size(), 1u);
  EXPECT_TRUE(skipped_has(l, "f3", "more than 3 files")) << all_skipped(l);
}

TEST(SpoolScan, EntryAndPathByteLimits) {
  TempDir t;
  mkdirs(t.path(), {"a", "b"});
  for (int i = 0; i < 4; ++i) write_file(t.path() + "/a/" + std::to_string(i), "x");
  SpoolLimits lim;
  lim.max_entries = 4;  // "a", "b" and two names inside a
  const SpoolListing l = scan_ok(t.path(), {}, lim);
  EXPECT_EQ(l.files.size(), 2u);
  EXPECT_TRUE(skipped_has(l, "a", "more than 4 entries")) << all_skipped(l);

  SpoolLimits bytes;
  bytes.max_path_bytes = 7;  // "a/0" and "a/1", not "a/2"
  const SpoolListing b = scan_ok(t.path(), {}, bytes);
  EXPECT_EQ(wire_paths(b), (std::vector<std::string>{"a/0", "a/1"}));
  EXPECT_TRUE(skipped_has(b, "a/2", "7 bytes")) << all_skipped(b);
}

TEST(SpoolScan, DepthLimitSkipsDeeperDirectories) {
  TempDir t;
  mkdirs(t.path(), {"1", "1/2", "1/2/3"});
  write_file(t.path() + "/1/f", "ok");
  write_file(t.path() + "/1/2/f", "ok");
  write_file(t.path() + "/1/2/3/f", "too deep");
  SpoolLimits lim;
  lim.max_depth = 2;
  const SpoolListing l = scan_ok(t.path(), {}, lim);
  EXPECT_EQ(wire_paths(l), (std::vector<std::string>{"1/2/f", "1/f"}));
  EXPECT_TRUE(skipped_has(l, "1/2/3", "deeper than 2 levels")) << all_skipped(l);
}

TEST(SpoolScan, SkippedLinesAreBounded) {
  TempDir t;
  for (int i = 0; i < 6; ++i) ASSERT_EQ(::mkfifo((t.path() + "/p" + std::to_string(i)).c_str(), 0600), 0);
  SpoolLimits lim;
  lim.max_skipped = 2;
  const SpoolListing l = scan_ok(t.path(), {}, lim);
  ASSERT_EQ(l.skipped.size(), 3u) << all_skipped(l);
  EXPECT_EQ(l.skipped[2], "(4 more entries not sent, not listed here)");
}

// A path longer than the protocol's 4096 bytes cannot be offered: skipped, not sent.
TEST(SpoolScan, PathTooLongForTheProtocolIsSkipped) {
  TempDir t;
  const std::string comp(200, 'n');
  int fd = ::open(t.path().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  std::string rel;
  for (int i = 0; i < 21; ++i) {  // 21 * 201 bytes > 4096
    ASSERT_EQ(::mkdirat(fd, comp.c_str(), 0755), 0);
    int next = ::openat(fd, comp.c_str(), O_RDONLY | O_DIRECTORY);
    ::close(fd);
    ASSERT_GE(next, 0);
    fd = next;
    rel += comp + "/";
  }
  int f = ::openat(fd, "leaf", O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(f, 0);
  ::close(f);
  ::close(fd);
  write_file(t.path() + "/short", "s");
  auto l = scan_spool(t.path(), {});
  // Removed here, by descriptors: TempDir's remove_all works on whole paths, which
  // this one is too long for.
  std::vector<int> fds{::open(t.path().c_str(), O_RDONLY | O_DIRECTORY)};
  for (int i = 0; i < 21; ++i) fds.push_back(::openat(fds.back(), comp.c_str(), O_RDONLY | O_DIRECTORY));
  EXPECT_EQ(::unlinkat(fds.back(), "leaf", 0), 0);
  for (int i = 21; i > 0; --i) {
    ::close(fds[static_cast<std::size_t>(i)]);
    EXPECT_EQ(::unlinkat(fds[static_cast<std::size_t>(i) - 1], comp.c_str(), AT_REMOVEDIR), 0);
  }
  ::close(fds[0]);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(wire_paths(*l), (std::vector<std::string>{"short"}));
  EXPECT_TRUE(skipped_has(*l, rel + "leaf", "cannot be sent")) << all_skipped(*l);
}

// ---------------------------------------------------------------------------
// parse_on_sent

TEST(SpoolOnSent, ParsesRemoveKeepAndMove) {
  auto r = parse_on_sent("remove", "/spool");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->action, OnSent::remove);
  EXPECT_TRUE(on_sent_excludes(*r).empty());
  auto k = parse_on_sent("keep", "/spool");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->action, OnSent::keep);
  auto m = parse_on_sent("move:/var/done/", "/spool");
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->action, OnSent::move);
  EXPECT_EQ(m->target, "/var/done");
  EXPECT_EQ(on_sent_excludes(*m), (std::vector<std::string>{"/var/done"}));
}

TEST(SpoolOnSent, RelativeMoveTargetIsRelativeToTheCurrentDirectory) {
  const std::string cwd = std::filesystem::current_path().string();
  auto m = parse_on_sent("move:done/./today", "/spool");
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->target, cwd + "/done/today");
}

TEST(SpoolOnSent, DefaultIsSentUnderTheSpool) {
  auto d = default_on_sent("/data/spool/");
  EXPECT_EQ(d.action, OnSent::move);
  EXPECT_EQ(d.target, "/data/spool/.sent");
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(default_on_sent("spool").target, cwd + "/spool/.sent");
}

TEST(SpoolOnSent, AnythingElseIsAUsageError) {
  TempDir t;
  for (const std::string& bad : {std::string(""), std::string("move"), std::string("move:"), std::string("Remove"),
                                 std::string("delete"), std::string("keep "), std::string("copy:/x"),
                                 "move:" + t.path(), "move:" + t.path() + "/", "move:" + t.path() + "/sub/.."}) {
    auto r = parse_on_sent(bad, t.path());
    ASSERT_FALSE(r) << "'" << bad << "'";
    EXPECT_EQ(r.error().code, Errc::usage) << bad;
  }
}

// ---------------------------------------------------------------------------
// apply_on_sent

struct Spool {
  TempDir t;
  std::string dir = t.path() + "/spool";
  Spool() { ::mkdir(dir.c_str(), 0755); }
  SourceEntry listed(const std::string& rel) { return entry_of(scan_ok(dir), rel); }
};

TEST(SpoolApply, RemoveUnlinksTheFile) {
  Spool s;
  write_file(s.dir + "/f", "data");
  auto e = s.listed("f");
  auto r = apply_on_sent(OnSentPolicy{OnSent::remove, {}}, s.dir, e);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->result, OnSentResult::applied);
  EXPECT_EQ(r->description, "removed f");
  EXPECT_FALSE(exists_nofollow(s.dir + "/f"));
}

TEST(SpoolApply, KeepLeavesTheFile) {
  Spool s;
  write_file(s.dir + "/f", "data");
  auto r = apply_on_sent(OnSentPolicy{OnSent::keep, {}}, s.dir, s.listed("f"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->result, OnSentResult::applied);
  EXPECT_EQ(read_file(s.dir + "/f"), "data");
}

TEST(SpoolApply, MoveCreatesParentsAndKeepsTheRelativePath) {
  Spool s;
  ASSERT_EQ(::mkdir((s.dir + "/a").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((s.dir + "/a/b").c_str(), 0755), 0);
  write_file(s.dir + "/a/b/f", "payload");
  const auto policy = default_on_sent(s.dir);
  auto r = apply_on_sent(policy, s.dir, s.listed("a/b/f"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->result, OnSentResult::applied);
  EXPECT_EQ(r->description, "moved a/b/f to " + s.dir + "/.sent/a/b/f");
  EXPECT_FALSE(exists_nofollow(s.dir + "/a/b/f"));
  EXPECT_TRUE(exists_nofollow(s.dir + "/a/b"));  // the spool's own directories stay
  EXPECT_EQ(read_file(s.dir + "/.sent/a/b/f"), "payload");
  for (const char* d : {"/.sent", "/.sent/a", "/.sent/a/b"}) {
    struct stat st {};
    ASSERT_EQ(::stat((s.dir + d).c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_mode & 0777, 0755u) << d;
  }
}

TEST(SpoolApply, MoveNeverOverwritesAnEarlierFile) {
  Spool s;
  const std::string target = s.t.path() + "/done";
  const OnSentPolicy policy{OnSent::move, target};
  for (const char* content : {"first", "second", "third"}) {
    write_file(s.dir + "/f", content);
    auto r = apply_on_sent(policy, s.dir, s.listed("f"));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->result, OnSentResult::applied);
  }
  EXPECT_EQ(read_file(target + "/f"), "first");
  EXPECT_EQ(read_file(target + "/f.1"), "second");
  EXPECT_EQ(read_file(target + "/f.2"), "third");
  EXPECT_EQ(test::list_dir(target), (std::vector<std::string>{"f", "f.1", "f.2"}));
}

TEST(SpoolApply, FileChangedSinceItWasSentIsLeftInPlace) {
  Spool s;
  write_file(s.dir + "/f", "v1");
  set_mtime(s.dir + "/f", 1'600'000'000, 0);
  const auto sent = s.listed("f");
  const std::string target = s.t.path() + "/done";
  // Rewritten with the same size and mtime: ctime still tells.
  write_file(s.dir + "/f", "v2");
  set_mtime(s.dir + "/f", 1'600'000'000, 0);
  for (const OnSentPolicy& p : {OnSentPolicy{OnSent::move, target}, OnSentPolicy{OnSent::remove, {}}}) {
    auto r = apply_on_sent(p, s.dir, sent);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->result, OnSentResult::changed_since_sent);
    EXPECT_NE(r->description.find("changed after it was sent"), std::string::npos) << r->description;
    EXPECT_EQ(read_file(s.dir + "/f"), "v2");
  }
  EXPECT_FALSE(exists_nofollow(target + "/f"));
  // Replaced by another file (another inode) with everything else equal.
  const auto again = s.listed("f");
  write_file(s.dir + "/g", "v2");
  ASSERT_EQ(::rename((s.dir + "/g").c_str(), (s.dir + "/f").c_str()), 0);
  auto r = apply_on_sent(OnSentPolicy{OnSent::remove, {}}, s.dir, again);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->result, OnSentResult::changed_since_sent);
  EXPECT_TRUE(exists_nofollow(s.dir + "/f"));
}

TEST(SpoolApply, FileGoneIsNotAnError) {
  Spool s;
  ASSERT_EQ(::mkdir((s.dir + "/d").c_str(), 0755), 0);
  write_file(s.dir + "/d/f", "x");
  const auto sent = s.listed("d/f");
  ASSERT_EQ(::unlink((s.dir + "/d/f").c_str()), 0);
  auto r = apply_on_sent(default_on_sent(s.dir), s.dir, sent);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->result, OnSentResult::gone);
  ASSERT_EQ(::rmdir((s.dir + "/d").c_str()), 0);
  auto r2 = apply_on_sent(OnSentPolicy{OnSent::remove, {}}, s.dir, sent);
  ASSERT_TRUE(r2) << r2.error().message();
  EXPECT_EQ(r2->result, OnSentResult::gone);
}

// A symlink put inside the target is not followed: the file is not moved through it.
TEST(SpoolApply, SymlinkInTheTargetIsNotFollowed) {
  Spool s;
  const std::string target = s.t.path() + "/done";
  const std::string elsewhere = s.t.path() + "/elsewhere";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(elsewhere.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(elsewhere.c_str(), (target + "/a").c_str()), 0);
  ASSERT_EQ(::mkdir((s.dir + "/a").c_str(), 0755), 0);
  write_file(s.dir + "/a/f", "x");
  auto r = apply_on_sent(OnSentPolicy{OnSent::move, target}, s.dir, s.listed("a/f"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::local_io);
  EXPECT_TRUE(r.error().sys_errno == ENOTDIR || r.error().sys_errno == ELOOP) << r.error().message();
  EXPECT_NE(r.error().message().find(target + "/a"), std::string::npos) << r.error().message();
  EXPECT_TRUE(exists_nofollow(s.dir + "/a/f"));
  EXPECT_TRUE(test::list_dir(elsewhere).empty());
}

TEST(SpoolApply, ErrorsNameTheCallAndTheFile) {
  Spool s;
  write_file(s.t.path() + "/not-a-dir", "x");
  write_file(s.dir + "/f", "x");
  auto r = apply_on_sent(OnSentPolicy{OnSent::move, s.t.path() + "/not-a-dir"}, s.dir, s.listed("f"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::local_io);
  EXPECT_EQ(r.error().sys_errno, ENOTDIR);
  EXPECT_NE(r.error().message().find("open(" + s.t.path() + "/not-a-dir)"), std::string::npos) << r.error().message();
  EXPECT_TRUE(exists_nofollow(s.dir + "/f"));
}

// /tmp and /dev/shm are different filesystems here (ext4 and tmpfs): rename gives
// EXDEV, so the file is copied (content, mode, mtime), renamed into place and the
// source unlinked; no temporary is left behind, and collisions still get a suffix.
TEST(SpoolApply, MoveAcrossFilesystemsCopiesThenUnlinks) {
  Spool s;
  struct stat a {
  }, b{};
  if (::stat(s.dir.c_str(), &a) != 0 || ::stat("/dev/shm", &b) != 0 || a.st_dev == b.st_dev) {
    GTEST_SKIP() << "needs /dev/shm on another filesystem than /tmp";
  }
  std::string templ = "/dev/shm/ferry-spool-XXXXXX";
  ASSERT_NE(::mkdtemp(templ.data()), nullptr);
  struct Cleanup {
    std::string p;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } cleanup{templ};
  const OnSentPolicy policy{OnSent::move, templ + "/done"};
  ASSERT_EQ(::mkdir((s.dir + "/sub").c_str(), 0755), 0);
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  for (int round = 0; round < 2; ++round) {
    write_file(s.dir + "/sub/f", big);
    ASSERT_EQ(::chmod((s.dir + "/sub/f").c_str(), 0604), 0);
    set_mtime(s.dir + "/sub/f", 1'650'000'000, 42);
    auto r = apply_on_sent(policy, s.dir, s.listed("sub/f"));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->result, OnSentResult::applied);
    EXPECT_NE(r->description.find("across filesystems"), std::string::npos) << r->description;
    EXPECT_FALSE(exists_nofollow(s.dir + "/sub/f"));
  }
  EXPECT_EQ(test::list_dir(templ + "/done/sub"), (std::vector<std::string>{"f", "f.1"}));
  for (const char* name : {"/done/sub/f", "/done/sub/f.1"}) {
    EXPECT_EQ(read_file(templ + name), big) << name;
    struct stat st {};
    ASSERT_EQ(::stat((templ + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0604u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1'650'000'000);
    EXPECT_EQ(st.st_mtim.tv_nsec, 42);
  }
}

}  // namespace
}  // namespace ferry
