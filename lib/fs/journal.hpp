// Journal: what a partial file holds, so that a later process can resume it.
//
// Stored beside the partial as JSON (docs/PROTOCOL.md section 7), replaced atomically
// (write a temp file, fsync, rename). It records the source identity, the verified
// offset and the XXH3-64 of every kJournalBlock-sized block below it (plus the tail
// block). It never claims more than was written: blocks are added only after their
// bytes were written, and a resume re-checks every block against the file anyway.
//
//   Journal j{...};
//   auto saved = j.save(dirfd, ".a.ferry-journal");
//   auto loaded = Journal::load(dirfd, ".a.ferry-journal");   // nullopt if absent
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/result.hpp"

namespace ferry {

inline constexpr std::uint64_t kJournalBlock = 1024 * 1024;

struct Journal {
  std::string path;       // wire path
  std::string identity;   // source identity from the OFFER
  std::uint64_t size = 0; // offered size
  std::uint64_t verified = 0;
  std::vector<std::uint64_t> blocks;  // XXH3-64 of each whole block below `verified`
  std::optional<std::uint64_t> tail;  // XXH3-64 of [blocks*kJournalBlock, verified)

  std::string to_json() const;
  // Errc::local_io when the text is not a valid journal (it is then ignored).
  static Result<Journal> from_json(const std::string& text);

  // Atomic replace of `name` in directory `dirfd`. Errc::local_io on failure.
  Result<void> save(int dirfd, const std::string& name) const;
  // nullopt when absent; an Error when unreadable or invalid.
  static Result<std::optional<Journal>> load(int dirfd, const std::string& name);
};

}  // namespace ferry
