#include "lib/net/address.hpp"

#include <charconv>

#include "lib/net/vsock.hpp"

namespace ferry {

std::string Address::to_string() const {
  if (kind == AddressKind::unix_socket) return "unix:" + path;
  if (kind == AddressKind::vsock) return "vsock:" + vsock_cid_name(vsock_cid) + ":" + std::to_string(vsock_port);
  if (host.find(':') != std::string::npos) return "tcp:[" + host + "]:" + std::to_string(port);
  return "tcp:" + host + ":" + std::to_string(port);
}

namespace {
// Port 0 (the system picks a free port) only makes sense for listening.
Result<std::uint16_t> parse_port(const std::string& s, const std::string& whole, AddressUse use) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  const bool zero_ok = use == AddressUse::listen;
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || (v == 0 && !zero_ok) || v > 65535) {
    return make_error(Errc::usage, "bad port in address '" + whole + (zero_ok ? "' (want 0-65535)" : "' (want 1-65535)"));
  }
  return static_cast<std::uint16_t>(v);
}


// unix:PATH
Result<Address> parse_unix(const std::string& text) {
  Address a;
  a.kind = AddressKind::unix_socket;
  a.path = text.substr(5);
  if (a.path.empty()) return make_error(Errc::usage, "empty path in address '" + text + "'");
  if (a.path.size() >= 108) return make_error(Errc::usage, "unix socket path too long: '" + a.path + "'");
  return a;
}

// vsock:CID:PORT; port 0 (any) only for listening.
Result<Address> parse_vsock(const std::string& text, AddressUse use) {
  Address a;
  a.kind = AddressKind::vsock;
  const std::string rest = text.substr(6);
  const auto colon = rest.find(':');
  if (colon == std::string::npos) return make_error(Errc::usage, "vsock address '" + text + "' wants vsock:CID:PORT");
  auto cid = parse_vsock_cid(rest.substr(0, colon));
  if (!cid) return make_error(Errc::usage, "bad CID in '" + text + "' (a number, any, host or local)");
  if (use == AddressUse::connect && *cid == kVsockCidAny) {
    return make_error(Errc::usage, "cannot connect to CID any in '" + text + "'");
  }
  const std::string port_text = rest.substr(colon + 1);
  std::uint32_t port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() ||
      (use == AddressUse::connect && port == 0)) {
    return make_error(Errc::usage, "bad port in '" + text + "'");
  }
  a.vsock_cid = *cid;
  a.vsock_port = port == 0 ? kVsockPortAny : port;
  return a;
}

// Splits the HOST:PORT or [IPV6]:PORT of `rest` (the address `text` without "tcp:")
// into `host` and `port_text`; a listen address may be a bare PORT.
Result<void> split_host_port(const std::string& rest, const std::string& text, AddressUse use, std::string& host,
                             std::string& port_text) {
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return make_error(Errc::usage, "bad IPv6 address '" + text + "' (want [ADDR]:PORT)");
    }
    host = rest.substr(1, close - 1);
    port_text = rest.substr(close + 2);
    return {};
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    if (use == AddressUse::connect) {
      return make_error(Errc::usage, "address '" + text + "' has no port (want HOST:PORT or unix:PATH)");
    }
    port_text = rest;
    return {};
  }
  host = rest.substr(0, colon);
  port_text = rest.substr(colon + 1);
  if (host.find(':') != std::string::npos) {
    return make_error(Errc::usage, "IPv6 address '" + text + "' needs brackets: [ADDR]:PORT");
  }
  return {};
}

// tcp:HOST:PORT, HOST:PORT, [IPV6]:PORT; a listen address without a host is loopback.
Result<Address> parse_tcp(const std::string& text, AddressUse use) {
  Address a;
  std::string port_text;
  auto split = split_host_port(text.rfind("tcp:", 0) == 0 ? text.substr(4) : text, text, use, a.host, port_text);
  if (!split) return split.error();
  auto port = parse_port(port_text, text, use);
  if (!port) return port.error();
  a.port = *port;
  if (a.host.empty()) {
    if (use == AddressUse::connect) return make_error(Errc::usage, "address '" + text + "' has no host");
    a.host = "127.0.0.1";
  }
  return a;
}

}  // namespace

Result<Address> parse_address(const std::string& text, AddressUse use) {
  // URL-style "tcp://HOST:PORT" is tcp:HOST:PORT; any other "SCHEME://" is refused
  // here, at once, rather than resolved as a host name.
  if (text.rfind("tcp://", 0) == 0) return parse_tcp("tcp:" + text.substr(6), use);
  if (const auto sep = text.find("://"); sep != std::string::npos) {
    return make_error(Errc::usage, "unsupported address '" + text +
                                       "' (want HOST:PORT, tcp:HOST:PORT, tcp://HOST:PORT, unix:PATH or vsock:CID:PORT)");
  }
  if (text.rfind("unix:", 0) == 0) return parse_unix(text);
  if (text.rfind("vsock:", 0) == 0) return parse_vsock(text, use);
  return parse_tcp(text, use);
}

}  // namespace ferry
