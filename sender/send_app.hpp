// The ferry-send command line: turns SendOptions into a ferry::Sender (or, with
// --watch, a spool), renders its events for a person or as JSON, and returns the
// process exit code.
//
//   SendOptions o; ...; return run_send(o);   // process exit code
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "lib/ui/options.hpp"

namespace ferry::sender {

struct SendOptions {
  CommonOptions common;
  std::vector<std::string> paths;
  // Redials in a row without progress; 0 = never redial. Unset: 20, or unlimited
  // with --watch.
  std::optional<unsigned> retries;
  std::string watch_dir;    // --watch: spool mode (sender/spool/spool.hpp)
  double settle_s = 1;      // --settle
  std::string on_sent;      // --on-sent; empty: move to WATCHDIR/.sent
  // --wait-for-receiver: how long the first connection may keep failing (0: give up
  // at the first failure, exit 9).
  std::chrono::milliseconds wait_for_receiver{0};
  bool copy_links = false;  // -L: send what symlinks point to
  bool links = false;       // -l: send symlinks as symlinks (-L wins)
  bool check = false;        // --check: compare with the receiver's copy, send nothing
  bool check_extra = false;  // --check-extra: also report names only the receiver has
  bool dry_run = false;      // -n, --dry-run: say what a transfer would send
};

// Runs a whole transfer; returns the exit code (0 only when every entry verified).
int run_send(const SendOptions& options);

}  // namespace ferry::sender
