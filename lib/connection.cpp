#include "lib/connection.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry {
namespace {

constexpr std::size_t kReadBufferSize = 512 * 1024;

// A write request owns its bytes until libuv calls back.
struct WriteReq {
  uv_write_t req{};
  SendFrame frame;
};

}  // namespace

Connection::Connection(std::string peer, UvOwner<AnyStream> in, UvOwner<AnyStream> out,
                       UvOwner<uv_process_t> child)
    : peer_(std::move(peer)), in_(std::move(in)), out_(std::move(out)), child_(std::move(child)) {
  in_.handle()->data = this;
  if (out_) out_.handle()->data = this;
  if (child_) child_.handle()->data = nullptr;
}

Connection::~Connection() = default;  // owners close the handles; callbacks see data == null

void Connection::start(Callbacks cb) {
  cb_ = std::move(cb);
  int rc = uv_read_start(in_.stream(), &Connection::on_alloc, &Connection::on_read);
  if (rc != 0) close(uv_error(Errc::connection, "read_start(" + peer_ + ")", rc));
}

void Connection::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(h->data);
  if (!self) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  if (self->readbuf_.empty()) self->readbuf_.resize(kReadBufferSize);
  *buf = uv_buf_init(self->readbuf_.data(), static_cast<unsigned>(self->readbuf_.size()));
}

void Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(s->data);
  if (!self || !self->open_) return;
  if (nread > 0) {
    self->cb_.on_bytes(protocol::Bytes(reinterpret_cast<const std::byte*>(buf->base),
                                       static_cast<std::size_t>(nread)));
    return;
  }
  if (nread == 0) return;  // EAGAIN: a readiness event is only a hint
  if (nread == UV_EOF) {
    self->close(make_error(Errc::connection, "connection closed by peer (" + self->peer_ + ")"));
  } else {
    self->close(uv_error(Errc::connection, "read(" + self->peer_ + ")", static_cast<int>(nread)));
  }
}

void Connection::write(SendFrame frame) {
  if (!open_ || flushing_) return;
  auto* w = new WriteReq{};
  w->frame = std::move(frame);
  uv_buf_t bufs[2];
  unsigned n = 0;
  bufs[n++] = uv_buf_init(reinterpret_cast<char*>(w->frame.head.data()),
                          static_cast<unsigned>(w->frame.head.size()));
  if (!w->frame.body.empty()) {
    bufs[n++] = uv_buf_init(reinterpret_cast<char*>(w->frame.body.data()),
                            static_cast<unsigned>(w->frame.body.size()));
  }
  int rc = uv_write(&w->req, out_stream(), bufs, n, [](uv_write_t* req, int status) {
    auto* wr = reinterpret_cast<WriteReq*>(req);
    auto* self = static_cast<Connection*>(req->handle->data);
    delete wr;
    if (status == 0 || status == UV_ECANCELED || !self || !self->open_) return;
    self->close(uv_error(Errc::connection, "write(" + self->peer_ + ")", status));
  });
  if (rc != 0) {
    delete w;
    close(uv_error(Errc::connection, "write(" + peer_ + ")", rc));
  }
}

std::size_t Connection::write_queue_bytes() const {
  return open_ ? uv_stream_get_write_queue_size(out_stream()) : 0;
}

void Connection::close_after_flush(const Error& reason, std::chrono::milliseconds limit) {
  if (!open_ || flushing_) return;
  flushing_ = true;
  flush_reason_ = reason;
  uv_read_stop(in_.stream());
  uv_loop_t* loop = in_.handle()->loop;
  flush_timer_ = UvOwner<uv_timer_t>(loop, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); });
  if (flush_timer_) {
    flush_timer_.get()->data = this;
    uv_timer_start(flush_timer_.get(), [](uv_timer_t* t) {
      auto* self = static_cast<Connection*>(t->data);
      if (self) self->close(*self->flush_reason_);
    }, static_cast<std::uint64_t>(limit.count()), 0);
  }
  // The shutdown callback runs once every queued write is done (or failed).
  // The request is freed in its callback, which libuv always calls (ECANCELED if the
  // stream is closed first), so it may outlive this Connection.
  auto* req = new uv_shutdown_t{};
  int rc = uv_shutdown(req, out_stream(), [](uv_shutdown_t* r, int) {
    auto* self = static_cast<Connection*>(r->handle->data);
    delete r;
    if (self && self->open_) self->close(*self->flush_reason_);
  });
  if (rc != 0) {
    delete req;
    close(reason);
  }
}

