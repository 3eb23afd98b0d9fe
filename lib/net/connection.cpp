#include "lib/net/connection.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "lib/net/vsock.hpp"

namespace ferry {
namespace {

constexpr std::size_t kReadBufferSize = 512 * 1024;
constexpr int kReadsPerEvent = 16;  // then yield to the loop: fairness between peers
constexpr std::size_t kMaxIov = 64;
constexpr unsigned kRetryDelaysMs[] = {0, 1, 2, 4, 8, 10};

bool is_transient_write_error(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS;
}

// Takes the descriptor out of a libuv stream: dup()s it (ours from then on) and
// closes the handle with the original.
Result<int> take_fd(UvOwner<AnyStream>& s, const std::string& what) {
  uv_os_fd_t fd = -1;
  int rc = uv_fileno(s.handle(), &fd);
  if (rc != 0) return uv_error(Errc::connection, "fileno(" + what + ")", rc);
  int mine = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (mine < 0) return make_error(Errc::connection, "dup(" + what + ")", errno);
  s.reset();
  return mine;
}

Result<std::unique_ptr<Connection>> adopt_stream(uv_loop_t* loop, std::string peer, UvOwner<AnyStream>& s) {
  auto fd = take_fd(s, peer);
  if (!fd) return fd.error();
  return Connection::adopt(loop, std::move(peer), *fd, *fd);
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::adopt(uv_loop_t* loop, std::string peer, int in_fd, int out_fd,
                                                      std::unique_ptr<ChildProcess> child) {
  std::unique_ptr<Connection> c(new Connection());
  c->loop_ = loop;
  c->peer_ = std::move(peer);
  c->in_fd_ = in_fd;
  c->out_fd_ = out_fd;
  c->same_fd_ = in_fd == out_fd;
  c->child_ = std::move(child);
  for (int fd : {in_fd, out_fd}) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
      return make_error(Errc::connection, "fcntl(O_NONBLOCK, " + c->peer_ + ")", errno);
    }
  }
  struct stat st {};
  c->out_is_socket_ = ::fstat(out_fd, &st) == 0 && S_ISSOCK(st.st_mode);
  auto init_poll = [](int fd) { return [fd](uv_loop_t* l, uv_poll_t* h) { return uv_poll_init(l, h, fd); }; };
  c->in_poll_ = UvOwner<uv_poll_t>(loop, init_poll(in_fd));
  if (!c->in_poll_) {
    return uv_error(Errc::connection, "poll(" + c->peer_ + ") (it must be a pipe, socket or terminal)",
                    c->in_poll_.status());
  }
  c->in_poll_.get()->data = c.get();
  if (!c->same_fd_) {
    c->out_poll_ = UvOwner<uv_poll_t>(loop, init_poll(out_fd));
    if (!c->out_poll_) {
      return uv_error(Errc::connection, "poll(" + c->peer_ + ") (it must be a pipe, socket or terminal)",
                      c->out_poll_.status());
    }
    c->out_poll_.get()->data = c.get();
  }
  c->retry_timer_ = make_timer(loop, c.get());
  c->flush_timer_ = make_timer(loop, c.get());
  c->closed_timer_ = make_timer(loop, c.get());
  if (!c->retry_timer_ || !c->flush_timer_ || !c->closed_timer_) return make_error(Errc::connection, "timer_init");
  return c;
}

Connection::~Connection() {
  // Stop the polls before the descriptors go (uv_close unregisters them at once).
  in_poll_.reset();
  out_poll_.reset();
  retry_timer_.reset();
  flush_timer_.reset();
  closed_timer_.reset();  // a close not reported yet never will be
  close_descriptors();
}

void Connection::forget_dead(int fd) {
  if (in_fd_ == fd) in_fd_ = -1;
  if (out_fd_ == fd) out_fd_ = -1;
}

void Connection::close_descriptors() {
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_fd_ >= 0 && out_fd_ != in_fd_) ::close(out_fd_);
  in_fd_ = out_fd_ = -1;
  if (auto hook = std::exchange(fds_closed_hook_, nullptr)) hook();
}

void Connection::start(Callbacks cb) {
  cb_ = std::move(cb);
  reading_ = true;
  update_polls();
}

