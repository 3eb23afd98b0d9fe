// The one directory walker: lists a directory tree depth first, never through a
// symlink, and lets a visitor decide per entry what to do with it.
//
// Each directory's entries are visited in turn (sorted by name, or as readdir returns
// them); an entry whose visit answers `descend` is opened with openat(O_DIRECTORY |
// O_NOFOLLOW) relative to its parent and walked before the next entry. The visitor
// classifies entries (DirEntry::lstat, or d_type where that is enough), chooses what
// to report and what to skip, and sees every directory that could not be opened or
// read. The walker itself reports nothing and keeps at most one stream per level open.
//
//   struct Files : DirVisitor {
//     std::vector<std::string> found;
//     WalkStep visit(const DirEntry& e) override {
//       struct stat st{};
//       if (e.lstat(st) != 0) return WalkStep::next;  // vanished: skip it
//       if (S_ISREG(st.st_mode)) found.push_back(e.rel);
//       return S_ISDIR(st.st_mode) ? WalkStep::descend : WalkStep::next;
//     }
//   } files;
//   UniqueDir root = open_dir_stream(open_dir_fd(AT_FDCWD, "spool", Symlinks::follow));
//   if (root && walk_dir(root, files, {.skip_hidden = true}) != 0) warn("spool: readdir failed");
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <limits>
#include <string>

#include "lib/fs/fd_io.hpp"

namespace ferry {

struct DirWalkOptions {
  bool skip_hidden = false;  // names starting with '.' are not listed ("." and ".." never are)
  bool sorted = true;        // each directory's names in byte order; else readdir order, unbuffered
  // Names listed over the whole walk. When one more is found, that directory's listing
  // stops there, no directory is entered from then on (DirEntry::may_descend), and
  // DirVisitor::out_of_names() is told once its entries read were visited.
  std::size_t max_names = std::numeric_limits<std::size_t>::max();
};

// One entry of a directory being walked; valid during the visitor call only.
struct DirEntry {
  int dir_fd = -1;                  // the directory that holds it, open during the call
  std::string name;                 // its name in that directory
  std::string rel;                  // its path below the walk's root, '/'-separated
  unsigned depth = 1;               // 1 for the root's own entries, 2 below them, ...
  unsigned char type = DT_UNKNOWN;  // readdir's d_type: DT_DIR, DT_REG, ... or DT_UNKNOWN
  bool may_descend = true;          // false once the name budget is spent

  // fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW): 0, or the errno of the failure.
  int lstat(struct stat& st) const;
};

enum class WalkStep {
  next,     // go on with the next entry
  descend,  // walk this directory now, then go on (ignored when !may_descend)
  stop,     // visit nothing more (listings already read still report their errors)
};

// The call that failed on a directory the walk descended into.
enum class DirOp { open, opendir, readdir };
const char* dir_op_name(DirOp op);  // "open", "opendir", "readdir"

class DirVisitor {
 public:
  virtual ~DirVisitor() = default;
  // An entry of a directory being listed: what the walk does next.
  virtual WalkStep visit(const DirEntry& entry) = 0;
  // `dir`, which visit() descended into, is open as `fd` and about to be listed;
  // false leaves it unlisted (e.g. a directory excluded by its identity).
  virtual bool entering(const DirEntry& dir, int fd);
  // `dir` could not be opened, or reading it failed with `err` (the entries read
  // before a readdir error were visited).
  virtual void failed(const DirEntry& dir, DirOp op, int err);
  // The name budget ran out while listing `dir_rel` ("" for the root).
  virtual void out_of_names(const std::string& dir_rel);
};

// Walks the directory open as `root`. Returns the errno of a failed readdir of the
// root itself (0 when none); sub-directories' problems go to DirVisitor::failed().
int walk_dir(const UniqueDir& root, DirVisitor& visitor, const DirWalkOptions& options = {});

}  // namespace ferry
