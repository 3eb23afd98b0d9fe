#include "lib/fs/dest_check.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace ferry {

namespace {
Error cannot_create(const std::string& dir, int err) {
  return make_error(Errc::local_io, "cannot create files in " + dir, err);
}
}  // namespace

Result<void> check_dest_writable(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return {};
  }
  // Only "this file system has no O_TMPFILE" falls back to a named probe.
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return cannot_create(dir, errno);
  const std::string probe = dir + "/.ferry-probe-" + std::to_string(::getpid());
  fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return cannot_create(dir, errno);
  ::close(fd);
  if (::unlink(probe.c_str()) != 0) return make_error(Errc::local_io, "unlink(" + probe + ")", errno);
  return {};
}

}  // namespace ferry
