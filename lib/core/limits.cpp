#include "lib/core/limits.hpp"

#include <random>

#include "protocol/digest.hpp"
#include "protocol/frame.hpp"

namespace ferry {

Result<void> check_transfer_limits(std::size_t chunk_size, std::uint64_t window,
                                   std::chrono::milliseconds stall_timeout) {
  if (chunk_size < protocol::kMinChunkSize || chunk_size > protocol::kMaxChunkSize) {
    return make_error(Errc::usage, "--chunk-size must be between 1K and 16M");
  }
  if (window < protocol::kMinWindow || window > protocol::kMaxWindow) {
    return make_error(Errc::usage, "--window must be between 64K and 1G");
  }
  if (window < chunk_size) return make_error(Errc::usage, "--window must be at least --chunk-size");
  if (stall_timeout.count() <= 0 || stall_timeout > std::chrono::hours(24)) {
    return make_error(Errc::usage, "--stall-timeout must be between 0 and 86400 seconds");
  }
  return {};
}


std::string random_session_id() {
  std::random_device rd;
  std::uint64_t a = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  std::uint64_t b = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  return protocol::hex64(a) + protocol::hex64(b);
}


}  // namespace ferry