void Connection::update_polls() {
  if (!open_) return;
  // A descriptor closed underneath us (a hypervisor closing every fd it vended:
  // docs/RELIABILITY.md, "What the transports do wrong" 4) would make libuv abort when
  // it re-arms epoll: end the connection instead.
  for (int fd : {in_fd_, out_fd_}) {
    if (fd >= 0 && ::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      forget_dead(fd);
      return close(make_error(Errc::connection, "poll(" + peer_ + ")", EBADF));
    }
  }
  int in_events = reading_ ? UV_READABLE : 0;
  int out_events = want_write_ ? UV_WRITABLE : 0;
  if (same_fd_) in_events |= out_events;
  int rc = in_events ? uv_poll_start(in_poll_.get(), in_events, &Connection::on_poll) : uv_poll_stop(in_poll_.get());
  if (rc == 0 && !same_fd_ && out_poll_) {
    rc = out_events ? uv_poll_start(out_poll_.get(), out_events, &Connection::on_poll) : uv_poll_stop(out_poll_.get());
  }
  if (rc != 0) close(uv_error(Errc::connection, "poll(" + peer_ + ")", rc));
}

void Connection::on_poll(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<Connection*>(h->data);
  if (!self || !self->open_) return;
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF; a socket's real reason (ECONNRESET, ...)
    // is in SO_ERROR. A true EBADF means the descriptor died underneath
    // (docs/RELIABILITY.md, "What the transports do wrong" 4).
    int err = 0;
    socklen_t len = sizeof err;
    const int fd = h == self->in_poll_.get() ? self->in_fd_ : self->out_fd_;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    return self->close(make_error(Errc::connection, "poll(" + self->peer_ + ")", err));
  }
  if (events & UV_WRITABLE) {
    self->flush();
    if (!self->open_) return;
  }
  if ((events & UV_READABLE) && h == self->in_poll_.get()) self->read_some();
}

void Connection::read_some() {
  if (readbuf_.empty()) readbuf_.resize(kReadBufferSize);
  for (int i = 0; i < kReadsPerEvent && open_; ++i) {
    ssize_t n = ::read(in_fd_, readbuf_.data(), readbuf_.size());
    if (n > 0) {
      if (flushing_) continue;  // lingering close: input is drained and dropped
      cb_.on_bytes(protocol::Bytes(reinterpret_cast<const std::byte*>(readbuf_.data()), static_cast<std::size_t>(n)));
      continue;
    }
    if (n == 0) {
      if (flushing_) return close(*flush_reason_);
      return close(make_error(Errc::connection, "connection closed by peer (" + peer_ + ")"));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // a readiness event is a hint
    const int e = errno;
    if (e == EBADF) forget_dead(in_fd_);
    return close(make_error(Errc::connection, "read(" + peer_ + ")", e));
  }
}

void Connection::write(SendFrame frame) {
  if (!open_ || flushing_) return;
  queued_bytes_ += frame.head.size() + frame.body.size();
  queue_.push_back(std::move(frame));
  if (!want_write_) flush();  // nothing pending: try at once
}

// Writes what is queued until the kernel takes no more, the queue is empty, or the
// connection failed (then closed; reported later).
void Connection::flush() {
  while (open_ && !queue_.empty()) {
    iovec iov[kMaxIov];
    const ssize_t n = write_iov(iov, gather(iov));
    if (n >= 0) {
      consume(static_cast<std::size_t>(n));
    } else if (const int e = errno; e != EINTR) {
      return write_failed(e);
    }
  }
  if (open_) on_queue_drained();
}

// Points up to kMaxIov entries at the unwritten parts of the queued frames (heads and
// bodies, the front frame from front_done_ on); returns how many.
std::size_t Connection::gather(iovec* iov) {
  std::size_t cnt = 0;
  std::size_t skip = front_done_;
  for (auto it = queue_.begin(); it != queue_.end() && cnt + 2 <= kMaxIov; ++it) {
    for (auto* part : {&it->head, &it->body}) {
      if (part->empty()) continue;
      if (skip >= part->size()) {
        skip -= part->size();
        continue;
      }
      iov[cnt].iov_base = part->data() + skip;
      iov[cnt].iov_len = part->size() - skip;
      skip = 0;
      ++cnt;
    }
  }
  return cnt;
}

// One writev (sendmsg with MSG_NOSIGNAL for a socket: a closed peer is EPIPE, not
// SIGPIPE). Returns what the kernel took, or -1 with errno set.
ssize_t Connection::write_iov(iovec* iov, std::size_t count) {
  if (out_is_socket_) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    return ::sendmsg(out_fd_, &msg, MSG_NOSIGNAL);
  }
  return ::writev(out_fd_, iov, static_cast<int>(count));
}

