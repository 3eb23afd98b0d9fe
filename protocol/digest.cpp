#include "protocol/digest.hpp"

#include <algorithm>
#include <cctype>

namespace ferry::protocol {
namespace {
constexpr char kHex[] = "0123456789abcdef";

std::string to_hex(const unsigned char* p, std::size_t n) {
  std::string s(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = kHex[p[i] >> 4];
    s[2 * i + 1] = kHex[p[i] & 0xf];
  }
  return s;
}
}  // namespace

std::uint64_t xxh3_64(std::span<const std::byte> data) {
  return XXH3_64bits(data.data(), data.size());
}

std::string hex64(std::uint64_t v) {
  XXH64_canonical_t c;
  XXH64_canonicalFromHash(&c, v);
  return to_hex(c.digest, sizeof c.digest);
}

std::optional<std::uint64_t> parse_hex64(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  std::uint64_t v = 0;
  for (char ch : s) {
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
    else return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

Digest128::Digest128() { XXH3_128bits_reset(&state_); }

void Digest128::update(std::span<const std::byte> data) {
  XXH3_128bits_update(&state_, data.data(), data.size());
}

std::string Digest128::hex() const {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&state_));
  return to_hex(c.digest, sizeof c.digest);
}

std::uint64_t block_digest(std::span<const std::byte> data, std::uint64_t offset) {
  return XXH3_64bits_withSeed(data.data(), data.size(), offset);
}

void FileDigest::add_block(std::uint64_t digest) {
  XXH64_canonical_t c;
  XXH64_canonicalFromHash(&c, digest);
  state_.update(std::as_bytes(std::span(c.digest)));
}

std::uint64_t add_blocks(FileDigest& fd, std::span<const std::byte> data, std::uint64_t offset,
                         std::size_t block_size) {
  while (!data.empty()) {
    const std::size_t n = std::min(block_size, data.size());
    fd.add_block(block_digest(data.first(n), offset));
    data = data.subspan(n);
    offset += n;
  }
  return offset;
}

bool is_hex128(std::string_view s) {
  if (s.size() != 32) return false;
  for (char ch : s) {
    if (!std::isxdigit(static_cast<unsigned char>(ch))) return false;
  }
  return true;
}

}  // namespace ferry::protocol
