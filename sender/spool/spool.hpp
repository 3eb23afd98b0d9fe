// Spool: `ferry-send --watch DIR`, a send-to-host inbox. Watches DIR and sends every
// file in it (sub-directories too, each under its path relative to DIR) once it is
// complete: moved in by rename (at once) or unchanged for the settle time. Runs until
// stopped: when the receiver is away it waits and redials with backoff (forever
// unless `retries` is set); partly sent files resume from the receiver's journals;
// after the receiver verified a file it is moved to DIR/.sent (or removed, or kept).
//
// The pieces: lib/dir_watch (inotify hints), lib/spool_scan (listing, on-sent
// actions, run on the thread pool), sender/spool_queue (the sans-I/O decision of what
// is ready), and one ferry::Sender per batch of ready files, on the same loop.
//
// Restart: the queue is the directory itself plus the receiver's journals. A file
// that was partly sent resumes; one verified but not yet moved when the spool died is
// offered again, and the receiver, holding it complete under its final name with the
// same size and mtime, only re-verifies it (docs/PROTOCOL.md 7.4): nothing is sent
// twice in full.
//
//   SpoolOptions o; o.dir = "/var/spool/to-host"; o.transport = Transport::connect_to(addr);
//   Spool spool(std::move(o));
//   spool.start(loop);            // events through o.on_event; spool.stop(...) ends it
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "lib/core/events.hpp"
#include "lib/core/outcome.hpp"
#include "lib/net/transport.hpp"
#include "protocol/auth_key.hpp"
#include "sender/spool/spool_scan.hpp"

namespace ferry::sender {

struct SpoolOptions {
  std::string dir;
  Transport transport;  // connect, command or dial: the spool makes a connection per batch
  std::chrono::milliseconds settle{1000};
  std::optional<OnSentPolicy> on_sent;  // nullopt: move to DIR/.sent
  // Reconnects in a row without progress before the spool gives up (exit 3);
  // nullopt: never.
  std::optional<unsigned> retries;
  std::size_t chunk_size = 256 * 1024;
  std::uint64_t window = 16 * 1024 * 1024;  // protocol::kDefaultWindow
  std::chrono::milliseconds stall_timeout{10'000};
  std::optional<protocol::AuthKey> key{};  // as SenderOptions::key
  std::uint64_t rate_limit = 0;  // --bwlimit: bytes per second per connection; 0: none
  // The safety-net rescan when no change hint comes (inotify missing, overflowing, or
  // out of watches); stretched to ten times the last scan's duration for huge spools.
  std::chrono::milliseconds rescan_interval{2000};
  std::function<void(const Event&)> on_event;  // loop thread; must not throw
};

class Spool {
 public:
  explicit Spool(SpoolOptions options);
  // On the loop thread; a transfer in flight is cancelled (partials stay on the
  // receiver). The loop must run again to free the handles.
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Starts on `loop` (loop thread). Problems with DIR or the options end the spool at
  // once (outcome() and a session_end event say why).
  void start(uv_loop_t* loop);
  // Loop thread, not from inside on_event. Ends the spool: the transfer in flight is
  // cancelled (its partial stays on the receiver; its totals are not counted); an
  // on-sent action already running finishes, unreported. The outcome is `exit_code`
  // with `reason` (0: success).
  void stop(int exit_code, const std::string& reason);
  // Set once the spool ended.
  std::optional<Outcome> outcome() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// ferry-send --watch: runs a Spool on a loop of its own until SIGINT/SIGTERM (exit
// 128+N), `retries` running out (3) or a fatal error (a usage error, a receiver that
// speaks no common protocol: 4).
Outcome run_spool(SpoolOptions options);

}  // namespace ferry::sender
