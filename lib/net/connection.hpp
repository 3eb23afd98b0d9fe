// Connection: one byte stream to the peer, whatever carries it (TCP, unix socket,
// our stdin/stdout, or a spawned command's stdin/stdout), driven by libuv polls on
// file descriptors that ferry owns (it dup()s what it is given).
//
// Why not uv_stream_t: libuv waits for writability after EAGAIN/ENOBUFS with no
// timer, and on macOS that event may never come after ENOBUFS (docs/RELIABILITY.md,
// "What the transports do wrong" 2).
// Here a write that cannot proceed arms the writability poll AND a one-shot retry
// timer (next loop turn, then 1, 2, 4, 8, 10 ms), and every such retry is counted.
//
// Contract:
// - on_bytes gets every byte read, in order; a readable event with nothing to read
//   (EAGAIN) is normal and ignored. EINTR is retried.
// - on_closed is called exactly once, with the reason, when the stream ends: EOF,
//   a read or write error (ECONNRESET, EPIPE, EBADF, ENOTCONN, ...) or close().
//   It runs on a later loop turn: from a libuv callback of its own (a zero-timeout
//   timer), after the callback that closed the connection has returned; never from
//   inside close(), close_after_flush(), write() or start() (libuv's rule, STYLE
//   habit 6). Whoever closes or writes is never re-entered, so needs no guards. The
//   descriptors are closed at once; from then on the Connection never reads or writes
//   again and is_open() is false, but on_closed is still to come. The owner (one
//   unique_ptr) may destroy the Connection from inside on_closed; destroying it
//   before then cancels the report (on_closed never runs).
// - write() queues a frame; the queue owns its bytes until the kernel took them.
//   Writes to sockets use MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE.
// - ferry closes only descriptors it opened or dup()ed itself.
//
//   auto c = ...;  // from Listener, dial(), open_stdio() or spawn_command()
//   c->start({.on_bytes = ..., .on_closed = ...});
//   c->write(SendFrame{...});
#pragma once

#include <sys/types.h>  // ssize_t
#include <sys/uio.h>    // iovec
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/core/session_actions.hpp"
#include "lib/net/address.hpp"
#include "lib/net/transport.hpp"
#include "lib/uv/loop_mailbox.hpp"
#include "lib/uv/uv_owner.hpp"
#include "protocol/codec.hpp"

namespace ferry {

// Storage for any libuv stream handle (used only to accept, connect and spawn).
union AnyStream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
};

// A command spawned to carry a connection (-e CMD). Dropping it never leaves a zombie:
// a child still running keeps its libuv handle open until libuv has reaped it, and
// one that ignores its closed pipes gets SIGTERM after 2 s, then SIGKILL after 2 s
// more. (Closing the handle at once, as before, left every exited child a zombie:
// libuv reaps only children whose handle is open.)
class ChildProcess {
 public:
  // uv_spawn with `opts` (its exit_cb is ferry's). Errc::connection naming `what`.
  static Result<std::unique_ptr<ChildProcess>> spawn(uv_loop_t* loop, uv_process_options_t opts,
                                                     const std::string& what);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  struct State;  // the libuv handles; freed when both are closed (connection.cpp)

 private:
  explicit ChildProcess(State* s) : s_(s) {}
  State* s_;
};

class Connection {
 public:
  struct Callbacks {
    std::function<void(protocol::Bytes)> on_bytes;
    std::function<void(const Error&)> on_closed;
  };

