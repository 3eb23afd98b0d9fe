// End-to-end exit codes of the real executables (protocol/result.hpp Errc): usage
// errors (no connection mode, a bad address, a PATH that does not exist) exit 2 with
// one line `ferry-send: error: ...` on stderr; a refused first connection exits 9.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

constexpr Millis kQuickLimit = 20s;

// A loopback port that refuses connections: bound, never listening, held until the
// test ends so nothing else can take it.
class ClosedPort {
 public:
  ClosedPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
    }
    port_ = ntohs(a.sin_port);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  Fd fd_;
  std::uint16_t port_ = 0;
};

// Runs `argv` to completion and returns it.
std::unique_ptr<Process> run(const TempDir& t, const std::vector<std::string>& argv, const std::string& name) {
  auto p = Process::start(argv, t.path(), name);
  (void)p->wait(kQuickLimit);
  return p;
}

::testing::AssertionResult one_error_line(const std::string& text, const std::string& prog) {
  const std::string prefix = prog + ": error: ";
  if (std::count(text.begin(), text.end(), '\n') != 1 || text.back() != '\n') {
    return ::testing::AssertionFailure() << "expected exactly one line on stderr, got: '" << text << "'";
  }
  if (text.rfind(prefix, 0) != 0 || text.size() <= prefix.size() + 1) {
    return ::testing::AssertionFailure() << "expected '" << prefix << "...', got: '" << text << "'";
  }
  return ::testing::AssertionSuccess();
}

class ExitCodes : public ::testing::Test {
 protected:
  void SetUp() override { write_text_file(file_, "payload\n"); }
  TempDir t_;
  std::string file_ = t_ / "src/a.txt";
};

TEST_F(ExitCodes, SenderWithoutAConnectionModeIsAUsageError) {
  auto p = run(t_, {kSendBin, file_}, "send");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(2)) << p->describe();
  EXPECT_TRUE(one_error_line(p->stderr_text(), "ferry-send")) << p->describe();
}

TEST_F(ExitCodes, SenderWithTwoConnectionModesIsAUsageError) {
  auto p = run(t_, {kSendBin, "--stdio", "--connect", "127.0.0.1:1", file_}, "send");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(2)) << p->describe();
  EXPECT_TRUE(one_error_line(p->stderr_text(), "ferry-send")) << p->describe();
}

TEST_F(ExitCodes, BadAddressesAreUsageErrors) {
  int i = 0;
  for (const std::string addr : {"127.0.0.1:99999", "127.0.0.1:", "tcp:", "unix:", "bogus:1:2:3", "[::1"}) {
    SCOPED_TRACE("--connect '" + addr + "'");
    auto p = run(t_, {kSendBin, "--connect", addr, "--retries", "0", file_}, "send-" + std::to_string(i++));
    EXPECT_EQ(p->wait(), ExitStatus::exited_with(2)) << p->describe();
    EXPECT_TRUE(one_error_line(p->stderr_text(), "ferry-send")) << p->describe();
  }
}

TEST_F(ExitCodes, ReceiverWithoutAConnectionModeIsAUsageError) {
  auto p = run(t_, {kRecvBin, t_ / "dest"}, "recv");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(2)) << p->describe();
  EXPECT_TRUE(one_error_line(p->stderr_text(), "ferry-recv")) << p->describe();
}

TEST_F(ExitCodes, ReceiverWithABadListenAddressIsAUsageError) {
  auto p = run(t_, {kRecvBin, "--listen", "127.0.0.1:70000", t_ / "dest"}, "recv");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(2)) << p->describe();
  EXPECT_TRUE(one_error_line(p->stderr_text(), "ferry-recv")) << p->describe();
}

TEST_F(ExitCodes, ConnectionRefusedWithoutRetriesIsNeverConnected) {
  ClosedPort closed;
  auto p = run(t_, {kSendBin, "--connect", closed.address(), "--retries", "0", file_}, "send");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(9)) << p->describe();
  // The last line names what failed.
  std::string err = p->stderr_text();
  ASSERT_FALSE(err.empty());
  err.pop_back();
  const std::string last = err.substr(err.rfind('\n') == std::string::npos ? 0 : err.rfind('\n') + 1);
  EXPECT_EQ(last.rfind("ferry-send: error: ", 0), 0u) << p->describe();
}

TEST_F(ExitCodes, MissingSourcePathIsAUsageError) {
  ClosedPort closed;  // never reached: the PATH is checked first
  const std::string missing = t_ / "src/does-not-exist";
  auto p = run(t_, {kSendBin, "--connect", closed.address(), "--retries", "0", missing}, "send");
  EXPECT_EQ(p->wait(), ExitStatus::exited_with(2)) << p->describe();
  EXPECT_TRUE(one_error_line(p->stderr_text(), "ferry-send")) << p->describe();
  EXPECT_NE(p->stderr_text().find("does-not-exist"), std::string::npos) << "the message must name the path";
}

}  // namespace
}  // namespace ferry::e2e
