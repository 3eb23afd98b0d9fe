// Access to a listener: who may connect (`--allow`, as rsync's `hosts allow`), and
// whether listening there needs a key (docs/SECURITY.md, "Authentication").
//
// A listener on anything but loopback or a unix socket can be reached by strangers
// (a vsock listener on a host by every guest): it needs a key, or an explicit,
// loudly named opt-out, which is then printed as a warning at the start.
//
//   auto rule = parse_allow_rule("10.0.0.0/8");        // Errc::usage on a bad one
//   AllowList allow{{*rule}};
//   if (!allow.permits_ip(peer_sockaddr)) close it;
//   auto warn = check_listen_policy(addr, keyed, opted_out);  // Errc::usage: refused
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/net/address.hpp"
#include "protocol/result.hpp"

namespace ferry {

// One --allow entry: an IPv4 or IPv6 prefix ("10.0.0.0/8", "fd00::/8"; a bare address
// is the whole address), or a vsock CID ("vsock:3").
struct AllowRule {
  AddressKind kind = AddressKind::tcp;   // tcp (an IP prefix) or vsock (a CID)
  int family = AF_INET;                  // tcp: AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};  // tcp: the address, network byte order
  unsigned prefix_len = 0;               // tcp: leading bits that must match
  std::uint32_t cid = 0;                 // vsock
  std::string text;                      // as given, for messages
};

// Errc::usage naming the text when it is neither an IP prefix nor vsock:CID (a prefix
// longer than the address, host bits set below it, a CID that is not a number).
Result<AllowRule> parse_allow_rule(const std::string& text);

class AllowList {
 public:
  AllowList() = default;
  explicit AllowList(std::vector<AllowRule> rules) : rules_(std::move(rules)) {}
  // Parses every text; the first bad one is the error. Errc::usage too when a rule
  // does not fit a listener of `kind` (vsock CIDs for TCP, any rule for a unix socket).
  static Result<AllowList> parse(const std::vector<std::string>& texts, AddressKind kind);
  // Empty: everyone may connect.
  bool empty() const { return rules_.empty(); }
  // A TCP peer (AF_INET, or AF_INET6 including IPv4-mapped addresses, which match the
  // IPv4 rules): true when the list is empty or a rule covers it.
  bool permits_ip(const sockaddr* peer) const;
  bool permits_cid(std::uint32_t cid) const;

 private:
  std::vector<AllowRule> rules_;
};

// True for a listener only this machine can reach: a TCP loopback literal
// (127.0.0.0/8, ::1) or a unix socket. vsock never is (guests reach a host's).
bool listens_privately(const Address& listen);

// The listening policy: fine (nullopt) when private or keyed; with the opt-out, the
// warning to print; otherwise Errc::usage, one line naming the address and the ways out.
Result<std::optional<std::string>> check_listen_policy(const Address& listen, bool keyed, bool opted_out);

}  // namespace ferry
