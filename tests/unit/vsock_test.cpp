// Tests lib/vsock: CID parsing and names; listening on vsock:any with a fixed port and
// with a port the kernel picks (a real port; a non-blocking, close-on-exec descriptor),
// directly and through Listener::open on a real loop; and the error of a connect that
// cannot succeed (this machine's own CID, the host on an unused port): Errc::connection
// naming connect(vsock:CID:PORT), the errno's name and its text.
//
// These need AF_VSOCK, not a peer: a test is skipped (with the reason) only when
// socket(AF_VSOCK) fails with EAFNOSUPPORT. The one test that needs vsock_loopback
// (CID 1) skips without it. Every loop run is bounded in turns and by a uv timer.
#include "lib/net/vsock.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lib/net/address.hpp"
#include "lib/net/connection.hpp"
#include "lib/net/dial.hpp"
#include "lib/net/listener.hpp"
#include "lib/uv/uv_owner.hpp"

namespace ferry {
namespace {

using namespace std::chrono_literals;

// Why this kernel cannot run vsock tests at all, or nullopt when it can.
std::optional<std::string> no_af_vsock() {
  const int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    ::close(fd);
    return std::nullopt;
  }
  if (errno == EAFNOSUPPORT) return std::string("no AF_VSOCK in this kernel: ") + std::strerror(errno);
  return std::nullopt;  // any other failure is the test's to report
}

#define SKIP_WITHOUT_AF_VSOCK()                           \
  do {                                                    \
    if (auto why_ = no_af_vsock()) GTEST_SKIP() << *why_; \
  } while (0)

bool is_nonblocking(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

bool is_cloexec(int fd) {
  const int fl = ::fcntl(fd, F_GETFD);
  return fl >= 0 && (fl & FD_CLOEXEC) != 0;
}

std::optional<std::uint32_t> sockname_port(int fd) {
  sockaddr_vm a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return std::nullopt;
  return a.svm_port;
}

// A port nothing listens on here: the kernel picks a free one, and we let it go.
std::uint32_t unused_port() {
  std::uint32_t port = 0;
  auto fd = vsock_listen(kVsockCidAny, kVsockPortAny, port);
  if (!fd) {
    ADD_FAILURE() << fd.error().message();
    return 54321;
  }
  ::close(*fd);
  return port;
}

// A uv loop for one test; closing it runs the close callbacks still owed (bounded).
class Loop {
 public:
  Loop() { uv_loop_init(&loop_); }
  ~Loop() {
    for (int i = 0; i < 100 && uv_loop_close(&loop_) == UV_EBUSY; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done()` holds or `limit` passes (a uv timer) or 10000 turns.
  // False on the time limit.
  template <class Done>
  bool run_until(Done done, std::chrono::milliseconds limit) {
    bool expired = false;
    UvOwner<uv_timer_t> timer(&loop_, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); });
    if (!timer) return false;
    timer.get()->data = &expired;
    uv_timer_start(
        timer.get(),
        [](uv_timer_t* t) {
          if (t->data) *static_cast<bool*>(t->data) = true;
        },
        static_cast<std::uint64_t>(limit.count()), 0);
    for (int turns = 0; turns < 10000 && !done() && !expired; ++turns) uv_run(&loop_, UV_RUN_ONCE);
    const bool ok = done();
    timer.reset();
    uv_run(&loop_, UV_RUN_NOWAIT);  // the timer's close callback
    return ok;
  }

 private:
  uv_loop_t loop_{};
};

// --- CIDs -------------------------------------------------------------------------

TEST(VsockCid, ParsesNamesAndNumbers) {
  EXPECT_EQ(parse_vsock_cid("any"), kVsockCidAny);
  EXPECT_EQ(parse_vsock_cid("host"), kVsockCidHost);
  EXPECT_EQ(parse_vsock_cid("local"), kVsockCidLocal);
  EXPECT_EQ(kVsockCidHost, 2u);
  EXPECT_EQ(kVsockCidLocal, 1u);
  EXPECT_EQ(kVsockCidAny, static_cast<std::uint32_t>(VMADDR_CID_ANY));
  EXPECT_EQ(kVsockPortAny, static_cast<std::uint32_t>(VMADDR_PORT_ANY));
  EXPECT_EQ(parse_vsock_cid("0"), 0u);
  EXPECT_EQ(parse_vsock_cid("2"), 2u);
  EXPECT_EQ(parse_vsock_cid("3"), 3u);
  EXPECT_EQ(parse_vsock_cid("4294967294"), 4294967294u);
}

TEST(VsockCid, RefusesEverythingElse) {
  for (const char* text :
       {"", " 2", "2 ", "-1", "+2", "0x2", "2.0", "4294967296", "99999999999", "guest", "ANY", "Host", "any ", "2:3"}) {
    EXPECT_EQ(parse_vsock_cid(text), std::nullopt) << "'" << text << "'";
  }
}

TEST(VsockCid, NamesRoundTrip) {
  EXPECT_EQ(vsock_cid_name(kVsockCidAny), "any");
  EXPECT_EQ(vsock_cid_name(kVsockCidLocal), "1");
  EXPECT_EQ(vsock_cid_name(kVsockCidHost), "2");
  EXPECT_EQ(vsock_cid_name(1234), "1234");
  for (std::uint32_t cid : {0u, 1u, 2u, 3u, 77u, 4294967294u, kVsockCidAny}) {
    EXPECT_EQ(parse_vsock_cid(vsock_cid_name(cid)), cid) << cid;
  }
}

// --- listening --------------------------------------------------------------------

// A fixed high port: bound as asked, non-blocking, close-on-exec, listening, nothing
// pending; a second bind of the same port fails naming bind() and EADDRINUSE.
TEST(VsockListen, FixedHighPort) {
  SKIP_WITHOUT_AF_VSOCK();
  // Another process may hold one of these: try a few from a base that depends on our pid.
  const std::uint32_t base = 40000 + static_cast<std::uint32_t>(::getpid()) % 20000;
  std::optional<int> fd;
  std::uint32_t port = 0, bound = 0;
  for (std::uint32_t p = base; p < base + 8 && !fd; ++p) {
    auto r = vsock_listen(kVsockCidAny, p, bound);
    if (r) {
      fd = *r;
      port = p;
    } else {
      ASSERT_EQ(r.error().sys_errno, EADDRINUSE) << r.error().message();
    }
  }
  ASSERT_TRUE(fd.has_value()) << "ports " << base << ".." << base + 7 << " all in use";
  EXPECT_EQ(bound, port);
  EXPECT_EQ(sockname_port(*fd), port);
  EXPECT_TRUE(is_nonblocking(*fd));
  EXPECT_TRUE(is_cloexec(*fd));
  int listening = 0;
  socklen_t len = sizeof listening;
  ASSERT_EQ(::getsockopt(*fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0) << std::strerror(errno);
  EXPECT_EQ(listening, 1);

  auto none = vsock_accept(*fd);
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_EQ(*none, std::nullopt) << "accepted a connection nobody made";

  std::uint32_t again_bound = 0;
  auto again = vsock_listen(kVsockCidAny, port, again_bound);
  ASSERT_FALSE(again) << "bound vsock:any:" << port << " twice";
  EXPECT_EQ(again.error().code, Errc::connection);
  EXPECT_EQ(again.error().sys_errno, EADDRINUSE);
  const std::string msg = again.error().message();
  EXPECT_EQ(msg.rfind("bind(vsock:any:" + std::to_string(port) + ") (EADDRINUSE", 0), 0u) << msg;
  EXPECT_NE(msg.find(std::strerror(EADDRINUSE)), std::string::npos) << msg;
  ::close(*fd);
}

// VMADDR_PORT_ANY: the kernel picks, and bound_port is that real port.
TEST(VsockListen, AnyPortGetsARealPort) {
  SKIP_WITHOUT_AF_VSOCK();
  std::uint32_t bound = 0;
  auto fd = vsock_listen(kVsockCidAny, kVsockPortAny, bound);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_NE(bound, kVsockPortAny);
  EXPECT_NE(bound, 0u);
  EXPECT_EQ(sockname_port(*fd), bound);
  EXPECT_TRUE(is_nonblocking(*fd));
  EXPECT_TRUE(is_cloexec(*fd));
  ::close(*fd);
}

// `--listen vsock:any:0` through Listener::open on a real loop: the bound address
// carries the real port, and closing the Listener releases it.
TEST(VsockListen, ThroughListenerOnALoop) {
  SKIP_WITHOUT_AF_VSOCK();
  auto addr = parse_address("vsock:any:0", AddressUse::listen);
  ASSERT_TRUE(addr) << addr.error().message();
  Loop loop;
  int accepted = 0;
  auto l = Listener::open(loop.get(), *addr, [&](std::unique_ptr<Connection>) { ++accepted; });
  ASSERT_TRUE(l) << l.error().message();
  const Address bound = (*l)->address();
  EXPECT_EQ(bound.kind, AddressKind::vsock);
  EXPECT_EQ(bound.vsock_cid, kVsockCidAny);
  EXPECT_NE(bound.vsock_port, kVsockPortAny);
  EXPECT_NE(bound.vsock_port, 0u);
  EXPECT_EQ(bound.to_string(), "vsock:any:" + std::to_string(bound.vsock_port));
  for (int i = 0; i < 10; ++i) uv_run(loop.get(), UV_RUN_NOWAIT);  // a quiet listener stays quiet
  EXPECT_EQ(accepted, 0);
  l->reset();
  uv_run(loop.get(), UV_RUN_NOWAIT);

  std::uint32_t rebound = 0;
  auto fd = vsock_listen(kVsockCidAny, bound.vsock_port, rebound);
  ASSERT_TRUE(fd) << "the Listener kept its port: " << fd.error().message();
  ::close(*fd);
}

// --- connects that cannot succeed ---------------------------------------------------

// errnos a kernel may answer a connect to a CID without a listener with: ENODEV (no
// transport reaches it, e.g. our own CID without vsock_loopback), ECONNRESET or
// ECONNREFUSED (the peer exists, nothing listens), ETIMEDOUT (no answer), and the
// unreachable ones.
const std::set<int> kConnectFailures = {ENODEV,       ECONNRESET,    ECONNREFUSED, ETIMEDOUT,
                                        EHOSTUNREACH, EADDRNOTAVAIL, ENETUNREACH};

// Dials `text`, which must fail, within 15 s (the kernel gives up after about 2 s);
// checks the Error: Errc::connection, one line "connect(ADDR) (ENAME...): strerror",
// and the hint that goes with the errno (`own_cid`: the hint says it is ours).
void expect_connect_fails_clearly(const std::string& text, bool own_cid) {
  SCOPED_TRACE(text);
  auto addr = parse_address(text, AddressUse::connect);
  ASSERT_TRUE(addr) << addr.error().message();
  auto loop = std::make_unique<Loop>();
  std::optional<Result<std::unique_ptr<Connection>>> got;  // destroyed before the loop
  dial(loop->get(), *addr, [&](Result<std::unique_ptr<Connection>> r) { got.emplace(std::move(r)); });
  if (!loop->run_until([&] { return got.has_value(); }, 15s)) {
    (void)loop.release();  // the dial's handles stay registered: leak the loop, fail the test
    FAIL() << "dial(" << text << ") did not answer within 15 s";
  }
  ASSERT_FALSE(*got) << "connected to " << text << ": is something listening there?";
  const Error& e = got->error();
  const std::string msg = e.message();
  EXPECT_EQ(e.code, Errc::connection) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind("connect(" + text + ") (", 0), 0u) << msg;
  ASSERT_NE(e.sys_errno, 0) << msg;
  EXPECT_TRUE(kConnectFailures.count(e.sys_errno)) << "unexpected errno " << e.sys_errno << ": " << msg;
  const char* name = ::strerrorname_np(e.sys_errno);
  ASSERT_NE(name, nullptr);
  EXPECT_NE(msg.find(std::string("(") + name), std::string::npos) << msg;
  const std::string tail = std::string("): ") + std::strerror(e.sys_errno);
  ASSERT_GT(msg.size(), tail.size());
  EXPECT_EQ(msg.substr(msg.size() - tail.size()), tail) << msg;
  switch (e.sys_errno) {
    case ENODEV:
    case EHOSTUNREACH:
    case EADDRNOTAVAIL:
      EXPECT_NE(msg.find("vsock_loopback"), std::string::npos) << msg;
      if (own_cid) {
        EXPECT_NE(msg.find("is this machine's own"), std::string::npos) << msg;
      }
      break;
    case ECONNRESET:
    case ECONNREFUSED:
      EXPECT_NE(msg.find("nothing listens on port " + std::to_string(addr->vsock_port)), std::string::npos) << msg;
      break;
    case ETIMEDOUT:
      EXPECT_NE(msg.find("no answer"), std::string::npos) << msg;
      break;
    default:
      break;
  }
}

// Our own CID: without vsock_loopback no transport reaches it (ENODEV, named as our
// own); with it, nothing listens on the port (ECONNRESET).
TEST(VsockDial, OwnCidFailsClearly) {
  SKIP_WITHOUT_AF_VSOCK();
  auto cid = vsock_local_cid();
  if (!cid) GTEST_SKIP() << "cannot learn this machine's CID: " << cid.error().message();
  if (*cid == kVsockCidAny) GTEST_SKIP() << "no vsock transport is loaded, so this machine has no CID";
  const std::string text = "vsock:" + std::to_string(*cid) + ":" + std::to_string(unused_port());
  expect_connect_fails_clearly(text, true);
}

// The host (CID 2) on a port nothing listens on.
TEST(VsockDial, HostOnAnUnusedPortFailsClearly) {
  SKIP_WITHOUT_AF_VSOCK();
  expect_connect_fails_clearly("vsock:2:" + std::to_string(unused_port()), false);
}

// --- with vsock_loopback only -------------------------------------------------------

// A dial to vsock:1:PORT reaches our own Listener through the loop; both sides get a
// Connection. Skipped where CID 1 cannot be reached.
TEST(VsockLoopback, DialReachesTheListener) {
  SKIP_WITHOUT_AF_VSOCK();
  auto addr = parse_address("vsock:any:0", AddressUse::listen);
  ASSERT_TRUE(addr) << addr.error().message();
  Loop loop;
  std::unique_ptr<Connection> server_side;
  auto l = Listener::open(loop.get(), *addr, [&](std::unique_ptr<Connection> c) { server_side = std::move(c); });
  ASSERT_TRUE(l) << l.error().message();
  const std::string target = "vsock:1:" + std::to_string((*l)->address().vsock_port);
  auto to = parse_address(target, AddressUse::connect);
  ASSERT_TRUE(to) << to.error().message();
  std::optional<Result<std::unique_ptr<Connection>>> got;
  dial(loop.get(), *to, [&](Result<std::unique_ptr<Connection>> r) { got.emplace(std::move(r)); });
  ASSERT_TRUE(loop.run_until([&] { return got.has_value(); }, 15s)) << "dial(" << target << ") never answered";
  if (!*got) {
    GTEST_SKIP() << "no vsock loopback (vsock_loopback module not loaded): " << got->error().message();
  }
  EXPECT_EQ((**got)->peer(), target);
  EXPECT_TRUE(loop.run_until([&] { return server_side != nullptr; }, 5s)) << "the listener accepted nothing";
  server_side.reset();
  got.reset();
  l->reset();
}

}  // namespace
}  // namespace ferry
