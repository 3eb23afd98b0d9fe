#include "lib/fs/source_tree.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <nlohmann/json.hpp>

#include "lib/fs/source_walk.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {

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

// The rules live in SourceWalk; this keeps the whole list, for callers that want it.
Result<SourceTree> walk_sources(const std::vector<std::string>& paths, bool copy_links, bool links) {
  SourceTree out;
  auto walk = SourceWalk::open(paths, copy_links, links, [&out](WalkNote kind, std::string why) {
    (kind == WalkNote::skipped ? out.skipped : out.ignored).push_back(std::move(why));
  });
  if (!walk) return walk.error();
  while (auto e = walk->next()) out.entries.push_back(std::move(*e));
  return out;
}

}  // namespace ferry
