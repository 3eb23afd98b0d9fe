#include "protocol/auth.hpp"

#include <sodium.h>

static_assert(crypto_auth_BYTES == ferry::protocol::kMacSize);
static_assert(crypto_auth_KEYBYTES == ferry::protocol::kKeySize);

namespace ferry::protocol {

namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes exactly out.size() * 2 hex digits; false on a wrong length or a non-hex digit.
template <std::size_t N>
bool decode_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  for (std::size_t i = 0; i < N; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <std::size_t N>
std::string encode_hex(const std::array<std::uint8_t, N>& in) {
  std::string s;
  s.reserve(2 * N);
  for (std::uint8_t b : in) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 0xf]);
  }
  return s;
}

std::uint8_t role_byte(Role r) {
  switch (r) {
    case Role::sender:
      return 1;
    case Role::receiver:
      return 2;
  }
  return 0;  // not reached: every Role is listed
}

}  // namespace

AuthKey& AuthKey::operator=(const AuthKey& other) {
  if (this != &other) bytes_ = other.bytes_;
  return *this;
}

AuthKey::~AuthKey() {
  sodium_memzero(bytes_.data(), bytes_.size());
}

bool crypto_ready() {
  // sodium_init: 0 the first time, 1 when already done, -1 on failure; thread-safe.
  static const bool ready = sodium_init() >= 0;
  return ready;
}

std::string auth_message(const AuthInput& in) {
  std::string m(kAuthLabel);
  std::byte v[4];
  put_u32(v, in.version);
  m.append(reinterpret_cast<const char*>(v), sizeof v);
  // The session id is 32 hex digits in every valid HELLO; the length byte keeps the
  // encoding unambiguous for any length up to 255 (longer ids are cut, never valid).
  const std::string_view session = std::string_view(in.session).substr(0, 255);
  m.push_back(static_cast<char>(session.size()));
  m.append(session);
  m.push_back(static_cast<char>(role_byte(in.prover)));
  m.append(reinterpret_cast<const char*>(in.prover_nonce.data()), in.prover_nonce.size());
  m.append(reinterpret_cast<const char*>(in.peer_nonce.data()), in.peer_nonce.size());
  return m;
}

Mac auth_mac(const AuthKey& key, const AuthInput& in) {
  const std::string m = auth_message(in);
  Mac mac{};
  crypto_auth(mac.data(), reinterpret_cast<const unsigned char*>(m.data()), m.size(), key.bytes().data());
  return mac;
}

std::vector<std::byte> auth_frame(const AuthKey& key, const AuthInput& in) {
  const Mac mac = auth_mac(key, in);
  return encode_frame(FrameType::auth, Bytes(reinterpret_cast<const std::byte*>(mac.data()), mac.size()));
}

bool auth_verify(const AuthKey& key, const AuthInput& in, Bytes mac) {
  if (mac.size() != kMacSize) return false;
  const std::string m = auth_message(in);
  return crypto_auth_verify(reinterpret_cast<const unsigned char*>(mac.data()),
                            reinterpret_cast<const unsigned char*>(m.data()), m.size(), key.bytes().data()) == 0;
}

Nonce random_nonce() {
  (void)crypto_ready();
  Nonce n{};
  randombytes_buf(n.data(), n.size());
  return n;
}

AuthKey random_key() {
  (void)crypto_ready();
  std::array<std::uint8_t, kKeySize> bytes{};
  crypto_auth_keygen(bytes.data());
  AuthKey key(bytes);
  sodium_memzero(bytes.data(), bytes.size());
  return key;
}

std::string nonce_hex(const Nonce& n) {
  return encode_hex(n);
}

std::optional<Nonce> parse_nonce_hex(std::string_view text) {
  Nonce n{};
  if (!decode_hex(text, n)) return std::nullopt;
  return n;
}

Result<AuthKey> parse_key_text(std::string_view text) {
  if (text.ends_with("\r\n")) {
    text.remove_suffix(2);
  } else if (text.ends_with('\n')) {
    text.remove_suffix(1);
  }
  if (text.size() != 2 * kKeySize) {
    return make_error(Errc::usage, "malformed key: want 64 hex digits and a newline, found " +
                                       std::to_string(text.size()) + " characters");
  }
  std::array<std::uint8_t, kKeySize> bytes{};
  if (!decode_hex(text, bytes)) return make_error(Errc::usage, "malformed key: not 64 hex digits");
  AuthKey key(bytes);
  sodium_memzero(bytes.data(), bytes.size());
  return key;
}

std::string key_text(const AuthKey& key) {
  return encode_hex(key.bytes()) + "\n";
}

}  // namespace ferry::protocol
