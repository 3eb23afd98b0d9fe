// ChildProcess: the command that carries a connection (-e CMD), and AnyStream, storage
// for the libuv stream handles the network room accepts, connects and spawns with.
//
//   auto child = ChildProcess::spawn(loop, opts, "sh -c 'ssh host ferry-recv --stdio d'");
//   // dropping it never leaves a zombie (see below)
#pragma once

#include <uv.h>

#include <chrono>
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

}  // namespace ferry
