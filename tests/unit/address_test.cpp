// Tests lib/address: parse_address for every accepted form (tcp, IPv6, unix, vsock), the
// listen defaults, and the refusals (bad ports, a missing host or port, IPv6 without
// brackets, malformed vsock addresses).
#include "lib/net/address.hpp"

#include <gtest/gtest.h>

#include <string>

namespace ferry {
namespace {

Address ok(const std::string& text, AddressUse use) {
  auto a = parse_address(text, use);
  EXPECT_TRUE(a) << text << ": " << (a ? "" : a.error().message());
  return a ? *a : Address{};
}

void refused(const std::string& text, AddressUse use) {
  auto a = parse_address(text, use);
  ASSERT_FALSE(a) << "accepted '" << text << "' as " << a->to_string();
  EXPECT_EQ(a.error().code, Errc::usage) << text;
  EXPECT_FALSE(a.error().message().empty());
}

TEST(Address, TcpForms) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    auto a = ok("tcp:127.0.0.1:5000", use);
    EXPECT_EQ(a.kind, AddressKind::tcp);
    EXPECT_EQ(a.host, "127.0.0.1");
    EXPECT_EQ(a.port, 5000);
    EXPECT_EQ(a.to_string(), "tcp:127.0.0.1:5000");

    a = ok("localhost:1", use);
    EXPECT_EQ(a.kind, AddressKind::tcp);
    EXPECT_EQ(a.host, "localhost");
    EXPECT_EQ(a.port, 1);

    a = ok("example.org:65535", use);
    EXPECT_EQ(a.host, "example.org");
    EXPECT_EQ(a.port, 65535);

    a = ok("[::1]:6000", use);
    EXPECT_EQ(a.kind, AddressKind::tcp);
    EXPECT_EQ(a.host, "::1");
    EXPECT_EQ(a.port, 6000);
    EXPECT_EQ(a.to_string(), "tcp:[::1]:6000");

    a = ok("tcp:[::1]:6001", use);
    EXPECT_EQ(a.host, "::1");
    EXPECT_EQ(a.port, 6001);

    a = ok("tcp:[fe80::1%lo]:7", use);
    EXPECT_EQ(a.host, "fe80::1%lo");
    EXPECT_EQ(a.port, 7);
  }
}

TEST(Address, UnixForm) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    auto a = ok("unix:/tmp/ferry.sock", use);
    EXPECT_EQ(a.kind, AddressKind::unix_socket);
    EXPECT_EQ(a.path, "/tmp/ferry.sock");
    EXPECT_EQ(a.to_string(), "unix:/tmp/ferry.sock");
    a = ok("unix:relative/s:1", use);  // a colon in a path is just a byte
    EXPECT_EQ(a.path, "relative/s:1");
  }
  refused("unix:", AddressUse::connect);
  refused("unix:/" + std::string(120, 'x'), AddressUse::listen);
}

TEST(Address, ListenDefaultsToLoopback) {
  for (const char* text : {":5000", "5000", "tcp::5000", "tcp:5000"}) {
    auto a = ok(text, AddressUse::listen);
    EXPECT_EQ(a.kind, AddressKind::tcp) << text;
    EXPECT_EQ(a.host, "127.0.0.1") << text;
    EXPECT_EQ(a.port, 5000) << text;
  }
  auto any = ok("0.0.0.0:5000", AddressUse::listen);  // only when asked
  EXPECT_EQ(any.host, "0.0.0.0");
}

TEST(Address, BadPorts) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    for (const char* text : {"h:65536", "h:abc", "h:", "h:-1", "h:+5", "h:5x", "h: 5", "h:99999999999", "[::1]:65536",
                             "[::1]:", "tcp:h:0x10"}) {
      refused(text, use);
    }
  }
  refused("h:0", AddressUse::connect);
}

// Port 0 asks the system for a free port: fine for --listen (tests rely on
// `ferry-recv --listen 127.0.0.1:0`), never for --connect.
TEST(Address, PortZeroOnlyForListen) {
  for (const char* text : {"127.0.0.1:0", "0", ":0", "[::1]:0", "tcp:localhost:0"}) {
    auto a = ok(text, AddressUse::listen);
    EXPECT_EQ(a.port, 0) << text;
  }
  for (const char* text : {"127.0.0.1:0", "[::1]:0", "tcp:localhost:0", "h:00"}) refused(text, AddressUse::connect);
}

TEST(Address, ConnectNeedsHostAndPort) {
  for (const char* text : {":5000", "5000", "tcp::5000", "localhost", "tcp:localhost", ""}) {
    refused(text, AddressUse::connect);
  }
}

TEST(Address, Ipv6NeedsBrackets) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    for (const char* text : {"::1:5000", "tcp:::1:5000", "fe80::1:22", "[::1]5000", "[::1", "[::1]:", "[::1]"}) {
      refused(text, use);
    }
  }
}

TEST(Address, MessagesQuoteTheAddress) {
  for (const char* text : {"h:65536", "::1:5000", "localhost", "vsock:nope:5000"}) {
    auto a = parse_address(text, AddressUse::connect);
    ASSERT_FALSE(a) << text;
    EXPECT_NE(a.error().message().find(text), std::string::npos) << a.error().message();
  }
}

// vsock:CID:PORT (lib/net/vsock.hpp): CID a number, any, host or local.
TEST(Address, VsockForms) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    auto a = ok("vsock:2:5000", use);
    EXPECT_EQ(a.kind, AddressKind::vsock);
    EXPECT_EQ(a.vsock_cid, 2u);
    EXPECT_EQ(a.vsock_port, 5000u);
    EXPECT_EQ(a.to_string(), "vsock:2:5000");
    EXPECT_EQ(ok("vsock:host:1", use).vsock_cid, 2u);
    EXPECT_EQ(ok("vsock:local:1", use).vsock_cid, 1u);
    EXPECT_EQ(ok("vsock:1234:7", use).vsock_cid, 1234u);
  }
  auto any = ok("vsock:any:5000", AddressUse::listen);
  EXPECT_EQ(any.to_string(), "vsock:any:5000");
  EXPECT_EQ(ok("vsock:any:0", AddressUse::listen).kind, AddressKind::vsock);  // any port, for listening
  refused("vsock:any:5000", AddressUse::connect);
  refused("vsock:2:0", AddressUse::connect);
}

TEST(Address, BadVsock) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    for (const char* text : {"vsock:", "vsock:2", "vsock:2:", "vsock::5", "vsock:guest:5", "vsock:-1:5", "vsock:2:abc",
                             "vsock:2:-1", "vsock:2:4294967296", "vsock:4294967296:5", "vsock:2:5:6", "vsock:0x2:5"}) {
      refused(text, use);
    }
  }
}

}  // namespace
}  // namespace ferry
