#include "lib/vsock.hpp"

#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <memory>

#include "lib/uv_owner.hpp"

namespace ferry {
namespace {

std::string where(std::uint32_t cid, std::uint32_t port) {
  return "vsock:" + vsock_cid_name(cid) + ":" + std::to_string(port);
}

Error vsock_error(const std::string& call, std::uint32_t cid, std::uint32_t port, int e) {
  std::string what = call + "(" + where(cid, port) + ")";
  if (e == EAFNOSUPPORT) what += " (this kernel has no vsock support: load vsock / vmw_vsock_virtio_transport)";
  if (e == ENODEV || e == EHOSTUNREACH || e == EADDRNOTAVAIL) what += " (no such CID reachable)";
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

Result<int> vsock_listen(std::uint32_t cid, std::uint32_t port, std::uint32_t& bound_port) {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return vsock_error("socket", cid, port, errno);
  sockaddr_vm a = make_addr(cid, port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd);
    return vsock_error("bind", cid, port, e);
  }
  if (::listen(fd, 64) != 0) {
    int e = errno;
    ::close(fd);
    return vsock_error("listen", cid, port, e);
  }
  sockaddr_vm got{};
  socklen_t len = sizeof got;
  bound_port = ::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len) == 0 ? got.svm_port : port;
  return fd;
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

void vsock_dial(uv_loop_t* loop, std::uint32_t cid, std::uint32_t port, std::function<void(Result<int>)> done) {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return done(vsock_error("socket", cid, port, errno));
  sockaddr_vm a = make_addr(cid, port);
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return done(fd);
  if (errno != EINPROGRESS) {
    int e = errno;
    ::close(fd);
    return done(vsock_error("connect", cid, port, e));
  }
  // Wait for writability, then read the outcome from SO_ERROR.
  struct Pending {
    UvOwner<uv_poll_t> poll;
    int fd;
    std::uint32_t cid, port;
    std::function<void(Result<int>)> done;
  };
  auto* p = new Pending{UvOwner<uv_poll_t>(loop, [fd](uv_loop_t* l, uv_poll_t* h) { return uv_poll_init(l, h, fd); }),
                        fd, cid, port, std::move(done)};
  if (!p->poll) {
    std::unique_ptr<Pending> owned(p);
    ::close(fd);
    return owned->done(uv_error(Errc::connection, "poll(" + where(cid, port) + ")", owned->poll.status()));
  }
  p->poll.get()->data = p;
  uv_poll_start(p->poll.get(), UV_WRITABLE, [](uv_poll_t* h, int status, int) {
    std::unique_ptr<Pending> owned(static_cast<Pending*>(h->data));
    owned->poll.reset();
    int err = 0;
    socklen_t len = sizeof err;
    // libuv reports POLLERR as UV_EBADF: the real reason is in SO_ERROR.
    if (::getsockopt(owned->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0 && status < 0) err = -status;
    if (err != 0) {
      ::close(owned->fd);
      return owned->done(vsock_error("connect", owned->cid, owned->port, err));
    }
    owned->done(owned->fd);
  });
}

}  // namespace ferry
