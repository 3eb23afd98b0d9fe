// SourceWalk: the sender's PATH arguments walked one entry at a time, in the order and
// by the rules of walk_sources() (lib/fs/source_tree.hpp, which drains it): base names,
// each directory's names sorted, a directory before its contents, empty directories
// included, -L and --links as documented there.
//
// It holds only the open directories' state: per directory being walked, its
// descriptor and its sorted names (bounded by that directory, not by the tree). With
// copy_links (-L) it also remembers each directory it listed (device and inode), so a
// followed link cannot loop; without -L only the open directories are compared (a
// bind mount of an ancestor cannot loop either). What is left out is reported through
// `notes` as it is met: `skipped` (could not be sent: the transfer is incomplete) or
// `ignored` (left out by rule).
//
//   auto walk = SourceWalk::open({"dir", "file.bin"}, false, false,
//                                [](WalkNote kind, std::string why) { warn(why); });
//   if (!walk) fail(walk.error());            // a PATH that does not exist: up front
//   while (auto e = walk->next()) offer(*e);
//
//   auto counts = count_sources(paths, false, false);           // the pass before
//   auto source = std::make_unique<WalkEntrySource>(std::move(*walk), files, *counts);
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lib/core/entry_source.hpp"
#include "lib/core/source_entry.hpp"
#include "lib/fs/fd_io.hpp"
#include "protocol/result.hpp"

namespace ferry {

enum class WalkNote {
  skipped,  // "PATH: why": could not be sent (unreadable, a name that is not UTF-8)
  ignored,  // "PATH: why": a symlink or special file left out by rule
};
using WalkNotes = std::function<void(WalkNote, std::string)>;

class SourceWalk {
 public:
  // Checks every PATH first: Errc::usage when one is missing, is a special file, has no
  // name to send it as, or shares its base name with another. Nothing is listed yet.
  static Result<SourceWalk> open(const std::vector<std::string>& paths, bool copy_links, bool links,
                                 WalkNotes notes = {});

  // The next entry; nullopt at the end. A directory that cannot be opened is still an
  // entry (a note says why its contents are missing).
  std::optional<SourceEntry> next();

  // Directories open now (the depth of the walk), for tests.
  std::size_t open_directories() const { return stack_.size(); }
  // Names held now, over every open directory, and the most ever held, for tests.
  std::size_t names_held() const;
  std::size_t peak_names_held() const { return peak_names_; }

 private:
  struct Root {
    std::string path;  // without trailing slashes
    std::string name;  // its base name: the wire path
  };
  // A directory being listed: its names (sorted), the next one to visit, its identity.
  struct Frame {
    UniqueDir dir;
    std::string local;  // "" for "/"
    std::string wire;
    std::vector<std::string> names;
    std::size_t at = 0;
    std::pair<dev_t, ino_t> id{};
  };
  // A directory entry just yielded, to be opened and listed at the next call.
  struct Descend {
    int parent_fd = -1;  // AT_FDCWD: `local` by its path, following a link
    std::string name;    // in parent_fd (Symlinks::refuse), or the local path
    std::string local;
    std::string wire;
    std::pair<dev_t, ino_t> id{};
  };

  SourceWalk(std::vector<Root> roots, bool copy_links, bool links, WalkNotes notes);
  void note(WalkNote kind, std::string why) const;
  // The entry at `local` (lstat `st`) sent as `wire`, or nothing (a note says why);
  // a directory is also remembered to be listed next.
  std::optional<SourceEntry> consider(int parent_fd, const std::string& name, const std::string& local,
                                      const std::string& wire, const struct stat& st);
  std::optional<SourceEntry> follow_link(const std::string& local, const std::string& wire);
  std::optional<SourceEntry> link_entry(const std::string& local, const std::string& wire, const struct stat& st);
  std::optional<SourceEntry> directory_entry(const std::string& local, const std::string& wire,
                                             const struct stat& st, Descend where);
  std::optional<SourceEntry> next_root();
  void open_pending();
  bool seen(std::pair<dev_t, ino_t> id) const;

  std::vector<Root> roots_;
  std::size_t next_root_ = 0;
  bool copy_links_ = false;
  bool links_ = false;
  WalkNotes notes_;
  std::vector<Frame> stack_;
  std::optional<Descend> pending_;
  std::set<std::pair<dev_t, ino_t>> dirs_listed_;  // -L only: every directory listed
  std::size_t peak_names_ = 0;
};

// An EntrySource over a walk of `paths` followed by `files` (FileToSend-style entries
// made by the caller), with the figures of a count made before: see count_sources().
class WalkEntrySource final : public EntrySource {
 public:
  WalkEntrySource(SourceWalk walk, std::vector<SourceEntry> files, EntryCounts counted);
  std::optional<SourceEntry> next() override;
  EntryCounts expected() const override { return counted_; }

 private:
  SourceWalk walk_;
  std::vector<SourceEntry> files_;
  std::size_t next_file_ = 0;
  bool walk_ended_ = false;
  EntryCounts counted_;
};

// A counting pass over `paths` (the walk, with nothing kept per entry and no notes):
// the entries and the sum of their sizes; `each` (if set) sees every entry on the way.
Result<EntryCounts> count_sources(const std::vector<std::string>& paths, bool copy_links, bool links,
                                  const std::function<void(const SourceEntry&)>& each = {});

}  // namespace ferry
