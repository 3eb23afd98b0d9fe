// End-to-end tests of the send-to-host spool, `ferry-send --watch DIR`, with the real
// executables on loopback TCP: files dropped while the receiver is down are delivered
// when it comes up; a file written slowly is not sent before it settles; a watcher
// killed mid-file resumes after its restart; --on-sent remove, move:DIR and keep; a
// large file interrupted by a receiver restart resumes. Every wait is bounded.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/process.hpp"
#include "tests/e2e/relay.hpp"

namespace ferry::e2e {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr Millis kDeliverLimit = 40s;

// A loopback port nothing listens on right now (bound, then released).
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("free_port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// Writes a file under a hidden name and renames it into place: the writer's
// convention the spool relies on ("moved in by rename" is complete).
void drop_file(const std::string& dir, const std::string& rel, std::uint64_t size, std::uint64_t seed,
               const std::string& keep_copy_at) {
  const std::string tmp = dir + "/.incoming-" + std::to_string(seed);
  write_random_file(tmp, size, seed);
  write_random_file(keep_copy_at, size, seed);  // the expected bytes, outside the spool
  make_dirs(dir + "/" + rel.substr(0, rel.find_last_of('/') == std::string::npos ? 0 : rel.find_last_of('/')));
  if (::rename(tmp.c_str(), (dir + "/" + rel).c_str()) != 0) throw std::runtime_error("rename " + rel);
}

struct Spool {
  std::unique_ptr<Process> proc;
  std::vector<nlohmann::json> events() const { return proc->json_events(); }
  std::size_t count(const std::string& type, const std::string& path = {}) const {
    std::size_t n = 0;
    for (const auto& e : events()) {
      if (e.value("event", "") == type && (path.empty() || e.value("path", "") == path)) ++n;
    }
    return n;
  }
  // SIGTERM: the spool ends with 128+15 and a session_end event.
  void stop() {
    proc->signal(SIGTERM);
    EXPECT_EQ(proc->wait(), ExitStatus::exited_with(128 + SIGTERM)) << proc->describe();
    const auto all = events();
    EXPECT_NE(find_event(all, "session_end"), nullptr) << proc->describe();
  }
};

Spool start_spool(const TempDir& t, const std::string& name, const std::string& address,
                  const std::vector<std::string>& extra) {
  std::vector<std::string> argv{kSendBin, "--watch", t / "spool", "--connect", address, "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return Spool{Process::start(argv, t.path(), name)};
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Waits until `path` (in DEST) holds the expected bytes; "" when it does.
std::string await_delivered(const std::string& expected, const std::string& actual, Millis limit = kDeliverLimit) {
  wait_until([&] { return exists_nofollow(actual) && compare_files(expected, actual).empty(); }, limit);
  return compare_files(expected, actual);
}

TEST(Spool, FilesDroppedWhileTheReceiverIsDownAreDeliveredWhenItComesUp) {
  TempDir t;
  make_dirs(t / "spool");
  const std::uint16_t port = free_port();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  Spool spool = start_spool(t, "spool", addr, {"--settle", "0.2"});
  drop_file(t / "spool", "a.bin", 300 * 1024, 1, t / "expect/a.bin");
  drop_file(t / "spool", "sub/dir/b.bin", 2 * kMiB + 3, 2, t / "expect/sub/dir/b.bin");
  write_text_file(t / "spool/c.txt", "written in place, settles\n");
  write_text_file(t / "expect/c.txt", "written in place, settles\n");
  // The receiver is away: the spool keeps trying (with backoff) and does not give up.
  ASSERT_TRUE(wait_until([&] { return spool.count("reconnect") >= 2 || !spool.proc->running(); }, 20s))
      << spool.proc->describe();
  ASSERT_TRUE(spool.proc->running()) << spool.proc->describe();
  Receiver r = start_receiver(t.path(), "recv", addr, {"--json", t / "dest"});
  EXPECT_EQ(await_delivered(t / "expect/a.bin", t / "dest/a.bin"), "") << spool.proc->describe();
  EXPECT_EQ(await_delivered(t / "expect/sub/dir/b.bin", t / "dest/sub/dir/b.bin"), "");
  EXPECT_EQ(await_delivered(t / "expect/c.txt", t / "dest/c.txt"), "");
  // Default --on-sent: moved into DIR/.sent, keeping the sub-path; the queue drains.
  ASSERT_TRUE(wait_until(
      [&] {
        return exists_nofollow(t / "spool/.sent/c.txt") && exists_nofollow(t / "spool/.sent/sub/dir/b.bin") &&
               exists_nofollow(t / "spool/.sent/a.bin");
      },
      10s))
      << spool.proc->describe();
  EXPECT_EQ(compare_files(t / "expect/sub/dir/b.bin", t / "spool/.sent/sub/dir/b.bin"), "");
  EXPECT_FALSE(exists_nofollow(t / "spool/a.bin"));
  EXPECT_FALSE(exists_nofollow(t / "spool/c.txt"));
  EXPECT_TRUE(wait_until([&] { return spool.count("file_sent") == 3; }, 10s)) << spool.proc->describe();
  EXPECT_EQ(ferry_leftovers(t / "dest"), std::vector<std::string>{});
  spool.stop();
  r.proc->signal(SIGTERM);
  r.proc->wait();
}

TEST(Spool, AFileWrittenSlowlyIsNotSentBeforeItSettles) {
  TempDir t;
  make_dirs(t / "spool");
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--json", t / "dest"});
  // Settle 2 s; the writer pauses 150 ms between writes: a margin of more than 10x.
  Spool spool = start_spool(t, "spool", r.address, {"--settle", "2"});
  std::ofstream out(t / "spool/slow.log", std::ios::binary);
  std::string expected;
  for (int i = 0; i < 16; ++i) {
    const std::string piece = "line " + std::to_string(i) + " " + std::string(1000, static_cast<char>('a' + i)) + "\n";
    out << piece << std::flush;
    expected += piece;
    std::this_thread::sleep_for(150ms);
    ASSERT_EQ(spool.count("file_start", "slow.log"), 0u) << "offered while still being written\n"
                                                         << spool.proc->describe();
    ASSERT_FALSE(exists_nofollow(t / "dest/slow.log"));
  }
  out.close();
  write_text_file(t / "expect.log", expected);
  EXPECT_EQ(await_delivered(t / "expect.log", t / "dest/slow.log"), "") << spool.proc->describe();
  // Offered once, whole: no restart because the source changed under it.
  EXPECT_EQ(spool.count("file_start", "slow.log"), 1u) << spool.proc->describe();
  spool.stop();
  r.proc->signal(SIGTERM);
  r.proc->wait();
}

TEST(Spool, OnSentRemoveMoveAndKeep) {
  TempDir t;
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--json", t / "dest"});
  // remove: gone from the spool once verified.
  {
    make_dirs(t / "spool");
    Spool spool = start_spool(t, "spool-remove", r.address, {"--settle", "0.1", "--on-sent", "remove"});
    drop_file(t / "spool", "r.bin", 100 * 1024, 11, t / "expect/r.bin");
    EXPECT_EQ(await_delivered(t / "expect/r.bin", t / "dest/r.bin"), "");
    EXPECT_TRUE(wait_until([&] { return !exists_nofollow(t / "spool/r.bin"); }, 10s)) << spool.proc->describe();
    EXPECT_FALSE(exists_nofollow(t / "spool/.sent"));
    spool.stop();
  }
  // move:DIR (inside the spool but not hidden: it must never be sent itself); a name
  // already there is not overwritten.
  {
    make_dirs(t / "spool/done");
    write_text_file(t / "spool/done/m.bin", "an older m.bin\n");
    Spool spool =
        start_spool(t, "spool-move", r.address, {"--settle", "0.1", "--on-sent", "move:" + (t / "spool/done")});
    drop_file(t / "spool", "m.bin", 100 * 1024, 12, t / "expect/m.bin");
    EXPECT_EQ(await_delivered(t / "expect/m.bin", t / "dest/m.bin"), "");
    EXPECT_TRUE(wait_until([&] { return exists_nofollow(t / "spool/done/m.bin.1"); }, 10s)) << spool.proc->describe();
    EXPECT_EQ(compare_files(t / "expect/m.bin", t / "spool/done/m.bin.1"), "");
    EXPECT_EQ(read_text(t / "spool/done/m.bin"), "an older m.bin\n");
    EXPECT_FALSE(exists_nofollow(t / "dest/done")) << "the move target was sent";
    spool.stop();
  }
  // keep: left in place, and not sent again while it stays the same; sent again once
  // it changes.
  {
    Spool spool = start_spool(t, "spool-keep", r.address, {"--settle", "0.1", "--on-sent", "keep"});
    drop_file(t / "spool", "k.bin", 100 * 1024, 13, t / "expect/k.bin");
    EXPECT_EQ(await_delivered(t / "expect/k.bin", t / "dest/k.bin"), "");
    ASSERT_TRUE(wait_until([&] { return spool.count("file_sent", "k.bin") == 1; }, 10s)) << spool.proc->describe();
    std::this_thread::sleep_for(4500ms);  // two periodic rescans (every 2 s) at least
    EXPECT_EQ(spool.count("file_start", "k.bin"), 1u) << spool.proc->describe();
    EXPECT_TRUE(exists_nofollow(t / "spool/k.bin"));
    drop_file(t / "spool", "k.bin", 200 * 1024, 14, t / "expect/k.bin");
    EXPECT_EQ(await_delivered(t / "expect/k.bin", t / "dest/k.bin"), "") << spool.proc->describe();
    spool.stop();
  }
  r.proc->signal(SIGTERM);
  r.proc->wait();
}

// A file the receiver cannot take (a directory is in the way of its name) fails; it
// stays in the spool, not moved, and is offered again after a delay; once the way
// is clear it is delivered and moved.
TEST(Spool, AFailedFileStaysQueuedAndIsRetried) {
  TempDir t;
  make_dirs(t / "spool");
  make_dirs(t / "dest/blocked.bin");  // in the way
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--json", t / "dest"});
  Spool spool = start_spool(t, "spool", r.address, {"--settle", "0.1"});
  drop_file(t / "spool", "blocked.bin", 64 * 1024, 41, t / "expect/blocked.bin");
  ASSERT_TRUE(wait_until([&] { return spool.count("file_failed", "blocked.bin") >= 2; }, 20s))
      << spool.proc->describe();
  EXPECT_TRUE(exists_nofollow(t / "spool/blocked.bin"));
  EXPECT_FALSE(exists_nofollow(t / "spool/.sent/blocked.bin"));
  ::rmdir((t / "dest/blocked.bin").c_str());
  EXPECT_EQ(await_delivered(t / "expect/blocked.bin", t / "dest/blocked.bin"), "") << spool.proc->describe();
  EXPECT_TRUE(wait_until([&] { return exists_nofollow(t / "spool/.sent/blocked.bin"); }, 10s))
      << spool.proc->describe();
  spool.stop();
  r.proc->signal(SIGTERM);
  r.proc->wait();
}

// The spool killed with SIGKILL mid-file and started again resumes the file from the
// receiver's journal instead of sending it again in full.
TEST(Spool, WatcherRestartResumes) {
  TempDir t;
  make_dirs(t / "spool");
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--json", t / "dest"});
  Relay relay(r.port, 8 * kMiB);  // 32 MiB take about 4 s
  drop_file(t / "spool", "big.bin", 32 * kMiB, 21, t / "expect/big.bin");
  Spool first = start_spool(t, "spool-1", relay.address(), {"--settle", "0.1"});
  ASSERT_TRUE(wait_until([&] { return relay.to_target() >= 10 * kMiB || !first.proc->running(); }, 30s));
  ASSERT_TRUE(first.proc->running()) << first.proc->describe();
  first.proc->kill_now();
  ASSERT_TRUE(wait_until([&] { return find_event(r.proc->json_events(), "connection_lost") != nullptr; }, 20s))
      << r.proc->describe();
  EXPECT_FALSE(exists_nofollow(t / "dest/big.bin"));
  EXPECT_TRUE(exists_nofollow(t / "dest/.big.bin.ferry-part"));
  Spool second = start_spool(t, "spool-2", r.address, {"--settle", "0.1"});
  EXPECT_EQ(await_delivered(t / "expect/big.bin", t / "dest/big.bin"), "") << second.proc->describe();
  ASSERT_TRUE(wait_until([&] { return second.count("transfer_end") >= 1; }, 10s)) << second.proc->describe();
  const auto events = second.events();
  const auto* resume = find_event(events, "resume", "big.bin");
  ASSERT_NE(resume, nullptr) << second.proc->describe();
  EXPECT_GT(resume->value("offset", std::uint64_t{0}), 4 * kMiB);
  const auto* end = find_event(events, "transfer_end");
  ASSERT_NE(end, nullptr);
  EXPECT_LT((*end)["totals"].value("bytes_payload", std::uint64_t{0}), 32 * kMiB - 4 * kMiB);
  EXPECT_TRUE(wait_until([&] { return exists_nofollow(t / "spool/.sent/big.bin"); }, 10s));
  second.stop();
  r.proc->signal(SIGTERM);
  r.proc->wait();
}

// The receiver killed with SIGKILL mid-file and started again on the same address: the
// spool (which never gives up without --retries) redials and resumes.
TEST(Spool, LargeFileInterruptedByAReceiverRestartResumes) {
  TempDir t;
  make_dirs(t / "spool");
  const std::uint16_t port = free_port();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  Receiver r1 = start_receiver(t.path(), "recv-1", addr, {"--json", t / "dest"});
  Relay relay(port, 8 * kMiB);
  drop_file(t / "spool", "big.bin", 48 * kMiB, 31, t / "expect/big.bin");
  Spool spool = start_spool(t, "spool", relay.address(), {"--settle", "0.1", "--stall-timeout", "3"});
  ASSERT_TRUE(wait_until([&] { return relay.to_target() >= 12 * kMiB; }, 30s)) << spool.proc->describe();
  r1.proc->kill_now();
  ASSERT_TRUE(wait_until([&] { return spool.count("reconnect") >= 1; }, 20s)) << spool.proc->describe();
  Receiver r2 = start_receiver(t.path(), "recv-2", addr, {"--json", t / "dest"});
  EXPECT_EQ(await_delivered(t / "expect/big.bin", t / "dest/big.bin", 60s), "") << spool.proc->describe();
  const auto events = spool.events();
  const auto* resume = find_event(events, "resume", "big.bin");
  ASSERT_NE(resume, nullptr) << spool.proc->describe();
  EXPECT_GT(resume->value("offset", std::uint64_t{0}), 0u);
  EXPECT_EQ(spool.count("file_start", "big.bin"), 1u);
  EXPECT_TRUE(wait_until([&] { return exists_nofollow(t / "spool/.sent/big.bin"); }, 10s));
  EXPECT_EQ(ferry_leftovers(t / "dest"), std::vector<std::string>{});
  spool.stop();
  r2.proc->signal(SIGTERM);
  r2.proc->wait();
}

// With -e the spool starts a carrier command per batch: every one is reaped when it
// exits (a zombie per batch would exhaust the process table of a long-running spool).
TEST(Spool, CarrierCommandsAreReaped) {
  TempDir t;
  make_dirs(t / "spool");
  const std::string carrier = "exec '" + kRecvBin + "' --stdio '" + (t / "dest") + "'";
  Spool spool = Spool{Process::start({kSendBin, "--watch", t / "spool", "-e", carrier, "--json", "--settle", "0.1"},
                                     t.path(), "spool")};
  for (int i = 0; i < 4; ++i) {
    const std::string name = "f" + std::to_string(i) + ".bin";
    drop_file(t / "spool", name, 1000 + i, 50 + i, t / ("expect/" + name));
    ASSERT_EQ(await_delivered(t / ("expect/" + name), t / ("dest/" + name)), "") << spool.proc->describe();
    ASSERT_TRUE(wait_until([&] { return spool.count("transfer_end") == static_cast<std::size_t>(i + 1); }, 10s));
  }
  // Children of the spool still listed by the kernel: none may be a zombie (state Z),
  // once the last carrier had a moment to exit.
  auto zombies = [&] {
    std::size_t z = 0;
    for (const auto& name : list_dir("/proc")) {
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream st("/proc/" + name + "/stat");
      std::string line;
      std::getline(st, line);
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      std::string state;
      long ppid = 0;
      rest >> state >> ppid;
      if (ppid == spool.proc->pid() && state == "Z") ++z;
    }
    return z;
  };
  EXPECT_TRUE(wait_until([&] { return zombies() == 0; }, 10s)) << zombies() << " zombie children";
  spool.stop();
}

TEST(Spool, UsageErrors) {
  TempDir t;
  make_dirs(t / "spool");
  struct Bad {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Bad> cases = {
      {{"--watch", t / "missing", "--connect", "127.0.0.1:9"}, "--watch " + (t / "missing")},
      {{"--watch", t / "spool", "--listen", "127.0.0.1:0"}, "--watch needs --connect or -e"},
      {{"--watch", t / "spool", "--connect", "127.0.0.1:9", t / "spool"}, "takes no PATH"},
      {{"--watch", t / "spool", "--connect", "127.0.0.1:9", "--on-sent", "shred"}, "--on-sent"},
      {{"--watch", t / "spool", "--connect", "127.0.0.1:9", "--settle", "-1"}, "--settle"},
      {{"--connect", "127.0.0.1:9", "--on-sent", "keep", t / "spool"}, "--on-sent needs --watch"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv{kSendBin};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto p = Process::start(argv, t.path(), "bad");
    EXPECT_EQ(p->wait(10s), ExitStatus::exited_with(2)) << p->describe();
    EXPECT_NE(p->stderr_text().find(c.says), std::string::npos) << p->describe();
  }
}

}  // namespace
}  // namespace ferry::e2e
