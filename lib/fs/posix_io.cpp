#include "lib/fs/posix_io.hpp"

#include <unistd.h>

#include <cerrno>

namespace ferry {

Result<std::size_t> pread_full(int fd, std::byte* buf, std::size_t len, std::uint64_t off, const std::string& name) {
  std::size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(off + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::local_io, "read(" + name + ")", errno);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

}  // namespace ferry
