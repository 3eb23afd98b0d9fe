// ChildProcess: the command that carries a connection (-e CMD), and AnyStream, storage
// for the libuv stream handles the network room accepts, connects and spawns with.
//
//   auto child = ChildProcess::spawn(loop, opts, "sh -c 'ssh host ferry-recv --stdio d'");
//   // dropping it never leaves a zombie (see below)
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "lib/uv/uv_owner.hpp"
#include "protocol/result.hpp"

namespace ferry {

// Storage for any libuv stream handle (used only to accept, connect and spawn).
union AnyStream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
};

// What a carrier command did, shared by its ChildProcess and whoever reports on it (an
// engine that wants the exit status and the last stderr line of a carrier that ended
// before the handshake). Loop thread only.
struct CarrierStatus {
  bool exited = false;
  std::int64_t exit_status = 0;
  int term_signal = 0;
  bool stderr_closed = false;     // EOF read, or given up on 500 ms after the exit
  std::string last_stderr_line;   // the last non-empty line, at most kMaxCarrierLine bytes
  // Each stderr line as it comes (may be empty: then lines are only remembered).
  std::function<void(const std::string&)> on_stderr_line;
  // Once, when both exited and stderr_closed hold (set it before that, or test settled()).
  std::function<void()> on_settled;
  bool settled() const { return exited && stderr_closed; }
  // "exited with status 127", "was killed by signal 9"
  std::string exit_text() const;
};
// A longer stderr line is passed on in pieces of this size (the buffer stays bounded).
inline constexpr std::size_t kMaxCarrierLine = 4096;

// A command spawned to carry a connection (-e CMD). Dropping it never leaves a zombie:
// a child still running keeps its libuv handle open until libuv has reaped it, and
// one that ignores its closed pipes gets SIGTERM after 2 s, then SIGKILL after 2 s
// more. (Closing the handle at once, as before, left every exited child a zombie:
// libuv reaps only children whose handle is open.)
class ChildProcess {
 public:
  // uv_spawn with `opts` (its exit_cb is ferry's). Errc::connection naming `what`.
  // With `status`, the child's stderr (opts.stdio[2], which must exist) becomes a pipe
  // read line by line into `status` (see CarrierStatus), and its exit is recorded there.
  static Result<std::unique_ptr<ChildProcess>> spawn(uv_loop_t* loop, uv_process_options_t opts,
                                                     const std::string& what,
                                                     std::shared_ptr<CarrierStatus> status = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The status passed to spawn() (null without one).
  std::shared_ptr<CarrierStatus> status() const;

  struct State;  // the libuv handles; freed when both are closed (connection.cpp)

 private:
  explicit ChildProcess(State* s) : s_(s) {}
  State* s_;
};

}  // namespace ferry
