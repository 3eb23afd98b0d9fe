// Connection: one byte stream to the peer, over libuv, whatever carries it
// (TCP, unix socket, our stdin/stdout, or a spawned command's stdin/stdout).
//
// Contract:
// - on_bytes gets every byte read, in order; a read that returns nothing is ignored
//   (a readiness event is a hint).
// - on_closed is called exactly once, with the reason, when the stream ends: EOF,
//   a read or write error (ECONNRESET, EPIPE, EBADF, ...) or close(). After it, the
//   Connection never writes again. It may destroy the Connection.
// - write() queues a frame; its bytes are owned by the queue until libuv is done.
// - ferry closes only descriptors it opened or dup()ed itself.
//
//   auto c = ...;  // from Listener, dial(), open_stdio() or spawn_command()
//   c->start({.on_bytes = ..., .on_closed = ...});
//   c->write(SendFrame{...});
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/address.hpp"
#include "lib/session_io.hpp"
#include "lib/uv_owner.hpp"
#include "protocol/codec.hpp"

namespace ferry {

// Storage for any libuv stream handle.
union AnyStream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
};

class Connection {
 public:
  struct Callbacks {
    std::function<void(protocol::Bytes)> on_bytes;
    std::function<void(const Error&)> on_closed;
  };

  // `in` is read from; `out` written to (empty: the same stream as `in`).
  Connection(std::string peer, UvOwner<AnyStream> in, UvOwner<AnyStream> out = {},
             UvOwner<uv_process_t> child = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading. Errors from here on arrive through on_closed.
  void start(Callbacks cb);
  // Queues bytes for writing. Ignored after close.
  void write(SendFrame frame);
  // Bytes queued in libuv, not yet handed to the kernel.
  std::size_t write_queue_bytes() const;
  // Closes now; on_closed(reason) follows synchronously unless already closed.
  // Queued writes are cancelled.
  void close(const Error& reason);
  // Stops reading and writing new frames, lets queued writes reach the kernel (a
  // final ERROR or END), then closes; at the latest after `limit`.
  void close_after_flush(const Error& reason, std::chrono::milliseconds limit = std::chrono::seconds(2));
  bool is_open() const { return open_; }
  const std::string& peer() const { return peer_; }
  // Transient write retries (EAGAIN/ENOBUFS) seen so far.
  std::uint64_t write_retries() const { return write_retries_; }

 private:
  static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  uv_stream_t* out_stream() const { return out_ ? out_.stream() : in_.stream(); }

  std::string peer_;
  UvOwner<AnyStream> in_;
  UvOwner<AnyStream> out_;
  UvOwner<uv_process_t> child_;
  Callbacks cb_;
  bool open_ = true;
  bool flushing_ = false;
  std::optional<Error> flush_reason_;
  UvOwner<uv_timer_t> flush_timer_;
  std::vector<char> readbuf_;
  std::uint64_t write_retries_ = 0;
};

// Accepts connections on a TCP or unix address.
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
  UvOwner<AnyStream> server_;
  Address bound_;
  OnAccept on_accept_;
  uv_loop_t* loop_ = nullptr;
};

// Dials `addr` (name resolution included); `done` is called once, on the loop.
// Errc::connection on failure. The returned object cancels nothing: keep the loop
// running until `done`.
void dial(uv_loop_t* loop, const Address& addr,
          std::function<void(Result<std::unique_ptr<Connection>>)> done);

// The protocol over this process's stdin/stdout (both dup()ed; the originals stay
// open). They must be pipes, sockets or terminals.
Result<std::unique_ptr<Connection>> open_stdio(uv_loop_t* loop);

// Runs `/bin/sh -c command` and speaks over its stdin/stdout; its stderr is ours.
Result<std::unique_ptr<Connection>> spawn_command(uv_loop_t* loop, const std::string& command);

}  // namespace ferry
