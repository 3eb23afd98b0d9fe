// End-to-end authentication (docs/SECURITY.md) with the real executables: a generated
// key file on both sides transfers; a wrong key, or a key on one side only, ends both
// sides at once with exit code 8 and one line naming the problem, the sender without a
// retry; a listener on 0.0.0.0 without a key refuses to start (one line, exit 2) and
// starts with the opt-out, warning; --allow closes a peer outside its prefixes; key
// files readable by others are refused; FERRY_KEY_FILE is the fallback of --key-file.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

constexpr Millis kQuick = 10s;  // every failure here must come well within this
constexpr int kAuthExit = 8;    // Errc::authentication

std::size_t lines_with(const std::string& text, const std::string& what) {
  std::size_t n = 0, pos = 0;
  while (pos < text.size()) {
    const auto end = std::min(text.find('\n', pos), text.size());
    if (text.substr(pos, end - pos).find(what) != std::string::npos) ++n;
    pos = end + 1;
  }
  return n;
}

// Exactly one line about authentication, the one `PROG: error: <want>`, and no summary.
::testing::AssertionResult one_auth_line(const Process& p, const std::string& prog, const std::string& want) {
  const std::string text = p.stderr_text();
  if (lines_with(text, "authentication") != 1 || lines_with(text, prog + ": error: " + want) != 1) {
    return ::testing::AssertionFailure() << "expected one line '" << prog << ": error: " << want << "', got:\n" << text;
  }
  if (lines_with(text, "reconnect") + lines_with(text, "retry") + lines_with(text, "failed: 0 verified") != 0) {
    return ::testing::AssertionFailure() << "a retry or a summary besides the error:\n" << text;
  }
  return ::testing::AssertionSuccess();
}

class Auth : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("FERRY_KEY_FILE");  // these tests give the keys themselves
    write_random_file(t_ / "src/a.bin", 300'000, 1);
    key1_ = make_key("k1");
    key2_ = make_key("k2");
  }

  // A key file made by ferry-send --generate-key (0600).
  std::string make_key(const std::string& name) {
    const std::string path = t_ / name;
    auto p = Process::start({kSendBin, "--generate-key", path}, t_.path(), "genkey-" + name);
    EXPECT_EQ(p->wait(kQuick), ExitStatus::exited_with(0)) << p->describe();
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    return path;
  }

  // ferry-send --listen unix:SOCK (so that ferry-recv --connect ends with the
  // connection's outcome, not as a server), then ferry-recv --connect; both waited for.
  struct Pair {
    std::unique_ptr<Process> send, recv;
    Millis took{};
  };
  Pair run_pair(const std::vector<std::string>& send_key, const std::vector<std::string>& recv_key) {
    const std::string sock = t_ / "s.sock";
    std::vector<std::string> send{kSendBin, "--listen", "unix:" + sock};
    send.insert(send.end(), send_key.begin(), send_key.end());
    send.push_back(t_ / "src/a.bin");
    Pair p;
    const auto t0 = std::chrono::steady_clock::now();
    p.send = Process::start(send, t_.path(), "send");
    EXPECT_TRUE(wait_until([&] { return exists_nofollow(sock); }, kStartLimit)) << p.send->describe();
    std::vector<std::string> recv{kRecvBin, "--connect", "unix:" + sock};
    recv.insert(recv.end(), recv_key.begin(), recv_key.end());
    recv.push_back(t_ / "dest");
    p.recv = Process::start(recv, t_.path(), "recv");
    (void)p.send->wait(kQuick);
    (void)p.recv->wait(kQuick);
    p.took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
    return p;
  }

  TempDir t_;
  std::string key1_, key2_;
};

