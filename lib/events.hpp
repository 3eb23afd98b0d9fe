// Events: what a session reports (it never prints), and the sinks that render them.
//
// Sessions append Event values; the app hands each to one EventSink:
//   JsonSink   one JSON object per line (NDJSON) on a stream; schema in docs/EVENTS.md
//   HumanSink  an rsync-like live line on a terminal (the current file and the whole
//              transfer), one-line notes, failures and the summary on stderr
//
//   auto sink = opts.json ? make_json_sink(stdout) : make_human_sink(opts.quiet, opts.verbose, "send");
//   sink->emit(Event{EventType::file_verified, ...});
//
// Tests render a HumanSink into any FILE* with a fixed width and clock:
//   auto sink = make_human_sink(HumanSinkOptions{.role = "send", .out = f, .live = true, .width = 60});
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace ferry {

using Clock = std::chrono::steady_clock;

enum class EventType {
  session_start,    // a connection's handshake completed (role, peer, session id)
  file_start,       // a file or directory was offered / accepted
  resume,           // a file continues from a non-zero offset (offset = where)
  progress,         // bytes acknowledged so far for the current file
  file_verified,    // whole-file digest matched; file is in place under its final name
  file_failed,      // a file was refused or failed verification for good (detail = why)
  file_skipped,     // a local entry was not sent (symlink, special file, unreadable)
  connection_lost,  // the connection ended (detail = why); the app may reconnect
  reconnect,        // a new connection is being set up to resume
  warning,          // something the user should know, not fatal (detail)
  session_end,      // the transfer ended; totals are filled in (detail = outcome)
  // ferry-send --watch (sender/spool.hpp) only:
  file_sent,        // a verified file was moved, removed or kept as --on-sent says (detail)
  transfer_end,     // one batch's transfer ended (totals, exit_code, detail as session_end)
};

const char* event_type_name(EventType t);

struct Totals {
  std::uint64_t files_verified = 0;
  std::uint64_t files_failed = 0;
  std::uint64_t files_skipped = 0;
  std::uint64_t bytes_payload = 0;    // DATA payload bytes sent or received (incl. re-sends)
  std::uint64_t bytes_resent = 0;     // payload bytes sent more than once
  std::uint64_t bytes_verified = 0;   // sum of sizes of verified files
  std::uint64_t chunks_rejected = 0;  // DATA chunks that failed their checksum
  std::uint64_t reconnects = 0;
  std::uint64_t stall_timeouts = 0;
  std::uint64_t write_retries = 0;    // transient ENOBUFS/EAGAIN write retries
};

// The whole transfer as one side sees it. A total of 0 means unknown (a receiver
// whose sender did not say; see docs/EVENTS.md for "0 bytes of known files").
// Sender: totals from its entry list; done = entries finished (verified, failed or
// refused) and the sizes of those plus the acknowledged part of the current file,
// each byte counted once (a re-send does not count again). Receiver: the sender's
// HELLO figures plus what it finished on this connection and has of the current file.
// Invariant: done <= total when the total is known.
struct TransferProgress {
  std::uint64_t files_done = 0;
  std::uint64_t files_total = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
};

// Positional aggregate initialisation (`Event{type, path, size, offset, detail,
// totals, exit_code}`) is used by callers: new members go last, with an initialiser.
struct Event {
  EventType type = EventType::warning;
  std::string path;         // wire path of the file concerned, if any
  std::uint64_t size = 0;   // file size
  std::uint64_t offset = 0; // bytes acknowledged / resume offset (0 for directories)
  std::string detail;       // reason, note, role or outcome
  Totals totals;            // session_end only
  int exit_code = 0;        // session_end only
  // file_start, resume, progress, file_verified, file_failed (filled by the sessions).
  TransferProgress transfer{};
};

// Whether `transfer` is meaningful for events of type t (and written to JSON).
bool carries_transfer(EventType t);

// Hands `e` to `cb` if set; an exception it throws is swallowed (the callbacks' contract
// says they must not throw, and none may cross a libuv callback).
void deliver_event(const std::function<void(const Event&)>& cb, const Event& e);

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const Event& e) = 0;
};

// JSON lines on `out` (not owned). Progress events are limited to 4 per second
// (per sink, i.e. per process); the last one of a file is always written.
std::unique_ptr<EventSink> make_json_sink(std::FILE* out);

struct HumanSinkOptions {
  bool quiet = false;    // errors only: failures (and main's error line); no live line, no summary
  bool verbose = false;  // also "connected" and one line per finished file (size, the file's rate)
  std::string role = "send";  // lines start with "ferry-ROLE: "
  std::FILE* out = stderr;    // not owned
  // Draw the live line (redrawn in place with \r, at most 4 times a second, at most
  // `width` - 1 columns). nullopt: when `out` is a terminal. Never when quiet.
  std::optional<bool> live{};
  // Terminal width in columns; 0: ask `out` (TIOCGWINSZ) at every redraw, 80 when it
  // cannot say.
  unsigned width = 0;
  // The clock for the redraw limit, rates and ETA; empty: Clock::now.
  std::function<Clock::time_point()> clock{};
};

// Human output: the live line on a terminal, notes (resume, warnings, connection
// lost, reconnect) unless quiet, one line per finished file when verbose, failures
// always, the summary at session_end unless quiet.
std::unique_ptr<EventSink> make_human_sink(HumanSinkOptions options);
// Same, on stderr, live when stderr is a terminal.
std::unique_ptr<EventSink> make_human_sink(bool quiet, bool verbose, std::string role);

}  // namespace ferry
