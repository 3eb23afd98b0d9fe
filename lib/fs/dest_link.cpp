// DestDir::make_symlink: a symlink OFFER (protocol version 4) made inside DEST.
//
// Safety (docs/SECURITY.md "Files in DEST"): the parent is reached by open_parent's
// openat(O_NOFOLLOW) walk, so the link is never made through another link; the new
// link is made under a temporary name in ferry's namespace (no sent name can be one)
// and renamed over the final name, which replaces a file or a link there itself and
// never what a link points to; a directory in the way is refused, not replaced. The
// target is stored as sent: it is only ever read back with readlinkat, never followed
// by the receiver, and a later OFFER whose path passes through the link is refused by
// open_parent like any path through a symlink.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "lib/fs/file_sink.hpp"

namespace ferry {
namespace {

std::atomic<std::uint32_t> link_temp_counter{0};

// The temporary name of a link being made for `leaf`: the batched commit's form
// (file_batch.hpp), so a leftover is in the same reserved namespace.
std::string link_temp_name(const std::string& leaf) {
  const std::uint64_t unique = (static_cast<std::uint64_t>(::getpid()) << 32) |
                               link_temp_counter.fetch_add(1, std::memory_order_relaxed);
  return batch_temp_name(leaf, unique);
}

// True when `leaf` in `dir_fd` is already a symlink whose text is exactly `target`.
bool same_link(int dir_fd, const std::string& leaf, const std::string& target) {
  std::string have(target.size() + 1, '\0');
  const ssize_t n = ::readlinkat(dir_fd, leaf.c_str(), have.data(), have.size());
  return n >= 0 && static_cast<std::size_t>(n) == target.size() && have.compare(0, target.size(), target) == 0;
}

// The link's own mtime (AT_SYMLINK_NOFOLLOW); access time now. Best effort: a file
// system without link times keeps the link.
void set_link_mtime(int dir_fd, const std::string& name, std::int64_t mtime_ns) {
  timespec times[2];
  set_times_for_mtime(mtime_ns, times);
  (void)::utimensat(dir_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

}  // namespace

Result<bool> DestDir::make_symlink(const protocol::Offer& offer) {
  std::string leaf;
  auto pfd = open_parent(offer.path, leaf, true);
  if (!pfd) return pfd.error();
  const int dir = pfd->get();
  const std::string shown = path_ + "/" + offer.path;
  struct stat st{};
  if (::fstatat(dir, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) return make_error(Errc::protocol, "unsafe path '" + offer.path + "': a directory is in the way");
    if (S_ISLNK(st.st_mode) && same_link(dir, leaf, offer.target)) return false;
  } else if (errno != ENOENT) {
    return make_error(Errc::local_io, "lstat(" + shown + ")", errno);
  }
  const std::string temp = link_temp_name(leaf);
  if (::symlinkat(offer.target.c_str(), dir, temp.c_str()) != 0) {
    return make_error(Errc::local_io, "symlink(" + path_ + "/" + temp + ")", errno);
  }
  set_link_mtime(dir, temp, offer.mtime_ns);
  if (::renameat(dir, temp.c_str(), dir, leaf.c_str()) != 0) {
    const int err = errno;
    (void)::unlinkat(dir, temp.c_str(), 0);
    // A directory that appeared at the name since the check: still refused, not replaced.
    if (err == EISDIR || err == ENOTEMPTY || err == EEXIST) {
      return make_error(Errc::protocol, "unsafe path '" + offer.path + "': a directory is in the way");
    }
    return make_error(Errc::local_io, "rename(" + shown + ")", err);
  }
  if (!options_.no_fsync && ::fsync(dir) != 0) return make_error(Errc::local_io, "fsync(directory of " + shown + ")", errno);
  return true;
}

}  // namespace ferry