// Drops the `written` bytes the kernel took from the front of the queue.
void Connection::consume(std::size_t written) {
  queued_bytes_ -= written;
  while (written > 0) {
    SendFrame& f = queue_.front();
    const std::size_t total = f.head.size() + f.body.size();
    const std::size_t take = std::min(written, total - front_done_);
    front_done_ += take;
    written -= take;
    if (front_done_ == total) {
      queue_.pop_front();
      front_done_ = 0;
    }
  }
}

// A write failed with `err`: wait and retry when it is transient, else close.
void Connection::write_failed(int err) {
  if (is_transient_write_error(err)) {
    ++write_retries_;
    return arm_retry();
  }
  if (err == EBADF) forget_dead(out_fd_);
  close(make_error(Errc::connection, "write(" + peer_ + ")", err));
}

// Everything queued reached the kernel: no writability wait, no retry timer; a
// lingering close goes on to its half-close.
void Connection::on_queue_drained() {
  retry_step_ = 0;
  uv_timer_stop(retry_timer_.get());
  if (want_write_) {
    want_write_ = false;
    update_polls();
  }
  if (flushing_) finish_flush();
}

// A write could not proceed: wait for writability, and retry on a timer too, since
// after ENOBUFS the writability event may never come.
void Connection::arm_retry() {
  if (!want_write_) {
    want_write_ = true;
    update_polls();
  }
  if (!open_) return;
  const unsigned delay = kRetryDelaysMs[std::min<std::size_t>(retry_step_, std::size(kRetryDelaysMs) - 1)];
  ++retry_step_;
  uv_timer_start(
      retry_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Connection*>(t->data);
        if (self && self->open_) self->flush();
      },
      delay, 0);
}

void Connection::close_after_flush(const Error& reason, std::chrono::milliseconds limit) {
  if (!open_ || flushing_) return;
  flushing_ = true;
  flush_reason_ = reason;
  uv_timer_start(
      flush_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Connection*>(t->data);
        if (self && self->open_) self->close(*self->flush_reason_);
      },
      static_cast<std::uint64_t>(limit.count()), 0);
  if (queue_.empty()) finish_flush();
}

// Everything queued was written: half-close, then wait for the peer's EOF so that
// closing with unread input does not turn into a reset that destroys our last frame.
void Connection::finish_flush() {
  if (write_shut_) return;
  write_shut_ = true;
  if (out_is_socket_) {
    ::shutdown(out_fd_, SHUT_WR);
  } else if (!same_fd_) {
    out_poll_.reset();
    ::close(out_fd_);
    out_fd_ = -1;
    release_process_fd();
  } else {
    return close(*flush_reason_);
  }
}

void Connection::release_process_fd() {
  if (release_fd_ < 0) return;
  int nul = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (nul >= 0) {
    ::dup2(nul, release_fd_);
    ::close(nul);
  }
  release_fd_ = -1;
}

void Connection::close(const Error& reason) {
  if (!open_) return;
  open_ = false;
  in_poll_.reset();
  out_poll_.reset();
  retry_timer_.reset();
  flush_timer_.reset();
  queue_.clear();
  queued_bytes_ = 0;
  // The owner frees the Connection when the close is reported; give back the read
  // buffer now. Safe here: on_bytes consumers never keep the span.
  std::vector<char>().swap(readbuf_);
  close_descriptors();
  release_process_fd();
  child_.reset();
  // cb_.on_bytes stays: close() may be called from inside it.
  if (!cb_.on_closed) return;  // never started: nobody to tell
  // Reported from a callback of its own (see the contract in connection.hpp): the
  // caller of close() or write(), still on the stack, is never re-entered.
  closed_reason_ = reason;
  uv_timer_start(closed_timer_.get(), &Connection::report_closed, 0, 0);
}

void Connection::report_closed(uv_timer_t* t) {
  auto* self = static_cast<Connection*>(t->data);
  if (!self) return;
  // Moved to the stack first: on_closed may destroy the Connection.
  auto cb = std::exchange(self->cb_.on_closed, nullptr);
  const Error reason = std::move(*self->closed_reason_);
  cb(reason);
}

