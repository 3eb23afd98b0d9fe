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

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lib/core/session_actions.hpp"
#include "lib/net/child_process.hpp"
#include "lib/net/rate_limit.hpp"
#include "lib/net/address.hpp"
#include "lib/net/transport.hpp"
#include "lib/uv/loop_mailbox.hpp"
#include "lib/uv/uv_owner.hpp"
#include "protocol/codec.hpp"

namespace ferry {


class Connection {
 public:
  // Either on_bytes (the bytes of each read, from the Connection's own buffer), or
  // input_space + on_input: each read lands in the span input_space() returns (an empty
  // span: nothing is read now) and on_input(n) says how many bytes arrived, so a
  // session can take its input without a copy. on_input_drained (optional) follows
  // every read that delivered bytes.
  struct Callbacks {
    std::function<void(protocol::Bytes)> on_bytes;
    std::function<void(const Error&)> on_closed;
    std::function<std::span<std::byte>()> input_space{};
    std::function<void(std::size_t)> on_input{};
    std::function<void()> on_input_drained{};
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
  // Holds written frames in the queue until the matching uncork(), which writes them
  // all in gathered calls: a driver corks around one pass over its session's actions,
  // so that the OFFER, DATA and COMMIT of many small files cost one system call, not
  // one each. Corks nest; close() and close_after_flush() still write what is queued.
  void cork() { ++corks_; }
  void uncork();
  // Bytes queued, not yet taken by the kernel.
  std::size_t write_queue_bytes() const { return queued_bytes_; }
  // Bounds the write queue by the peer's own pace: while more than `high` bytes wait
  // for the kernel, nothing more is read from the peer (so the replies to its input stop
  // growing); reading resumes once the queue is down to `low` (<= high). 0: no bound
  // (the default). A receiver sets it: a sender that never reads its PONGs is paused,
  // not buffered (docs/SECURITY.md, "Limits").
  void limit_write_queue(std::size_t high, std::size_t low) {
    queue_high_ = high;
    queue_low_ = std::min(low, high);
  }
  // Reading is paused by the write queue bound now.
  bool reading_paused() const { return read_paused_; }
  // The peer's address for per-address limits: the IP of a TCP peer (an IPv6 peer's
  // /64 prefix); empty for peers without one (unix socket, stdio, command, vsock).
  const std::string& peer_host() const { return peer_host_; }
  void set_peer_host(std::string host) { peer_host_ = std::move(host); }
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
  // A carrier command's exit status and stderr (spawn_command()); null for others.
  // Outlives the close: read it in on_closed to say why a carrier went away.
  const std::shared_ptr<CarrierStatus>& carrier() const { return carrier_; }
  const std::string& peer() const { return peer_; }
  // --bwlimit: from now on, reads and writes together move at most `bytes_per_second`
  // on average (lib/net/rate_limit.hpp); 0: no limit.
  void limit_rate(std::uint64_t bytes_per_second);
  // Transient write retries (EAGAIN/ENOBUFS) seen so far.
  std::uint64_t write_retries() const { return write_retries_; }

 private:
  Connection() = default;
  static void on_poll(uv_poll_t* h, int status, int events);
  void update_polls();
  void read_some();
  std::span<std::byte> read_target();
  void deliver(std::span<std::byte> got);
  void flush();
  std::size_t gather(iovec* iov);
  ssize_t write_iov(iovec* iov, std::size_t count);
  void consume(std::size_t written);
  void write_failed(int err);
  void on_queue_drained();
  void finish_flush();
  void arm_retry();
  // Pauses reading above the write queue bound, resumes at or below its low mark.
  void apply_queue_bound();
  static void report_closed(uv_timer_t* t);

  uv_loop_t* loop_ = nullptr;
  std::string peer_, peer_host_;
  std::size_t queue_high_ = 0, queue_low_ = 0;
  bool read_paused_ = false;
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
  unsigned corks_ = 0;  // cork() depth: write() queues without writing while > 0
  std::optional<Error> flush_reason_;
  std::deque<SendFrame> queue_;
  std::size_t front_done_ = 0;  // bytes of queue_.front() already written
  std::size_t queued_bytes_ = 0;
  unsigned retry_step_ = 0;
  std::vector<char> readbuf_;
  std::uint64_t write_retries_ = 0;
  int release_fd_ = -1;
  std::shared_ptr<CarrierStatus> carrier_;
  std::unique_ptr<RateLimit> rate_;  // --bwlimit
  bool paced_ = false;               // the bucket is empty: no polling until pace_timer_
  UvOwner<uv_timer_t> pace_timer_;
  // Bytes that may move now (all of `want` without a limit); when none, pauses.
  std::size_t allowance(std::size_t want);
  std::function<void()> fds_closed_hook_;
  void release_process_fd();
  void close_descriptors();
  // The descriptor number `fd` was closed underneath us (EBADF): never close it again,
  // the number may already be someone else's.
  void forget_dead(int fd);
};


// Takes the descriptor out of a libuv stream (an accepted or connected socket): dup()s
// it (ours from then on) and closes the handle with the original. Errc::connection.
Result<int> take_fd(UvOwner<AnyStream>& s, const std::string& what);
// take_fd, then Connection::adopt of the descriptor as both ends.
Result<std::unique_ptr<Connection>> adopt_stream(uv_loop_t* loop, std::string peer, UvOwner<AnyStream>& s);

}  // namespace ferry
