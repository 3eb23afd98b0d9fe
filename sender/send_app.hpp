// The ferry-send application: walks the sources, connects (or listens, or runs a
// command), and drives a SenderSession over libuv until every entry is verified or
// the transfer fails. Reconnects and resumes after a lost connection, up to
// `retries` times in a row without progress.
//
//   SendOptions o; ...; return run_send(o);   // process exit code
#pragma once

#include <string>
#include <vector>

#include "lib/options.hpp"

namespace ferry::sender {

struct SendOptions {
  CommonOptions common;
  std::vector<std::string> paths;
  unsigned retries = 20;  // redials in a row without progress; 0 = never redial
};

// Runs a whole transfer; returns the exit code (0 only when every entry verified).
int run_send(const SendOptions& options);

}  // namespace ferry::sender
