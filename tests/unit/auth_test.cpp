// Tests protocol/auth (the MAC of the AUTH frame, nonces, key text) and lib/fs/key_file
// (loading and generating key files): the right key verifies and nothing else does,
// malformed and over-exposed key files are refused with one line, a generated key file
// is 0600 and never overwritten.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <string>

#include "lib/fs/key_file.hpp"
#include "protocol/auth.hpp"
#include "temp_dir.hpp"

namespace ferry {
namespace {

namespace P = protocol;

P::AuthKey key_of(std::uint8_t fill) {
  std::array<std::uint8_t, P::kKeySize> b{};
  b.fill(fill);
  return P::AuthKey(b);
}

P::Nonce nonce_of(std::uint8_t fill) {
  P::Nonce n{};
  n.fill(fill);
  return n;
}

P::AuthInput input() {
  return {P::kProtocolVersion, "0123456789abcdef0123456789abcdef", P::Role::sender, nonce_of(1), nonce_of(2)};
}

P::Bytes bytes_of(const P::Mac& m) {
  return {reinterpret_cast<const std::byte*>(m.data()), m.size()};
}

TEST(AuthMac, RightKeyVerifies) {
  const auto mac = P::auth_mac(key_of(7), input());
  EXPECT_TRUE(P::auth_verify(key_of(7), input(), bytes_of(mac)));
}

TEST(AuthMac, AnythingElseDoesNotVerify) {
  const auto mac = P::auth_mac(key_of(7), input());
  EXPECT_FALSE(P::auth_verify(key_of(8), input(), bytes_of(mac))) << "wrong key";
  auto in = input();
  in.prover = P::Role::receiver;
  EXPECT_FALSE(P::auth_verify(key_of(7), in, bytes_of(mac))) << "wrong role (reflection)";
  in = input();
  std::swap(in.prover_nonce, in.peer_nonce);
  EXPECT_FALSE(P::auth_verify(key_of(7), in, bytes_of(mac))) << "nonces swapped";
  in = input();
  in.peer_nonce = nonce_of(3);
  EXPECT_FALSE(P::auth_verify(key_of(7), in, bytes_of(mac))) << "another peer nonce (replay)";
  in = input();
  in.prover_nonce = nonce_of(3);
  EXPECT_FALSE(P::auth_verify(key_of(7), in, bytes_of(mac))) << "another prover nonce";
  in = input();
  in.session[0] = 'f';
  EXPECT_FALSE(P::auth_verify(key_of(7), in, bytes_of(mac))) << "another session";
  in = input();
  in.version = P::kProtocolVersion + 1;
  EXPECT_FALSE(P::auth_verify(key_of(7), in, bytes_of(mac))) << "another version";
  auto flipped = mac;
  flipped[31] ^= 1;
  EXPECT_FALSE(P::auth_verify(key_of(7), input(), bytes_of(flipped))) << "a flipped bit";
  EXPECT_FALSE(P::auth_verify(key_of(7), input(), bytes_of(mac).first(31))) << "too short";
  std::vector<std::byte> longer(bytes_of(mac).begin(), bytes_of(mac).end());
  longer.push_back(std::byte{0});
  EXPECT_FALSE(P::auth_verify(key_of(7), input(), longer)) << "too long";
}

// The MAC input as PROTOCOL.md 5.3 lays it out.
TEST(AuthMac, MessageLayout) {
  const std::string m = P::auth_message(input());
  ASSERT_EQ(m.size(), 11u + 4 + 1 + 32 + 1 + 32 + 32);
  EXPECT_EQ(m.substr(0, 11), std::string("ferry-auth\0", 11));
  EXPECT_EQ(m.substr(11, 4), std::string("\0\0\0", 3) + static_cast<char>(P::kProtocolVersion));
  EXPECT_EQ(m[15], 32);
  EXPECT_EQ(m.substr(16, 32), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(m[48], 1) << "sender is 1";
  EXPECT_EQ(m.substr(49, 32), std::string(32, '\1'));
  EXPECT_EQ(m.substr(81, 32), std::string(32, '\2'));
  auto in = input();
  in.prover = P::Role::receiver;
  EXPECT_EQ(P::auth_message(in)[48], 2) << "receiver is 2";
}

TEST(AuthMac, FrameCarriesTheMac) {
  const auto wire = P::auth_frame(key_of(7), input());
  auto r = P::decode_frame(P::Bytes(wire));
  auto* f = std::get_if<P::DecodedFrame>(&r);
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->payload_ok);
  EXPECT_EQ(f->header.type, P::FrameType::auth);
  EXPECT_TRUE(P::auth_verify(key_of(7), input(), f->payload));
}

TEST(AuthNonce, FreshAndHexRoundTrip) {
  std::set<std::string> seen;
  for (int i = 0; i < 16; ++i) seen.insert(P::nonce_hex(P::random_nonce()));
  EXPECT_EQ(seen.size(), 16u);
  const auto n = P::random_nonce();
  EXPECT_EQ(P::parse_nonce_hex(P::nonce_hex(n)), n);
  EXPECT_EQ(P::nonce_hex(n).size(), 64u);
  EXPECT_FALSE(P::parse_nonce_hex(std::string(63, 'a')));
  EXPECT_FALSE(P::parse_nonce_hex(std::string(64, 'g')));
  EXPECT_TRUE(P::parse_nonce_hex(std::string(64, 'F')));
}

TEST(KeyText, GoodForms) {
  const std::string hex = std::string(62, 'a') + "0F";
  for (const std::string& text : {hex, hex + "\n", hex + "\r\n"}) {
    auto k = P::parse_key_text(text);
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_EQ(k->bytes()[0], 0xaa);
    EXPECT_EQ(k->bytes()[31], 0x0f);
  }
  const auto k = P::random_key();
  auto back = P::parse_key_text(P::key_text(k));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->bytes(), k.bytes());
  EXPECT_EQ(P::key_text(k).size(), 65u);
}

TEST(KeyText, MalformedIsRefused) {
  const std::string hex(64, 'a');
  for (const std::string& text : {std::string(), hex.substr(1), hex + "a", hex + "\n\n", "x" + hex.substr(1),
                                  hex.substr(0, 63) + " ", " " + hex}) {
    auto k = P::parse_key_text(text);
    ASSERT_FALSE(k) << "accepted '" << text << "'";
    EXPECT_EQ(k.error().code, Errc::usage);
    EXPECT_EQ(k.error().message().find('\n'), std::string::npos);
  }
}

std::string write_key(const test::TempDir& t, const std::string& name, const std::string& text, mode_t mode) {
  const std::string path = t.path() + "/" + name;
  std::ofstream(path) << text;
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

TEST(KeyFile, GoodFileLoads) {
  test::TempDir t;
  const auto path = write_key(t, "k", std::string(64, 'b') + "\n", 0600);
  auto k = load_key_file(path);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->bytes()[5], 0xbb);
  EXPECT_TRUE(load_key_file(write_key(t, "r", std::string(64, 'b') + "\n", 0400)));
}

TEST(KeyFile, ShortFileIsRefused) {
  test::TempDir t;
  auto k = load_key_file(write_key(t, "k", std::string(40, 'b') + "\n", 0600));
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code, Errc::usage);
  EXPECT_NE(k.error().message().find("malformed key"), std::string::npos) << k.error().message();
  EXPECT_NE(k.error().message().find(t.path()), std::string::npos) << "names the file";
}

