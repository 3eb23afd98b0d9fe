// Walks the sender's PATH arguments into the ordered list of entries to send.
//
// A file PATH is sent as its base name; a directory PATH as its base name followed by
// everything below it (recursively, sorted by name, empty directories included), so
// the relative structure is kept. Symlinks and special files (devices, FIFOs,
// sockets) are never followed: they are reported in `skipped` and not sent.
//
//   auto tree = walk_sources({"file.bin", "dir"});
//   if (!tree) fail(tree.error());       // a PATH that does not exist
//   for (auto& s : tree->skipped) warn(s);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry {

struct SourceEntry {
  std::string wire_path;   // relative path sent in OFFER
  std::string local_path;  // where to read it here
  protocol::EntryKind kind = protocol::EntryKind::file;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint32_t mode = 0644;
  std::string identity;    // size and mtime: a change restarts a resume from 0
  // Also compared before COMMIT (not part of the identity): a rewrite that restores
  // size and mtime still changes ctime; a replaced file has another inode.
  std::int64_t ctime_ns = 0;
  std::uint64_t inode = 0;
};

struct SourceTree {
  std::vector<SourceEntry> entries;
  std::vector<std::string> skipped;  // "PATH: why", one per entry not sent
};

// Errc::usage when a PATH is missing or is itself a symlink or special file;
// Errc::local_io when a directory cannot be read.
Result<SourceTree> walk_sources(const std::vector<std::string>& paths);

// The entry as its file is now (size, mtime, mode, identity). Errc::local_io when it
// is gone or no longer a regular file.
Result<SourceEntry> restat_source(const SourceEntry& entry);

// The identity string for a size and mtime, as put in OFFER.
std::string source_identity(std::uint64_t size, std::int64_t mtime_ns);

}  // namespace ferry
