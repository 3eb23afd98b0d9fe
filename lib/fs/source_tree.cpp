#include "lib/fs/source_tree.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <set>
#include <utility>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "lib/fs/dir_walk.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

std::string base_name(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// One walk_sources() call: where entries go, whether symlinks are followed, and the
// directories already listed (so that a followed link cannot loop).
struct WalkContext {
  SourceTree& out;
  bool copy_links = false;
  bool links = false;  // --links: a symlink is sent as a symlink (copy_links wins)
  std::set<std::pair<dev_t, ino_t>> dirs_seen;
};

void walk(const std::string& local, const std::string& wire, const struct stat& st, WalkContext& ctx);

// -L: the entry a symlink at `local` points to, sent as `wire`: a regular file (read
// through its resolved path) or a directory (walked, unless it was already listed);
// a dangling link is ignored with a note.
void add_followed_link(const std::string& local, const std::string& wire, WalkContext& ctx) {
  struct stat st{};
  char resolved[PATH_MAX];
  if (::stat(local.c_str(), &st) != 0 || ::realpath(local.c_str(), resolved) == nullptr) {
    ctx.out.ignored.push_back(local + ": symlink to nothing (" + std::strerror(errno) + "), not sent");
    return;
  }
  if (S_ISDIR(st.st_mode) && ctx.dirs_seen.count({st.st_dev, st.st_ino}) > 0) {
    ctx.out.ignored.push_back(local + ": symlink to a directory already sent (a loop?), not sent again");
    return;
  }
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    ctx.out.ignored.push_back(local + ": symlink to a " + special_kind_name(st.st_mode) + ", not sent");
    return;
  }
  walk(resolved, wire, st, ctx);
}

// --links: the symlink at `local` (lstat `st`) as an entry of its own, carrying its
// target text; a target that cannot be read, is not UTF-8 or is too long is skipped.
void add_link_entry(const std::string& local, const std::string& wire, const struct stat& st, WalkContext& ctx) {
  std::string target(protocol::kMaxLinkTarget + 1, '\0');
  const ssize_t n = ::readlink(local.c_str(), target.data(), target.size());
  if (n < 0) {
    ctx.out.skipped.push_back(local + ": readlink: " + std::strerror(errno));
    return;
  }
  if (n == 0) {
    ctx.out.skipped.push_back(local + ": symlink with an empty target, not sent");
    return;
  }
  if (static_cast<std::size_t>(n) > protocol::kMaxLinkTarget) {
    ctx.out.skipped.push_back(local + ": symlink target longer than " + std::to_string(protocol::kMaxLinkTarget) +
                              " bytes, not sent");
    return;
  }
  target.resize(static_cast<std::size_t>(n));
  if (!is_valid_utf8(target)) {
    ctx.out.skipped.push_back(local + ": symlink target is not valid UTF-8, not sent");
    return;
  }
  SourceEntry e;
  e.wire_path = wire;
  e.local_path = local;
  fill_from_stat(e, st);
  e.kind = protocol::EntryKind::symlink;
  e.identity = "symlink";
  e.link_target = std::move(target);
  ctx.out.entries.push_back(std::move(e));
}

// Adds the entry at `local` (stat `st`) to the tree, sent as `wire`: a regular file or
// a directory; a symlink only with -L (followed); anything else is ignored with a note.
// True for a directory whose contents follow.
bool add_entry(const std::string& local, const std::string& wire, const struct stat& st, WalkContext& ctx) {
  SourceTree& out = ctx.out;
  if (!is_valid_utf8(wire)) {
    out.skipped.push_back(local + ": name is not valid UTF-8, not sent");
    return false;
  }
  if (S_ISLNK(st.st_mode) && ctx.copy_links) {
    add_followed_link(local, wire, ctx);
    return false;
  }
  if (S_ISLNK(st.st_mode) && ctx.links) {
    add_link_entry(local, wire, st, ctx);
    return false;
  }
  SourceEntry e;
  e.wire_path = wire;
  e.local_path = local;
  fill_from_stat(e, st);
  if (S_ISREG(st.st_mode)) {
    e.kind = protocol::EntryKind::file;
    out.entries.push_back(std::move(e));
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    out.ignored.push_back(local + ": " + special_kind_name(st.st_mode) + ", not sent");
    return false;
  }
  if (!ctx.dirs_seen.insert({st.st_dev, st.st_ino}).second) {
    // Only reachable through a followed link (-L): the same directory listed twice.
    out.ignored.push_back(local + ": directory already sent (through a symlink), not sent again");
    return false;
  }
  e.kind = protocol::EntryKind::directory;
  e.identity = "dir";
  out.entries.push_back(std::move(e));
  return true;
}

// Everything below one directory PATH, hidden names included, sorted by name; each
// directory's entry comes before its contents. What cannot be read is skipped.
class TreeVisitor : public DirVisitor {
 public:
  TreeVisitor(std::string local, std::string wire, WalkContext& ctx)
      : local_(std::move(local)), wire_(std::move(wire)), ctx_(ctx) {}

