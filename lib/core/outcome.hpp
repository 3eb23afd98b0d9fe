// Outcome: how a ferry::Sender or ferry::Receiver ended (sender/sender.hpp,
// receiver/receiver.hpp), as the executables' exit code and one-line reason.
#pragma once

#include <optional>

// Relative includes (not rooted at the repository top like the rest of ferry): this is a
// public header, installed as <ferry/lib/core/outcome.hpp>, and must find its neighbours there
// without ferry's own folders on the includer's path (cmake/package.cmake).
#include "../../protocol/result.hpp"
#include "events.hpp"

namespace ferry {

// The exit code when no connection was ever made: the first one was refused, could
// not be resolved or timed out, or the carrier command ended before the handshake
// (the error is Errc::connection; 3 stays for connections that were lost).
inline constexpr int kExitNotConnected = 9;
// ferry-send --check: every entry was compared, and at least one is not identical
// (different, missing, partial) or, with --check-extra, the receiver has a name the
// source has not.
inline constexpr int kExitDifferent = 10;

struct Outcome {
  // The exit code ferry-send / ferry-recv would end with (README "Exit codes"):
  // 0 = success, otherwise an Errc value, or what a stop() asked for.
  int exit_code = 0;
  std::optional<Error> error;  // the reason when exit_code != 0
  Totals totals;               // as in the session_end event
  bool ok() const { return exit_code == 0; }
};

}  // namespace ferry
