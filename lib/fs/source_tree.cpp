#include "lib/fs/source_tree.hpp"

#include <fcntl.h>
#include <sys/stat.h>

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

// Adds the entry at `local` (stat `st`) to `out`, sent as `wire`: a regular file or
// a directory; anything else is skipped. True for a directory whose contents follow.
bool add_entry(const std::string& local, const std::string& wire, const struct stat& st, SourceTree& out) {
  if (!is_valid_utf8(wire)) {
    out.skipped.push_back(local + ": name is not valid UTF-8, not sent");
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
    out.skipped.push_back(local + ": " + special_kind_name(st.st_mode) + " not sent");
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
  TreeVisitor(const std::string& local, const std::string& wire, SourceTree& out)
      : local_(local), wire_(wire), out_(out) {}

  WalkStep visit(const DirEntry& e) override {
    const std::string child = local_ + "/" + e.rel;
    struct stat st{};
    if (int err = e.lstat(st); err != 0) {
      out_.skipped.push_back(child + ": lstat: " + std::strerror(err));
      return WalkStep::next;
    }
    return add_entry(child, wire_ + "/" + e.rel, st, out_) ? WalkStep::descend : WalkStep::next;
  }

  void failed(const DirEntry& dir, DirOp op, int err) override {
    if (op == DirOp::readdir) return;  // the names read before it are sent
    out_.skipped.push_back(local_ + "/" + dir.rel + ": opendir: " + std::strerror(err));
  }

 private:
  const std::string& local_;
  const std::string& wire_;
  SourceTree& out_;
};

void walk(const std::string& local, const std::string& wire, const struct stat& st, SourceTree& out) {
  if (!add_entry(local, wire, st, out)) return;
  UniqueDir d = open_dir_stream(open_dir_fd(AT_FDCWD, local, Symlinks::follow));
  if (!d) {
    out.skipped.push_back(local + ": opendir: " + std::strerror(errno));
    return;
  }
  TreeVisitor visitor(local, wire, out);
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

Result<SourceTree> walk_sources(const std::vector<std::string>& paths) {
  SourceTree out;
  std::vector<std::string> top_names;  // two PATHs with one base name would overwrite each other
  for (const auto& p : paths) {
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) return make_error(Errc::usage, "lstat(" + p + ")", errno);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
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
    walk(p, name, st, out);
  }
  return out;
}

}  // namespace ferry
