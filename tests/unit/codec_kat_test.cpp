// Known-answer tests of the wire format: today's encoder must produce exactly the bytes
// committed in tests/unit/vectors/frames.txt (written by ferry-gen-vectors), those bytes
// must decode back to the same inputs, and XXH3-64/XXH3-128 of fixed inputs must match
// canonical hex computed independently (python3-xxhash 3.2.0, once, by hand).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/auth.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "tests/unit/kat_frames.hpp"

#ifndef FERRY_KAT_FRAMES
#error "FERRY_KAT_FRAMES (path of tests/unit/vectors/frames.txt) must be defined"
#endif

namespace ferry::protocol {
namespace {

const char* const kRegenerate =
    "\nIf this change of the wire format is intended, bump the protocol version "
    "(protocol/frame.hpp, docs/PROTOCOL.md) and regenerate the vectors from the repository top:\n"
    "  build/tests/unit/ferry-gen-vectors > tests/unit/vectors/frames.txt\n"
    "(with your build directory in place of build/). Otherwise the encoder broke the wire format.";

std::map<std::string, std::string> load_vectors() {
  std::map<std::string, std::string> out;
  std::ifstream f(FERRY_KAT_FRAMES);
  EXPECT_TRUE(f.good()) << "cannot read " << FERRY_KAT_FRAMES << kRegenerate;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string name, hex, extra;
    is >> name >> hex;
    EXPECT_FALSE(name.empty() || hex.empty() || (is >> extra)) << "bad line: " << line << kRegenerate;
    EXPECT_TRUE(out.emplace(name, hex).second) << "duplicate vector " << name << kRegenerate;
  }
  return out;
}

std::vector<std::byte> from_hex(const std::string& hex) {
  std::vector<std::byte> out;
  if (hex.size() % 2) return out;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // the vectors are lower-case
  };
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(std::byte(static_cast<unsigned char>(hi * 16 + lo)));
  }
  return out;
}

Bytes bytes_of(const std::string& s) {
  return as_bytes(s);
}

TEST(CodecKat, EncoderMatchesCommittedVectors) {
  auto vectors = load_vectors();
  auto frames = kat::kat_frames();
  EXPECT_EQ(vectors.size(), frames.size()) << "the vector file and kat_frames() list different frames" << kRegenerate;
  for (const auto& k : frames) {
    auto it = vectors.find(k.name);
    ASSERT_NE(it, vectors.end()) << "no committed vector for '" << k.name << "'" << kRegenerate;
    EXPECT_EQ(kat::to_hex(k.wire), it->second) << "frame '" << k.name << "' encodes differently" << kRegenerate;
  }
}

TEST(CodecKat, CommittedVectorsDecodeBack) {
  auto vectors = load_vectors();
  std::map<std::string, FrameType> type_of;
  for (const auto& k : kat::kat_frames()) type_of[k.name] = k.type;
  for (const auto& [name, hex] : vectors) {
    SCOPED_TRACE(name);
    auto wire = from_hex(hex);
    ASSERT_FALSE(wire.empty()) << "vector is not hex" << kRegenerate;
    auto r = decode_frame(wire);
    auto* f = std::get_if<DecodedFrame>(&r);
    ASSERT_NE(f, nullptr) << "committed vector does not decode" << kRegenerate;
    EXPECT_EQ(f->consumed, wire.size());
    EXPECT_TRUE(f->payload_ok);
    ASSERT_TRUE(type_of.count(name)) << "unknown vector name" << kRegenerate;
    EXPECT_EQ(f->header.type, type_of[name]);
  }
}

