// Admission: how many connections a server serves at once, in all and per peer
// address, and the log of the connections it refused, rate-limited per address.
// Sans-I/O: no sockets, no clock; time is an argument.
//
//   Admission gate({.max_connections = 256, .max_per_address = 16});
//   auto v = gate.admit(conn->peer_host(), now);
//   if (v.log_line) warn(*v.log_line);       // at most one per address per interval
//   if (!v.admitted) conn->close(...);       // else serve it, and later:
//   gate.release(conn->peer_host());         // exactly once per admitted connection
//
// A peer address is a Connection::peer_host() (lib/net/connection.hpp): an IPv4
// address or an IPv6 /64. Peers without one (unix socket, stdio, command, vsock) count
// toward max_connections only: whoever can reach those is local or was let in by the
// hypervisor, and the per-address share protects network listeners.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "lib/core/events.hpp"

namespace ferry {

struct AdmissionLimits {
  std::size_t max_connections = 256;  // served at once, all peers together
  std::size_t max_per_address = 16;   // of which from one peer address; 0: no share
  // One log line per refused address per interval; the refusals in between are counted
  // and reported with the next line.
  std::chrono::milliseconds log_interval{10'000};
};

class Admission {
 public:
  explicit Admission(AdmissionLimits limits) : limits_(limits) {}

  struct Verdict {
    bool admitted = false;
    // A line to log for a refusal (none: suppressed by the rate limit, or admitted).
    std::optional<std::string> log_line{};
  };
  // Takes a slot for a new connection from `address` ("" for none), or refuses it.
  Verdict admit(const std::string& address, Clock::time_point now);
  // Gives back the slot of an admitted connection from `address`.
  void release(const std::string& address);

  std::size_t connections() const { return total_; }
  std::size_t connections_from(const std::string& address) const;
  const AdmissionLimits& limits() const { return limits_; }

  // Most addresses whose refusals are rate-limited one by one; beyond it (an attacker
  // with many addresses) they share one limit, so the log stays bounded either way.
  static constexpr std::size_t kMaxLoggedAddresses = 4096;

 private:
  std::optional<std::string> log_refusal(const std::string& address, const std::string& why, Clock::time_point now);

  AdmissionLimits limits_;
  std::size_t total_ = 0;
  std::map<std::string, std::size_t> per_address_;  // addresses with a connection now
  struct RefusalLog {
    Clock::time_point last_line;
    std::uint64_t suppressed = 0;  // refusals since last_line not logged
  };
  std::map<std::string, RefusalLog> refusals_;  // <= kMaxLoggedAddresses + 1
};

}  // namespace ferry
