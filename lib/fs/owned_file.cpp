#include "lib/fs/owned_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace ferry {

std::string untrusted_why(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return S_ISLNK(st.st_mode) ? "a symlink" : S_ISFIFO(st.st_mode) ? "a FIFO" : "not a regular file";
  if (st.st_nlink != 1) return "a file with " + std::to_string(st.st_nlink) + " links";
  if (st.st_uid != ::geteuid()) return "owned by uid " + std::to_string(st.st_uid) + ", not the receiver's";
  return {};
}

Result<OwnedFile> open_owned(int dirfd, const std::string& name, int access, const std::string& shown) {
  OwnedFile out;
  struct stat lst {};
  if (::fstatat(dirfd, name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return out;
    return make_error(Errc::local_io, "stat(" + shown + ")", errno);
  }
  out.why = untrusted_why(lst);
  if (!out.why.empty()) return out;
  UniqueFd fd(::openat(dirfd, name.c_str(), access | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) return out;
    // Swapped for something else since the lstat, or not ours to open.
    if (err == ELOOP || err == ENXIO || err == EACCES || err == EPERM || err == EISDIR || err == EWOULDBLOCK) {
      out.why = std::string("cannot be opened safely: ") + std::strerror(err);
      return out;
    }
    return make_error(Errc::local_io, "open(" + shown + ")", err);
  }
  if (::fstat(fd.get(), &out.st) != 0) return make_error(Errc::local_io, "fstat(" + shown + ")", errno);
  out.why = untrusted_why(out.st);
  if (out.why.empty()) out.fd = std::move(fd);
  return out;
}

mode_t read_umask() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    unsigned mask = 0;
    if (std::sscanf(line.c_str(), "Umask: %o", &mask) == 1) return static_cast<mode_t>(mask & 0777);
  }
  // Older kernels: the only other way to read it is to set it (briefly) and restore it.
  const mode_t mask = ::umask(077);
  ::umask(mask);
  return mask;
}

bool older_than(std::int64_t mtime_ns, std::chrono::seconds age) {
  if (age.count() <= 0) return false;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const std::int64_t now_ns = static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
  return now_ns - mtime_ns > static_cast<std::int64_t>(age.count()) * 1'000'000'000;
}

}  // namespace ferry
