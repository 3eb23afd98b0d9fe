// Tests lib/address: parse_address for every accepted form, the listen defaults, and
// the refusals (bad ports, a missing host or port, IPv6 without brackets, vsock:).
#include "lib/address.hpp"

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
  EXPECT_NE(a.error().message().find(text), std::string::npos) << "message should quote the address: "
                                                                 << a.error().message();
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
  auto port0 = ok("127.0.0.1:0", AddressUse::listen);
  (void)port0;
}

TEST(Address, BadPorts) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    for (const char* text : {"h:65536", "h:abc", "h:", "h:-1", "h:+5", "h:5x", "h: 5", "h:99999999999",
                             "[::1]:65536", "[::1]:", "tcp:h:0x10"}) {
      refused(text, use);
    }
  }
  refused("h:0", AddressUse::connect);
}

// Port 0 asks the system for a free port: fine for --listen (tests rely on it), not
// for --connect.
TEST(Address, PortZeroOnlyForListen) {
  auto a = ok("127.0.0.1:0", AddressUse::listen);
  EXPECT_EQ(a.port, 0);
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

TEST(Address, VsockIsAUsageError) {
  for (AddressUse use : {AddressUse::listen, AddressUse::connect}) {
    refused("vsock:2:5000", use);
    refused("vsock:", use);
  }
}

}  // namespace
}  // namespace ferry
