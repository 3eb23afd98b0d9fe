#include "lib/fs/source_walk.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "lib/fs/source_tree.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

// An entry of `kind` for what lstat found at `local`, sent as `wire`.
SourceEntry stat_entry(const std::string& local, const std::string& wire, const struct stat& st,
                       protocol::EntryKind kind) {
  SourceEntry e;
  e.wire_path = wire;
  e.local_path = local;
  fill_from_stat(e, st);
  e.kind = kind;
  return e;
}

std::string without_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string base_name(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Every name of the directory open as `d` but "." and "..", sorted by byte order. A
// readdir error ends the list: the names read before it are sent.
std::vector<std::string> sorted_names(DIR* d) {
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* de = ::readdir(d);
    if (!de) break;
    const std::string_view name = de->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A PATH argument, checked: Errc::usage for what cannot be sent at all.
Result<void> check_path(const std::string& p, const std::string& name) {
  struct stat st{};
  if (::lstat(p.c_str(), &st) != 0) return make_error(Errc::usage, "lstat(" + p + ")", errno);
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
    return make_error(Errc::usage, p + " is a " + special_kind_name(st.st_mode) + "; only files and directories are sent");
  }
  if (name == "." || name == ".." || name == "/" || name.empty()) {
    return make_error(Errc::usage, "cannot name '" + p + "' on the receiver; give a named file or directory");
  }
  return {};
}

}  // namespace

Result<SourceWalk> SourceWalk::open(const std::vector<std::string>& paths, bool copy_links, bool links,
                                    WalkNotes notes) {
  std::vector<Root> roots;
  for (const auto& given : paths) {
    const std::string p = without_trailing_slashes(given);
    const std::string name = base_name(p);
    if (auto ok = check_path(p, name); !ok) return ok.error();
    // Two PATHs with one base name would overwrite each other.
    if (std::any_of(roots.begin(), roots.end(), [&](const Root& r) { return r.name == name; })) {
      return make_error(Errc::usage, "two PATHs would both be sent as '" + name + "' (" + p + ")");
    }
    roots.push_back(Root{p, name});
  }
  return SourceWalk(std::move(roots), copy_links, links, std::move(notes));
}

SourceWalk::SourceWalk(std::vector<Root> roots, bool copy_links, bool links, WalkNotes notes)
    : roots_(std::move(roots)), copy_links_(copy_links), links_(links), notes_(std::move(notes)) {}

void SourceWalk::note(WalkNote kind, std::string why) const {
  if (notes_) notes_(kind, std::move(why));
}

std::size_t SourceWalk::names_held() const {
  std::size_t n = 0;
  for (const auto& f : stack_) n += f.names.size();
  return n;
}

bool SourceWalk::seen(std::pair<dev_t, ino_t> id) const {
  if (copy_links_) return dirs_listed_.count(id) > 0;
  return std::any_of(stack_.begin(), stack_.end(), [&](const Frame& f) { return f.id == id; });
}

