// ferry::Sender: ferry-send as a library. Sends files and directory trees to a ferry
// receiver over any byte stream; every file arrives whole and verified or not at all,
// and a lost connection is replaced (dialled again, or taken from the caller) and the
// transfer resumes where the receiver's verified data ends.
//
// Three ways to run it:
//   - start(loop): on the caller's libuv loop; call from the loop's thread; events
//     arrive on it; the caller keeps running the loop;
//   - start_thread(): on a thread and loop of its own; events arrive on that thread;
//     wait() joins it;
//   - run(): on a loop of its own, in the calling thread, until the end.
// Connections come from `options.transport` (lib/net/transport.hpp): an address to dial or
// listen on, a command, a DialFunction of the caller's, or descriptors the caller lends
// with add_connection(). The caller's descriptors are never closed by ferry.
//
//   ferry::SenderOptions o;
//   o.transport = ferry::Transport::dial_with(my_dial);   // or connect_to(address)...
//   o.paths = {"/var/log/big.log"};
//   o.on_event = [](const ferry::Event& e) { if (e.type == ferry::EventType::file_verified) ...; };
//   ferry::Sender s(std::move(o));
//   ferry::Outcome r = s.run();   // r.exit_code as ferry-send's; r.error says why
//
// The whole outcome is reported once, by a session_end event and outcome(); nothing is
// printed. Errors a caller can cause (a missing path, a bad option) end up there too.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// Relative includes (not rooted at the repository top like the rest of ferry): this is a
// public header, installed as <ferry/sender/sender.hpp>, and must find its neighbours there
// without ferry's own folders on the includer's path (cmake/package.cmake).
#include "../lib/core/events.hpp"
#include "../lib/core/outcome.hpp"
#include "../lib/net/transport.hpp"
#include "../protocol/auth_key.hpp"

namespace ferry {

class EngineHost;

// One regular file sent under a name of the caller's choosing.
struct FileToSend {
  std::string local_path;  // read from here (not followed if it is a symlink)
  std::string wire_path;   // relative name on the receiver, '/'-separated
};

struct SenderOptions {
  Transport transport;
  // What to send: each path as ferry-send sends its PATH arguments (a file as its base
  // name, a directory as its base name and everything below), then each of `files`.
  std::vector<std::string> paths;
  std::vector<FileToSend> files;
  // Symlinks below (or among) `paths`: false: left out, each with a file_skipped event
  // (no error, as rsync without -l); true: sent as what they point to (-L).
  bool copy_links = false;
  // --links: symlinks are sent as symlinks (OFFER kind symlink, protocol version 4);
  // copy_links wins when both are set.
  bool links = false;
  std::size_t chunk_size = 256 * 1024;              // 1 KiB .. 16 MiB
  std::uint64_t window = 16 * 1024 * 1024;          // 64 KiB .. 1 GiB, >= chunk_size (protocol::kDefaultWindow)
  std::chrono::milliseconds stall_timeout{10'000};  // no progress for this long: reconnect
  // Reconnects in a row without progress before giving up; nullopt: never give up.
  // 0: the first lost connection ends the transfer.
  std::optional<unsigned> retries = 20;
  // The first connection, before any handshake completed: nullopt: retried like any
  // other (up to `retries`); else redialled with backoff for at most this long (0: not
  // at all), then the transfer ends with kExitNotConnected (lib/core/outcome.hpp) and
  // the one-line reason (for a command that ended: its exit status and last stderr
  // line). ferry-send sets 0 unless --wait-for-receiver.
  std::optional<std::chrono::milliseconds> first_connection_wait{};
  // Bytes per second the connection may carry, both directions together (--bwlimit);
  // 0: no limit. At low rates keep window / rate well under stall_timeout.
  std::uint64_t rate_limit = 0;
  // --check / --dry-run (protocol version 4, docs/PROTOCOL.md 6.11): compare with what
  // the receiver holds, or ask what a transfer would do; the receiver writes nothing.
  // A check that finds an entry not identical (or, with check_extra, a name only the
  // receiver has) ends with kExitDifferent (lib/core/outcome.hpp).
  enum class Mode { transfer, check, dry_run };
  Mode mode = Mode::transfer;
  // A name in a directory of `paths` is extra unless the walk met it while it was inside
  // that directory: one of `files` sent under such a name counts as extra too.
  bool check_extra = false;
  std::string software;  // sent in HELLO; default "ferry-send VERSION"
  // The shared secret key (docs/SECURITY.md, lib/fs/key_file.hpp: load_key_file): the
  // peer must prove the same key before any file is offered; nullopt: no key, and a
  // keyed peer is refused. A listen transport on anything but loopback or a unix socket
  // needs a key (or transport.insecure_no_key). Errc::authentication when the keys differ
  // or only one side has one: final, never retried.
  std::optional<protocol::AuthKey> key{};
  // Every event, on the loop's thread, in order; must not throw and must not destroy
  // the Sender. Empty: no events.
  std::function<void(const Event&)> on_event;
};

class Sender {
 public:
  explicit Sender(SenderOptions options);
  // Safe at any time. start(loop) mode: on the loop thread; a transfer still running
  // is cancelled, and the loop must run again (uv_run) for libuv to free the handles.
  // start_thread() mode: cancels and joins. Not from inside on_event.
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Starts on the caller's loop; call once, from the loop's thread.
  void start(uv_loop_t* loop);
  // Starts on a new thread with its own loop. Errc::internal if that cannot be made.
  Result<void> start_thread();
  // Runs to the end on a loop of its own, in this thread.
  Outcome run();
  // start_thread(): waits for the end and joins the thread.
  Outcome wait();

  // Thread-safe, also before the start. Lends a connected descriptor (dup()ed; see
  // BorrowedFd). The transfer uses it if it is waiting for a connection (before the
  // start: as its first one); otherwise it is released at once.
  void add_connection(BorrowedFd fd);
  // Thread-safe, also before the start. Ends the transfer: Errc::connection
  // "cancelled"; partial files stay on the receiver for a later resume. A connect in
  // progress is abandoned at once.
  void cancel();

  // The outcome once the transfer ended (session_end was emitted), else nullopt.
  // Loop thread, or after wait()/run().
  std::optional<Outcome> outcome() const;

 private:
  std::unique_ptr<EngineHost> host_;
};

}  // namespace ferry