TEST_F(Auth, RightKeyTransfers) {
  auto r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", "--key-file", key1_, t_ / "dest"});
  auto s = Process::start({kSendBin, "--connect", r.address, "--key-file", key1_, t_ / "src/a.bin"}, t_.path(), "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  EXPECT_EQ(compare_trees(t_ / "src", t_ / "dest"), "");
}

TEST_F(Auth, RightKeyTransfersTheOtherWayRound) {
  auto p = run_pair({"--key-file", key1_}, {"--key-file", key1_});
  EXPECT_EQ(p.send->wait(), ExitStatus::exited_with(0)) << p.send->describe();
  EXPECT_EQ(p.recv->wait(), ExitStatus::exited_with(0)) << p.recv->describe();
  EXPECT_EQ(compare_trees(t_ / "src", t_ / "dest"), "");
}

TEST_F(Auth, WrongKeyFailsBothSidesWithItsOwnExitCode) {
  auto p = run_pair({"--key-file", key1_}, {"--key-file", key2_});
  const std::string why = "authentication failed: the sender's key differs from the receiver's";
  EXPECT_EQ(p.send->wait(), ExitStatus::exited_with(kAuthExit)) << p.send->describe();
  EXPECT_EQ(p.recv->wait(), ExitStatus::exited_with(kAuthExit)) << p.recv->describe();
  EXPECT_TRUE(one_auth_line(*p.send, "ferry-send", why));
  EXPECT_TRUE(one_auth_line(*p.recv, "ferry-recv", why));
  EXPECT_LT(p.took, kQuick);
  EXPECT_TRUE(list_dir(t_ / "dest").empty()) << "the receiver wrote something for a stranger";
}

// A serving receiver logs the stranger in one line and goes on serving; the sender
// gives up at once, without the retries a lost connection would get.
TEST_F(Auth, WrongKeyAgainstAServingReceiver) {
  auto r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", "--key-file", key1_, t_ / "dest"});
  const auto t0 = std::chrono::steady_clock::now();
  auto bad =
      Process::start({kSendBin, "--connect", r.address, "--key-file", key2_, t_ / "src/a.bin"}, t_.path(), "bad-send");
  EXPECT_EQ(bad->wait(kQuick), ExitStatus::exited_with(kAuthExit)) << bad->describe();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kQuick);
  EXPECT_TRUE(one_auth_line(*bad, "ferry-send", "authentication failed: the sender's key differs from the receiver's"));
  EXPECT_TRUE(wait_until([&] { return lines_with(r.proc->stderr_text(), "authentication failed") == 1; }, kQuick))
      << r.proc->describe();
  EXPECT_TRUE(r.proc->running()) << "one stranger ended the receiver";
  auto good =
      Process::start({kSendBin, "--connect", r.address, "--key-file", key1_, t_ / "src/a.bin"}, t_.path(), "good-send");
  EXPECT_EQ(good->wait(), ExitStatus::exited_with(0)) << good->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  EXPECT_EQ(compare_trees(t_ / "src", t_ / "dest"), "");
}

TEST_F(Auth, KeyOnTheReceiverOnly) {
  auto p = run_pair({}, {"--key-file", key1_});
  const std::string why = "authentication: the receiver requires a key";
  EXPECT_EQ(p.send->wait(), ExitStatus::exited_with(kAuthExit)) << p.send->describe();
  EXPECT_EQ(p.recv->wait(), ExitStatus::exited_with(kAuthExit)) << p.recv->describe();
  EXPECT_TRUE(one_auth_line(*p.send, "ferry-send", why));
  EXPECT_TRUE(one_auth_line(*p.recv, "ferry-recv", why));
}

TEST_F(Auth, KeyOnTheSenderOnly) {
  auto p = run_pair({"--key-file", key1_}, {});
  const std::string why = "authentication: the sender offers a key the receiver does not use";
  EXPECT_EQ(p.send->wait(), ExitStatus::exited_with(kAuthExit)) << p.send->describe();
  EXPECT_EQ(p.recv->wait(), ExitStatus::exited_with(kAuthExit)) << p.recv->describe();
  EXPECT_TRUE(one_auth_line(*p.send, "ferry-send", why));
  EXPECT_TRUE(one_auth_line(*p.recv, "ferry-recv", why));
}

TEST_F(Auth, KeyFileFromTheEnvironment) {
  ASSERT_EQ(::setenv("FERRY_KEY_FILE", key1_.c_str(), 1), 0);
  auto p = run_pair({}, {});  // both ends read FERRY_KEY_FILE
  ::unsetenv("FERRY_KEY_FILE");
  EXPECT_EQ(p.send->wait(), ExitStatus::exited_with(0)) << p.send->describe();
  EXPECT_EQ(p.recv->wait(), ExitStatus::exited_with(0)) << p.recv->describe();
  EXPECT_EQ(compare_trees(t_ / "src", t_ / "dest"), "");
}

