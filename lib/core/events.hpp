// Events: what a session or an engine reports (it never prints), as plain values.
// One sink renders them for a person or a program (lib/ui/event_sinks.hpp); the
// embedding API hands them to the caller's callback (sender/sender.hpp).
//
//   std::vector<Event> out;
//   out.push_back(Event{EventType::file_verified, "dir/a.bin", size, size, {}, {}, 0});
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
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
  // ferry-send --watch (sender/spool/spool.hpp) only:
  file_sent,        // a verified file was moved, removed or kept as --on-sent says (detail)
  transfer_end,     // one batch's transfer ended (totals, exit_code, detail as session_end)
  listening,        // a listener is open (detail = its address, e.g. tcp:127.0.0.1:5000)
  carrier_message,  // a line the -e command (e.g. ssh and the remote ferry-recv) wrote to stderr (detail)
  // ferry-send --check / --dry-run (protocol version 4; docs/EVENTS.md):
  entry_checked,    // detail = identical, different, missing, partial or extra; reason = size, content, kind
  entry_planned,    // detail = send, resume (offset = from where), complete, create, exists; offset
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
  // ferry-send --check (`checked` set): entries by what the receiver holds; extra =
  // names only the receiver has (--check-extra). Failed entries (refused, unreadable
  // here) count in files_failed.
  bool checked = false;
  std::uint64_t check_identical = 0;
  std::uint64_t check_different = 0;
  std::uint64_t check_missing = 0;
  std::uint64_t check_partial = 0;
  std::uint64_t check_extra = 0;
  // ferry-send --dry-run (`planned` set): files a transfer would send whole or resume,
  // the bytes that would move, files already complete, directories it would create.
  bool planned = false;
  std::uint64_t plan_send = 0;
  std::uint64_t plan_resume = 0;
  std::uint64_t plan_bytes = 0;
  std::uint64_t plan_complete = 0;
  std::uint64_t plan_dirs = 0;
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
  // session_end (and transfer_end) with exit_code != 0: the one-line reason.
  std::string error{};
  // entry_checked with detail "different": what differs (size, content or kind).
  std::string reason{};
};

// Whether `transfer` is meaningful for events of type t (and written to JSON).
bool carries_transfer(EventType t);

// Hands `e` to `cb` if set; an exception it throws is swallowed (the callbacks' contract
// says they must not throw, and none may cross a libuv callback).
void deliver_event(const std::function<void(const Event&)>& cb, const Event& e);

}  // namespace ferry
