// End-to-end vsock (`vsock:CID:PORT`) with the real ferry-send and ferry-recv.
//
// Always run: a connect that cannot succeed (this machine's own CID; the host, CID 2,
// on a port nothing listens on) exits 3 with one error line naming connect(vsock:...),
// the errno's name and its text; `--listen vsock:any:0` prints the real port the
// kernel chose, and a --once receiver nobody reaches exits 3 after --idle-timeout.
// Without AF_VSOCK in the kernel these check the EAFNOSUPPORT message instead.
//
// Only with vsock loopback (the vsock_loopback module: CID 1 reaches this machine): a
// 16 MiB file and a small tree over vsock, and a resume after kill -9 of the sender
// midway (through a rate-limited vsock relay, as resume_test.cpp does over TCP).
// Elsewhere they are skipped, and the skip message says why.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"
#include "tests/e2e/relay.hpp"

namespace ferry::e2e {
namespace {

constexpr Millis kQuickLimit = 20s;  // a connect fails within about 2 s
constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kWindow = 4 * kMiB;   // ferry-send's default --window
constexpr std::uint64_t kChunk = 256 * 1024;  // ferry-send's default --chunk-size
// A vsock listener is reachable by every guest: it needs a key, or this (docs/SECURITY.md).
const std::string kNoAuth = "--no-auth-i-know-this-is-insecure";

// --- what this kernel offers ---------------------------------------------------------

// Why socket(AF_VSOCK) fails here (EAFNOSUPPORT), or nullopt when it works.
std::optional<std::string> no_af_vsock() {
  Fd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd || errno != EAFNOSUPPORT) return std::nullopt;
  return std::string("no AF_VSOCK in this kernel: ") + std::strerror(errno);
}

// This machine's CID (ioctl IOCTL_VM_SOCKETS_GET_LOCAL_CID on /dev/vsock), or why not.
std::optional<std::uint32_t> local_cid(std::string& why) {
  Fd fd(::open("/dev/vsock", O_RDONLY | O_CLOEXEC));
  unsigned int cid = VMADDR_CID_ANY;
  if (!fd || ::ioctl(fd.get(), IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) != 0) {
    why = std::string(fd ? "ioctl(/dev/vsock)" : "open(/dev/vsock)") + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (cid == VMADDR_CID_ANY) {
    why = "no vsock transport is loaded, so this machine has no CID";
    return std::nullopt;
  }
  return cid;
}

// A listening vsock:any socket on a port the kernel picks; -1 and errno on failure.
Fd vsock_listener(std::uint32_t& port) {
  Fd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_ANY;
  a.svm_port = VMADDR_PORT_ANY;
  socklen_t len = sizeof a;
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd.get(), 4) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int e = errno;
    fd.reset();
    errno = e;
    return Fd();
  }
  port = a.svm_port;
  return fd;
}

// A port nothing listens on here (the kernel picked it free; we let it go).
std::uint32_t unused_port() {
  std::uint32_t port = 54321;
  (void)vsock_listener(port);
  return port;
}

// Why CID 1 (vsock_loopback) cannot carry a transfer here, or nullopt when it can:
// listens on vsock:any, connects to vsock:1:PORT without blocking, waits up to 3 s.
std::optional<std::string> probe_no_loopback() {
  if (auto why = no_af_vsock()) return why;
  std::uint32_t port = 0;
  Fd l = vsock_listener(port);
  if (!l) return std::string("cannot listen on vsock:any:0: ") + std::strerror(errno);
  const std::string where = "connect(vsock:1:" + std::to_string(port) + "): ";
  const std::string prefix = "no vsock loopback (vsock_loopback module not loaded): ";
  Fd c(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!c) return prefix + "socket: " + std::strerror(errno);
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_LOCAL;
  a.svm_port = port;
  int err = 0;
  if (::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{c.get(), POLLOUT, 0};
      const int n = ::poll(&p, 1, 3000);
      socklen_t len = sizeof err;
      if (n == 0) {
        err = ETIMEDOUT;
      } else if (n < 0 || ::getsockopt(c.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
      }
    }
  }
  if (err != 0) return prefix + where + std::strerror(err);
  return std::nullopt;
}

