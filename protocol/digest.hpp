// Digests: XXH3-64 for chunks and journal blocks, streaming XXH3-128 for whole files.
// On the wire and in journals a digest is written in xxHash's canonical (big-endian)
// form as lower-case hex: 16 hex digits for 64 bits, 32 for 128 bits (high half first).
//
//   Digest128 d;  d.update(bytes);  ...;  std::string hex = d.hex();
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ferry::protocol {

std::uint64_t xxh3_64(std::span<const std::byte> data);
std::string hex64(std::uint64_t v);
// Parses exactly 16 hex digits.
std::optional<std::uint64_t> parse_hex64(std::string_view s);

// Streaming XXH3-128 (seed 0). Copyable: a copy is a snapshot of the state.
class Digest128 {
 public:
  Digest128();
  void update(std::span<const std::byte> data);
  // Canonical big-endian hex of the digest of everything fed so far.
  std::string hex() const;

 private:
  XXH3_state_t state_;
};

// True when `s` is 32 lower- or upper-case hex digits.
bool is_hex128(std::string_view s);

}  // namespace ferry::protocol
