// Connection addresses as users write them.
//
//   ADDR := tcp:HOST:PORT | tcp://HOST:PORT | HOST:PORT | [IPV6]:PORT | tcp:[IPV6]:PORT
//         | unix:PATH | vsock:CID:PORT   (CID: a number, any, host (2) or local (1))
//
// Any other "SCHEME://..." is a usage error (never a host name to resolve).
//
// HOST is an IPv4 or IPv6 literal or a name resolved with getaddrinfo. For --listen
// an address without a host (":PORT" or "PORT") binds loopback (127.0.0.1).
//
//   auto a = parse_address("tcp:127.0.0.1:5000", AddressUse::listen);
//   if (!a) usage_error(a.error());
#pragma once

#include <cstdint>
#include <string>

// Relative includes (not rooted at the repository top like the rest of ferry): this is a
// public header, installed as <ferry/lib/net/address.hpp>, and must find its neighbours there
// without ferry's own folders on the includer's path (cmake/package.cmake).
#include "../../protocol/result.hpp"

namespace ferry {

enum class AddressKind { tcp, unix_socket, vsock };
enum class AddressUse { listen, connect };

struct Address {
  AddressKind kind = AddressKind::tcp;
  std::string host;  // tcp: literal or name, without brackets
  std::uint16_t port = 0;
  std::string path;  // unix
  std::uint32_t vsock_cid = 0, vsock_port = 0;
  // "tcp:127.0.0.1:5000", "tcp:[::1]:5000", "unix:/tmp/s" (for messages)
  std::string to_string() const;
};

// Errc::usage with the reason on a bad address.
Result<Address> parse_address(const std::string& text, AddressUse use);

}  // namespace ferry
