// SourceEntry: one file, directory or symlink the sender offers, as the sender session sees it
// (a plain value; lib/fs/source_tree.hpp makes them from the file system).
//
//   SourceEntry e{.wire_path = "dir/a.bin", .local_path = "/src/dir/a.bin", .size = 5};
//   e.identity = source_identity(e.size, e.mtime_ns);
#pragma once

#include <cstdint>
#include <string>

#include "protocol/messages.hpp"

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
  // kind == symlink (--links): the link's text, as readlink returned it.
  std::string link_target{};
};

// The identity string for a size and mtime, as put in OFFER.
std::string source_identity(std::uint64_t size, std::int64_t mtime_ns);

// True when `a` and `b` describe the same version of a file: equal size, mtime_ns,
// ctime_ns and inode (the signature a change of content or a replacement alters).
bool same_version(const SourceEntry& a, const SourceEntry& b);

}  // namespace ferry
