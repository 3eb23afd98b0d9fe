// Walks the sender's PATH arguments into the ordered list of entries to send.
//
// A file PATH is sent as its base name; a directory PATH as its base name followed by
// everything below it (recursively, sorted by name, empty directories included), so
// the relative structure is kept. Symlinks and special files (devices, FIFOs,
// sockets) are not sent: they are listed in `ignored` (as rsync skips non-regular
// files). With copy_links (-L), a symlink is sent as what it points to: a file, or a
// directory and everything below it (a directory already listed is not listed again,
// so a link cannot loop); a dangling one is ignored. With links (--links) and without
// copy_links, a symlink (a PATH argument too) is an entry of kind symlink carrying its
// target text (never followed); -L wins when both are given, as in rsync. A target
// that is not UTF-8 or is longer than protocol::kMaxLinkTarget is listed in `skipped`.
//
//   auto tree = walk_sources({"file.bin", "dir"});
//   if (!tree) fail(tree.error());       // a PATH that does not exist
//   for (auto& s : tree->skipped) warn(s);
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lib/core/source_entry.hpp"
#include "protocol/result.hpp"

namespace ferry {

struct SourceTree {
  std::vector<SourceEntry> entries;
  // "PATH: why", one per entry that could not be sent (unreadable, a name that is
  // not UTF-8): the transfer is incomplete.
  std::vector<std::string> skipped;
  // "PATH: why", one per symlink or special file left out by rule: not an error.
  std::vector<std::string> ignored;
};

// Errc::usage when a PATH is missing or is itself a special file (a symlink PATH is
// ignored, or followed with copy_links). The whole list at once: it drains a SourceWalk
// (lib/fs/source_walk.hpp), which yields the same entries one at a time; ferry-send
// uses the walk, so that it never holds the whole list.
Result<SourceTree> walk_sources(const std::vector<std::string>& paths, bool copy_links = false, bool links = false);

// The entry as its file is now (size, mtime, mode, identity). Errc::local_io when it
// is gone or no longer a regular file.
Result<SourceEntry> restat_source(const SourceEntry& entry);

// One regular file at `local_path`, to be sent as `wire_path`. Errc::usage when the
// wire path breaks the rules (protocol/wire_path.hpp) or is not UTF-8, or the file is
// not a regular file (a symlink is not followed); Errc::local_io when it cannot be
// stat'ed.
Result<SourceEntry> source_file_entry(const std::string& local_path, const std::string& wire_path);

// Sets the fields of `e` that come from a stat of its file: mtime_ns, ctime_ns, inode,
// mode and, for a regular file, size and identity. Paths and kind are left alone.
void fill_from_stat(SourceEntry& e, const struct stat& st);

// What a file that is neither regular nor a directory is, for messages: "symlink",
// "FIFO", "socket", "device" or "special file".
const char* special_kind_name(mode_t mode);

// True when `name` is valid UTF-8: wire paths travel in JSON, which carries nothing
// else, so a name that is not would be mangled (and could collide with another).
bool is_valid_utf8(const std::string& name);

}  // namespace ferry