// Parses the committed bytes (not today's encoder output) into the typed bodies and
// compares them with the fixed inputs.
TEST(CodecKat, CommittedVectorsCarryTheFixedInputs) {
  auto vectors = load_vectors();
  auto payload_of = [&](const std::string& name) {
    auto wire = from_hex(vectors[name]);
    auto r = decode_frame(wire);
    auto* f = std::get_if<DecodedFrame>(&r);
    if (!f) return std::vector<std::byte>{};
    return std::vector<std::byte>(f->payload.begin(), f->payload.end());
  };
  {
    auto m = parse_hello(payload_of("hello"));
    ASSERT_TRUE(m) << m.error().message();
    auto want = kat::kat_hello();
    EXPECT_EQ(m->session, want.session);
    EXPECT_EQ(m->software, want.software);
    EXPECT_EQ(m->role, want.role);
    EXPECT_EQ(m->min_version, want.min_version);
    EXPECT_EQ(m->max_version, want.max_version);
    EXPECT_EQ(m->nonce, want.nonce);
    EXPECT_EQ(m->keyed, want.keyed);
  }
  {
    // HMAC-SHA-512 truncated to 256 bits of the MAC input of PROTOCOL.md 5.3, computed
    // independently (python3: hmac.new(key, msg, hashlib.sha512).hexdigest()[:64]).
    auto mac = payload_of("auth");
    EXPECT_EQ(kat::to_hex(mac), "3b4ad0725f4622b7948685f18135435618bfc67d1a9aaeab77ec1a71158c24ed");
    EXPECT_TRUE(protocol::auth_verify(kat::kat_auth_key(), kat::kat_auth_input(), mac));
  }
  for (auto [name, want] :
       {std::pair{"offer_file", kat::kat_offer_file()}, std::pair{"offer_dir", kat::kat_offer_dir()},
        std::pair{"offer_eager", kat::kat_offer_eager()}, std::pair{"offer_symlink", kat::kat_offer_symlink()},
        std::pair{"offer_eager_dir", kat::kat_offer_eager_dir()}}) {
    auto m = parse_offer(payload_of(name));
    ASSERT_TRUE(m) << name << ": " << m.error().message();
    EXPECT_EQ(m->file_id, want.file_id);
    EXPECT_EQ(m->path, want.path);
    EXPECT_EQ(m->kind, want.kind);
    EXPECT_EQ(m->size, want.size);
    EXPECT_EQ(m->mtime_ns, want.mtime_ns);
    EXPECT_EQ(m->mode, want.mode);
    EXPECT_EQ(m->identity, want.identity);
    EXPECT_EQ(m->block_size, want.block_size);
    EXPECT_EQ(m->eager, want.eager) << name;
    EXPECT_EQ(m->target, want.target) << name;
  }
  for (auto [name, want] :
       {std::pair{"answer_accept", kat::kat_answer_accept()}, std::pair{"answer_refuse", kat::kat_answer_refuse()},
        std::pair{"answer_created", kat::kat_answer_created()},
        std::pair{"answer_refuse_io", kat::kat_answer_refuse_io()}}) {
    auto m = parse_answer(payload_of(name));
    ASSERT_TRUE(m) << name << ": " << m.error().message();
    EXPECT_EQ(m->file_id, want.file_id);
    EXPECT_EQ(m->status, want.status);
    EXPECT_EQ(m->offset, want.offset);
    EXPECT_EQ(m->note, want.note);
    EXPECT_EQ(m->held, want.held);
    EXPECT_EQ(m->created, want.created) << name;
    EXPECT_EQ(m->local_io, want.local_io) << name;
  }
  {
    DataView v;
    auto p = payload_of("data");
    ASSERT_TRUE(decode_data(p, v));
    EXPECT_EQ(v.file_id, kat::kKatDataFile);
    EXPECT_EQ(v.offset, kat::kKatDataOffset);
    auto want = kat::kat_data_bytes();
    EXPECT_TRUE(std::equal(v.data.begin(), v.data.end(), want.begin(), want.end()));
  }
  {
    Position pos;
    ASSERT_TRUE(decode_position(payload_of("ack"), pos));
    EXPECT_EQ(pos.file_id, kat::kKatAck.file_id);
    EXPECT_EQ(pos.offset, kat::kKatAck.offset);
    Resend r;
    ASSERT_TRUE(decode_resend(payload_of("rpos"), r));
    EXPECT_EQ(r.file_id, kat::kKatRpos.file_id);
    EXPECT_EQ(r.offset, kat::kKatRpos.offset);
    EXPECT_EQ(r.length, kat::kKatRpos.length);
  }
  {
    auto m = parse_commit(payload_of("commit"));
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->xxh3_128, kat::kat_commit().xxh3_128);
    EXPECT_EQ(m->size, kat::kat_commit().size);
  }
  for (auto [name, want] : {std::pair{"verdict_verified", kat::kat_verdict_verified()},
                            std::pair{"verdict_failed", kat::kat_verdict_failed()}}) {
    auto m = parse_verdict(payload_of(name));
    ASSERT_TRUE(m) << name << ": " << m.error().message();
    EXPECT_EQ(m->status, want.status);
    EXPECT_EQ(m->reason, want.reason);
  }
  {
    auto m = parse_error(payload_of("error"));
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->code, kat::kat_error().code);
    EXPECT_EQ(m->message, kat::kat_error().message);
  }
  {
    auto m = parse_end(payload_of("end"));
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->files, kat::kat_end().files);
    EXPECT_EQ(m->bytes, kat::kat_end().bytes);
  }
  {
    auto m = parse_hello(payload_of("hello_check"));
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->min_version, protocol::kProtocolVersion);
    EXPECT_EQ(m->purpose, protocol::Purpose::check);
    EXPECT_TRUE(m->list_extra);
  }
  for (auto [name, want] : {std::pair{"check_different", kat::kat_check_different()},
                            std::pair{"check_names", kat::kat_check_names()}}) {
    auto m = parse_check(payload_of(name));
    ASSERT_TRUE(m) << name << ": " << m.error().message();
    EXPECT_EQ(m->file_id, want.file_id);
    EXPECT_EQ(m->result, want.result);
    EXPECT_EQ(m->reason, want.reason);
    EXPECT_EQ(m->names, want.names);
    EXPECT_EQ(m->truncated, want.truncated);
  }
  for (auto [name, want] : {std::pair{"ping", kat::kKatPing}, std::pair{"pong", kat::kKatPong}}) {
    std::uint64_t n = 0;
    ASSERT_TRUE(decode_nonce(payload_of(name), n)) << name;
    EXPECT_EQ(n, want);
  }
}

