#include "lib/fs/key_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>

#include "lib/fs/fd_io.hpp"
#include "protocol/auth.hpp"

namespace ferry {

namespace {

// Longer than any well-formed key file ("64 hex digits" plus CRLF); more is malformed.
constexpr std::size_t kMaxKeyFileBytes = 128;

std::string octal_mode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Result<protocol::AuthKey> load_key_file(const std::string& path) {
  const std::string name = "key file " + path;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return make_error(Errc::usage, "open(" + path + ")", errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_error(Errc::usage, "stat(" + path + ")", errno);
  if (!S_ISREG(st.st_mode)) return make_error(Errc::usage, name + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    return make_error(Errc::usage,
                      name + " is accessible by others (mode " + octal_mode(st.st_mode) + "): chmod 600 it");
  }
  std::array<std::byte, kMaxKeyFileBytes + 1> buf{};
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = read_some(fd.get(), std::span(buf).subspan(got), path);
    if (!n) return make_error(Errc::usage, n.error().what, n.error().sys_errno);
    if (*n == 0) break;
    got += *n;
  }
  auto key = protocol::parse_key_text(std::string_view(reinterpret_cast<const char*>(buf.data()), got));
  std::fill(buf.begin(), buf.end(), std::byte{0});
  if (!key) return make_error(Errc::usage, name + ": " + key.error().what);
  return *key;
}

Result<void> generate_key_file(const std::string& path) {
  if (!protocol::crypto_ready()) return make_error(Errc::internal, "sodium_init: no source of random numbers");
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    const int err = errno;
    if (err == EEXIST) return make_error(Errc::usage, "key file " + path + " exists already; it is never overwritten");
    return make_error(Errc::local_io, "open(" + path + ")", err);
  }
  // The umask may have taken bits off 0600, never added any; make it exactly 0600.
  if (::fchmod(fd.get(), 0600) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return make_error(Errc::local_io, "chmod(" + path + ")", err);
  }
  std::string text = protocol::key_text(protocol::random_key());
  auto w = write_all(fd.get(), text, path);
  std::fill(text.begin(), text.end(), '\0');
  if (w && ::fsync(fd.get()) != 0) w = make_error(Errc::local_io, "fsync(" + path + ")", errno);
  if (!w) {
    ::unlink(path.c_str());
    return w;
  }
  return {};
}

}  // namespace ferry
