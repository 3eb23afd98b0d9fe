// Events: what a session reports (it never prints), and the sinks that render them.
//
// Sessions append Event values; the app hands each to one EventSink:
//   JsonSink   one JSON object per line (NDJSON) on a stream; schema in docs/EVENTS.md
//   HumanSink  a progress line on a terminal, one-line summaries and errors on stderr
//
//   auto sink = make_event_sink(opts.json, opts.quiet, "send");
//   sink->emit(Event{EventType::file_verified, ...});
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
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

struct Event {
  EventType type = EventType::warning;
  std::string path;         // wire path of the file concerned, if any
  std::uint64_t size = 0;   // file size
  std::uint64_t offset = 0; // bytes acknowledged / resume offset
  std::string detail;       // reason, note, role or outcome
  Totals totals;            // session_end only
  int exit_code = 0;        // session_end only
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const Event& e) = 0;
};

// JSON lines on `out` (not owned). Progress events are limited to 4 per second
// (per sink, i.e. per process); the last one of a file is always written.
std::unique_ptr<EventSink> make_json_sink(std::FILE* out);
// Human output on stderr: a live progress line when stderr is a terminal (and not
// quiet), one line per finished file when verbose, failures and the summary always
// unless quiet (failures are printed even when quiet).
std::unique_ptr<EventSink> make_human_sink(bool quiet, bool verbose, std::string role);

}  // namespace ferry