// The probe, once per process (it can take 3 s).
const std::optional<std::string>& no_loopback() {
  static const std::optional<std::string> why = probe_no_loopback();
  return why;
}

#define SKIP_WITHOUT_VSOCK_LOOPBACK()                            \
  do {                                                           \
    if (const auto& why_ = no_loopback()) GTEST_SKIP() << *why_; \
  } while (0)

// --- output checks -----------------------------------------------------------------

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The one line of `text` starting "PROG: error: "; fails when there is not exactly one.
::testing::AssertionResult the_error_line(const std::string& text, const std::string& prog, std::string& line) {
  const std::string prefix = prog + ": error: ";
  std::vector<std::string> found;
  for (const auto& l : lines_of(text)) {
    if (l.rfind(prefix, 0) == 0) found.push_back(l);
  }
  if (found.size() != 1) {
    return ::testing::AssertionFailure() << "expected one '" << prefix << "...' line, got " << found.size() << " in: '"
                                         << text << "'";
  }
  line = found[0].substr(prefix.size());
  return ::testing::AssertionSuccess();
}

// errnos a connect to a CID without a listener may fail with (see lib/net/vsock.cpp).
const std::set<int> kConnectFailures = {ENODEV,       ECONNRESET,    ECONNREFUSED, ETIMEDOUT,
                                        EHOSTUNREACH, EADDRNOTAVAIL, ENETUNREACH};

