#include "lib/fs/fd_io.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace ferry {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

int UniqueFd::release() noexcept {
  return std::exchange(fd_, -1);
}

void UniqueFd::reset(int fd) noexcept {
  const int old = std::exchange(fd_, fd);
  if (old < 0) return;
  const int saved = errno;  // error paths report the errno of the call that failed
  ::close(old);
  errno = saved;
}

UniqueDir& UniqueDir::operator=(UniqueDir&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

DIR* UniqueDir::release() noexcept {
  return std::exchange(dir_, nullptr);
}

void UniqueDir::reset(DIR* d) noexcept {
  DIR* old = std::exchange(dir_, d);
  if (!old) return;
  const int saved = errno;
  ::closedir(old);
  errno = saved;
}

UniqueFd open_dir_fd(int at, const std::string& path, Symlinks symlinks) {
  const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (symlinks == Symlinks::refuse ? O_NOFOLLOW : 0);
  return UniqueFd(::openat(at, path.c_str(), flags));
}

UniqueFd open_dir_beneath(int at, const std::string& path) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, at, path.c_str(), &how, sizeof how)));
}

UniqueDir open_dir_stream(UniqueFd fd) {
  UniqueDir d(::fdopendir(fd.get()));
  if (d) fd.release();  // owned by the stream now; else closed when `fd` goes
  return d;
}

Result<void> write_all(int fd, std::string_view bytes, const std::string& name) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::local_io, "write(" + name + ")", errno);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Result<std::size_t> read_some(int fd, std::span<std::byte> buf, const std::string& name) {
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return make_error(Errc::local_io, "read(" + name + ")", errno);
  }
}

Result<std::size_t> pread_full(int fd, std::byte* buf, std::size_t len, std::uint64_t off, const std::string& name) {
  std::size_t got = 0;
  while (got < len) {
    const ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(off + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::local_io, "read(" + name + ")", errno);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

void set_times_for_mtime(std::int64_t mtime_ns, timespec (&times)[2]) {
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_NOW;
  times[1].tv_sec = static_cast<time_t>(mtime_ns / 1'000'000'000);
  times[1].tv_nsec = static_cast<long>(mtime_ns % 1'000'000'000);
  if (times[1].tv_nsec < 0) {
    times[1].tv_nsec += 1'000'000'000;
    times[1].tv_sec -= 1;
  }
}

std::int64_t ctime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
}

}  // namespace ferry
