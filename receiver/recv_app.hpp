// The ferry-recv command line: turns RecvOptions into a ferry::Receiver on a loop of
// its own, ends it cleanly on SIGINT/SIGTERM (exit 128+N), renders its events for a
// person or as JSON, and returns the process exit code.
//
//   RecvOptions o; ...; return run_recv(o);   // process exit code
#pragma once

#include <chrono>
#include <string>

#include "lib/ui/options.hpp"

namespace ferry::receiver {

struct RecvOptions {
  CommonOptions common;
  std::string dest;
  bool once = false;                          // exit after one complete transfer
  std::chrono::milliseconds idle_timeout{0};  // 0: none; with --once default 300 s
  unsigned retries = 20;                      // redials in --connect / -e mode
  bool no_fsync = false;
  std::chrono::seconds stale_partial_age{std::chrono::hours(24 * 7)};  // --stale-partial-age; 0: never                      // --no-fsync: durability given up, verification kept
};

int run_recv(const RecvOptions& options);

}  // namespace ferry::receiver
