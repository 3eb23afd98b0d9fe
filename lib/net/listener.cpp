#include "lib/net/listener.hpp"

#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "lib/net/vsock.hpp"

namespace ferry {
namespace {

// True when some process accepts connections on the unix socket file `path` (connect
// succeeds, or would block on a full backlog); false when refused (a dead receiver's
// file) or on any other failure.
bool unix_socket_served(const std::string& path) {
  sockaddr_un sa{};
  if (path.size() >= sizeof sa.sun_path) return false;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  const bool served = rc == 0 || errno == EAGAIN || errno == EINPROGRESS;
  ::close(fd);
  return served;
}

}  // namespace

namespace {

// The key of a TCP peer's share of the connections (Connection::peer_host): its IPv4
// address (also when it arrives IPv4-mapped on an IPv6 socket), or the /64 prefix of
// an IPv6 address (one host usually has a whole /64 to pick addresses from).
std::string share_key(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), text, sizeof text);
    return text;
  }
  sockaddr_in6 a = *reinterpret_cast<const sockaddr_in6*>(&ss);
  if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr)) {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    std::memcpy(&v4.sin_addr, &a.sin6_addr.s6_addr[12], 4);
    uv_ip4_name(&v4, text, sizeof text);
    return text;
  }
  std::memset(&a.sin6_addr.s6_addr[8], 0, 8);
  uv_ip6_name(&a, text, sizeof text);
  return std::string(text) + "/64";
}

}  // namespace

// ---------------------------------------------------------------------------
// Listener

Result<std::unique_ptr<Listener>> Listener::open(uv_loop_t* loop, const Address& addr, OnAccept on_accept,
                                                 Filter filter) {
  std::unique_ptr<Listener> l(new Listener());
  l->loop_ = loop;
  l->on_accept_ = std::move(on_accept);
  l->filter_ = std::move(filter);
  l->bound_ = addr;
  const std::string where = addr.to_string();
  if (addr.kind == AddressKind::vsock) {
    auto fd = vsock_listen(addr.vsock_cid, addr.vsock_port, l->bound_.vsock_port);
    if (!fd) return fd.error();
    l->vsock_fd_ = *fd;
    l->vsock_poll_ =
        UvOwner<uv_poll_t>(loop, [fd = *fd](uv_loop_t* lp, uv_poll_t* h) { return uv_poll_init(lp, h, fd); });
    if (!l->vsock_poll_) return uv_error(Errc::connection, "poll(" + where + ")", l->vsock_poll_.status());
    l->vsock_poll_.get()->data = l.get();
    const int rc = uv_poll_start(l->vsock_poll_.get(), UV_READABLE, &Listener::on_vsock_ready);
    if (rc != 0) return uv_error(Errc::connection, "poll(" + where + ")", rc);
    return l;
  }
  if (addr.kind == AddressKind::tcp) {
    l->server_ = UvOwner<AnyStream>(loop, [](uv_loop_t* lp, AnyStream* s) { return uv_tcp_init(lp, &s->tcp); });
    if (!l->server_) return uv_error(Errc::connection, "tcp_init", l->server_.status());
    sockaddr_storage ss{};
    int rc = addr.host.find(':') != std::string::npos
                 ? uv_ip6_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in6*>(&ss))
                 : uv_ip4_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in*>(&ss));
    if (rc != 0) return uv_error(Errc::usage, "listen address " + where + " is not an IP literal", rc);
    rc = uv_tcp_bind(&l->server_.get()->tcp, reinterpret_cast<sockaddr*>(&ss), 0);
    if (rc != 0) return uv_error(Errc::connection, "bind(" + where + ")", rc);
  } else {
    l->server_ = UvOwner<AnyStream>(loop, [](uv_loop_t* lp, AnyStream* s) { return uv_pipe_init(lp, &s->pipe, 0); });
    if (!l->server_) return uv_error(Errc::connection, "pipe_init", l->server_.status());
    // A socket file left by a dead receiver would make bind fail: remove only a socket
    // nobody serves. A live one is another receiver's (or program's): never taken over.
    struct stat st {};
    if (::lstat(addr.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      if (unix_socket_served(addr.path)) {
        return make_error(Errc::connection, "bind(" + where + "): another process is serving this socket", EADDRINUSE);
      }
      ::unlink(addr.path.c_str());
    }
    int rc = uv_pipe_bind(&l->server_.get()->pipe, addr.path.c_str());
    if (rc != 0) return uv_error(Errc::connection, "bind(" + where + ")", rc);
    l->owns_path_ = true;
  }
  l->server_.handle()->data = l.get();
  int rc = uv_listen(l->server_.stream(), 64, &Listener::on_connection);
  if (rc != 0) return uv_error(Errc::connection, "listen(" + where + ")", rc);
  if (addr.kind == AddressKind::tcp) {
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getsockname(&l->server_.get()->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      l->bound_.port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                      : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    }
  }
  return l;
}

Listener::~Listener() {
  server_.reset();
  vsock_poll_.reset();
  if (vsock_fd_ >= 0) ::close(vsock_fd_);
  if (owns_path_) ::unlink(bound_.path.c_str());
}

void Listener::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (!self || status != 0) return;  // a failed accept leaves the listener serving
  const bool tcp = self->bound_.kind == AddressKind::tcp;
  UvOwner<AnyStream> client(self->loop_, [tcp](uv_loop_t* lp, AnyStream* s) {
    return tcp ? uv_tcp_init(lp, &s->tcp) : uv_pipe_init(lp, &s->pipe, 0);
  });
  if (!client || uv_accept(server, client.stream()) != 0) return;
  std::string peer = self->bound_.to_string(), host;
  if (tcp) {
    uv_tcp_nodelay(&client.get()->tcp, 1);
    sockaddr_storage ss{};
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (uv_tcp_getpeername(&client.get()->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET6) {
        uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), ip, sizeof ip);
        peer =
            std::string("tcp:[") + ip + "]:" + std::to_string(ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port));
      } else {
        uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), ip, sizeof ip);
        peer = std::string("tcp:") + ip + ":" + std::to_string(ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port));
      }
      host = share_key(ss);
      if (!self->filter_.allow.permits_ip(reinterpret_cast<sockaddr*>(&ss))) return self->refuse(peer);
    } else if (!self->filter_.allow.empty()) {
      return self->refuse(peer);  // no peer address: not provably allowed
    }
  }
  auto c = adopt_stream(self->loop_, peer, client);
  if (!c) return;  // a failed adoption leaves the listener serving
  (*c)->set_peer_host(std::move(host));
  self->on_accept_(std::move(*c));  // a failed adoption leaves the listener serving
}

void Listener::refuse(const std::string& peer) {
  if (filter_.on_refused) filter_.on_refused("refused a connection from " + peer + ": not in --allow");
}

void Listener::on_vsock_ready(uv_poll_t* h, int status, int) {
  auto* self = static_cast<Listener*>(h->data);
  if (!self || status < 0) return;
  for (int i = 0; i < 16; ++i) {
    auto fd = vsock_accept(self->vsock_fd_);
    if (!fd || !*fd) return;  // nothing pending, or a failed accept: keep serving
    const auto cid = vsock_peer_cid(**fd);
    if (!self->filter_.allow.empty() && (!cid || !self->filter_.allow.permits_cid(*cid))) {
      ::close(**fd);
      self->refuse("vsock:" + (cid ? std::to_string(*cid) : std::string("?")));
      continue;
    }
    auto c = Connection::adopt(self->loop_, self->bound_.to_string(), **fd, **fd);
    if (c) self->on_accept_(std::move(*c));
  }
}

}  // namespace ferry
