// The file-system room's descriptor toolkit: owners for the descriptors and directory
// streams it opens, and the few POSIX I/O loops every user would otherwise repeat
// (EINTR, short reads and writes), plus the nanosecond times of a struct stat.
//
// An owner closes what it holds when it goes, and closing never changes errno, so an
// error path can just return `make_error(..., errno)`:
//
//   UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
//   if (!fd) return make_error(Errc::local_io, "open(" + name + ")", errno);
//   auto w = write_all(fd.get(), text, name);          // "write(NAME): ..." on failure
//   if (!w) return w;                                  // fd is closed here
//
//   UniqueFd sub = open_dir_fd(parent.get(), "child", Symlinks::refuse);
//   UniqueDir listing = open_dir_stream(std::move(sub));  // readdir() through it
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocol/result.hpp"

namespace ferry {

// Owns one file descriptor (or none: -1). Move-only; closes on destruction and on
// reset(). Closing keeps errno as it was.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives up ownership: the caller closes the descriptor returned.
  int release() noexcept;
  // Closes the descriptor held (if any) and holds `fd` instead.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Owns one directory stream (or none). Move-only; closedir() on destruction and on
// reset(), keeping errno as it was.
class UniqueDir {
 public:
  UniqueDir() = default;
  explicit UniqueDir(DIR* d) noexcept : dir_(d) {}
  UniqueDir(UniqueDir&& o) noexcept : dir_(o.release()) {}
  UniqueDir& operator=(UniqueDir&& o) noexcept;
  UniqueDir(const UniqueDir&) = delete;
  UniqueDir& operator=(const UniqueDir&) = delete;
  ~UniqueDir() { reset(); }

  DIR* get() const { return dir_; }
  // The stream's descriptor, for the *at() calls on its entries (owned by the stream).
  int fd() const { return ::dirfd(dir_); }
  explicit operator bool() const { return dir_ != nullptr; }
  DIR* release() noexcept;
  void reset(DIR* d = nullptr) noexcept;

 private:
  DIR* dir_ = nullptr;
};

// Whether the last component of a path may be a symlink (followed) or not.
enum class Symlinks { follow, refuse };

// openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, plus O_NOFOLLOW for
// Symlinks::refuse). `at` may be AT_FDCWD. An empty owner and errno set on failure
// (a symlink refused fails with ELOOP or ENOTDIR).
UniqueFd open_dir_fd(int at, const std::string& path, Symlinks symlinks);

// The directory at relative `path` below `at`, in one openat2() that refuses a symlink
// anywhere on the way (RESOLVE_NO_SYMLINKS) and any step out of `at` (RESOLVE_BENEATH):
// what a walk of open_dir_fd(.., Symlinks::refuse) per component gives, in one call.
// An empty owner and errno set on failure (ENOSYS where the kernel has no openat2:
// callers fall back to that walk).
UniqueFd open_dir_beneath(int at, const std::string& path);

// fdopendir() taking ownership of `fd`: an empty owner and errno set on failure (the
// descriptor is closed then).
UniqueDir open_dir_stream(UniqueFd fd);

// Writes all of `bytes`, retrying EINTR and short writes. Errc::local_io
// "write(NAME): strerror" on failure (some bytes may have been written).
Result<void> write_all(int fd, std::string_view bytes, const std::string& name);

// Reads what is there, at most `buf.size()` bytes, retrying EINTR; 0 at end of file.
// Errc::local_io "read(NAME): strerror" on failure.
Result<std::size_t> read_some(int fd, std::span<std::byte> buf, const std::string& name);

// Reads up to `len` bytes at `off`, retrying EINTR and short reads; fewer bytes only
// at end of file. Errc::local_io "read(NAME): strerror" on failure.
Result<std::size_t> pread_full(int fd, std::byte* buf, std::size_t len, std::uint64_t off, const std::string& name);

// A stat's modification and status-change times in nanoseconds since the epoch.
std::int64_t mtime_ns(const struct stat& st);
std::int64_t ctime_ns(const struct stat& st);

// The pair futimens/utimensat take to give a file `mtime_ns` (nanoseconds since the
// epoch, negative before it) as its modification time; its access time becomes now.
void set_times_for_mtime(std::int64_t mtime_ns, timespec (&times)[2]);

}  // namespace ferry
