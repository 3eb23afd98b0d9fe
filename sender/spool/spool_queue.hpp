// SpoolQueue: which files of a watched spool directory are ready to send, as a
// sans-I/O state machine (no clock, file or socket inside).
//
// The driver feeds it complete listings of the spool (lib/spool_scan) and change hints
// (lib/dir_watch), each with the time they stand for; it takes batches of ready files,
// runs one transfer per batch and reports each file's outcome, and it rescans at
// next_deadline(). A file is ready when it is complete:
//   - moved in by rename (on_moved_in): ready as soon as a listing shows it, or
//   - settled: a listing taken at least `settle` after the file was first seen with
//     its signature, or last hinted as changed, still shows that signature.
// A file's signature is (size, mtime_ns, ctime_ns, inode) (lib/source_tree
// same_version). The queue remembers what was verified, so a file left in place (the
// `keep` policy, or a move that failed) is not sent again until its signature changes.
// A file that failed is retried after a per-file exponential backoff; a change of its
// signature clears that backoff.
//
//   SpoolQueue q(SpoolConfig{});
//   q.on_listing(scan->files, scan_started_at);         // after every scan
//   auto batch = q.take_batch(now);                    // after every listing and batch end
//   if (!batch.empty()) start_transfer(batch);         // one transfer at a time
//   ... q.on_file_done(rel, verified, now) per file; q.on_batch_ended(now) at the end
//   if (auto t = q.next_deadline(now)) arm_rescan_timer(*t);
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/core/events.hpp"
#include "lib/core/source_entry.hpp"

namespace ferry::sender {

struct SpoolConfig {
  std::chrono::milliseconds settle{1000};       // unchanged this long before it is sent
  std::chrono::milliseconds retry_first{1000};  // wait after a file's first failure
  std::chrono::milliseconds retry_cap{60000};   // doubling stops here
  std::size_t max_batch_files = 1000;           // files per take_batch
  std::size_t max_hints = 10000;                // hints kept for files no listing showed yet
};

enum class SpoolFileState {
  settling,    // not yet confirmed complete (settle time or a confirming listing pending)
  ready,       // take_batch would return it now
  in_flight,   // in the open batch, no on_file_done yet
  retry_wait,  // failed with this signature; waits for its retry time
  sent,        // verified with the signature it has now: not sent again until it changes
};

const char* spool_file_state_name(SpoolFileState s);

struct SpoolFileInfo {
  SpoolFileState state = SpoolFileState::settling;
  unsigned failures = 0;                      // consecutive failures of this signature
  std::optional<Clock::time_point> retry_at;  // when failures > 0
};

class SpoolQueue {
 public:
  explicit SpoolQueue(SpoolConfig config = {});

  // A complete listing of the spool (regular files, wire_path = path relative to the
  // spool), in any order. `scanned_at` is when the scan STARTED: the listing proves
  // nothing about earlier times. A new file, or one whose signature changed, starts
  // settling at `scanned_at` (or at a later on_changed). A known file with the same
  // signature is confirmed at `scanned_at`. Files not in the listing are forgotten
  // (with what was sent and failed), except those in flight: they are forgotten when
  // the batch ends unless a later listing shows them again.
  void on_listing(const std::vector<SourceEntry>& files, Clock::time_point scanned_at);

  // `rel` was renamed into the spool at `now` (complete). The first listing that
  // started at or after `now` and shows the file makes it ready at once, with the
  // signature it shows, unless on_changed(rel) is called in between. A hint about a
  // file no listing has shown yet is kept until the next listing (at most max_hints
  // such hints; past that they are dropped and the file simply settles).
  void on_moved_in(const std::string& rel, Clock::time_point now);

  // `rel` was written to or its attributes changed at `now`: its settle time starts
  // again at `now` and a pending or consumed moved-in no longer counts.
  void on_changed(const std::string& rel, Clock::time_point now);

  // The files ready now, sorted by wire path, at most max_batch_files, as last listed.
  // A non-empty result opens a batch and marks its files in flight; while a batch is
  // open take_batch returns nothing (one transfer at a time).
  std::vector<SourceEntry> take_batch(Clock::time_point now);

  // The outcome of a file of the open batch (other calls are ignored). verified: its
  // signature as taken is remembered as sent. Not verified (failed verification,
  // refused, unreadable): it stays queued and waits retry_first, doubling with each
  // further failure up to retry_cap; no wait when it changed meanwhile.
  void on_file_done(const std::string& rel, bool verified, Clock::time_point now);

  // The open batch's transfer ended, any way. Its files without on_file_done are
  // ready again with no penalty (connection backoff is the driver's); files that
  // vanished meanwhile are forgotten. Ignored when no batch is open.
  void on_batch_ended(Clock::time_point now);

  // The earliest time at which a rescan followed by take_batch could give a file that
  // is not ready now: a settle time ending (a rescan is needed then to confirm it),
  // a retry wait ending, or a hint no listing has covered yet (a moved-in, a change
  // of an unknown or sent file: then a time <= now, rescan at once). nullopt when
  // nothing waits. Files ready now do not count: call take_batch after every listing
  // and every batch end instead. Each rescan at this time either makes progress or
  // moves the deadline later, as long as the listing's scanned_at is not before it.
  std::optional<Clock::time_point> next_deadline(Clock::time_point now) const;

  bool batch_open() const { return batch_open_; }
  std::size_t known_count() const { return files_.size(); }
  // Known files waiting to be sent (settling, ready or retry_wait).
  std::size_t pending_count(Clock::time_point now) const;
  std::size_t in_flight_count() const;
  std::size_t ready_count(Clock::time_point now) const;
  // nullopt for a file the queue does not know.
  std::optional<SpoolFileInfo> file_info(const std::string& rel, Clock::time_point now) const;

 private:
  struct Hint {
    std::optional<Clock::time_point> moved_in_at;
    std::optional<Clock::time_point> changed_at;
  };
  struct File {
    SourceEntry entry;                                 // as last listed
    Clock::time_point stable_since;                    // settle clock start for entry's signature
    Clock::time_point confirmed_at;                    // latest listing start showing that signature
    bool instant = false;                              // moved in and listed: no settle needed
    std::optional<Clock::time_point> moved_in_at;      // moved-in hint not yet listed
    std::optional<Clock::time_point> change_unlisted;  // first on_changed no listing followed yet
    std::optional<SourceEntry> flight;                 // the entry taken in the open batch, until done
    bool in_batch = false;
    bool listed = true;               // false: missing from the latest listing
    std::optional<SourceEntry> sent;  // the signature verified last
    unsigned failures = 0;
    std::optional<Clock::time_point> retry_at;
  };

  SpoolFileState state_of(const File& f, Clock::time_point now) const;
  bool settled(const File& f) const;
  void apply_hint(File& f, const Hint& h, Clock::time_point scanned_at);
  Clock::duration retry_delay(unsigned failures) const;

  SpoolConfig config_;
  std::map<std::string, File> files_;  // by wire path
  std::map<std::string, Hint> hints_;  // about files not listed yet
  bool batch_open_ = false;
};

}  // namespace ferry::sender