// A hand-checked header: the layout of docs/PROTOCOL.md section 2, byte by byte.
TEST(CodecKat, HeaderLayout) {
  auto body = encode_nonce(kat::kKatPing);
  auto wire = encode_frame(FrameType::ping, Bytes(body));
  ASSERT_EQ(wire.size(), 32u);
  auto hex = kat::to_hex(wire);
  EXPECT_EQ(hex.substr(0, 24), "4659010b0000000000000008");  // magic, version 1, PING, flags, reserved, length 8
  EXPECT_EQ(hex.substr(24, 16), hex64(xxh3_64(body)));       // payload checksum, big-endian
  EXPECT_EQ(hex.substr(48), "0123456789abcdef");             // the nonce, big-endian
}

// XXH3 of fixed inputs, canonical (big-endian) hex, from python3-xxhash 3.2.0:
//   xxhash.xxh3_64(s).hexdigest(), xxhash.xxh3_128(s).hexdigest()
struct HashKat {
  std::string input;
  const char* xxh3_64;
  const char* xxh3_128;
};

std::string pattern(std::size_t n) {  // bytes((i*31+7) % 256 for i in range(n))
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + 7) % 256);
  return s;
}

std::string range_times_4() {  // bytes(range(256)) * 4
  std::string s;
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  return s;
}

std::vector<HashKat> hash_kats() {
  return {
      {"", "2d06800538d394c2", "99aa06d3014798d86001c324468d497f"},
      {"ferry", "d152ce34ff76fb2b", "85ca3a0dfcfe59849331f43fcdbd2eb8"},
      {"a", "e6c632b61e964e1f", "a96faf705af16834e6c632b61e964e1f"},
      {"The quick brown fox jumps over the lazy dog", "ce7d19a5418fb365", "ddd650205ca3e7fa24a1cc2e3a8a7651"},
      {range_times_4(), "a870f92984398d22", "83885e853bb6640ca870f92984398d22"},
      {pattern(100000), "ccf90df7e7e37036", "8ce7a24d31cd94b1ccf90df7e7e37036"},
  };
}

TEST(CodecKat, Xxh3Canonical) {
  for (const auto& k : hash_kats()) {
    SCOPED_TRACE("input of " + std::to_string(k.input.size()) + " bytes");
    EXPECT_EQ(hex64(xxh3_64(bytes_of(k.input))), k.xxh3_64);
    Digest128 d;
    d.update(bytes_of(k.input));
    EXPECT_EQ(d.hex(), k.xxh3_128);
    // the same digest fed in uneven pieces
    Digest128 pieces;
    Bytes rest = bytes_of(k.input);
    for (std::size_t step = 1; !rest.empty(); step = step * 3 + 1) {
      std::size_t take = std::min(step, rest.size());
      pieces.update(rest.first(take));
      rest = rest.subspan(take);
    }
    EXPECT_EQ(pieces.hex(), k.xxh3_128);
  }
}

}  // namespace
}  // namespace ferry::protocol
