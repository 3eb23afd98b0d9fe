#include "lib/net/vsock.hpp"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include "lib/fs/fd_io.hpp"
#include "lib/uv/uv_owner.hpp"

namespace ferry {
namespace {

// As the user wrote it: VMADDR_PORT_ANY is port 0 on the command line.
std::string where(std::uint32_t cid, std::uint32_t port) {
  return "vsock:" + vsock_cid_name(cid) + ":" + std::to_string(port == kVsockPortAny ? 0 : port);
}

// What an errno from a vsock call means for the user, or "" when strerror says it all.
std::string vsock_hint(const std::string& call, std::uint32_t cid, std::uint32_t port, int e) {
  const std::string at_cid = "CID " + vsock_cid_name(cid);
  switch (e) {
    case EAFNOSUPPORT:
      return "no vsock in this kernel: load the vsock module and a transport "
             "(vmw_vsock_virtio_transport in a guest, vhost_vsock on a host, vsock_loopback for CID 1)";
    case ENODEV:
    case EHOSTUNREACH:
    case EADDRNOTAVAIL: {
      if (call == "bind") return at_cid + " is not this machine's (listen on vsock:any:PORT)";
      auto local = vsock_local_cid();
      if (local && *local == cid) {
        return at_cid + " is this machine's own; connecting to it needs the vsock_loopback module";
      }
      return "no such CID reachable: " + at_cid +
             " (connecting to this machine's own CID needs the vsock_loopback module)";
    }
    case ECONNREFUSED:
    case ECONNRESET:
      return "nothing listens on port " + std::to_string(port) + " at " + at_cid;
    case ETIMEDOUT:
      if (cid == kVsockCidLocal) return "no answer: CID 1 needs the vsock_loopback module";
      return "no answer from " + at_cid + ": is that VM running, with a listener on port " + std::to_string(port) + "?";
    case EACCES:
    case EPERM:
      if (port < 1024) return "ports below 1024 need CAP_NET_BIND_SERVICE";
      return "";
    case EADDRINUSE:
      return "port " + std::to_string(port) + " is taken";
    default:
      return "";
  }
}

// "call(vsock:CID:PORT) (ENAME: hint): strerror" -- one line naming the call, the
// address and the errno (message() appends the strerror text).
Error vsock_error(const std::string& call, std::uint32_t cid, std::uint32_t port, int e) {
  std::string what = call + "(" + where(cid, port) + ")";
  const char* name = ::strerrorname_np(e);
  const std::string hint = vsock_hint(call, cid, port, e);
  std::string paren = name ? name : "errno " + std::to_string(e);
  if (!hint.empty()) paren += ": " + hint;
  what += " (" + paren + ")";
  return make_error(Errc::connection, what, e);
}

sockaddr_vm make_addr(std::uint32_t cid, std::uint32_t port) {
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = cid;
  a.svm_port = port;
  return a;
}

}  // namespace

std::optional<std::uint32_t> parse_vsock_cid(const std::string& text) {
  if (text == "any") return kVsockCidAny;
  if (text == "host") return kVsockCidHost;
  if (text == "local") return kVsockCidLocal;
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string vsock_cid_name(std::uint32_t cid) {
  if (cid == kVsockCidAny) return "any";
  return std::to_string(cid);
}

Result<std::uint32_t> vsock_local_cid() {
  UniqueFd fd(::open("/dev/vsock", O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error(Errc::connection, "open(/dev/vsock)", errno);
  unsigned int cid = kVsockCidAny;
  if (::ioctl(fd.get(), IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) != 0) {
    return make_error(Errc::connection, "ioctl(/dev/vsock, IOCTL_VM_SOCKETS_GET_LOCAL_CID)", errno);
  }
  return std::uint32_t{cid};
}

Result<int> vsock_listen(std::uint32_t cid, std::uint32_t port, std::uint32_t& bound_port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return vsock_error("socket", cid, port, errno);
  sockaddr_vm a = make_addr(cid, port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return vsock_error("bind", cid, port, errno);
  if (::listen(fd.get(), 64) != 0) return vsock_error("listen", cid, port, errno);
  sockaddr_vm got{};
  socklen_t len = sizeof got;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&got), &len) != 0) {
    return vsock_error("getsockname", cid, port, errno);
  }
  bound_port = got.svm_port;
  return fd.release();
}

Result<std::optional<int>> vsock_accept(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return std::optional<int>(fd);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return std::optional<int>{};
    return make_error(Errc::connection, "accept(vsock)", errno);
  }
}

std::optional<std::uint32_t> vsock_peer_cid(int fd) {
  sockaddr_vm a{};
  socklen_t len = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || a.svm_family != AF_VSOCK) return std::nullopt;
  return a.svm_cid;
}

void vsock_dial(uv_loop_t* loop, std::uint32_t cid, std::uint32_t port, std::function<void(Result<int>)> done) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return done(vsock_error("socket", cid, port, errno));
  sockaddr_vm a = make_addr(cid, port);
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return done(fd.release());
  // EALREADY: a connect interrupted by a signal (EINTR) goes on in the background.
  if (errno != EINPROGRESS && errno != EALREADY) return done(vsock_error("connect", cid, port, errno));
  // Wait for writability, then read the outcome from SO_ERROR.
  struct Pending {
    UvOwner<uv_poll_t> poll;
    UniqueFd fd;
    std::uint32_t cid, port;
    std::function<void(Result<int>)> done;
  };
  const int raw = fd.get();
  auto owned = std::make_unique<Pending>(
      Pending{UvOwner<uv_poll_t>(loop, [raw](uv_loop_t* l, uv_poll_t* h) { return uv_poll_init(l, h, raw); }),
              std::move(fd), cid, port, std::move(done)});
  if (!owned->poll) {
    return owned->done(uv_error(Errc::connection, "poll(" + where(cid, port) + ")", owned->poll.status()));
  }
  owned->poll.get()->data = owned.get();
  const int started = uv_poll_start(owned->poll.get(), UV_WRITABLE, [](uv_poll_t* h, int status, int) {
    std::unique_ptr<Pending> p(static_cast<Pending*>(h->data));
    p->poll.reset();
    int err = 0;
    socklen_t len = sizeof err;
    // libuv reports POLLERR as UV_EBADF: the real reason is in SO_ERROR.
    if (::getsockopt(p->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0 && status < 0) err = -status;
    if (err != 0) return p->done(vsock_error("connect", p->cid, p->port, err));
    p->done(p->fd.release());
  });
  if (started != 0) {
    owned->poll.reset();
    return owned->done(uv_error(Errc::connection, "poll(" + where(cid, port) + ")", started));
  }
  owned.release();  // the poll callback owns it now
}

}  // namespace ferry