std::optional<SourceEntry> SourceWalk::next() {
  for (;;) {
    open_pending();
    if (stack_.empty()) {
      if (next_root_ == roots_.size()) return std::nullopt;
      if (auto e = next_root()) return e;
      continue;
    }
    Frame& top = stack_.back();
    if (top.at == top.names.size()) {
      stack_.pop_back();
      continue;
    }
    const std::string name = std::move(top.names[top.at++]);
    const std::string local = top.local + "/" + name;
    struct stat st{};
    if (::fstatat(::dirfd(top.dir.get()), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      note(WalkNote::skipped, local + ": lstat: " + std::strerror(errno));
      continue;
    }
    if (auto e = consider(::dirfd(top.dir.get()), name, local, top.wire + "/" + name, st)) return e;
  }
}

std::optional<SourceEntry> SourceWalk::next_root() {
  const Root& root = roots_[next_root_++];
  struct stat st{};
  if (::lstat(root.path.c_str(), &st) != 0) {  // gone since open(): as a vanished child
    note(WalkNote::skipped, root.path + ": lstat: " + std::strerror(errno));
    return std::nullopt;
  }
  if (S_ISLNK(st.st_mode) && copy_links_) return follow_link(root.path, root.name);
  // A symlink PATH without -L: sent as a link (--links) or ignored with a note.
  return consider(AT_FDCWD, root.path, root.path, root.name, st);
}

// Lists the directory yielded last, now that its entry is out.
void SourceWalk::open_pending() {
  if (!pending_) return;
  Descend d = std::move(*pending_);
  pending_.reset();
  const Symlinks how = d.parent_fd == AT_FDCWD ? Symlinks::follow : Symlinks::refuse;
  UniqueFd fd = open_dir_fd(d.parent_fd, d.name, how);
  UniqueDir dir = fd ? open_dir_stream(std::move(fd)) : UniqueDir();
  if (!dir) {  // errno: open's, or fdopendir's
    note(WalkNote::skipped, d.local + ": opendir: " + std::strerror(errno));
    return;
  }
  Frame f{std::move(dir), d.local == "/" ? "" : d.local, d.wire, {}, 0, d.id};
  f.names = sorted_names(f.dir.get());
  stack_.push_back(std::move(f));
  peak_names_ = std::max(peak_names_, names_held());
}

std::optional<SourceEntry> SourceWalk::consider(int parent_fd, const std::string& name, const std::string& local,
                                                const std::string& wire, const struct stat& st) {
  if (!is_valid_utf8(wire)) {
    note(WalkNote::skipped, local + ": name is not valid UTF-8, not sent");
    return std::nullopt;
  }
  if (S_ISLNK(st.st_mode) && copy_links_) return follow_link(local, wire);
  if (S_ISLNK(st.st_mode) && links_) return link_entry(local, wire, st);
  if (S_ISDIR(st.st_mode)) return directory_entry(local, wire, st, Descend{parent_fd, name, local, wire, {}});
  if (!S_ISREG(st.st_mode)) {
    note(WalkNote::ignored, local + ": " + special_kind_name(st.st_mode) + ", not sent");
    return std::nullopt;
  }
  return stat_entry(local, wire, st, protocol::EntryKind::file);
}

std::optional<SourceEntry> SourceWalk::directory_entry(const std::string& local, const std::string& wire,
                                                       const struct stat& st, Descend where) {
  where.id = {st.st_dev, st.st_ino};
  if (seen(where.id)) {
    // With -L: the same directory reached again through a link; without: a loop.
    note(WalkNote::ignored, local + ": directory already sent (through a symlink), not sent again");
    return std::nullopt;
  }
  if (copy_links_) dirs_listed_.insert(where.id);
  SourceEntry e = stat_entry(local, wire, st, protocol::EntryKind::directory);
  e.identity = "dir";
  pending_ = std::move(where);
  return e;
}

// -L: the entry a symlink at `local` points to, sent as `wire`: a regular file (read
// through its resolved path) or a directory (walked, unless it was already listed);
// a dangling link is ignored with a note.
std::optional<SourceEntry> SourceWalk::follow_link(const std::string& local, const std::string& wire) {
  if (!is_valid_utf8(wire)) {
    note(WalkNote::skipped, local + ": name is not valid UTF-8, not sent");
    return std::nullopt;
  }
  struct stat st{};
  char resolved[PATH_MAX];
  if (::stat(local.c_str(), &st) != 0 || ::realpath(local.c_str(), resolved) == nullptr) {
    note(WalkNote::ignored, local + ": symlink to nothing (" + std::strerror(errno) + "), not sent");
    return std::nullopt;
  }
  if (S_ISDIR(st.st_mode) && seen({st.st_dev, st.st_ino})) {
    note(WalkNote::ignored, local + ": symlink to a directory already sent (a loop?), not sent again");
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    note(WalkNote::ignored, local + ": symlink to a " + std::string(special_kind_name(st.st_mode)) + ", not sent");
    return std::nullopt;
  }
  const std::string path = resolved;
  if (S_ISDIR(st.st_mode)) return directory_entry(path, wire, st, Descend{AT_FDCWD, path, path, wire, {}});
  return consider(AT_FDCWD, path, path, wire, st);
}

// --links: the symlink at `local` (lstat `st`) as an entry of its own, carrying its
// target text; a target that cannot be read, is not UTF-8 or is too long is skipped.
std::optional<SourceEntry> SourceWalk::link_entry(const std::string& local, const std::string& wire,
                                                  const struct stat& st) {
  std::string target(protocol::kMaxLinkTarget + 1, '\0');
  const ssize_t n = ::readlink(local.c_str(), target.data(), target.size());
  std::string why;
  if (n < 0) {
    note(WalkNote::skipped, local + ": readlink: " + std::strerror(errno));
    return std::nullopt;
  }
  if (n == 0) why = "symlink with an empty target, not sent";
  if (static_cast<std::size_t>(n) > protocol::kMaxLinkTarget) {
    why = "symlink target longer than " + std::to_string(protocol::kMaxLinkTarget) + " bytes, not sent";
  }
  target.resize(std::min(static_cast<std::size_t>(n), target.size()));
  if (why.empty() && !is_valid_utf8(target)) why = "symlink target is not valid UTF-8, not sent";
  if (!why.empty()) {
    note(WalkNote::skipped, local + ": " + why);
    return std::nullopt;
  }
  SourceEntry e = stat_entry(local, wire, st, protocol::EntryKind::symlink);
  e.identity = "symlink";
  e.link_target = std::move(target);
  return e;
}

WalkEntrySource::WalkEntrySource(SourceWalk walk, std::vector<SourceEntry> files, EntryCounts counted)
    : walk_(std::move(walk)), files_(std::move(files)), counted_(counted) {}

std::optional<SourceEntry> WalkEntrySource::next() {
  if (!walk_ended_) {
    if (auto e = walk_.next()) return e;
    walk_ended_ = true;
  }
  if (next_file_ >= files_.size()) return std::nullopt;
  return std::move(files_[next_file_++]);
}

Result<EntryCounts> count_sources(const std::vector<std::string>& paths, bool copy_links, bool links,
                                  const std::function<void(const SourceEntry&)>& each) {
  auto walk = SourceWalk::open(paths, copy_links, links);
  if (!walk) return walk.error();
  EntryCounts counts;
  while (auto e = walk->next()) {
    ++counts.files;
    counts.bytes += e->size;
    if (each) each(*e);
  }
  return counts;
}

}  // namespace ferry
