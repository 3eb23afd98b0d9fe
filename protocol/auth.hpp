// Authentication of a ferry connection (docs/PROTOCOL.md section 5.3): a shared secret
// key, a fresh random nonce from each side in its HELLO, and an AUTH frame in each
// direction whose body is a MAC under the key over both nonces, the prover's role, the
// session id and the protocol version. The MAC is libsodium's crypto_auth
// (HMAC-SHA-512-256), verified in constant time.
//
// This header names no libsodium type: the sessions include it and stay sans-I/O
// (cmake/check_sans_io.cmake); only auth.cpp includes <sodium.h>.
//
//   AuthKey key = *parse_key_text(file_text);
//   AuthInput in{kProtocolVersion, session, Role::sender, my_nonce, their_nonce};
//   Mac m = auth_mac(key, in);                       // the body of my AUTH frame
//   bool ok = auth_verify(key, peer_input, frame.payload);  // their AUTH frame
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/auth_key.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry::protocol {

inline constexpr std::size_t kNonceSize = 32;  // bytes of a HELLO nonce (64 hex digits)
inline constexpr std::size_t kMacSize = 32;    // bytes of an AUTH body (crypto_auth_BYTES)
// Domain separation: the first bytes of every MAC input, so that a ferry MAC can never
// be taken for any other use of the same key.
inline constexpr std::string_view kAuthLabel{"ferry-auth\0", 11};

using Nonce = std::array<std::uint8_t, kNonceSize>;
using Mac = std::array<std::uint8_t, kMacSize>;

// What one side's MAC covers (PROTOCOL.md 5.3, "MAC input"):
//   label "ferry-auth" NUL (11 bytes) | u32 version | u8 session length | session id
//   | u8 prover role (1 sender, 2 receiver) | prover's nonce (32) | peer's nonce (32)
struct AuthInput {
  std::uint32_t version = kProtocolVersion;
  std::string session;  // the session id both HELLOs carry (32 hex digits)
  Role prover = Role::sender;
  Nonce prover_nonce{};
  Nonce peer_nonce{};
};

// The bytes auth_mac() authenticates, for tests and the protocol document.
std::string auth_message(const AuthInput& in);
// crypto_auth(auth_message(in), key).
Mac auth_mac(const AuthKey& key, const AuthInput& in);
// A whole AUTH frame (type 13) whose body is auth_mac(key, in).
std::vector<std::byte> auth_frame(const AuthKey& key, const AuthInput& in);
// True when `mac` is exactly kMacSize bytes and equals auth_mac(key, in); the
// comparison takes the same time whatever the bytes (crypto_auth_verify).
bool auth_verify(const AuthKey& key, const AuthInput& in, Bytes mac);

// Fresh random bytes from libsodium's CSPRNG (randombytes_buf: getrandom(2)).
Nonce random_nonce();
AuthKey random_key();
// Initialises libsodium once (sodium_init; thread-safe). False when it cannot be (no
// entropy source): the engines and the key generator check it first and fail with
// Errc::internal.
bool crypto_ready();

// Nonces travel in HELLO as 64 hex digits (lowercase when written; either case read).
std::string nonce_hex(const Nonce& n);
std::optional<Nonce> parse_nonce_hex(std::string_view text);

// A key file's text: exactly 64 hex digits, optionally followed by one newline
// ("\n" or "\r\n"). Errc::usage naming what is wrong (never the key's bytes).
Result<AuthKey> parse_key_text(std::string_view text);
// The text of a key file: 64 lowercase hex digits and a newline.
std::string key_text(const AuthKey& key);

}  // namespace ferry::protocol
