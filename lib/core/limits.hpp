// The limits every transfer obeys, whoever sets them (the command line in lib/ui or an
// embedding program through sender/sender.hpp and receiver/receiver.hpp), and the
// session id a sender picks. No I/O.
//
//   if (auto ok = check_transfer_limits(256 * 1024, 4 << 20, std::chrono::seconds(10)); !ok) fail(ok.error());
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/result.hpp"

namespace ferry {

// The limits every transfer obeys, whoever sets them (command line or library):
// chunk 1K..16M, window 64K..1G and >= chunk, stall timeout (0, 1 day]. Errc::usage.
Result<void> check_transfer_limits(std::size_t chunk_size, std::uint64_t window,
                                   std::chrono::milliseconds stall_timeout);

// 32 random hex digits (a session id).
std::string random_session_id();

}  // namespace ferry