// `message` is "CALL(ADDR) (ENAME...): strerror(E)" for one of `errnos`.
::testing::AssertionResult names_call_and_errno(const std::string& message, const std::string& call_and_addr,
                                                const std::set<int>& errnos) {
  if (message.rfind(call_and_addr + " (", 0) != 0) {
    return ::testing::AssertionFailure() << "expected '" << call_and_addr << " (...', got '" << message << "'";
  }
  for (int e : errnos) {
    const std::string tail = std::string("): ") + std::strerror(e);
    const char* name = ::strerrorname_np(e);
    if (message.size() > tail.size() && message.compare(message.size() - tail.size(), tail.size(), tail) == 0 && name &&
        message.find(std::string("(") + name) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "no expected errno (name and text) in '" << message << "'";
}

std::uint32_t port_of(const std::string& address) {
  return static_cast<std::uint32_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

class VsockErrors : public ::testing::Test {
 protected:
  void SetUp() override { write_text_file(file_, "payload\n"); }

  // Runs `argv`, which must fail to connect to `addr`: exit 9 (never connected, at
  // once), one error line naming
  // connect(ADDR) and the errno (socket(ADDR) and EAFNOSUPPORT without AF_VSOCK).
  void expect_connect_failure(std::vector<std::string> argv, const std::string& prog, const std::string& addr) {
    auto p = Process::start(argv, t_.path(), prog);
    ASSERT_EQ(p->wait(kQuickLimit), ExitStatus::exited_with(9)) << p->describe();
    std::string line;
    ASSERT_TRUE(the_error_line(p->stderr_text(), prog, line)) << p->describe();
    if (no_af_vsock()) {
      EXPECT_TRUE(names_call_and_errno(line, "socket(" + addr + ")", {EAFNOSUPPORT})) << p->describe();
    } else {
      EXPECT_TRUE(names_call_and_errno(line, "connect(" + addr + ")", kConnectFailures)) << p->describe();
    }
  }

  TempDir t_;
  std::string file_ = t_ / "src/a.txt";
};

// --- always -------------------------------------------------------------------------

// This machine's own CID: no transport reaches it without vsock_loopback (ENODEV,
// named as our own CID); with it, nothing listens there (ECONNRESET).
TEST_F(VsockErrors, SenderToOwnCidExits8NamingConnect) {
  if (auto why = no_af_vsock()) GTEST_SKIP() << *why;
  std::string why;
  auto cid = local_cid(why);
  if (!cid) GTEST_SKIP() << "cannot learn this machine's CID: " << why;
  const std::string addr = "vsock:" + std::to_string(*cid) + ":" + std::to_string(unused_port());
  expect_connect_failure({kSendBin, "--connect", addr, "--retries", "0", file_}, "ferry-send", addr);
}

TEST_F(VsockErrors, ReceiverToHostOnAnUnusedPortExits8NamingConnect) {
  const std::string addr = "vsock:2:" + std::to_string(unused_port());
  expect_connect_failure({kRecvBin, "--connect", addr, "--retries", "0", t_ / "dest"}, "ferry-recv", addr);
}

// `--listen vsock:any:0`: the printed port is the real one (held while the receiver
// runs), and a --once receiver nobody reaches exits 3 after its idle timeout.
TEST_F(VsockErrors, ListenOnAnyPortPrintsTheRealPortAndIdlesOut) {
  if (no_af_vsock()) {
    auto p = Process::start({kRecvBin, "--listen", "vsock:any:0", kNoAuth, "--once", t_ / "dest"}, t_.path(), "ferry-recv");
    ASSERT_EQ(p->wait(kQuickLimit), ExitStatus::exited_with(3)) << p->describe();
    std::string line;
    ASSERT_TRUE(the_error_line(p->stderr_text(), "ferry-recv", line)) << p->describe();
    EXPECT_TRUE(names_call_and_errno(line, "socket(vsock:any:0)", {EAFNOSUPPORT})) << p->describe();
    return;  // without AF_VSOCK, the clear error is what there is to check
  }
  Receiver r = start_receiver(t_.path(), "recv", "vsock:any:0", {kNoAuth, "--once", "--idle-timeout", "1", t_ / "dest"});
  ASSERT_EQ(r.address.rfind("vsock:any:", 0), 0u) << r.address;
  const std::uint32_t port = port_of(r.address);
  EXPECT_NE(port, 0u) << r.proc->describe();
  EXPECT_NE(port, static_cast<std::uint32_t>(VMADDR_PORT_ANY)) << r.proc->describe();
  EXPECT_NE(r.proc->stderr_text().find("ferry-recv: listening on vsock:any:" + std::to_string(port) + "\n"),
            std::string::npos)
      << r.proc->describe();

  // The port is taken: binding it fails while the receiver still runs.
  Fd probe(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(probe) << std::strerror(errno);
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_ANY;
  a.svm_port = port;
  const bool bound = ::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  const int bind_errno = errno;
  if (bound && r.proc->running()) ADD_FAILURE() << "port " << port << " was free while ferry-recv listened on it";
  if (!bound) {
    EXPECT_EQ(bind_errno, EADDRINUSE) << std::strerror(bind_errno);
  }
  probe.reset();

  ASSERT_EQ(r.proc->wait(kQuickLimit), ExitStatus::exited_with(3)) << r.proc->describe();
  std::string line;
  ASSERT_TRUE(the_error_line(r.proc->stderr_text(), "ferry-recv", line)) << r.proc->describe();
  EXPECT_NE(line.find("idle"), std::string::npos) << "not the idle timeout: " << line;
}

// --- with vsock loopback only -------------------------------------------------------

// The --connect address of a receiver that printed vsock:any:PORT, through CID 1.
std::string through_loopback(const Receiver& r) {
  return "vsock:1:" + std::to_string(port_of(r.address));
}

TEST(VsockLoopback, TransfersAFileAndATree) {
  SKIP_WITHOUT_VSOCK_LOOPBACK();
  TempDir t;
  std::uint64_t total = 0;
  auto add = [&](const std::string& rel, std::uint64_t size, std::uint64_t seed) {
    write_random_file(t / ("src/" + rel), size, seed);
    total += size;
  };
  add("big.bin", 16 * kMiB, 16);
  add("tree/a.txt", 12, 1);
  add("tree/nested/b.bin", 300 * 1024 + 7, 2);
  add("tree/nested/empty-file", 0, 3);
  add("tree/nested/deeper/c.bin", 65537, 4);
  make_dirs(t / "src/tree/empty");

  Receiver r = start_receiver(t.path(), "recv", "vsock:any:0", {kNoAuth, "--once", t / "dest"});
  auto send = Process::start({kSendBin, "--json", "--connect", through_loopback(r), t / "src/big.bin", t / "src/tree"},
                             t.path(), "send");
  ASSERT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
  ASSERT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  const auto events = send->json_events();
  const auto* end = find_event(events, "session_end");
  ASSERT_NE(end, nullptr) << send->describe();
  EXPECT_EQ((*end)["totals"].value("bytes_verified", std::uint64_t{0}), total) << send->describe();
  EXPECT_EQ(ferry_leftovers(t / "dest"), std::vector<std::string>{});
  EXPECT_EQ(compare_trees(t / "src", t / "dest"), "") << "DEST differs from the source";
}

// kill -9 of the sender midway (a 4 MiB/s vsock relay stretches 16 MiB over ~4 s); the
// --once receiver keeps the partial and its journal; a rerun straight to the receiver
// resumes from a non-zero offset and the file arrives whole.
TEST(VsockLoopback, ResumesAfterTheSenderIsKilled) {
  SKIP_WITHOUT_VSOCK_LOOPBACK();
  constexpr std::uint64_t kSize = 16 * kMiB;
  TempDir t;
  const std::string src = t / "src/big.bin", dest = t / "dest";
  const std::string part = dest + "/.big.bin.ferry-part", journal = dest + "/.big.bin.ferry-journal";
  write_random_file(src, kSize, 7);
  Receiver r = start_receiver(t.path(), "recv", "vsock:any:0", {kNoAuth, "--once", "--json", dest});
  {
    Relay relay(VMADDR_CID_LOCAL, port_of(r.address), 4 * kMiB);
    auto send = Process::start({kSendBin, "--connect", relay.address(), "--retries", "0", "--json", src}, t.path(),
                               "send-killed");
    const bool reached = wait_until([&] { return relay.to_target() >= 5 * kMiB || !send->running(); }, 30s);
    ASSERT_TRUE(reached) << "the relay forwarded only " << relay.to_target() << " bytes\n" << send->describe();
    ASSERT_TRUE(send->running()) << "ferry-send ended before it could be killed\n" << send->describe();
    ASSERT_EQ(send->kill_now(), ExitStatus::killed_by(SIGKILL));
    // By the connection_lost event the receiver has closed the partial and saved its journal.
    ASSERT_TRUE(wait_until(
        [&] { return find_event(r.proc->json_events(), "connection_lost") != nullptr || !r.proc->running(); }, 30s))
        << "the receiver did not notice the sender's death\n"
        << r.proc->describe();
  }
  ASSERT_TRUE(r.proc->running()) << "--once ended when the first sender died\n" << r.proc->describe();
  ASSERT_TRUE(exists_nofollow(part)) << "no partial in DEST: " << testing::PrintToString(list_dir(dest));
  EXPECT_TRUE(exists_nofollow(journal)) << "no journal in DEST: " << testing::PrintToString(list_dir(dest));
  EXPECT_FALSE(exists_nofollow(dest + "/big.bin")) << "an unverified file appeared under its final name";
  const std::uint64_t held = file_size(part);
  EXPECT_GT(held, 0u);
  EXPECT_LT(held, kSize);

  auto rerun = Process::start({kSendBin, "--connect", through_loopback(r), "--json", src}, t.path(), "send-rerun");
  ASSERT_EQ(rerun->wait(), ExitStatus::exited_with(0)) << rerun->describe();
  ASSERT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  EXPECT_EQ(ferry_leftovers(dest), std::vector<std::string>{});
  EXPECT_EQ(compare_trees(t / "src", dest), "");
  const auto events = rerun->json_events();
  const auto* resume = find_event(events, "resume", "big.bin");
  ASSERT_NE(resume, nullptr) << "no resume event\n" << rerun->describe();
  const auto offset = resume->value("offset", std::uint64_t{0});
  EXPECT_GT(offset, 0u);
  EXPECT_LE(offset, held);
  const auto* end = find_event(events, "session_end");
  ASSERT_NE(end, nullptr) << rerun->describe();
  EXPECT_LE((*end)["totals"].value("bytes_payload", kSize + 1), kSize - offset + kWindow + kChunk)
      << "the rerun sent more than what the receiver lacked";
}

}  // namespace
}  // namespace ferry::e2e
