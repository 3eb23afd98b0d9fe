// ferry::Receiver: ferry-recv as a library. Writes what ferry senders send into one
// destination directory; a file appears under its final name only after its
// whole-file digest matched and it was fsynced; anything else stays a hidden partial
// with a journal, which a later connection (of the same or a restarted sender)
// resumes from.
//
// Three ways to run it, as for ferry::Sender (sender/sender.hpp): start(loop) on the
// caller's libuv loop (events on the loop thread), start_thread() on a thread and loop
// of its own, or run() in the calling thread until the end.
//
// Connections come from `options.transport` (lib/net/transport.hpp):
//   - listen / provided: serves many senders at once, each isolated from the others'
//     errors (provided: only those the caller lends with add_connection(), e.g. a host
//     app handing over each guest connection its hypervisor accepted); ends on stop(),
//     after `idle_timeout` with no sender, or, with `once`, after one whole transfer;
//   - connect / command / dial / stdio: one sender's transfer; a lost connection is
//     made again (not stdio) and the transfer resumes; ends when it is complete.
// The caller's descriptors are never closed by ferry (see BorrowedFd).
//
//   ferry::ReceiverOptions o;
//   o.dest = "/srv/inbox";
//   o.transport = ferry::Transport::dial_with(my_dial);  // e.g. the hypervisor's connect
//   o.on_event = [](const ferry::Event& e) { ... };
//   ferry::Receiver r(std::move(o));
//   r.start(my_loop);                                  // my_loop runs elsewhere in the app
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

// Relative includes (not rooted at the repository top like the rest of ferry): this is a
// public header, installed as <ferry/receiver/receiver.hpp>, and must find its neighbours there
// without ferry's own folders on the includer's path (cmake/package.cmake).
#include "../lib/core/events.hpp"
#include "../lib/core/outcome.hpp"
#include "../lib/net/transport.hpp"
#include "../protocol/auth_key.hpp"

namespace ferry {

class EngineHost;

struct ReceiverOptions {
  Transport transport;
  std::string dest;  // destination directory (created if missing, one level)
  // listen / provided: end with success after one sender's transfer was delivered and
  // verified in full.
  bool once = false;
  // listen / provided: end with Errc::connection after this long with no sender
  // connected; 0: never.
  std::chrono::milliseconds idle_timeout{0};
  // connect / command / dial: reconnects in a row without progress before giving up;
  // nullopt: never give up.
  std::optional<unsigned> retries = 20;
  // connect / command / dial: the first connection, as SenderOptions::
  // first_connection_wait says (ferry-recv sets 0: a refused first connection or a
  // carrier that ends before the handshake ends it at once, with kExitNotConnected).
  std::optional<std::chrono::milliseconds> first_connection_wait{};
  std::uint64_t window = 16 * 1024 * 1024;  // ACK pacing: at least every window/4 bytes (protocol::kDefaultWindow)
  // Limits that keep a serving receiver standing (docs/SECURITY.md, "Limits").
  std::size_t max_senders = 256;      // connections served at once; more are closed (logged)
  std::size_t max_per_address = 16;   // of which from one TCP peer address (IPv6: /64); 0: no share
  std::chrono::milliseconds handshake_timeout{10'000};  // a connection's HELLO (and AUTH) must be done by then
  std::chrono::milliseconds peer_timeout{60'000};  // closed after this long without progress from its sender
  std::chrono::milliseconds busy_timeout{120'000};  // a file waiting for a busy path is refused after this
  // Symlink OFFERs (protocol version 4): refused, every one (ferry-recv --no-links), or
  // those with an absolute target or one that climbs out of DEST (--safe-links);
  // otherwise made with their target text unchanged. no_links wins.
  bool no_links = false;
  bool safe_links = false;
  // Started for --check or --dry-run only (ferry-recv --inspect-only; ferry-send's
  // `HOST:DIR` form adds it for those): DEST is neither created nor probed for
  // writing, no stale partial is removed at the start, and a sender that wants a
  // transfer is refused with an ERROR. Nothing in DEST changes.
  bool inspect_only = false;
  // Durability against power loss given up (ferry-recv --no-fsync, for scratch copies):
  // no fsync of files, directories or journals. Verification is unchanged: a file is
  // renamed into place only after its digest matched.
  bool no_fsync = false;
  // Partials and journals not modified for this long are removed when met (at a file's
  // open, and in DEST's top level at the start); 0: never (ferry-recv
  // --stale-partial-age).
  std::chrono::seconds stale_partial_age{std::chrono::hours(24 * 7)};
  std::uint64_t rate_limit = 0;            // bytes per second per connection (--bwlimit); 0: none
  std::string software;                    // sent in HELLO; default "ferry-recv VERSION"
  // The shared secret key (docs/SECURITY.md, lib/fs/key_file.hpp: load_key_file): the
  // peer must prove the same key before any file is offered; nullopt: no key, and a
  // keyed peer is refused. A listen transport on anything but loopback or a unix socket
  // needs a key (or transport.insecure_no_key). Errc::authentication when the keys differ
  // or only one side has one: final, never retried.
  std::optional<protocol::AuthKey> key{};
  // Every event, on the loop's thread, in order; must not throw and must not destroy
  // the Receiver. Events of concurrent senders interleave.
  std::function<void(const Event&)> on_event;
};

class Receiver {
 public:
  explicit Receiver(ReceiverOptions options);
  // As ~Sender: safe at any time; open connections are closed (partials keep their
  // journals); start(loop) mode: on the loop thread, and the loop must run again to
  // free the handles; start_thread() mode: stops and joins. Not from inside on_event.
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  void start(uv_loop_t* loop);
  Result<void> start_thread();
  Outcome run();
  Outcome wait();

  // Thread-safe, also before the start (kept for it). Serves one more sender over a
  // lent, connected descriptor (dup()ed; see BorrowedFd). Released at once if the
  // receiver has ended or is full.
  void add_connection(BorrowedFd fd);
  // Thread-safe, also before the start. Ends serving: open connections are closed
  // after their last frame, partials keep their journals. The outcome gets `exit_code`
  // and, when it is not 0, an Errc::connection error saying `reason`; with a
  // connect / command / dial / stdio transport, whose one transfer did not complete,
  // 0 becomes 3 (Errc::connection): a stopped transfer is no success.
  void stop(int exit_code = 0, std::string reason = "stopped");

  std::optional<Outcome> outcome() const;

 private:
  std::unique_ptr<EngineHost> host_;
};

}  // namespace ferry
