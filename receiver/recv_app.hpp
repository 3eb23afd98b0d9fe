// The ferry-recv application: serves senders into DEST_DIR. In --listen mode many
// senders at once, each on its own ReceiverSession, isolated from the others'
// errors; in --connect, --stdio and -e modes a single connection.
//
//   RecvOptions o; ...; return run_recv(o);   // process exit code
#pragma once

#include <chrono>
#include <string>

#include "lib/options.hpp"

namespace ferry::receiver {

struct RecvOptions {
  CommonOptions common;
  std::string dest;
  bool once = false;                        // exit after one complete transfer
  std::chrono::milliseconds idle_timeout{0};  // 0: none; with --once default 300 s
  unsigned retries = 20;                    // redials in --connect / -e mode
};

int run_recv(const RecvOptions& options);

}  // namespace ferry::receiver
