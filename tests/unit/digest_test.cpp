// Tests protocol/digest: streaming XXH3-128 in pieces equals one shot, a copy is a
// snapshot, hex64/parse_hex64 round trip and refusals, is_hex128; version 2's block
// and file digests (known answers, block boundaries).
#include "protocol/digest.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ferry::protocol {
namespace {

std::vector<std::byte> sample(std::size_t n, unsigned seed = 1) {
  std::vector<std::byte> d(n);
  std::uint64_t x = 0x9e3779b97f4a7c15ull * seed;
  for (auto& b : d) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = std::byte(static_cast<unsigned char>(x));
  }
  return d;
}

std::string one_shot(std::span<const std::byte> d) {
  Digest128 g;
  g.update(d);
  return g.hex();
}

TEST(Digest, KnownValues) {  // python3-xxhash 3.2.0, see codec_kat_test.cpp for more
  EXPECT_EQ(hex64(xxh3_64({})), "2d06800538d394c2");
  EXPECT_EQ(Digest128().hex(), "99aa06d3014798d86001c324468d497f");
  std::string f = "ferry";
  std::span<const std::byte> fb(reinterpret_cast<const std::byte*>(f.data()), f.size());
  EXPECT_EQ(hex64(xxh3_64(fb)), "d152ce34ff76fb2b");
  EXPECT_EQ(one_shot(fb), "85ca3a0dfcfe59849331f43fcdbd2eb8");
}

TEST(Digest, StreamingInPiecesEqualsOneShot) {
  // Sizes around XXH3's internal boundaries (16, 128, 240 bytes, 64-byte stripes,
  // 1 KiB blocks, the 256-byte internal buffer) and a few MiB.
  for (std::size_t n : {0u, 1u, 16u, 17u, 128u, 129u, 240u, 241u, 255u, 256u, 257u, 1023u, 1024u, 1025u, 65536u,
                        3u * 1024u * 1024u + 7u}) {
    auto d = sample(n, static_cast<unsigned>(n) + 1);
    const std::string want = one_shot(d);
    for (std::size_t piece : {1u, 3u, 63u, 64u, 65u, 255u, 256u, 4096u, 1u << 20}) {
      if (n > 70000 && piece < 255) continue;  // keep the byte-at-a-time cases small
      Digest128 g;
      std::span<const std::byte> rest(d);
      while (!rest.empty()) {
        std::size_t take = std::min(piece, rest.size());
        g.update(rest.first(take));
        rest = rest.subspan(take);
      }
      EXPECT_EQ(g.hex(), want) << n << " bytes in pieces of " << piece;
    }
    // empty updates change nothing
    Digest128 e;
    e.update({});
    e.update(d);
    e.update({});
    EXPECT_EQ(e.hex(), want);
  }
}

TEST(Digest, DifferentInputsDiffer) {
  auto a = sample(1000, 1);
  auto b = a;
  b[500] ^= std::byte{1};
  EXPECT_NE(one_shot(a), one_shot(b));
  EXPECT_NE(xxh3_64(a), xxh3_64(b));
}

TEST(Digest, CopyIsASnapshot) {
  auto d = sample(5000);
  std::span<const std::byte> all(d);
  Digest128 g;
  g.update(all.first(1234));
  Digest128 snap = g;  // copy
  const std::string at_1234 = snap.hex();
  g.update(all.subspan(1234));
  EXPECT_EQ(snap.hex(), at_1234) << "updating the original changed the copy";
  EXPECT_EQ(snap.hex(), one_shot(all.first(1234)));
  EXPECT_EQ(g.hex(), one_shot(all));
  // hex() does not consume the state
  EXPECT_EQ(g.hex(), g.hex());
  // the copy can continue on its own
  snap.update(all.subspan(1234));
  EXPECT_EQ(snap.hex(), g.hex());
  // assignment is a snapshot too
  Digest128 h;
  h = snap;
  snap.update(all.first(1));
  EXPECT_EQ(h.hex(), g.hex());
  EXPECT_NE(snap.hex(), g.hex());
}

TEST(Digest, HexIsCanonicalLowerCase) {
  auto h = one_shot(sample(77));
  ASSERT_EQ(h.size(), 32u);
  for (char c : h) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << h;
  EXPECT_TRUE(is_hex128(h));
}

