// Read-only looks into DEST for the sessions of protocol version 4 that write nothing
// (docs/PROTOCOL.md 6.11): `ferry-send --check` compares what DEST holds with what is
// offered, `ferry-send --dry-run` asks what a transfer would do.
//
// Nothing here creates, writes, truncates, renames or removes anything, and no stale
// partial is cleaned up: every path is walked component by component with
// openat(O_NOFOLLOW) (a symlink is never followed), and a file is opened only
// O_RDONLY | O_NOFOLLOW | O_NONBLOCK after its lstat said it is a regular file (a FIFO
// or a device is never opened).
//
//   auto fin = inspect_final(*dest, offer, /*list_names=*/false);  // on the pool: hashes
//   auto plan = plan_open(*dest, offer);   // on the pool: re-reads a partial's blocks
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/fs/file_sink.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry {

// What DEST holds at an offered path.
struct FinalState {
  enum class Kind { missing, file, directory, other, symlink };
  Kind kind = Kind::missing;
  std::uint64_t size = 0;  // kind file: its size
  // Files: ferry's partial or journal for this name is there (a transfer in progress).
  bool partial = false;
  // A regular file of the offered size: its file digest with the offer's block size
  // (protocol::add_blocks), computed by reading it once.
  std::optional<protocol::FileDigest> digest{};
  // Directories, when asked: names of the regular files and directories directly in it
  // (ferry's temporary names left out), sorted, bounded by protocol::kMaxCheckNames and
  // protocol::kMaxCheckNameBytes; `truncated` when there were more.
  std::vector<std::string> names{};
  bool truncated = false;
  std::string target{};  // kind symlink: its text, read with readlinkat (never followed)
};

// What DEST holds at `offer.path`, read only (see the header comment). A parent that
// is missing, a symlink or not a directory counts as nothing there (missing).
// Errc::protocol for an unsafe path (a name reserved for ferry's own files),
// Errc::local_io when reading fails.
Result<FinalState> inspect_final(const DestDir& dest, const protocol::Offer& offer, bool list_names);

// What DestDir::make_directory / open_partial would report for `offer`, computed
// without writing: for a directory, `created` when it would be made; for a file, the
// resume offset and held blocks of a partial whose journal matches the offer (every
// block re-read and checked, as the open does), or the size for a final file of the
// offered size and mtime (complete: a transfer only re-verifies it), else 0 with the
// note a transfer would give (a stale or untrusted partial would be removed). The
// same errors as the real open: Errc::protocol for an unsafe path or block size,
// Errc::local_io for a directory in the way or a failed read.
struct PlannedOpen {
  PartialState state;
  bool created = false;
};
Result<PlannedOpen> plan_open(const DestDir& dest, const protocol::Offer& offer);

}  // namespace ferry
