// Small POSIX I/O helpers shared by the file source and sink.
//
//   auto n = pread_full(fd, buf, len, offset, "/path/shown/in/errors");
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/result.hpp"

namespace ferry {

// Reads up to `len` bytes at `off`, retrying EINTR and short reads; fewer bytes only
// at end of file. Errc::local_io "read(NAME): strerror" on failure.
Result<std::size_t> pread_full(int fd, std::byte* buf, std::size_t len, std::uint64_t off, const std::string& name);

}  // namespace ferry
