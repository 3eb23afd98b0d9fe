// OwnLoop: a libuv loop of the executables' own, with SIGINT and SIGTERM turned into a
// clean stop of whatever runs on it.
//
// ferry-recv and ferry-send --watch run until they are told to stop. Here a signal N
// calls on_signal(128 + N, "interrupted by signal NAME"); the work then ends, and its
// session_end calls drop_signals() so that the loop, with nothing left to do, lets
// run() return. The destructor gives closed handles their last turn and closes the
// loop; the work must be destroyed before it.
//
//   OwnLoop loop;
//   Outcome out;
//   {
//     Receiver r(options);                    // options.on_event: drop_signals() on session_end
//     loop.on_signals([&r](int code, const std::string& why) { r.stop(code, why); });
//     r.start(loop.get());
//     loop.run();
//     out = ended_outcome(r.outcome());
//   }
#pragma once

#include <uv.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lib/core/outcome.hpp"
#include "lib/uv/uv_owner.hpp"

namespace ferry {

class OwnLoop {
 public:
  OwnLoop();
  ~OwnLoop();
  OwnLoop(const OwnLoop&) = delete;
  OwnLoop& operator=(const OwnLoop&) = delete;

  uv_loop_t* get() { return &loop_; }
  // Errc::internal when the loop could not be made (then run() returns at once).
  const std::optional<Error>& error() const { return error_; }
  // SIGINT and SIGTERM call `on_signal(128 + N, reason)` on the loop thread.
  void on_signals(std::function<void(int exit_code, const std::string& reason)> on_signal);
  // Removes the signal handlers (the loop may then end). Idempotent; callable from a
  // callback on the loop.
  void drop_signals() { signals_.clear(); }
  // uv_run until nothing is left to do; then drops the signal handlers.
  void run();

 private:
  uv_loop_t loop_{};
  bool ok_ = false;
  std::optional<Error> error_;
  std::function<void(int, const std::string&)> on_signal_;
  std::vector<UvOwner<uv_signal_t>> signals_;
};

// The outcome of work whose loop ended: `o`, or Errc::internal when the work never
// reported its end (a bug).
Outcome ended_outcome(const std::optional<Outcome>& o);

}  // namespace ferry