  WalkStep visit(const DirEntry& e) override {
    const std::string child = local_ + "/" + e.rel;
    struct stat st{};
    if (int err = e.lstat(st); err != 0) {
      ctx_.out.skipped.push_back(child + ": lstat: " + std::strerror(err));
      return WalkStep::next;
    }
    return add_entry(child, wire_ + "/" + e.rel, st, ctx_) ? WalkStep::descend : WalkStep::next;
  }

  void failed(const DirEntry& dir, DirOp op, int err) override {
    if (op == DirOp::readdir) return;  // the names read before it are sent
    ctx_.out.skipped.push_back(local_ + "/" + dir.rel + ": opendir: " + std::strerror(err));
  }

 private:
  const std::string local_;  // "" for the root directory
  const std::string wire_;
  WalkContext& ctx_;
};

// "src/tree/" and "src/tree//" are "src/tree" (no "src/tree//x" in what is shown).
std::string without_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

void walk(const std::string& local, const std::string& wire, const struct stat& st, WalkContext& ctx) {
  if (!add_entry(local, wire, st, ctx)) return;
  UniqueDir d = open_dir_stream(open_dir_fd(AT_FDCWD, local, Symlinks::follow));
  if (!d) {
    ctx.out.skipped.push_back(local + ": opendir: " + std::strerror(errno));
    return;
  }
  TreeVisitor visitor(local == "/" ? "" : local, wire, ctx);
  (void)walk_dir(d, visitor);  // a readdir error: the names read before it are sent
}

}  // namespace

Result<SourceEntry> source_file_entry(const std::string& local_path, const std::string& wire_path) {
  if (auto why = protocol::wire_path_problem(wire_path)) {
    return make_error(Errc::usage, "cannot send " + local_path + " as '" + wire_path + "': " + *why);
  }
  if (!is_valid_utf8(wire_path)) return make_error(Errc::usage, "wire path of " + local_path + " is not valid UTF-8");
  struct stat st{};
  if (::lstat(local_path.c_str(), &st) != 0) return make_error(Errc::local_io, "lstat(" + local_path + ")", errno);
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::usage, local_path + " is a " + special_kind_name(st.st_mode) + "; only regular files are sent");
  }
  SourceEntry e;
  e.wire_path = wire_path;
  e.local_path = local_path;
  return restat_source(e);
}

Result<SourceEntry> restat_source(const SourceEntry& entry) {
  struct stat st{};
  if (::lstat(entry.local_path.c_str(), &st) != 0) {
    return make_error(Errc::local_io, "lstat(" + entry.local_path + ")", errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::local_io, entry.local_path + " is no longer a regular file");
  }
  SourceEntry e = entry;
  fill_from_stat(e, st);
  return e;
}

void fill_from_stat(SourceEntry& e, const struct stat& st) {
  e.mtime_ns = mtime_ns(st);
  e.ctime_ns = ctime_ns(st);
  e.inode = static_cast<std::uint64_t>(st.st_ino);
  e.mode = st.st_mode & 07777;
  if (S_ISREG(st.st_mode)) {
    e.size = static_cast<std::uint64_t>(st.st_size);
    e.identity = source_identity(e.size, e.mtime_ns);
  }
}

const char* special_kind_name(mode_t mode) {
  if (S_ISLNK(mode)) return "symlink";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "device";
  return "special file";
}

bool is_valid_utf8(const std::string& name) {
  try {
    (void)nlohmann::json(name).dump();  // the serializer OFFER uses, in strict mode
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

Result<SourceTree> walk_sources(const std::vector<std::string>& paths, bool copy_links, bool links) {
  SourceTree out;
  WalkContext ctx{out, copy_links, links, {}};
  std::vector<std::string> top_names;  // two PATHs with one base name would overwrite each other
  for (const auto& given : paths) {
    const std::string p = without_trailing_slashes(given);
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) return make_error(Errc::usage, "lstat(" + p + ")", errno);
    const bool followed_link = S_ISLNK(st.st_mode) && copy_links;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
      return make_error(Errc::usage, p + " is a " + special_kind_name(st.st_mode) + "; only files and directories are sent");
    }
    std::string name = base_name(p);
    if (name == "." || name == ".." || name == "/" || name.empty()) {
      return make_error(Errc::usage, "cannot name '" + p + "' on the receiver; give a named file or directory");
    }
    if (std::find(top_names.begin(), top_names.end(), name) != top_names.end()) {
      return make_error(Errc::usage, "two PATHs would both be sent as '" + name + "' (" + p + ")");
    }
    top_names.push_back(name);
    if (followed_link) {
      add_followed_link(p, name, ctx);
    } else {
      walk(p, name, st, ctx);  // a symlink PATH without -L: sent as a link (--links) or ignored with a note
    }
  }
  return out;
}

}  // namespace ferry
