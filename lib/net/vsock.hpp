// Linux AF_VSOCK sockets, non-blocking, for the `vsock:CID:PORT` addresses.
//
// CID is a number or `any` (VMADDR_CID_ANY, to listen), `host` (2), `local` (1,
// the vsock_loopback transport). After connect/accept the descriptor is handed to
// Connection::adopt like any socket: resume, stall detection and reconnects apply.
//
// Every failure is Errc::connection with a one-line message naming the call, the
// address, the errno and what it usually means, e.g.
//   connect(vsock:3:5004) (ENODEV: CID 3 is this machine's own; connecting to it needs
//   the vsock_loopback module): No such device
//
//   auto fd = vsock_listen(kVsockCidAny, 5004, bound_port);   // Errc::connection on failure
//   vsock_dial(loop, 2, 5004, [](Result<int> fd) { ... });
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "protocol/result.hpp"

namespace ferry {

inline constexpr std::uint32_t kVsockCidAny = 0xFFFFFFFFu;
inline constexpr std::uint32_t kVsockCidLocal = 1;
inline constexpr std::uint32_t kVsockCidHost = 2;
inline constexpr std::uint32_t kVsockPortAny = 0xFFFFFFFFu;

// "any", "host", "local" or a decimal number.
std::optional<std::uint32_t> parse_vsock_cid(const std::string& text);
// "any" for kVsockCidAny, else the number ("1", not "local").
std::string vsock_cid_name(std::uint32_t cid);

// This machine's own CID (ioctl IOCTL_VM_SOCKETS_GET_LOCAL_CID on /dev/vsock); it is
// kVsockCidAny when no transport is loaded. Errc::connection when /dev/vsock cannot
// be opened (no vsock module, or no permission).
Result<std::uint32_t> vsock_local_cid();

// A bound, listening, non-blocking, close-on-exec socket; `bound_port` gets the real
// port (the one the kernel chose when `port` is kVsockPortAny).
// Errors name the call and say when the kernel has no vsock support.
Result<int> vsock_listen(std::uint32_t cid, std::uint32_t port, std::uint32_t& bound_port);
// Accepts one connection: the new descriptor, nullopt when none is pending, or an Error.
Result<std::optional<int>> vsock_accept(int listen_fd);
// The CID of the peer of a connected vsock descriptor (getpeername), nullopt on failure.
std::optional<std::uint32_t> vsock_peer_cid(int fd);
// Connects without blocking the loop; `done` gets the connected descriptor (ours,
// non-blocking, close-on-exec), or an Error: called exactly once, maybe before
// vsock_dial returns (a refusal the kernel knows at once, e.g. ENODEV), else from a
// loop callback. Time-outs are the kernel's (about 2 s for a CID that never answers).
void vsock_dial(uv_loop_t* loop, std::uint32_t cid, std::uint32_t port, std::function<void(Result<int>)> done);

}  // namespace ferry