void Connection::close(const Error& reason) {
  if (!open_) return;
  open_ = false;
  flush_timer_.reset();
  uv_read_stop(in_.stream());
  // Release the handles now: libuv cancels queued writes, then frees them.
  in_.reset();
  out_.reset();
  child_.reset();
  auto cb = std::move(cb_.on_closed);
  if (cb) cb(reason);  // may destroy *this: nothing after this line
}

// ---------------------------------------------------------------------------
// Listener

Result<std::unique_ptr<Listener>> Listener::open(uv_loop_t* loop, const Address& addr, OnAccept on_accept) {
  std::unique_ptr<Listener> l(new Listener());
  l->loop_ = loop;
  l->on_accept_ = std::move(on_accept);
  l->bound_ = addr;
  const std::string where = addr.to_string();
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
    // A socket file left by a dead receiver would make bind fail: remove only a socket.
    struct stat st{};
    if (::lstat(addr.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(addr.path.c_str());
    int rc = uv_pipe_bind(&l->server_.get()->pipe, addr.path.c_str());
    if (rc != 0) return uv_error(Errc::connection, "bind(" + where + ")", rc);
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
  if (bound_.kind == AddressKind::unix_socket) ::unlink(bound_.path.c_str());
}

void Listener::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (!self || status != 0) return;  // a failed accept leaves the listener serving
  const bool tcp = self->bound_.kind == AddressKind::tcp;
  UvOwner<AnyStream> client(self->loop_, [tcp](uv_loop_t* lp, AnyStream* s) {
    return tcp ? uv_tcp_init(lp, &s->tcp) : uv_pipe_init(lp, &s->pipe, 0);
  });
  if (!client || uv_accept(server, client.stream()) != 0) return;
  std::string peer = self->bound_.to_string();
  if (tcp) {
    uv_tcp_nodelay(&client.get()->tcp, 1);
    sockaddr_storage ss{};
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (uv_tcp_getpeername(&client.get()->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET6) {
        uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), ip, sizeof ip);
        peer = std::string("tcp:[") + ip + "]:" + std::to_string(ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port));
      } else {
        uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), ip, sizeof ip);
        peer = std::string("tcp:") + ip + ":" + std::to_string(ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port));
      }
    }
  }
  self->on_accept_(std::make_unique<Connection>(peer, std::move(client)));
}

// ---------------------------------------------------------------------------
// dial

namespace {

struct DialState {
  uv_loop_t* loop;
  Address addr;
  std::function<void(Result<std::unique_ptr<Connection>>)> done;
  UvOwner<AnyStream> stream;
  uv_connect_t connect_req{};
  uv_getaddrinfo_t gai_req{};
};

void finish_connect(uv_connect_t* req, int status) {
  std::unique_ptr<DialState> st(static_cast<DialState*>(req->data));
  const std::string where = st->addr.to_string();
  if (status != 0) {
    st->done(uv_error(Errc::connection, "connect(" + where + ")", status));
    return;
  }
  if (st->addr.kind == AddressKind::tcp) uv_tcp_nodelay(&st->stream.get()->tcp, 1);
  st->done(std::unique_ptr<Connection>(new Connection(where, std::move(st->stream))));
}

}  // namespace

