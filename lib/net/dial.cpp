#include "lib/net/dial.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <utility>

#include "lib/net/vsock.hpp"

namespace ferry {

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

Result<std::unique_ptr<Connection>> spawn_command(uv_loop_t* loop, const std::string& command, CarrierLines on_line) {
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
  auto status = std::make_shared<CarrierStatus>();
  status->on_stderr_line = on_line ? std::move(on_line) : [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  };
  auto child = ChildProcess::spawn(loop, opts, "spawn(/bin/sh -c " + command + ")", status);
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
// lent descriptors and the one way to open a connection for a Transport

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
                           std::chrono::milliseconds timeout, CarrierLines on_carrier_line) {
  switch (t.kind) {
    case TransportKind::connect:
      return dial(loop, t.address, std::move(done), timeout);
    case TransportKind::stdio:
      done(open_stdio(loop));
      return {};
    case TransportKind::command:
      done(spawn_command(loop, t.command, std::move(on_carrier_line)));
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