TEST_F(Auth, KeyFileReadableByOthersIsRefused) {
  ASSERT_EQ(::chmod(key1_.c_str(), 0640), 0);
  auto p =
      Process::start({kSendBin, "--connect", "127.0.0.1:1", "--key-file", key1_, t_ / "src/a.bin"}, t_.path(), "send");
  EXPECT_EQ(p->wait(kQuick), ExitStatus::exited_with(2)) << p->describe();
  const std::string text = p->stderr_text();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_NE(text.find("ferry-send: error: key file " + key1_ + " is accessible by others (mode 0640)"),
            std::string::npos)
      << text;
}

TEST_F(Auth, GenerateKeyNeverOverwrites) {
  auto p = Process::start({kRecvBin, "--generate-key", key1_}, t_.path(), "genkey-again");
  EXPECT_EQ(p->wait(kQuick), ExitStatus::exited_with(2)) << p->describe();
  EXPECT_EQ(lines_with(p->stderr_text(), "exists already"), 1u) << p->describe();
}

TEST_F(Auth, NonLoopbackListenerNeedsAKey) {
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {kRecvBin, "--listen", "0.0.0.0:0", t_ / "dest"}, {kSendBin, "--listen", "0.0.0.0:0", t_ / "src/a.bin"}}) {
    auto p = Process::start(argv, t_.path(), "listen");
    EXPECT_EQ(p->wait(kQuick), ExitStatus::exited_with(2)) << p->describe();
    const std::string text = p->stderr_text();
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    EXPECT_NE(text.find("error: listening on tcp:0.0.0.0:0 lets anyone"), std::string::npos) << text;
    EXPECT_NE(text.find("--no-auth-i-know-this-is-insecure"), std::string::npos) << text;
  }
}

TEST_F(Auth, NonLoopbackListenerStartsWithTheOptOutAndWarns) {
  auto r = start_receiver(t_.path(), "recv", "0.0.0.0:0", {"--no-auth-i-know-this-is-insecure", "--once", t_ / "dest"});
  EXPECT_EQ(lines_with(r.proc->stderr_text(), "INSECURE: no key: anyone who can reach tcp:0.0.0.0:0 can connect"), 1u)
      << r.proc->describe();
  auto s = Process::start({kSendBin, "--connect", "127.0.0.1:" + std::to_string(r.port), t_ / "src/a.bin"}, t_.path(),
                          "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
}

TEST_F(Auth, NonLoopbackListenerStartsWithAKey) {
  auto r = start_receiver(t_.path(), "recv", "0.0.0.0:0", {"--key-file", key1_, "--once", t_ / "dest"});
  EXPECT_EQ(lines_with(r.proc->stderr_text(), "INSECURE"), 0u) << r.proc->describe();
  auto s = Process::start(
      {kSendBin, "--connect", "127.0.0.1:" + std::to_string(r.port), "--key-file", key1_, t_ / "src/a.bin"}, t_.path(),
      "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
}

TEST_F(Auth, AllowRefusesAPeerOutsideItsPrefixes) {
  auto r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--allow", "10.0.0.0/8", "--once", t_ / "dest"});
  auto s = Process::start({kSendBin, "--connect", r.address, "--retries", "0", t_ / "src/a.bin"}, t_.path(), "send");
  EXPECT_EQ(s->wait(kQuick), ExitStatus::exited_with(3)) << s->describe();
  EXPECT_TRUE(wait_until([&] { return lines_with(r.proc->stderr_text(), "not in --allow") == 1; }, kQuick))
      << r.proc->describe();
  EXPECT_EQ(lines_with(r.proc->stderr_text(), "refused a connection from tcp:127.0.0.1:"), 1u) << r.proc->describe();
  EXPECT_TRUE(list_dir(t_ / "dest").empty());
  r.proc->signal(SIGTERM);
  (void)r.proc->wait(kQuick);
}

TEST_F(Auth, AllowAdmitsAPeerInsideItsPrefixes) {
  auto r = start_receiver(t_.path(), "recv", "127.0.0.1:0",
                          {"--allow", "10.0.0.0/8", "--allow", "127.0.0.0/8", "--once", t_ / "dest"});
  auto s = Process::start({kSendBin, "--connect", r.address, "--retries", "0", t_ / "src/a.bin"}, t_.path(), "send");
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  EXPECT_EQ(lines_with(r.proc->stderr_text(), "not in --allow"), 0u);
}

}  // namespace
}  // namespace ferry::e2e