TEST(Digest, Hex64RoundTrip) {
  EXPECT_EQ(hex64(0), "0000000000000000");
  EXPECT_EQ(hex64(1), "0000000000000001");
  EXPECT_EQ(hex64(0x0123456789abcdefull), "0123456789abcdef");
  EXPECT_EQ(hex64(std::numeric_limits<std::uint64_t>::max()), "ffffffffffffffff");
  for (std::uint64_t v : {0ull, 1ull, 0x8000000000000000ull, 0x0123456789abcdefull, 0xfedcba9876543210ull, ~0ull}) {
    auto p = parse_hex64(hex64(v));
    ASSERT_TRUE(p.has_value()) << v;
    EXPECT_EQ(*p, v);
  }
  EXPECT_EQ(parse_hex64("0123456789ABCDEF"), std::optional<std::uint64_t>(0x0123456789abcdefull));
}

TEST(Digest, ParseHex64Rejects) {
  for (std::string s :
       {std::string(""), std::string(15, '0'), std::string(17, '0'), std::string("0x23456789abcdef"),
        std::string("0123456789abcdeg"), std::string(" 123456789abcdef"), std::string("-123456789abcdef"),
        std::string("+123456789abcdef"), std::string("0123456789abcde\0", 16), std::string("0123456789abcdé")}) {
    EXPECT_FALSE(parse_hex64(s).has_value()) << "'" << s << "'";
  }
}

TEST(Digest, IsHex128) {
  EXPECT_TRUE(is_hex128(std::string(32, '0')));
  EXPECT_TRUE(is_hex128("00112233445566778899AaBbCcDdEeFf"));
  EXPECT_FALSE(is_hex128(""));
  EXPECT_FALSE(is_hex128(std::string(31, 'a')));
  EXPECT_FALSE(is_hex128(std::string(33, 'a')));
  EXPECT_FALSE(is_hex128(std::string(31, 'a') + "g"));
  EXPECT_FALSE(is_hex128(std::string(31, 'a') + "\xff"));
}

// Version 2's digests (PROTOCOL.md section 10). Known answers computed by this code and
// pinned: a change here is a protocol change (bump kProtocolVersion).
TEST(Digest, BlockDigestIsXxh3SeededWithTheOffset) {
  const std::string h = "hello\n";
  auto b = std::as_bytes(std::span(h.data(), h.size()));
  EXPECT_EQ(hex64(block_digest(b, 0)), "99fc819aaba2462a");  // seed 0: plain XXH3-64
  EXPECT_EQ(hex64(block_digest(b, 4096)), "26d61125de85a994");
  EXPECT_NE(block_digest(b, 0), block_digest(b, 1));
}

TEST(Digest, FileDigestKnownAnswers) {
  EXPECT_EQ(FileDigest().hex(), "99aa06d3014798d86001c324468d497f");  // no blocks: XXH3-128 of nothing
  const std::string h = "hello\n";
  FileDigest f;
  f.add_block(block_digest(std::as_bytes(std::span(h.data(), h.size())), 0));
  EXPECT_EQ(f.hex(), "8e1e325e62c4f1ef1e455e83779aeee7");
}

TEST(Digest, AddBlocksCutsAtBlockBoundaries) {
  auto d = sample(10'000, 3);
  FileDigest whole;
  EXPECT_EQ(add_blocks(whole, d, 0, 4096), 10'000u);
  FileDigest by_hand;
  for (std::size_t off = 0; off < d.size(); off += 4096) {
    by_hand.add_block(block_digest(std::span(d).subspan(off, std::min<std::size_t>(4096, d.size() - off)), off));
  }
  EXPECT_EQ(whole.hex(), by_hand.hex());
  // In two calls split at a block boundary: the same digest.
  FileDigest split;
  auto mid = add_blocks(split, std::span(d).first(8192), 0, 4096);
  add_blocks(split, std::span(d).subspan(8192), mid, 4096);
  EXPECT_EQ(split.hex(), whole.hex());
  // Another block size cuts other blocks: another digest.
  FileDigest other;
  add_blocks(other, d, 0, 1024);
  EXPECT_NE(other.hex(), whole.hex());
  // A copy is a snapshot.
  FileDigest snap = split;
  snap.add_block(1);
  EXPECT_EQ(split.hex(), whole.hex());
}

}  // namespace
}  // namespace ferry::protocol
