// Self-tests of the end-to-end harness, so that its detectors are known to fire:
// compare_trees() sees missing, extra, resized, changed and retyped entries (empty
// directories and ferry leftovers included); Process::wait() kills a child that
// overruns its limit and fails the test; the relay forwards both ways, counts, and
// holds to its rate limit.
#include <arpa/inet.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include "tests/e2e/process.hpp"
#include "tests/e2e/relay.hpp"

namespace ferry::e2e {
namespace {

class TreeCompare : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string side : {"a", "b"}) {
      write_random_file(t_ / (side + "/f"), 5000, 1);
      write_random_file(t_ / (side + "/d/g"), 0, 2);
      make_dirs(t_ / (side + "/empty"));
    }
  }
  TempDir t_;
};

TEST_F(TreeCompare, EqualTreesCompareEqual) {
  EXPECT_EQ(compare_trees(t_ / "a", t_ / "b"), "");
}

TEST_F(TreeCompare, MissingEmptyDirectoryIsSeen) {
  ::rmdir((t_ / "b/empty").c_str());
  EXPECT_NE(compare_trees(t_ / "a", t_ / "b").find("missing: empty"), std::string::npos);
}

TEST_F(TreeCompare, LeftoverPartialIsSeen) {
  write_text_file(t_ / "b/d/.g.ferry-part", "x");
  EXPECT_NE(compare_trees(t_ / "a", t_ / "b").find("unexpected: d/.g.ferry-part"), std::string::npos);
  EXPECT_EQ(ferry_leftovers(t_ / "b"), std::vector<std::string>{"d/.g.ferry-part"});
}

TEST_F(TreeCompare, OneChangedByteIsSeen) {
  std::fstream io(t_ / "b/f", std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(4321);
  char c = 0;
  io.get(c);
  io.seekp(4321);
  io.put(static_cast<char>(c ^ 0x20));
  io.close();
  EXPECT_NE(compare_trees(t_ / "a", t_ / "b").find("content differs: f at byte 4321"), std::string::npos);
  EXPECT_NE(compare_files(t_ / "a/f", t_ / "b/f"), "");
}

TEST_F(TreeCompare, SizeAndKindDifferencesAreSeen) {
  write_random_file(t_ / "b/f", 4999, 1);
  ::rmdir((t_ / "b/empty").c_str());
  write_text_file(t_ / "b/empty", "");
  const std::string diff = compare_trees(t_ / "a", t_ / "b");
  EXPECT_NE(diff.find("size differs: f"), std::string::npos) << diff;
  EXPECT_NE(diff.find("kind differs: empty"), std::string::npos) << diff;
}

TEST(RandomFile, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir t;
  write_random_file(t / "x", 100000, 5);
  write_random_file(t / "y", 100000, 5);
  write_random_file(t / "z", 100000, 6);
  EXPECT_EQ(compare_files(t / "x", t / "y"), "");
  EXPECT_NE(compare_files(t / "x", t / "z"), "");
}

TEST(ProcessHarness, ReportsExitCodesAndSignals) {
  TempDir t;
  auto p = Process::start({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, t.path(), "sh");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(7));
  EXPECT_EQ(p->stdout_text(), "out\n");
  EXPECT_EQ(p->stderr_text(), "err\n");
  auto q = Process::start({"/bin/sleep", "30"}, t.path(), "sleep");
  EXPECT_TRUE(q->running());
  q->signal(SIGTERM);
  EXPECT_EQ(q->wait(), ExitStatus::killed_by(SIGTERM));
}

TEST(ProcessHarness, OverrunningChildIsKilledAndFailsTheTest) {
  TempDir t;
  auto p = Process::start({"/bin/sleep", "30"}, t.path(), "sleeper");
  ExitStatus st;
  EXPECT_NONFATAL_FAILURE(st = p->wait(100ms), "did not exit within 100 ms");
  EXPECT_EQ(st.how, ExitStatus::How::timed_out);
  EXPECT_FALSE(p->running());
}

TEST(ProcessHarness, PipesConnectChildren) {
  TempDir t;
  Pipe pipe = make_pipe();
  SpawnOptions w, r;
  w.stdout_fd = pipe.write_end.get();
  r.stdin_fd = pipe.read_end.get();
  auto writer = Process::start({"/bin/sh", "-c", "echo through the pipe"}, t.path(), "writer", w);
  auto reader = Process::start({"/bin/cat"}, t.path(), "reader", r);
  pipe = Pipe{};  // only the children hold the ends now: cat sees EOF
  EXPECT_EQ(writer->wait(10s), ExitStatus::exited_with(0));
  EXPECT_EQ(reader->wait(10s), ExitStatus::exited_with(0));
  EXPECT_EQ(reader->stdout_text(), "through the pipe\n");
}

// A one-connection echo server on 127.0.0.1:0, in a thread.
class EchoServer {
 public:
  EchoServer() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 1) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("echo server");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      Fd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      char buf[8192];
      for (ssize_t n; (n = ::recv(c.get(), buf, sizeof buf, 0)) > 0;) {
        if (::send(c.get(), buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) break;
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  Fd fd_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST(RelayHarness, ForwardsBothWaysCountsAndHoldsItsRate) {
  EchoServer echo;
  const std::uint64_t rate = 1 << 20;  // 1 MiB/s
  Relay relay(echo.port(), rate);
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(relay.port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);

  const std::size_t total = 512 * 1024;
  std::vector<char> out(total), in;
  for (std::size_t i = 0; i < total; ++i) out[i] = static_cast<char>(i * 131 + 7);
  const auto t0 = std::chrono::steady_clock::now();
  std::thread writer([&] {
    std::size_t done = 0;
    while (done < total) {
      ssize_t n = ::send(c.get(), out.data() + done, total - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  });
  timeval tv{20, 0};
  ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[65536];
  while (in.size() < total) {
    ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    in.insert(in.end(), buf, buf + n);
  }
  writer.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(in.size(), total);
  EXPECT_TRUE(in == out) << "the relay changed the bytes";
  // The relay counts a send() once it returned, maybe just after the bytes arrived.
  EXPECT_TRUE(wait_until([&] { return relay.to_client() == total; }, 5s)) << relay.to_client();
  EXPECT_EQ(relay.to_target(), total);
  EXPECT_EQ(relay.accepted(), 1u);
  // 512 KiB at 1 MiB/s cannot take less than about half a second (a 20 ms burst aside).
  EXPECT_GE(secs, 0.45);
  ::shutdown(c.get(), SHUT_WR);
  relay.stop();
}

}  // namespace
}  // namespace ferry::e2e
