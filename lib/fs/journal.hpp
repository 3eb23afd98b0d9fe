// Journal: what a partial file holds, so that a later process can resume it.
//
// Stored beside the partial as JSON (docs/PROTOCOL.md section 7, format 2), replaced
// atomically (write a temp file created exclusively, fsync unless durability was given up, rename). It
// records the source identity, the OFFER's block size, the contiguous written point
// `verified` (a multiple of block_size, or the size), the block digest
// (protocol::block_digest, seeded with the block's offset) of every block below it,
// and the blocks written above it ("held", out of order, at most kMaxHeldBlocks).
// It never claims more than was written: blocks are added only after their bytes were
// written, and a resume re-checks every block against the file anyway.
//
// Format 1 journals (one XXH3-64 per 1 MiB block plus a tail) are refused as invalid
// ("format 1 from an older ferry"): the partial then starts over.
//
//   Journal j{...};
//   auto saved = j.save(dirfd, ".a.ferry-journal");
//   auto loaded = Journal::load(dirfd, ".a.ferry-journal");   // nullopt if absent
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/result.hpp"

namespace ferry {

inline constexpr std::uint64_t kJournalFormat = 2;
// Most blocks recorded above the contiguous point: the receiver's bound (protocol/frame.hpp).
using protocol::kMaxHeldBlocks;

struct Journal {
  struct Held {
    std::uint64_t offset = 0;  // a multiple of block_size, above `verified`
    std::uint64_t digest = 0;  // block_digest(bytes, offset)
    friend bool operator==(const Held&, const Held&) = default;
  };
  std::string path;             // wire path
  std::string identity;         // source identity from the OFFER
  std::uint64_t size = 0;       // offered size
  std::uint64_t block_size = 0; // the OFFER's block size (kMinChunkSize..kMaxChunkSize)
  std::uint64_t verified = 0;   // contiguous written point
  std::vector<std::uint64_t> blocks;  // block digest of each block below `verified`, in order
  std::vector<Held> held;             // blocks written above `verified`, by increasing offset

  std::string to_json() const;
  // Errc::local_io "invalid journal: WHY" when the text is not a valid format 2
  // journal (it is then ignored and the partial starts over).
  static Result<Journal> from_json(const std::string& text);

  // Atomic replace of `name` in directory `dirfd`; `durable` = fsync the temp file
  // before the rename (false: durability against power loss given up). Errc::local_io
  // on failure (the old journal is left as it was).
  Result<void> save(int dirfd, const std::string& name, bool durable = true) const;
  // nullopt when absent; an Error when unreadable, invalid, or untrusted (not a regular
  // file with one link owned by the receiver's user: lib/fs/owned_file.hpp; never
  // opened when it is a FIFO, never followed when a symlink).
  static Result<std::optional<Journal>> load(int dirfd, const std::string& name);
  // Removes the journal `name` and the temporary a save of it uses, if there (best
  // effort: a journal that stays is checked against its partial when loaded).
  static void remove(int dirfd, const std::string& name);
};

}  // namespace ferry