// ---------------------------------------------------------------------------
// Listener

Result<std::unique_ptr<Listener>> Listener::open(uv_loop_t* loop, const Address& addr, OnAccept on_accept) {
  std::unique_ptr<Listener> l(new Listener());
  l->loop_ = loop;
  l->on_accept_ = std::move(on_accept);
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
    // A socket file left by a dead receiver would make bind fail: remove only a socket.
    struct stat st {};
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
  vsock_poll_.reset();
  if (vsock_fd_ >= 0) ::close(vsock_fd_);
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
        peer =
            std::string("tcp:[") + ip + "]:" + std::to_string(ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port));
      } else {
        uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), ip, sizeof ip);
        peer = std::string("tcp:") + ip + ":" + std::to_string(ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port));
      }
    }
  }
  auto c = adopt_stream(self->loop_, peer, client);
  if (c) self->on_accept_(std::move(*c));  // a failed adoption leaves the listener serving
}

void Listener::on_vsock_ready(uv_poll_t* h, int status, int) {
  auto* self = static_cast<Listener*>(h->data);
  if (!self || status < 0) return;
  for (int i = 0; i < 16; ++i) {
    auto fd = vsock_accept(self->vsock_fd_);
    if (!fd || !*fd) return;  // nothing pending, or a failed accept: keep serving
    auto c = Connection::adopt(self->loop_, self->bound_.to_string(), **fd, **fd);
    if (c) self->on_accept_(std::move(*c));
  }
}

// ---------------------------------------------------------------------------
// dial

namespace {

// One attempt to dial a TCP or unix address: name resolution, then connect, within a
// deadline; cancellable. It keeps itself alive (`keep`) while libuv holds one of its
// requests, and reports exactly once.
struct DialState {
  uv_loop_t* loop = nullptr;
  Address addr;
  ConnectionDone done;
  std::chrono::milliseconds timeout{0};
  UvOwner<AnyStream> stream;
  UvOwner<uv_timer_t> timer;
  uv_connect_t connect_req{};
  uv_getaddrinfo_t gai_req{};
  std::shared_ptr<DialState> keep;
  std::optional<Error> aborted;  // why cancel() or the deadline ended it
  bool finished = false;

  void finish(Result<std::unique_ptr<Connection>> r) {
    if (finished) return;
    finished = true;
    timer.reset();
    auto self = std::move(keep);  // freed when this returns
    auto d = std::move(done);
    d(std::move(r));
  }
  // Ends the attempt: closing the stream makes libuv answer a pending connect with
  // UV_ECANCELED; a resolution not started yet is cancelled, one running is waited for.
  void abort(Error why) {
    if (finished || aborted) return;
    aborted = std::move(why);
    timer.reset();
    if (stream) {
      stream.reset();
    } else if (uv_cancel(reinterpret_cast<uv_req_t*>(&gai_req)) != 0) {
      // running on the thread pool: its callback sees `aborted`
    }
  }
};

void finish_connect(uv_connect_t* req, int status) {
  auto* st = static_cast<DialState*>(req->data);
  const std::string where = st->addr.to_string();
  if (st->aborted) return st->finish(*st->aborted);
  if (status != 0) return st->finish(uv_error(Errc::connection, "connect(" + where + ")", status));
  if (st->addr.kind == AddressKind::tcp) uv_tcp_nodelay(&st->stream.get()->tcp, 1);
  st->finish(adopt_stream(st->loop, where, st->stream));
}

void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* s = static_cast<DialState*>(req->data);
  const std::string w = s->addr.to_string();
  if (s->aborted) {
    if (res) uv_freeaddrinfo(res);
    return s->finish(*s->aborted);
  }
  if (status != 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    return s->finish(uv_error(Errc::connection, "resolve(" + s->addr.host + ")", status ? status : UV_EAI_NONAME));
  }
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  if (ss.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(s->addr.port);
  else
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(s->addr.port);
  s->stream = UvOwner<AnyStream>(s->loop, [](uv_loop_t* lp, AnyStream* x) { return uv_tcp_init(lp, &x->tcp); });
  if (!s->stream) return s->finish(uv_error(Errc::connection, "tcp_init", s->stream.status()));
  s->connect_req.data = s;
  int r = uv_tcp_connect(&s->connect_req, &s->stream.get()->tcp, reinterpret_cast<sockaddr*>(&ss), finish_connect);
  if (r != 0) return s->finish(uv_error(Errc::connection, "connect(" + w + ")", r));
}

}  // namespace

