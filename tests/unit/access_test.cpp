// Tests lib/net/access: --allow rules (IPv4 and IPv6 prefixes, IPv4-mapped peers,
// vsock CIDs), their refusals, and the listening policy (a key, loopback or a unix
// socket, or the loudly named opt-out).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "lib/net/access.hpp"

namespace ferry {
namespace {

sockaddr_storage ip(const std::string& text) {
  sockaddr_storage ss{};
  if (text.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    EXPECT_EQ(::inet_pton(AF_INET6, text.c_str(), &a->sin6_addr), 1) << text;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    EXPECT_EQ(::inet_pton(AF_INET, text.c_str(), &a->sin_addr), 1) << text;
  }
  return ss;
}

bool permits(const AllowList& l, const std::string& text) {
  auto ss = ip(text);
  return l.permits_ip(reinterpret_cast<const sockaddr*>(&ss));
}

AllowList list(const std::vector<std::string>& rules, AddressKind kind = AddressKind::tcp) {
  auto l = AllowList::parse(rules, kind);
  EXPECT_TRUE(l) << l.error().message();
  return l ? *l : AllowList{};
}

TEST(Allow, EmptyPermitsEveryone) {
  AllowList l;
  EXPECT_TRUE(permits(l, "127.0.0.1"));
  EXPECT_TRUE(l.permits_cid(3));
}

TEST(Allow, Ipv4Prefixes) {
  const auto l = list({"10.0.0.0/8", "192.168.1.7"});
  EXPECT_TRUE(permits(l, "10.1.2.3"));
  EXPECT_TRUE(permits(l, "10.255.255.255"));
  EXPECT_FALSE(permits(l, "11.0.0.1"));
  EXPECT_FALSE(permits(l, "127.0.0.1"));
  EXPECT_TRUE(permits(l, "192.168.1.7"));
  EXPECT_FALSE(permits(l, "192.168.1.8"));
  EXPECT_TRUE(permits(l, "::ffff:10.9.9.9")) << "an IPv4-mapped peer matches the IPv4 rule";
  EXPECT_FALSE(permits(l, "::1"));
  const auto odd = list({"172.16.0.0/12"});
  EXPECT_TRUE(permits(odd, "172.31.255.1"));
  EXPECT_FALSE(permits(odd, "172.32.0.1"));
}

TEST(Allow, Ipv6Prefixes) {
  const auto l = list({"fd00::/8", "2001:db8::1/128"});
  EXPECT_TRUE(permits(l, "fd12:3456::1"));
  EXPECT_FALSE(permits(l, "fe80::1"));
  EXPECT_TRUE(permits(l, "2001:db8::1"));
  EXPECT_FALSE(permits(l, "2001:db8::2"));
  EXPECT_FALSE(permits(l, "10.0.0.1"));
  EXPECT_TRUE(permits(list({"::/0"}), "::1"));
  EXPECT_TRUE(permits(list({"0.0.0.0/0"}), "8.8.8.8"));
}

TEST(Allow, VsockCids) {
  const auto l = list({"vsock:3", "vsock:host"}, AddressKind::vsock);
  EXPECT_TRUE(l.permits_cid(3));
  EXPECT_TRUE(l.permits_cid(2));
  EXPECT_FALSE(l.permits_cid(4));
}

TEST(Allow, BadRulesAreUsageErrors) {
  for (const std::string bad : {"10.0.0.0/33", "10.0.0.1/8", "fd00::/129", "nonsense", "10.0.0.0/", "10.0.0.0/x",
                                "vsock:", "vsock:any", "vsock:x", "host.example:1"}) {
    auto r = parse_allow_rule(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::usage);
    EXPECT_NE(r.error().message().find(bad), std::string::npos) << r.error().message();
  }
  EXPECT_FALSE(AllowList::parse({"vsock:3"}, AddressKind::tcp));
  EXPECT_FALSE(AllowList::parse({"10.0.0.0/8"}, AddressKind::vsock));
  EXPECT_FALSE(AllowList::parse({"10.0.0.0/8"}, AddressKind::unix_socket));
}

Address addr(const std::string& text) {
  auto a = parse_address(text, AddressUse::listen);
  EXPECT_TRUE(a) << text;
  return a ? *a : Address{};
}

TEST(ListenPolicy, PrivateListenersNeedNoKey) {
  for (const std::string a : {"127.0.0.1:0", "127.1.2.3:7000", "[::1]:0", ":0", "unix:/tmp/x.sock"}) {
    EXPECT_TRUE(listens_privately(addr(a))) << a;
    auto p = check_listen_policy(addr(a), false, false);
    ASSERT_TRUE(p) << a;
    EXPECT_FALSE(*p) << a;
  }
}

TEST(ListenPolicy, OthersNeedAKeyOrTheOptOut) {
  for (const std::string a : {"0.0.0.0:7000", "[::]:7000", "192.168.1.2:0", "vsock:any:5004", "vsock:1:0"}) {
    EXPECT_FALSE(listens_privately(addr(a))) << a;
    auto refused = check_listen_policy(addr(a), false, false);
    ASSERT_FALSE(refused) << a;
    EXPECT_EQ(refused.error().code, Errc::usage);
    EXPECT_NE(refused.error().message().find("--key-file"), std::string::npos);
    EXPECT_NE(refused.error().message().find("--no-auth-i-know-this-is-insecure"), std::string::npos);
    auto keyed = check_listen_policy(addr(a), true, false);
    ASSERT_TRUE(keyed);
    EXPECT_FALSE(*keyed);
    auto warned = check_listen_policy(addr(a), false, true);
    ASSERT_TRUE(warned);
    ASSERT_TRUE(*warned);
    EXPECT_NE((*warned)->find("INSECURE"), std::string::npos);
  }
  EXPECT_NE(check_listen_policy(addr("vsock:any:0"), false, false).error().message().find("vsock:any:0"),
            std::string::npos);
}

}  // namespace
}  // namespace ferry