TEST(KeyFile, BadHexIsRefused) {
  test::TempDir t;
  auto k = load_key_file(write_key(t, "k", std::string(63, 'b') + "z\n", 0600));
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().message().find("not 64 hex digits"), std::string::npos) << k.error().message();
  auto big = load_key_file(write_key(t, "big", std::string(4096, 'b'), 0600));
  ASSERT_FALSE(big);
}

TEST(KeyFile, GroupOrWorldAccessIsRefused) {
  test::TempDir t;
  for (mode_t mode : {0640, 0604, 0620, 0660, 0644}) {
    const auto path = write_key(t, "k" + std::to_string(mode), std::string(64, 'b') + "\n", mode);
    auto k = load_key_file(path);
    ASSERT_FALSE(k) << std::oct << mode;
    EXPECT_EQ(k.error().code, Errc::usage);
    EXPECT_NE(k.error().message().find("chmod 600"), std::string::npos) << k.error().message();
  }
}

TEST(KeyFile, MissingOrNotAFileIsRefused) {
  test::TempDir t;
  auto missing = load_key_file(t.path() + "/none");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::usage);
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
  auto dir = load_key_file(t.path());
  ASSERT_FALSE(dir);
}

TEST(KeyFile, GenerateMakesA0600FileAndNeverOverwrites) {
  test::TempDir t;
  const mode_t old = ::umask(0);  // a permissive umask must not widen the file
  const std::string a = t.path() + "/a", b = t.path() + "/b";
  auto made = generate_key_file(a);
  ::umask(old);
  ASSERT_TRUE(made) << made.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(a.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto ka = load_key_file(a);
  ASSERT_TRUE(ka) << ka.error().message();
  ASSERT_TRUE(generate_key_file(b));
  auto kb = load_key_file(b);
  ASSERT_TRUE(kb);
  EXPECT_NE(ka->bytes(), kb->bytes());
  auto again = generate_key_file(a);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::usage);
  auto still = load_key_file(a);
  ASSERT_TRUE(still);
  EXPECT_EQ(still->bytes(), ka->bytes()) << "the existing key was overwritten";
}

}  // namespace
}  // namespace ferry