DialCancel dial(uv_loop_t* loop, const Address& addr, ConnectionDone done, std::chrono::milliseconds timeout) {
  const std::string where = addr.to_string();
  if (addr.kind == AddressKind::vsock) {
    // The kernel bounds a vsock connect itself (2 s by default).
    vsock_dial(loop, addr.vsock_cid, addr.vsock_port, [loop, where, done = std::move(done)](Result<int> fd) {
      if (!fd) return done(fd.error());
      done(Connection::adopt(loop, where, *fd, *fd));
    });
    return {};
  }
  auto st = std::make_shared<DialState>();
  st->loop = loop;
  st->addr = addr;
  st->done = std::move(done);
  st->timeout = timeout;
  st->keep = st;
  st->connect_req.data = st->gai_req.data = st.get();
  st->timer = make_timer(loop, st.get());
  if (st->timer && timeout.count() > 0) {
    uv_timer_start(
        st->timer.get(),
        [](uv_timer_t* t) {
          auto* s = static_cast<DialState*>(t->data);
          if (!s) return;
          const auto secs = std::chrono::duration<double>(s->timeout).count();
          char what[64];
          std::snprintf(what, sizeof what, " (no answer in %.3g s)", secs);
          s->abort(make_error(Errc::connection, "connect(" + s->addr.to_string() + ")" + what, ETIMEDOUT));
        },
        static_cast<std::uint64_t>(timeout.count()), 0);
  }
  std::weak_ptr<DialState> weak = st;
  DialCancel cancel = [weak] {
    if (auto s = weak.lock()) s->abort(make_error(Errc::connection, "connect(" + s->addr.to_string() + "): cancelled"));
  };
  if (addr.kind == AddressKind::unix_socket) {
    st->stream = UvOwner<AnyStream>(loop, [](uv_loop_t* lp, AnyStream* s) { return uv_pipe_init(lp, &s->pipe, 0); });
    if (!st->stream) {
      st->finish(uv_error(Errc::connection, "pipe_init", st->stream.status()));
      return {};
    }
    uv_pipe_connect(&st->connect_req, &st->stream.get()->pipe, addr.path.c_str(), finish_connect);
    return cancel;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop, &st->gai_req, on_resolved, addr.host.c_str(), nullptr, &hints);
  if (rc != 0) {
    st->finish(uv_error(Errc::connection, "resolve(" + addr.host + ")", rc));
    return {};
  }
  return cancel;
}

// ---------------------------------------------------------------------------
// stdio and spawned commands

Result<std::unique_ptr<Connection>> open_stdio(uv_loop_t* loop) {
  int in = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
  if (in < 0) return make_error(Errc::connection, "dup(stdin)", errno);
  int out = ::fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (out < 0) {
    int e = errno;
    ::close(in);
    return make_error(Errc::connection, "dup(stdout)", e);
  }
  auto c = Connection::adopt(loop, "stdio", in, out);
  if (c) (*c)->release_on_shutdown(1);
  return c;
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
  auto child = ChildProcess::spawn(loop, opts, "spawn(/bin/sh -c " + command + ")");
  if (!child) return child.error();
  const std::string peer = "command '" + command + "'";
  auto in = take_fd(from_child, peer);
  if (!in) return in.error();
  auto out = take_fd(to_child, peer);
  if (!out) {
    ::close(*in);
    return out.error();
  }
  return Connection::adopt(loop, peer, *in, *out, std::move(*child));
}

// ---------------------------------------------------------------------------
// ChildProcess

struct ChildProcess::State {
  uv_process_t proc{};
  uv_timer_t grace{};
  int open_handles = 0;
  bool exited = false, abandoned = false;
  int signals_sent = 0;
};

