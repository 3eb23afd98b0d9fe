// A deterministic in-memory link simulator: a real SenderSession joined to a real
// ReceiverSession through two simulated unidirectional byte pipes (after ngtcp2's
// sim.h), with virtual time, an in-memory source and an in-memory destination that
// keeps lib/file_sink's semantics (a partial kept across connections, resume from its
// verified length, discard, commit), and injected faults.
//
//   SimCase c;
//   c.files = {{"a.bin", random_bytes(7, 300'000)}};
//   c.link.faults = {{FaultKind::cut, Dir::to_receiver, 100'000}};
//   SimResult r = run_case(c);
//   EXPECT_TRUE(check_result(c, r).empty()) << r.summary();
//
// Everything is driven by one seeded generator (LinkConfig::seed): the same case gives
// the same run, so a failing sweep seed is replayed exactly (random_case(seed)).
//
// Faults strike at byte offsets of a direction's stream, counted over the whole case
// (every connection), and each fires once:
//   corrupt     flip one random bit of the byte at `at`
//   cut         both directions stop at once (queued bytes lost); both ends see the
//               connection close; the sender redials after reconnect_delay
//   truncate    `dir` delivers only the bytes before `at`, the other direction
//               delivers what it had queued, then the connection closes
//   black_hole  from `at`, `dir` silently drops everything while the connection stays
//               open (until it closes: the sender's stall timeout must end it)
//   stall       from `at`, `dir` delivers nothing for `amount` ticks, then resumes
//   trickle     from `at`, `dir` delivers `amount` bytes 1..7 bytes per step
// Two faults aim at one DATA frame instead of a stream offset (`dir` is to_receiver):
//   corrupt_block   flip one bit of the block bytes of the `amount`-th (from 0) DATA
//                   frame that carries the block at file offset `at` (any file)
//   corrupt_prefix  the same, in its 16-byte prefix (file id, offset, prefix check)
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lib/core/events.hpp"
#include "protocol/result.hpp"

namespace ferry::sim {

using Tick = std::chrono::milliseconds;  // virtual time unit; the pipes move once per tick

enum class Dir { to_receiver, to_sender };
enum class FaultKind { corrupt, cut, truncate, black_hole, stall, trickle, corrupt_block, corrupt_prefix };

const char* fault_kind_name(FaultKind k);

struct Fault {
  FaultKind kind = FaultKind::corrupt;
  Dir dir = Dir::to_receiver;
  std::uint64_t at = 0;      // byte offset in `dir`'s stream, over the whole case
  std::uint64_t amount = 0;  // stall: ticks; trickle: bytes; unused otherwise
};

struct LinkConfig {
  std::uint64_t seed = 1;
  Tick delay{2};                    // one-way latency
  std::uint64_t rate = 256 * 1024;  // bytes per tick, each direction
  std::vector<Fault> faults;
};

struct SimFile {
  std::string path;               // wire path
  std::vector<std::byte> data;    // contents (empty for a directory)
  std::int64_t mtime_ns = 1'700'000'000'000'000'000;
  bool directory = false;
  std::string link_target{};  // version 4: non-empty for a symlink (sent as with --links)
};

// The destination before the case starts: a partial with its journal, or a file
// already under its final name.
struct PresetPartial {
  std::string path;
  std::vector<std::byte> bytes;  // on disk
  std::string identity;          // as the source_identity() of the offer it was written for
  std::uint64_t size = 0;
  std::optional<std::uint64_t> verified;  // the journal's verified length; nullopt: all of `bytes`
  std::size_t block_size = 0;             // the journal's block size; 0: the case's chunk_size
  std::vector<std::uint64_t> held_blocks; // offsets of blocks above `verified` the journal lists
};
struct PresetFinal {
  std::string path;
  std::vector<std::byte> bytes;
  std::int64_t mtime_ns = 0;
};

// A local failure of the destination: writes to `path` fail (ENOSPC) once the
// partial would grow past `at`; opens of `path` fail when `at` is 0.
struct DestFailure {
  std::string path;
  std::uint64_t at = 0;
};

struct SimCase {
  std::string name;
  std::vector<SimFile> files;
  std::size_t chunk_size = 16 * 1024;
  std::uint64_t window = 64 * 1024;
  unsigned max_file_attempts = 3;
  unsigned max_reads_in_flight = 4;
  Tick stall_timeout{2000};
  Tick reconnect_delay{50};
  Tick io_latency{2};  // file reads, hashes, opens and commits complete after 0..io_latency
  Tick open_latency{0};  // added to every OpenFile (the receiver re-hashing a large partial)
  LinkConfig link;
  std::vector<PresetPartial> partials;
  std::vector<PresetFinal> finals;
  std::vector<DestFailure> dest_failures;
  unsigned max_reconnects = 50;
  std::uint64_t max_steps = 3'000'000;
  bool trace = false;  // record both sessions' events and the connection changes in SimResult::trace
};

struct SimResult {
  bool finished = false;         // the sender session reached done or failed
  std::optional<Error> failure;  // the sender's outcome error, or why the simulator gave up
  bool gave_up = false;          // a bound was hit (reconnects, steps) before the sender finished
  bool deadlock = false;         // nothing pending, nothing scheduled, sender not finished
  Totals totals;                 // the sender's
  unsigned reconnects = 0;
  std::uint64_t steps = 0;
  Tick elapsed{0};
  std::uint64_t faults_fired = 0;
  std::map<std::string, std::vector<std::byte>> finals;  // destination files under final names
  std::set<std::string> committed;                       // paths committed during the run
  std::set<std::string> directories;
  std::map<std::string, std::string> links;  // symlinks made: path -> target
  std::vector<std::string> partials_left;
  std::vector<std::string> invariant_violations;  // window exceeded, bad action order, ...
  std::vector<std::string> trace;                 // with SimCase::trace
  std::size_t read_pool_high_water = 0;           // most read buffers out at once
  std::size_t entries_high_water = 0;             // most entries the sender held at once
  std::uint64_t writes_out_of_order = 0;          // write completions below an earlier one
  bool ok() const { return finished && !failure; }
  std::string summary() const;
};

// Runs one case to the end (the sender finished, or a bound was hit).
SimResult run_case(const SimCase& c);

// The acceptance rule, as a list of problems (empty: fine). A run must end EITHER with
// the sender's outcome ok, every entry delivered and byte-identical, and no partial
// left; OR with a clean failure (an error with a reason, no deadlock) and no file
// under a final name whose bytes differ from its source. Invariant violations are
// always problems. With `check_resend_bound`: payload bytes sent <= total size +
// (reconnects + rewinds) * (window + chunk).
std::vector<std::string> check_result(const SimCase& c, const SimResult& r, bool check_resend_bound = true);

// A random but reproducible case for the sweep: 0..3 entries of 0 B .. 3 MiB
// (including chunk-1, chunk, chunk+1), chunk 4K..64K, window 16K..256K, a random mix
// of faults (at most `max_faults`), sometimes a destination that already holds a
// partial or a final file.
SimCase random_case(std::uint64_t seed, unsigned max_faults = 4);

// Deterministic pseudo-random contents.
std::vector<std::byte> random_bytes(std::uint64_t seed, std::size_t n);

// One line naming files, sizes, settings and faults.
std::string describe(const SimCase& c);

}  // namespace ferry::sim