void dial(uv_loop_t* loop, const Address& addr, std::function<void(Result<std::unique_ptr<Connection>>)> done) {
  auto st = std::make_unique<DialState>();
  st->loop = loop;
  st->addr = addr;
  st->done = std::move(done);
  const std::string where = addr.to_string();
  if (addr.kind == AddressKind::unix_socket) {
    st->stream = UvOwner<AnyStream>(loop, [](uv_loop_t* lp, AnyStream* s) { return uv_pipe_init(lp, &s->pipe, 0); });
    if (!st->stream) return st->done(uv_error(Errc::connection, "pipe_init", st->stream.status()));
    st->connect_req.data = st.get();
    uv_pipe_connect(&st->connect_req, &st->stream.get()->pipe, addr.path.c_str(), finish_connect);
    st.release();
    return;
  }
  st->gai_req.data = st.get();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(
      loop, &st->gai_req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<DialState> s(static_cast<DialState*>(req->data));
        const std::string w = s->addr.to_string();
        if (status != 0 || !res) {
          if (res) uv_freeaddrinfo(res);
          s->done(uv_error(Errc::connection, "resolve(" + s->addr.host + ")", status ? status : UV_EAI_NONAME));
          return;
        }
        sockaddr_storage ss{};
        std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
        uv_freeaddrinfo(res);
        if (ss.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(s->addr.port);
        else reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(s->addr.port);
        s->stream = UvOwner<AnyStream>(s->loop, [](uv_loop_t* lp, AnyStream* x) { return uv_tcp_init(lp, &x->tcp); });
        if (!s->stream) return s->done(uv_error(Errc::connection, "tcp_init", s->stream.status()));
        s->connect_req.data = s.get();
        int r = uv_tcp_connect(&s->connect_req, &s->stream.get()->tcp, reinterpret_cast<sockaddr*>(&ss), finish_connect);
        if (r != 0) return s->done(uv_error(Errc::connection, "connect(" + w + ")", r));
        s.release();
      },
      addr.host.c_str(), nullptr, &hints);
  if (rc != 0) return st->done(uv_error(Errc::connection, "resolve(" + addr.host + ")", rc));
  st.release();
}

// ---------------------------------------------------------------------------
// stdio and spawned commands

namespace {

Result<UvOwner<AnyStream>> open_fd_stream(uv_loop_t* loop, int fd, const char* name) {
  int mine = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (mine < 0) return make_error(Errc::connection, std::string("dup(") + name + ")", errno);
  UvOwner<AnyStream> s(loop, [](uv_loop_t* lp, AnyStream* x) { return uv_pipe_init(lp, &x->pipe, 0); });
  if (!s) {
    ::close(mine);
    return uv_error(Errc::connection, "pipe_init", s.status());
  }
  int rc = uv_pipe_open(&s.get()->pipe, mine);
  if (rc != 0) {
    ::close(mine);
    return uv_error(Errc::connection, std::string("open ") + name + " as a stream (it must be a pipe or socket)", rc);
  }
  return s;
}

}  // namespace

Result<std::unique_ptr<Connection>> open_stdio(uv_loop_t* loop) {
  auto in = open_fd_stream(loop, 0, "stdin");
  if (!in) return in.error();
  auto out = open_fd_stream(loop, 1, "stdout");
  if (!out) return out.error();
  return std::make_unique<Connection>("stdio", std::move(*in), std::move(*out));
}

Result<std::unique_ptr<Connection>> spawn_command(uv_loop_t* loop, const std::string& command) {
  auto init_pipe = [](uv_loop_t* lp, AnyStream* x) { return uv_pipe_init(lp, &x->pipe, 0); };
  UvOwner<AnyStream> to_child(loop, init_pipe);
  UvOwner<AnyStream> from_child(loop, init_pipe);
  if (!to_child || !from_child) return make_error(Errc::connection, "pipe_init for command");
  uv_stdio_container_t stdio[3];
  stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
  stdio[0].data.stream = to_child.stream();
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = from_child.stream();
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* args[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  uv_process_options_t opts{};
  opts.file = "/bin/sh";
  opts.args = args;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = [](uv_process_t*, int64_t, int) {};
  // A failed uv_spawn still registers the handle, so it must be closed, not deleted.
  auto* proc = new uv_process_t{};
  int rc = uv_spawn(loop, proc, &opts);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(proc), [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
    return uv_error(Errc::connection, "spawn(/bin/sh -c " + command + ")", rc);
  }
  UvOwner<uv_process_t> child = UvOwner<uv_process_t>::adopt(proc);
  return std::make_unique<Connection>("command '" + command + "'", std::move(from_child), std::move(to_child),
                                      std::move(child));
}

}  // namespace ferry