  // Takes ownership of `in_fd` and `out_fd` (equal for a socket) and of `child`,
  // also when it fails (they are closed then).
  // Errc::connection when the descriptors cannot be polled (e.g. a regular file).
  static Result<std::unique_ptr<Connection>> adopt(uv_loop_t* loop, std::string peer, int in_fd, int out_fd,
                                                   std::unique_ptr<ChildProcess> child = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading. Errors from here on arrive through on_closed (on a later turn,
  // also for a descriptor found dead here).
  void start(Callbacks cb);
  // Queues bytes for writing and tries to write at once. Ignored after close. A write
  // error closes the connection; on_closed reports it on a later loop turn.
  void write(SendFrame frame);
  // Bytes queued, not yet taken by the kernel.
  std::size_t write_queue_bytes() const { return queued_bytes_; }
  // Closes the descriptors now; queued writes are dropped; on_closed(reason) follows
  // on a later loop turn (never from inside this call). No-op when already closed.
  void close(const Error& reason);
  // Stops taking new frames, lets queued writes reach the kernel (a final ERROR or
  // END), half-closes, waits for the peer's EOF, then closes; at the latest after
  // `limit`. on_closed follows as after close().
  void close_after_flush(const Error& reason, std::chrono::milliseconds limit = std::chrono::seconds(2));
  // Stdio mode: when our side of the stream is done, also point the process's own
  // `fd` (stdout) at /dev/null, or the peer would never see EOF while fd 1 holds
  // the pipe open. The descriptor number stays valid.
  void release_on_shutdown(int fd) { release_fd_ = fd; }
  // Runs `hook` once, right after the Connection closed its descriptors (in close()
  // or the destructor): how a lent descriptor's owner learns it may let go of it.
  void on_descriptors_closed(std::function<void()> hook) { fds_closed_hook_ = std::move(hook); }
  bool is_open() const { return open_; }
  const std::string& peer() const { return peer_; }
  // Transient write retries (EAGAIN/ENOBUFS) seen so far.
  std::uint64_t write_retries() const { return write_retries_; }

 private:
  Connection() = default;
  static void on_poll(uv_poll_t* h, int status, int events);
  void update_polls();
  void read_some();
  void flush();
  std::size_t gather(iovec* iov);
  ssize_t write_iov(iovec* iov, std::size_t count);
  void consume(std::size_t written);
  void write_failed(int err);
  void on_queue_drained();
  void finish_flush();
  void arm_retry();
  static void report_closed(uv_timer_t* t);

  uv_loop_t* loop_ = nullptr;
  std::string peer_;
  int in_fd_ = -1, out_fd_ = -1;
  bool same_fd_ = true, out_is_socket_ = false;
  UvOwner<uv_poll_t> in_poll_, out_poll_;  // out_poll_ empty when same_fd_
  UvOwner<uv_timer_t> retry_timer_, flush_timer_;
  // Reports the close on a later loop turn (a zero timeout); lives until the
  // Connection does, so the report can never outlive it.
  UvOwner<uv_timer_t> closed_timer_;
  std::optional<Error> closed_reason_;  // what on_closed will be told
  std::unique_ptr<ChildProcess> child_;
  Callbacks cb_;
  bool open_ = true, reading_ = false, want_write_ = false;
  bool flushing_ = false, write_shut_ = false;
  std::optional<Error> flush_reason_;
  std::deque<SendFrame> queue_;
  std::size_t front_done_ = 0;  // bytes of queue_.front() already written
  std::size_t queued_bytes_ = 0;
  unsigned retry_step_ = 0;
  std::vector<char> readbuf_;
  std::uint64_t write_retries_ = 0;
  int release_fd_ = -1;
  std::function<void()> fds_closed_hook_;
  void release_process_fd();
  void close_descriptors();
  // The descriptor number `fd` was closed underneath us (EBADF): never close it again,
  // the number may already be someone else's.
  void forget_dead(int fd);
};

// Accepts connections on a TCP, unix or vsock address.
class Listener {
 public:
  using OnAccept = std::function<void(std::unique_ptr<Connection>)>;
  // Binds and listens. Errc::connection on failure (naming bind/listen and the address).
  static Result<std::unique_ptr<Listener>> open(uv_loop_t* loop, const Address& addr, OnAccept on_accept);
  ~Listener();
  // The address actually bound (with the real port when 0 was asked).
  const Address& address() const { return bound_; }

 private:
  Listener() = default;
  static void on_connection(uv_stream_t* server, int status);
  static void on_vsock_ready(uv_poll_t* h, int status, int events);
  UvOwner<AnyStream> server_;
  int vsock_fd_ = -1;  // vsock listens through a poll on our own socket
  UvOwner<uv_poll_t> vsock_poll_;
  Address bound_;
  OnAccept on_accept_;
  uv_loop_t* loop_ = nullptr;
};

using ConnectionDone = std::function<void(Result<std::unique_ptr<Connection>>)>;
// Ends a dial still in progress; its `done` then gets Errc::connection "cancelled".
// Empty when there is nothing to cancel. Loop thread.
using DialCancel = std::function<void()>;

inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{10'000};

// Dials `addr` (name resolution included); `done` is called once, on the loop thread
// (at once for errors found before anything is sent). Errc::connection on failure;
// no answer within `timeout` (tcp, unix; vsock is bounded by the kernel) is
// ETIMEDOUT. The returned function cancels the attempt: an engine that ends calls it,
// so a connect to a host that drops SYNs cannot hold its loop for minutes.
DialCancel dial(uv_loop_t* loop, const Address& addr, ConnectionDone done,
                std::chrono::milliseconds timeout = kDefaultConnectTimeout);

// The protocol over this process's stdin/stdout (both dup()ed; the originals stay
// open). They must be pipes, sockets or terminals.
Result<std::unique_ptr<Connection>> open_stdio(uv_loop_t* loop);

// Runs `/bin/sh -c command` and speaks over its stdin/stdout; its stderr is ours.
Result<std::unique_ptr<Connection>> spawn_command(uv_loop_t* loop, const std::string& command);

// A descriptor lent by the caller (lib/net/transport.hpp): dup()s it and adopts the dup;
// b.on_released runs once the dup is closed, or before this returns when it fails
// (Errc::connection: a negative or dead descriptor, or one libuv cannot poll).
Result<std::unique_ptr<Connection>> adopt_borrowed(uv_loop_t* loop, BorrowedFd b);

// Makes one connection the way `t` says: connect, stdio, command or dial (listen and
// provided connections arrive by themselves: Errc::internal). `done` runs once on the
// loop thread, possibly before this returns; for `dial`, not at all if the mailbox
// behind `poster` closed first (its owner is gone; the descriptor is released). The
// caller guards `done` against having been destroyed meanwhile (connect and dial
// answer later). `timeout` bounds a connect (see dial()); the result cancels it.
DialCancel open_connection(uv_loop_t* loop, const Transport& t, const MailboxPoster& poster, ConnectionDone done,
                           std::chrono::milliseconds timeout = kDefaultConnectTimeout);

}  // namespace ferry
