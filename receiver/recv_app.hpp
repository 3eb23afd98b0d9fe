// The ferry-recv command line: turns RecvOptions into a ferry::Receiver on a loop of
// its own, ends it cleanly on SIGINT/SIGTERM (exit 128+N), renders its events for a
// person or as JSON, and returns the process exit code.
//
//   RecvOptions o; ...; return run_recv(o);   // process exit code
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "lib/ui/options.hpp"

namespace ferry::receiver {

struct RecvOptions {
  CommonOptions common;
  std::string dest;
  bool once = false;                          // exit after one complete transfer
  std::chrono::milliseconds idle_timeout{0};  // 0: none; with --once default 300 s
  unsigned retries = 20;                      // redials in --connect / -e mode
  bool no_fsync = false;                      // --no-fsync: durability given up, verification kept
  bool no_links = false;                      // --no-links: refuse every symlink OFFER
  bool safe_links = false;                    // --safe-links: refuse absolute and escaping targets
  bool inspect_only = false;                  // --inspect-only: --check / --dry-run only, DEST untouched
  std::chrono::seconds stale_partial_age{std::chrono::hours(24 * 7)};  // --stale-partial-age; 0: never
  // Limits (docs/SECURITY.md, "Limits"); ReceiverOptions has the same defaults.
  std::size_t max_connections = 256;
  std::size_t max_per_address = 16;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds peer_timeout{60'000};
  std::chrono::milliseconds busy_timeout{120'000};
};

// The limit options as typed (seconds and counts), checked by finish_limit_options.
struct LimitOptions {
  double handshake_timeout_s = 10, peer_timeout_s = 60, busy_timeout_s = 120;
  std::size_t max_connections = 256, max_per_address = 16;
};
// --handshake-timeout, --peer-timeout, --busy-timeout, --max-connections, --max-per-address.
void add_limit_options(CLI::App& app, LimitOptions& limits);
// Checks the ranges (Errc::usage naming the option) and sets them in `o`.
Result<void> finish_limit_options(const LimitOptions& limits, RecvOptions& o);

int run_recv(const RecvOptions& options);

}  // namespace ferry::receiver
