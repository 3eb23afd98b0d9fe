#include "lib/net/access.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "lib/net/vsock.hpp"

namespace ferry {

namespace {

Error bad_rule(const std::string& text, const std::string& why) {
  return make_error(Errc::usage, "--allow " + text + ": " + why);
}

// True when the first `bits` bits of a and b agree.
bool prefix_matches(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
  const unsigned whole = bits / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool host_bits_clear(const AllowRule& r, unsigned width) {
  for (unsigned bit = r.prefix_len; bit < width; ++bit) {
    if (r.bytes[bit / 8] & (0x80 >> (bit % 8))) return false;
  }
  return true;
}

Result<AllowRule> parse_ip_rule(const std::string& text) {
  AllowRule r;
  r.text = text;
  const auto slash = text.find('/');
  const std::string ip = text.substr(0, slash);
  if (::inet_pton(AF_INET, ip.c_str(), r.bytes.data()) == 1) {
    r.family = AF_INET;
  } else if (::inet_pton(AF_INET6, ip.c_str(), r.bytes.data()) == 1) {
    r.family = AF_INET6;
  } else {
    return bad_rule(text, "not an IPv4 or IPv6 prefix (e.g. 10.0.0.0/8, fd00::/8) or vsock:CID");
  }
  const unsigned width = r.family == AF_INET ? 32 : 128;
  r.prefix_len = width;
  if (slash != std::string::npos) {
    const std::string len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(len) > width) {
      return bad_rule(text, "prefix length must be 0.." + std::to_string(width));
    }
    r.prefix_len = static_cast<unsigned>(std::stoul(len));
  }
  if (!host_bits_clear(r, width)) return bad_rule(text, "address bits set below the prefix length");
  return r;
}

}  // namespace

Result<AllowRule> parse_allow_rule(const std::string& text) {
  if (text.rfind("vsock:", 0) == 0) {
    const std::string cid_text = text.substr(6);
    auto cid = parse_vsock_cid(cid_text);
    if (!cid || *cid == kVsockCidAny) return bad_rule(text, "not a vsock CID (a number, host or local)");
    AllowRule r;
    r.kind = AddressKind::vsock;
    r.cid = *cid;
    r.text = text;
    return r;
  }
  return parse_ip_rule(text);
}

Result<AllowList> AllowList::parse(const std::vector<std::string>& texts, AddressKind kind) {
  std::vector<AllowRule> rules;
  for (const auto& t : texts) {
    auto r = parse_allow_rule(t);
    if (!r) return r.error();
    if (kind == AddressKind::unix_socket) return bad_rule(t, "a unix socket listener takes no --allow");
    if (r->kind != kind) {
      return bad_rule(t, kind == AddressKind::vsock ? "a vsock listener takes vsock:CID rules"
                                                    : "a TCP listener takes IP prefixes, not vsock CIDs");
    }
    rules.push_back(std::move(*r));
  }
  return AllowList(std::move(rules));
}

bool AllowList::permits_ip(const sockaddr* peer) const {
  if (rules_.empty()) return true;
  std::array<std::uint8_t, 16> addr{};
  int family = peer->sa_family;
  if (family == AF_INET) {
    std::memcpy(addr.data(), &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, 4);
  } else if (family == AF_INET6) {
    const auto* a6 = &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
      family = AF_INET;
      std::memcpy(addr.data(), a6->s6_addr + 12, 4);
    } else {
      std::memcpy(addr.data(), a6->s6_addr, 16);
    }
  } else {
    return false;
  }
  for (const auto& r : rules_) {
    if (r.kind == AddressKind::tcp && r.family == family && prefix_matches(r.bytes.data(), addr.data(), r.prefix_len)) {
      return true;
    }
  }
  return false;
}

bool AllowList::permits_cid(std::uint32_t cid) const {
  if (rules_.empty()) return true;
  for (const auto& r : rules_) {
    if (r.kind == AddressKind::vsock && r.cid == cid) return true;
  }
  return false;
}

bool listens_privately(const Address& listen) {
  switch (listen.kind) {
    case AddressKind::unix_socket:
      return true;
    case AddressKind::vsock:
      return false;
    case AddressKind::tcp: {
      std::array<std::uint8_t, 16> a{};
      if (::inet_pton(AF_INET, listen.host.c_str(), a.data()) == 1) return a[0] == 127;
      return listen.host == "::1" || (::inet_pton(AF_INET6, listen.host.c_str(), a.data()) == 1 &&
                                      IN6_IS_ADDR_LOOPBACK(reinterpret_cast<const in6_addr*>(a.data())));
    }
  }
  return false;
}

Result<std::optional<std::string>> check_listen_policy(const Address& listen, bool keyed, bool opted_out) {
  if (keyed || listens_privately(listen)) return std::optional<std::string>{};
  // vsock:any:0 asks for any port; to_string() would show the kernel's "any" value.
  const bool any_port = listen.kind == AddressKind::vsock && listen.vsock_port == kVsockPortAny;
  const std::string where = any_port ? "vsock:" + vsock_cid_name(listen.vsock_cid) + ":0" : listen.to_string();
  if (opted_out) {
    // Not "listening on ...": scripts look for that line to learn the bound address.
    return std::optional<std::string>("INSECURE: no key: anyone who can reach " + where +
                                      " can connect (--no-auth-i-know-this-is-insecure)");
  }
  return make_error(Errc::usage, "listening on " + where +
                                     " lets anyone who can reach it connect: give --key-file (or FERRY_KEY_FILE), "
                                     "or --no-auth-i-know-this-is-insecure");
}

}  // namespace ferry