namespace {
constexpr std::uint64_t kChildGraceMs = 2000;

void on_child_handle_closed(uv_handle_t* h) {
  auto* s = static_cast<ChildProcess::State*>(h->data);
  if (--s->open_handles == 0) delete s;
}

void finish_child(ChildProcess::State* s) {
  uv_timer_stop(&s->grace);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->grace), on_child_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->proc), on_child_handle_closed);
}
}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(uv_loop_t* loop, uv_process_options_t opts,
                                                          const std::string& what) {
  auto* s = new State();
  s->proc.data = s->grace.data = s;
  uv_timer_init(loop, &s->grace);  // cannot fail on Unix
  ++s->open_handles;
  opts.exit_cb = [](uv_process_t* p, int64_t, int) {
    auto* st = static_cast<State*>(p->data);
    st->exited = true;
    if (st->abandoned) finish_child(st);
  };
  const int rc = uv_spawn(loop, &s->proc, &opts);
  ++s->open_handles;  // a failed uv_spawn still registers the handle: it must be closed
  if (rc != 0) {
    s->exited = true;
    finish_child(s);
    return uv_error(Errc::connection, what, rc);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(s));
}

ChildProcess::~ChildProcess() {
  s_->abandoned = true;
  if (s_->exited) {
    finish_child(s_);
    return;
  }
  // Its pipes are closed now; a carrier that does not exit at EOF is told to.
  uv_timer_start(
      &s_->grace,
      [](uv_timer_t* t) {
        auto* st = static_cast<State*>(t->data);
        uv_process_kill(&st->proc, st->signals_sent++ == 0 ? SIGTERM : SIGKILL);
        if (st->signals_sent < 2) uv_timer_again(t);
      },
      kChildGraceMs, kChildGraceMs);
}

// ---------------------------------------------------------------------------
// lent descriptors and the one way to open a connection for a Transport

void release(BorrowedFd& b) {
  if (auto hook = std::exchange(b.on_released, nullptr)) hook();
}

std::string Transport::describe() const {
  switch (kind) {
    case TransportKind::listen:
    case TransportKind::connect:
      return address.to_string();
    case TransportKind::stdio:
      return "stdio";
    case TransportKind::command:
      return "command '" + command + "'";
    case TransportKind::dial:
      return "the caller's dial function";
    case TransportKind::provided:
      return "connections from the caller";
  }
  return "?";
}

Result<std::unique_ptr<Connection>> adopt_borrowed(uv_loop_t* loop, BorrowedFd b) {
  const std::string peer = b.peer.empty() ? "fd " + std::to_string(b.fd) : b.peer;
  const int mine = b.fd < 0 ? -1 : ::fcntl(b.fd, F_DUPFD_CLOEXEC, 3);
  if (mine < 0) {
    const int e = b.fd < 0 ? EBADF : errno;
    release(b);
    return make_error(Errc::connection, "dup(" + peer + ")", e);
  }
  auto c = Connection::adopt(loop, peer, mine, mine);
  if (!c) {
    release(b);  // adopt closed our dup
    return c.error();
  }
  (*c)->on_descriptors_closed(std::move(b.on_released));
  return c;
}

DialCancel open_connection(uv_loop_t* loop, const Transport& t, const MailboxPoster& poster, ConnectionDone done,
                           std::chrono::milliseconds timeout) {
  switch (t.kind) {
    case TransportKind::connect:
      return dial(loop, t.address, std::move(done), timeout);
    case TransportKind::stdio:
      done(open_stdio(loop));
      return {};
    case TransportKind::command:
      done(spawn_command(loop, t.command));
      return {};
    case TransportKind::dial: {
      if (!t.dial) {
        done(make_error(Errc::usage, "dial transport without a dial function"));
        return {};
      }
      // The caller may answer from any thread: hop to the loop through the mailbox.
      auto shared_done = std::make_shared<ConnectionDone>(std::move(done));
      auto answered = std::make_shared<std::atomic<bool>>(false);
      t.dial([loop, poster, shared_done, answered](Result<BorrowedFd> r) {
        if (answered->exchange(true)) {  // a second answer: only give its descriptor back
          if (r) release(*r);
          return;
        }
        auto box = std::make_shared<Result<BorrowedFd>>(std::move(r));
        poster.post([loop, shared_done, box](bool live) {
          if (!live) {
            if (*box) release(**box);
            return;
          }
          if (!*box) return (*shared_done)(box->error());
          (*shared_done)(adopt_borrowed(loop, std::move(**box)));
        });
      });
      return {};  // the caller's dial function has no way to be cancelled
    }
    case TransportKind::listen:
    case TransportKind::provided:
      done(make_error(Errc::internal, "open_connection: " + t.describe() + " connections are not dialled"));
      return {};
  }
  return {};
}

}  // namespace ferry
