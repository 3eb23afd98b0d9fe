// End-to-end: what rsync and scp users expect (issue #12), against the real
// executables. Each test is one row of the issue's table: a first connection that
// fails is one line and exit code 9 within seconds; startup errors are one line with
// no summary; symlinks are skipped with a warning (exit 0) or followed with -L;
// `PATH... HOST:DIR` runs ssh (a stand-in script on PATH that runs the command
// here); the summary fits 80 columns; --help names its placeholders and the exit
// codes; --json announces the listening address as a field.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

using Clock = std::chrono::steady_clock;

constexpr Millis kQuickLimit = 20s;
// The first-connection failures must come well under this (issue #12: "at once").
constexpr auto kFailFastBound = 10s;

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  if (start < text.size()) out.push_back(text.substr(start));
  return out;
}

std::size_t columns(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A unix socket path nobody listens on (the directory exists, the socket does not).
std::string no_listener(const TempDir& t) { return "unix:" + t / "nobody.sock"; }

// Runs `argv` to its end; returns it and how long it took.
std::unique_ptr<Process> run_timed(const TempDir& t, const std::vector<std::string>& argv, const std::string& name,
                                   Clock::duration& took) {
  const auto t0 = Clock::now();
  auto p = Process::start(argv, t.path(), name);
  (void)p->wait(kQuickLimit);
  took = Clock::now() - t0;
  return p;
}

class Ux : public ::testing::Test {
 protected:
  void SetUp() override { write_text_file(file_, "payload\n"); }
  TempDir t_;
  std::string file_ = t_ / "src/a.txt";
};

// --- fail fast on the first connection ---------------------------------------------------------

TEST_F(Ux, NoReceiverIsOneLineAndExit9AtOnce) {
  for (const std::string& addr : {no_listener(t_), std::string("127.0.0.1:1")}) {
    SCOPED_TRACE(addr);
    Clock::duration took{};
    auto p = run_timed(t_, {kSendBin, "--connect", addr, file_}, "send", took);
    EXPECT_EQ(p->wait(), ExitStatus::exited_with(9)) << p->describe();
    const auto lines = split_lines(p->stderr_text());
    ASSERT_EQ(lines.size(), 1u) << p->describe();
    EXPECT_TRUE(lines[0].starts_with("ferry-send: error: connect(")) << lines[0];
    EXPECT_LT(took, kFailFastBound);
  }
}

TEST_F(Ux, AnUnresolvableHostIsOneLineAndExit9) {
  Clock::duration took{};
  auto p = run_timed(t_, {kSendBin, "--connect", "no-such-host.invalid:7000", file_}, "send", took);
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(9)) << p->describe();
  const auto lines = split_lines(p->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << p->describe();
  EXPECT_TRUE(lines[0].starts_with("ferry-send: error: resolve(no-such-host.invalid)")) << lines[0];
  EXPECT_LT(took, kFailFastBound);
}

// tcp://HOST:PORT is accepted as tcp:HOST:PORT; another scheme is a usage error at once.
TEST_F(Ux, TcpSchemeIsAcceptedAndOtherSchemesAreRefusedAtOnce) {
  Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", t_ / "dest"});
  auto send = Process::start({kSendBin, "--connect", "tcp://127.0.0.1:" + std::to_string(r.port), file_}, t_.path(),
                             "send");
  EXPECT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  EXPECT_EQ(compare_files(file_, t_ / "dest/a.txt"), "");

  Clock::duration took{};
  auto bad = run_timed(t_, {kSendBin, "--connect", "http://127.0.0.1:7000", file_}, "bad", took);
  EXPECT_EQ(bad->wait(), ExitStatus::exited_with(2)) << bad->describe();
  EXPECT_EQ(split_lines(bad->stderr_text()).size(), 1u) << bad->describe();
  EXPECT_LT(took, kFailFastBound);
}

// A carrier that ends before the handshake: one line with its exit status and the last
// line of its stderr (here what a shell says when ferry-recv is not installed).
TEST_F(Ux, ACarrierThatEndsBeforeTheHandshakeIsOneLineWithItsStatusAndMessage) {
  Clock::duration took{};
  auto p = run_timed(
      t_, {kSendBin, "-e", R"(sh -c "echo ferry-recv: command not found >&2; exit 127")", file_}, "send", took);
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(9)) << p->describe();
  const auto lines = split_lines(p->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << p->describe();
  EXPECT_TRUE(lines[0].starts_with("ferry-send: error: ")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "status 127")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "ferry-recv: command not found")) << lines[0];
  EXPECT_LT(took, kFailFastBound);
}

