// Digests (docs/PROTOCOL.md section 10). Each byte of a file is hashed once per side:
//   block digest  XXH3-64 of one block's bytes, seeded with the block's offset; it is
//                 the DATA frame's checksum and the journal's record of the block
//   file digest   streaming XXH3-128 over the canonical 8 bytes of every block digest,
//                 in block order (COMMIT, resume prefixes, "already complete" files)
// On the wire and in journals a digest is written in xxHash's canonical (big-endian)
// form as lower-case hex: 16 hex digits for 64 bits, 32 for 128 bits (high half first).
//
//   FileDigest f;
//   for (each block at offset o) f.add_block(block_digest(bytes, o));
//   std::string hex = f.hex();
//   Digest128 d;  d.update(bytes);  ...;  // plain streaming XXH3-128 of bytes
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

// The digest of one block of a file: XXH3-64 of its bytes seeded with its offset, so a
// block's digest also binds its place in the file.
std::uint64_t block_digest(std::span<const std::byte> data, std::uint64_t offset);

// The whole-file digest: XXH3-128 (seed 0) over the canonical big-endian 8 bytes of each
// block digest, in block order. Copyable: a copy is a snapshot. An empty file's digest
// is XXH3-128 of nothing.
class FileDigest {
 public:
  void add_block(std::uint64_t digest);
  std::string hex() const { return state_.hex(); }

 private:
  Digest128 state_;
};

// Feeds `fd` with the block digests of `data`, which starts at `offset` (a multiple of
// `block_size`) and is cut into blocks of `block_size` bytes (the last may be shorter).
// Returns the offset after `data`. Precondition: block_size > 0.
std::uint64_t add_blocks(FileDigest& fd, std::span<const std::byte> data, std::uint64_t offset,
                         std::size_t block_size);

// True when `s` is 32 lower- or upper-case hex digits.
bool is_hex128(std::string_view s);

}  // namespace ferry::protocol