// --wait-for-receiver: the sender redials until a receiver appears; the repeated
// refusals are one line and a count, not one line each.
TEST_F(Ux, WaitForReceiverRedialsUntilOneAppears) {
  const std::string sock = t_ / "late.sock";
  auto send = Process::start({kSendBin, "--connect", "unix:" + sock, "--wait-for-receiver", "30s", file_}, t_.path(),
                             "send");
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(send->running()) << send->describe();
  Receiver r = start_receiver(t_.path(), "recv", "unix:" + sock, {"--once", t_ / "dest"});
  EXPECT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  EXPECT_EQ(compare_files(file_, t_ / "dest/a.txt"), "");
  const auto lines = split_lines(send->stderr_text());
  const auto notes = std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
    return contains(l, "reconnecting: ");
  });
  EXPECT_LE(notes, 2) << send->describe();  // the first, and "(xN)" for the rest
}

// --- one error, one line ----------------------------------------------------------------------------

TEST_F(Ux, PortInUseAndDestIsAFileAreOneLineWithoutASummary) {
  Receiver first = start_receiver(t_.path(), "first", "127.0.0.1:0", {t_ / "dest"});
  auto p = Process::start({kRecvBin, "--listen", first.address, t_ / "dest2"}, t_.path(), "second");
  EXPECT_EQ(p->wait(kQuickLimit), ExitStatus::exited_with(3)) << p->describe();
  auto lines = split_lines(p->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << p->describe();
  EXPECT_TRUE(lines[0].starts_with("ferry-recv: error: listen(")) << lines[0];
  first.proc->signal(SIGTERM);
  (void)first.proc->wait();

  write_text_file(t_ / "a-file", "x");
  auto q = Process::start({kRecvBin, "--listen", "127.0.0.1:0", t_ / "a-file"}, t_.path(), "file");
  EXPECT_EQ(q->wait(kQuickLimit), ExitStatus::exited_with(5)) << q->describe();
  lines = split_lines(q->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << q->describe();
  EXPECT_TRUE(lines[0].starts_with("ferry-recv: error: ")) << lines[0];
}

// Whether this process can make a private read-only bind mount (root, unshare -m).
bool can_bind_read_only(const TempDir& t, std::string& why) {
  if (::geteuid() != 0) {
    why = "not root";
    return false;
  }
  make_dirs(t / "probe");
  const std::string cmd = "unshare -m sh -c " + sh_quote("mount --bind " + sh_quote(t / "probe") + " " +
                                                        sh_quote(t / "probe") + " && mount -o remount,bind,ro " +
                                                        sh_quote(t / "probe")) +
                          " >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) why = "unshare -m with a read-only bind mount is not allowed here";
  return rc == 0;
}

// DEST on a read-only mount: the receiver says so at its start, in one line, exit 5
// (local I/O), before any sender comes.
TEST_F(Ux, ReadOnlyDestIsOneLineAndExit5AtTheStart) {
  std::string why;
  if (!can_bind_read_only(t_, why)) GTEST_SKIP() << why;
  const std::string dest = t_ / "ro";
  make_dirs(dest);
  const std::string script = "mount --bind " + sh_quote(dest) + " " + sh_quote(dest) + " && mount -o remount,bind,ro " +
                             sh_quote(dest) + " && exec " + sh_quote(kRecvBin) + " --listen 127.0.0.1:0 " +
                             sh_quote(dest);
  auto p = Process::start({"/usr/bin/unshare", "-m", "sh", "-c", script}, t_.path(), "recv");
  EXPECT_EQ(p->wait(kQuickLimit), ExitStatus::exited_with(5)) << p->describe();
  const auto lines = split_lines(p->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << p->describe();
  EXPECT_TRUE(lines[0].starts_with("ferry-recv: error: cannot create files in " + dest)) << lines[0];
  EXPECT_TRUE(contains(lines[0], "Read-only file system")) << lines[0];
  EXPECT_EQ(list_dir(dest), std::vector<std::string>{});
}

// --- symlinks like rsync ----------------------------------------------------------------------------

class UxTree : public Ux {
 protected:
  void SetUp() override {
    write_text_file(t_ / "src/tree/a", "aaa");
    write_text_file(t_ / "src/tree/sub/b", "bb");
    ASSERT_EQ(::symlink("a", (t_ / "src/tree/link").c_str()), 0);
    ASSERT_EQ(::symlink("/nonexistent/nowhere", (t_ / "src/tree/sub/dangling").c_str()), 0);
  }
  // Sends `args` PATH... to a --once receiver; returns the sender.
  std::unique_ptr<Process> send(const std::vector<std::string>& args) {
    Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", t_ / "dest"});
    std::vector<std::string> argv{kSendBin, "--connect", r.address};
    argv.insert(argv.end(), args.begin(), args.end());
    auto s = Process::start(argv, t_.path(), "send");
    (void)s->wait();
    EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
    return s;
  }
};

TEST_F(UxTree, SymlinksAreSkippedWithAWarningAndExit0) {
  auto s = send({t_ / "src/tree/"});  // the trailing slash must not double in what is shown
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  const std::string err = s->stderr_text();
  EXPECT_TRUE(contains(err, "ferry-send: skipped " + t_ / "src/tree/link: symlink")) << err;
  EXPECT_TRUE(contains(err, "ferry-send: skipped " + t_ / "src/tree/sub/dangling: symlink")) << err;
  EXPECT_FALSE(contains(err, "//")) << err;
  const auto lines = split_lines(err);
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(contains(lines.back(), "; 2 skipped")) << lines.back();
  EXPECT_FALSE(exists_nofollow(t_ / "dest/tree/link"));
  EXPECT_EQ(compare_files(t_ / "src/tree/sub/b", t_ / "dest/tree/sub/b"), "");
}

TEST_F(UxTree, CopyLinksSendsWhatTheyPointTo) {
  auto s = send({"-L", t_ / "src/tree"});
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(compare_files(t_ / "src/tree/a", t_ / "dest/tree/link"), "");  // a regular file now
  struct stat st{};
  ASSERT_EQ(::lstat((t_ / "dest/tree/link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_TRUE(contains(s->stderr_text(), "sub/dangling: symlink to nothing")) << s->describe();
  EXPECT_FALSE(exists_nofollow(t_ / "dest/tree/sub/dangling"));
}

// --- PATH... [USER@]HOST:DIR ---------------------------------------------------------------------

class UxRemote : public Ux {
 protected:
  void SetUp() override {
    Ux::SetUp();
    write_random_file(t_ / "src/big", 3 << 20, 7);
    make_dirs(t_ / "bin");
    // ssh [USER@]HOST COMMAND: runs COMMAND here, and says which host it was asked for.
    write_text_file(t_ / "bin/ssh",
                    "#!/bin/sh\necho \"$1\" >> " + sh_quote(t_ / "ssh-hosts") + "\nshift\nexec /bin/sh -c \"$*\"\n");
    ASSERT_EQ(::chmod((t_ / "bin/ssh").c_str(), 0755), 0);
  }
  std::string path_env() const {
    const char* old = std::getenv("PATH");
    return "PATH=" + t_ / "bin" + ":" + (old ? old : "/usr/bin:/bin");
  }
};

TEST_F(UxRemote, HostDirRunsSshAndTheRemoteMessagesStayOffTheLiveLine) {
  auto s = Process::start({"/usr/bin/env", path_env(), kSendBin, "--progress", "--remote-ferry-recv", kRecvBin,
                           file_, t_ / "src/big", "me@far-host:" + t_ / "dest"},
                          t_.path(), "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(compare_files(file_, t_ / "dest/a.txt"), "");
  EXPECT_EQ(compare_files(t_ / "src/big", t_ / "dest/big"), "");
  std::ifstream hosts(t_ / "ssh-hosts");
  std::string host;
  std::getline(hosts, host);
  EXPECT_EQ(host, "me@far-host");
  // The remote ferry-recv's own lines (its summary) arrive through ssh's stderr: each
  // starts a line of its own, after the live line was cleared.
  bool remote_seen = false;
  for (std::string line : split_lines(s->stderr_text())) {
    if (auto k = line.rfind("\033[K"); k != std::string::npos) line = line.substr(k + 3);
    if (!contains(line, "ferry-recv:")) continue;
    remote_seen = true;
    EXPECT_TRUE(line.starts_with("ferry-recv:")) << "inside the live line: " << line;
  }
  EXPECT_TRUE(remote_seen) << s->describe();
}

// FERRY_RSH names the ssh command (as RSYNC_RSH does); a path with a '/' before its ':'
// is local, not a host.
TEST_F(UxRemote, FerryRshAndLocalPathsWithAColon) {
  write_text_file(t_ / "src/x:y", "colon");
  auto s = Process::start({"/usr/bin/env", "FERRY_RSH=" + t_ / "bin/ssh", kSendBin, "--remote-ferry-recv", kRecvBin,
                           t_ / "src/x:y", "host:" + t_ / "dest"},
                          t_.path(), "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(compare_files(t_ / "src/x:y", t_ / "dest/x:y"), "");
}

// The remote ferry-recv missing: one line with ssh's status and the shell's complaint.
TEST_F(UxRemote, AMissingRemoteProgramIsOneLine) {
  Clock::duration took{};
  auto s = run_timed(t_,
                     {"/usr/bin/env", path_env(), kSendBin, "--remote-ferry-recv", "/nonexistent/ferry-recv", file_,
                      "host:" + t_ / "dest"},
                     "send", took);
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(9)) << s->describe();
  const auto lines = split_lines(s->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << s->describe();
  EXPECT_TRUE(contains(lines[0], "status 127")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "/nonexistent/ferry-recv")) << lines[0];
  EXPECT_LT(took, kFailFastBound);
}

// --- honest, short output ----------------------------------------------------------------------------

TEST_F(Ux, TheSummaryIsOneLineUnder80Columns) {
  for (int i = 0; i < 3; ++i) write_random_file(t_ / ("src/d/f" + std::to_string(i)), 100000, i);
  Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", t_ / "dest"});
  auto s = Process::start({kSendBin, "--connect", r.address, t_ / "src/d"}, t_.path(), "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  const auto lines = split_lines(s->stderr_text());
  ASSERT_EQ(lines.size(), 1u) << s->describe();
  EXPECT_LT(columns(lines[0]), 80u) << lines[0];
  EXPECT_TRUE(lines[0].starts_with("ferry-send: 4 files, 293.0 KiB verified in ")) << lines[0];
  EXPECT_FALSE(contains(lines[0], " 0 ")) << "a zero counter: " << lines[0];
}

TEST_F(Ux, HelpNamesItsPlaceholdersExamplesAndExitCodes) {
  for (const std::string& bin : {kSendBin, kRecvBin}) {
    auto p = Process::start({bin, "--help"}, t_.path(), "help");
    EXPECT_EQ(p->wait(), ExitStatus::exited_with(0)) << p->describe();
    const std::string h = p->stdout_text();
    for (const char* want : {"ADDR", "SIZE", "CMD", "Examples:", "Exit codes:", "9 never connected"}) {
      EXPECT_TRUE(contains(h, want)) << bin << " lacks " << want;
    }
    for (const char* cli11_default : {" TEXT", " FLOAT", " UINT", " INT"}) {
      EXPECT_FALSE(contains(h, cli11_default)) << bin << " shows " << cli11_default;
    }
  }
  auto p = Process::start({kSendBin, "--help"}, t_.path(), "help-send");
  (void)p->wait();
  for (const char* want : {"DURATION", "PATH", "HOST:DIR"}) EXPECT_TRUE(contains(p->stdout_text(), want)) << want;
  auto v = Process::start({kSendBin, "--version"}, t_.path(), "version");
  (void)v->wait();
  EXPECT_TRUE(contains(v->stdout_text(), "protocol version")) << v->stdout_text();
}

TEST_F(Ux, JsonHasAListeningEventAndTheErrorOfAFailedEnd) {
  Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--json", "--once", t_ / "dest"});
  auto s = Process::start({kSendBin, "--connect", r.address, file_}, t_.path(), "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  const auto events = r.proc->json_events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].at("event"), "listening");
  EXPECT_EQ(events[0].at("address"), r.address);
  for (const auto& e : events) EXPECT_EQ(e.value("schema", 0), 1) << e.dump();

  auto failed = Process::start({kSendBin, "--json", "--connect", no_listener(t_), file_}, t_.path(), "failed");
  EXPECT_EQ(failed->wait(), ExitStatus::exited_with(9)) << failed->describe();
  const auto failed_events = failed->json_events();
  const auto* end = find_event(failed_events, "session_end");
  ASSERT_NE(end, nullptr) << failed->describe();
  EXPECT_EQ(end->at("exit_code"), 9);
  EXPECT_TRUE(contains(end->value("error", ""), "connect(")) << end->dump();
}

// --bwlimit on either end: 3 MiB at 1 MiB/s take at least about 3 s (a lower bound
// only, with a margin for the first burst and the clock).
TEST_F(Ux, BwlimitPacesTheTransferOnEitherEnd) {
  write_random_file(t_ / "src/three", 3 << 20, 9);
  for (const bool on_sender : {true, false}) {
    SCOPED_TRACE(on_sender ? "ferry-send --bwlimit" : "ferry-recv --bwlimit");
    const std::string dest = t_ / (on_sender ? "dest-s" : "dest-r");
    std::vector<std::string> recv_args{"--once", dest};
    if (!on_sender) recv_args.insert(recv_args.begin(), {"--bwlimit", "1M"});
    Receiver r = start_receiver(t_.path(), on_sender ? "recv-s" : "recv-r", "127.0.0.1:0", recv_args);
    std::vector<std::string> send_argv{kSendBin, "--connect", r.address, t_ / "src/three"};
    if (on_sender) send_argv.insert(send_argv.begin() + 1, {"--bwlimit", "1M"});
    const auto t0 = Clock::now();
    auto s = Process::start(send_argv, t_.path(), on_sender ? "send-s" : "send-r");
    EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
    const auto took = Clock::now() - t0;
    EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
    EXPECT_EQ(compare_files(t_ / "src/three", dest + "/three"), "");
    EXPECT_GE(took, 2500ms);
  }
  auto bad = Process::start({kSendBin, "--bwlimit", "10", "--connect", "127.0.0.1:1", file_}, t_.path(), "bad");
  EXPECT_EQ(bad->wait(), ExitStatus::exited_with(2)) << bad->describe();
}

// After a resume, the summary's rate is over the bytes that moved: the resumed part is
// named apart ("(N moved, R/s)"), and the resume offset is reported.
TEST_F(Ux, TheRateAfterAResumeCountsOnlyWhatMoved) {
  write_random_file(t_ / "src/slow", 4 << 20, 11);
  Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {t_ / "dest"});
  auto first = Process::start({kSendBin, "--bwlimit", "1M", "--connect", r.address, t_ / "src/slow"}, t_.path(),
                              "first");
  std::this_thread::sleep_for(2500ms);  // about half of it, paced
  (void)first->kill_now();
  auto second = Process::start({kSendBin, "--connect", r.address, t_ / "src/slow"}, t_.path(), "second");
  EXPECT_EQ(second->wait(), ExitStatus::exited_with(0)) << second->describe();
  r.proc->signal(SIGTERM);
  (void)r.proc->wait();
  EXPECT_EQ(compare_files(t_ / "src/slow", t_ / "dest/slow"), "");
  const auto lines = split_lines(second->stderr_text());
  ASSERT_GE(lines.size(), 2u) << second->describe();
  EXPECT_TRUE(lines[0].starts_with("ferry-send: resuming slow at ")) << lines[0];
  EXPECT_TRUE(lines.back().starts_with("ferry-send: 1 file, 4.0 MiB verified in ")) << lines.back();
  EXPECT_TRUE(contains(lines.back(), " moved, ")) << lines.back();
}

}  // namespace
}  // namespace ferry::e2e
