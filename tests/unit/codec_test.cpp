// Tests protocol/codec: a round trip for every frame type, NeedMore for every proper
// prefix (over exactly sized heap buffers, so ASan catches any overread), Malformed for
// bad magic, framing version, header check, type, flags, reserved and lengths, payload
// checksum failures, back-to-back frames, and the binary body decoders' size checks.
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "protocol/messages.hpp"

namespace ferry::protocol {
namespace {

// A heap buffer of exactly `b.size()` bytes holding a copy of `b`: a read past its end
// is a heap-buffer-overflow under ASan.
struct ExactBuffer {
  explicit ExactBuffer(Bytes b) : size(b.size()), data(new std::byte[b.size() ? b.size() : 1]) {
    if (!b.empty()) std::memcpy(data.get(), b.data(), b.size());
  }
  Bytes span() const { return {data.get(), size}; }
  std::size_t size;
  std::unique_ptr<std::byte[]> data;
};

DecodeResult decode_exact(Bytes b) {
  ExactBuffer buf(b);
  return decode_frame(buf.span());
}

// Recomputes a header's check (bytes 20..23) after a test edited bytes 0..19.
void reseal(std::byte* h) {
  put_u32(h + 20, static_cast<std::uint32_t>(XXH3_64bits(h, 20)));
}

std::vector<std::byte> header_only(FrameType type, std::uint32_t len) {
  auto h = encode_header(type, len, 0);
  return {h.begin(), h.end()};
}

std::string reason_of(const DecodeResult& r) {
  auto* m = std::get_if<Malformed>(&r);
  return m ? m->reason : std::string("<not Malformed>");
}

bool same_bytes(Bytes a, Bytes b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Decodes `wire` (exactly one frame) and checks the generic header facts.
DecodedFrame decode_one(const std::vector<std::byte>& wire, FrameType type) {
  auto r = decode_frame(wire);
  auto* f = std::get_if<DecodedFrame>(&r);
  EXPECT_NE(f, nullptr) << reason_of(r);
  if (!f) return {};
  EXPECT_EQ(f->header.type, type);
  EXPECT_EQ(f->header.version, kFrameVersion);
  EXPECT_EQ(f->consumed, wire.size());
  EXPECT_EQ(f->header.payload_length, wire.size() - kHeaderSize);
  EXPECT_EQ(f->payload.size(), wire.size() - kHeaderSize);
  EXPECT_EQ(f->payload.data(), wire.data() + kHeaderSize);  // a view, not a copy
  EXPECT_TRUE(f->payload_ok);
  if (type != FrameType::data) {  // DATA carries its block digest instead (RoundTripData)
    EXPECT_EQ(f->header.payload_checksum, XXH3_64bits(f->payload.data(), f->payload.size()));
  }
  return *f;
}

std::vector<std::byte> sample_data(std::size_t n) {
  std::vector<std::byte> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = std::byte(static_cast<unsigned char>((i * 131) ^ (i >> 8)));
  return d;
}

std::vector<std::byte> data_frame(std::uint32_t file, std::uint64_t offset, const std::vector<std::byte>& d) {
  auto head = encode_data_head(file, offset, block_digest(d, offset), d.size());
  std::vector<std::byte> out(head.begin(), head.end());
  out.insert(out.end(), d.begin(), d.end());
  return out;
}

const std::string kSession = "0123456789abcdef0123456789ABCDEF";

// ---------------------------------------------------------------------------
// Round trips

TEST(Codec, KnownTypesAndNames) {
  for (unsigned t = 0; t < 256; ++t) {
    bool known = t >= 1 && t <= 14;  // 14: CHECK, version 4
    EXPECT_EQ(is_known_type(static_cast<std::uint8_t>(t)), known) << t;
    if (known) {
      EXPECT_NE(frame_type_name(static_cast<FrameType>(t)), "UNKNOWN") << t;
    }
  }
}

TEST(Codec, BigEndianHelpersRoundTrip) {
  std::byte b[8];
  for (std::uint64_t v : {0ull, 1ull, 0x0102030405060708ull, ~0ull}) {
    put_u64(b, v);
    EXPECT_EQ(get_u64(b), v);
    put_u32(b, static_cast<std::uint32_t>(v));
    EXPECT_EQ(get_u32(b), static_cast<std::uint32_t>(v));
    put_u16(b, static_cast<std::uint16_t>(v));
    EXPECT_EQ(get_u16(b), static_cast<std::uint16_t>(v));
  }
  put_u32(b, 0x01020304);
  EXPECT_EQ(b[0], std::byte{1});
  EXPECT_EQ(b[3], std::byte{4});
}

TEST(Codec, RoundTripHello) {
  Hello m{1, 3, Role::receiver, kSession, "ferry 0.1.0"};
  auto wire = encode_frame(FrameType::hello, to_json(m));
  auto f = decode_one(wire, FrameType::hello);
  auto p = parse_hello(f.payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->min_version, 1u);
  EXPECT_EQ(p->max_version, 3u);
  EXPECT_EQ(p->role, Role::receiver);
  EXPECT_EQ(p->session, kSession);
  EXPECT_EQ(p->software, "ferry 0.1.0");
}

TEST(Codec, RoundTripOffer) {
  Offer m{42, "a/b/c.txt", EntryKind::file, 123456789, -17, 0755, "size=1,mtime_ns=2", 65536};
  auto wire = frame_of(FrameType::offer, to_json(m));
  auto f = decode_one(wire, FrameType::offer);
  auto p = parse_offer(f.payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->file_id, 42u);
  EXPECT_EQ(p->path, "a/b/c.txt");
  EXPECT_EQ(p->kind, EntryKind::file);
  EXPECT_EQ(p->size, 123456789u);
  EXPECT_EQ(p->mtime_ns, -17);
  EXPECT_EQ(p->mode, 0755u);
  EXPECT_EQ(p->identity, "size=1,mtime_ns=2");
  EXPECT_EQ(p->block_size, 65536u);
}

TEST(Codec, RoundTripAnswer) {
  Answer m{3, AnswerStatus::refuse, 0, "no"};
  auto wire = encode_frame(FrameType::answer, to_json(m));
  auto p = parse_answer(decode_one(wire, FrameType::answer).payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->file_id, 3u);
  EXPECT_EQ(p->status, AnswerStatus::refuse);
  EXPECT_EQ(p->note, "no");
}

TEST(Codec, RoundTripData) {
  for (std::size_t n : {1u, 13u, 1000u, 256u * 1024u}) {
    auto d = sample_data(n);
    auto wire = data_frame(0xfeedbeef, 0x123456789abcull, d);
    auto f = decode_one(wire, FrameType::data);
    DataView v;
    ASSERT_TRUE(decode_data(f.payload, v));
    EXPECT_EQ(v.file_id, 0xfeedbeefu);
    EXPECT_EQ(v.offset, 0x123456789abcull);
    EXPECT_TRUE(same_bytes(v.data, d));
    // Version 2: the header carries the block digest, the prefix its own check, and
    // the decoder computes the digest once and hands it on.
    EXPECT_TRUE(f.payload_ok);
    EXPECT_TRUE(f.data_check.prefix_ok);
    EXPECT_TRUE(f.data_check.data_ok);
    EXPECT_EQ(f.data_check.digest, block_digest(d, 0x123456789abcull));
    EXPECT_EQ(f.header.payload_checksum, block_digest(d, 0x123456789abcull));
  }
}

TEST(Codec, DataCheckTellsABadPrefixFromBadData) {
  auto d = sample_data(4096);
  auto wire = data_frame(3, 8192, d);
  auto bad_data = wire;
  bad_data[kDataHeadSize + 100] ^= std::byte{0x10};
  auto r = decode_exact(bad_data);
  auto& f = std::get<DecodedFrame>(r);
  EXPECT_FALSE(f.payload_ok);
  EXPECT_TRUE(f.data_check.prefix_ok);  // the block at 8192 is known to be bad
  EXPECT_FALSE(f.data_check.data_ok);
  for (std::size_t i = kHeaderSize; i < kDataHeadSize; ++i) {
    auto bad_prefix = wire;
    bad_prefix[i] ^= std::byte{0x01};
    auto r2 = decode_exact(bad_prefix);
    auto& g = std::get<DecodedFrame>(r2);
    EXPECT_FALSE(g.payload_ok) << i;
    EXPECT_FALSE(g.data_check.prefix_ok) << i;  // file id and offset cannot be trusted
  }
  // The same bytes at another offset do not verify: the digest is seeded with it.
  auto moved = data_frame(3, 8192, d);
  auto head = encode_data_head(3, 4096, block_digest(d, 8192), d.size());
  std::copy(head.begin(), head.end(), moved.begin());
  EXPECT_FALSE(std::get<DecodedFrame>(decode_exact(moved)).data_check.data_ok);
}

TEST(Codec, RoundTripDataOfMaximumChunk) {
  auto d = sample_data(kMaxChunkSize);
  auto wire = data_frame(1, 0, d);
  ASSERT_EQ(wire.size(), kHeaderSize + kMaxPayload);
  auto f = decode_one(wire, FrameType::data);
  DataView v;
  ASSERT_TRUE(decode_data(f.payload, v));
  EXPECT_EQ(v.data.size(), kMaxChunkSize);
}

TEST(Codec, RoundTripAckAndRpos) {
  auto body = encode_position({0xffffffffu, 0xffffffffffffffffull});
  auto wire = encode_frame(FrameType::ack, Bytes(body));
  Position p;
  ASSERT_TRUE(decode_position(decode_one(wire, FrameType::ack).payload, p));
  EXPECT_EQ(p.file_id, 0xffffffffu);
  EXPECT_EQ(p.offset, 0xffffffffffffffffull);
  auto rbody = encode_resend({7, 1u << 20, 256u * 1024});
  auto rwire = encode_frame(FrameType::rpos, Bytes(rbody));
  Resend r;
  ASSERT_TRUE(decode_resend(decode_one(rwire, FrameType::rpos).payload, r));
  EXPECT_EQ(r.file_id, 7u);
  EXPECT_EQ(r.offset, 1u << 20);
  EXPECT_EQ(r.length, 256u * 1024);
}

TEST(Codec, RoundTripCommit) {
  Commit m{5, 99, "85ca3a0dfcfe59849331f43fcdbd2eb8"};
  auto wire = encode_frame(FrameType::commit, to_json(m));
  auto p = parse_commit(decode_one(wire, FrameType::commit).payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->file_id, 5u);
  EXPECT_EQ(p->size, 99u);
  EXPECT_EQ(p->xxh3_128, m.xxh3_128);
}

TEST(Codec, RoundTripVerdict) {
  Verdict m{5, VerdictStatus::failed, "digest mismatch"};
  auto wire = encode_frame(FrameType::verdict, to_json(m));
  auto p = parse_verdict(decode_one(wire, FrameType::verdict).payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->status, VerdictStatus::failed);
  EXPECT_EQ(p->reason, "digest mismatch");
}

TEST(Codec, RoundTripError) {
  ErrorBody m{"protocol", "bad things"};
  auto wire = encode_frame(FrameType::error, to_json(m));
  auto p = parse_error(decode_one(wire, FrameType::error).payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->code, "protocol");
  EXPECT_EQ(p->message, "bad things");
}

TEST(Codec, RoundTripEnd) {
  End m{12, 1ull << 40};
  auto wire = encode_frame(FrameType::end, to_json(m));
  auto p = parse_end(decode_one(wire, FrameType::end).payload);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->files, 12u);
  EXPECT_EQ(p->bytes, 1ull << 40);
}

TEST(Codec, RoundTripPingPong) {
  for (FrameType t : {FrameType::ping, FrameType::pong}) {
    auto body = encode_nonce(0x8000000000000001ull);
    auto wire = encode_frame(t, Bytes(body));
    std::uint64_t n = 0;
    ASSERT_TRUE(decode_nonce(decode_one(wire, t).payload, n));
    EXPECT_EQ(n, 0x8000000000000001ull);
  }
}

TEST(Codec, EmptyPayloadFrame) {
  auto wire = encode_frame(FrameType::end, Bytes{});
  ASSERT_EQ(wire.size(), kHeaderSize);
  auto f = decode_one(wire, FrameType::end);
  EXPECT_TRUE(f.payload.empty());
}

// ---------------------------------------------------------------------------
// Truncation

std::vector<std::vector<std::byte>> sample_frames() {
  return {
      encode_frame(FrameType::hello, to_json(Hello{1, 1, Role::sender, kSession, "x"})),
      encode_frame(FrameType::ping, Bytes(encode_nonce(7))),
      encode_frame(FrameType::end, Bytes{}),
      data_frame(3, 4096, sample_data(3000)),
  };
}

TEST(Codec, EveryProperPrefixNeedsMore) {
  for (const auto& wire : sample_frames()) {
    for (std::size_t n = 0; n < wire.size(); ++n) {
      auto r = decode_exact(Bytes(wire).first(n));
      auto* more = std::get_if<NeedMore>(&r);
      ASSERT_NE(more, nullptr) << "prefix of " << n << " of " << wire.size() << ": " << reason_of(r);
      EXPECT_GT(more->at_least, n);
      EXPECT_LE(more->at_least, wire.size());
      EXPECT_EQ(more->at_least, n < kHeaderSize ? kHeaderSize : wire.size());
    }
    // and the whole frame, exactly sized, decodes
    auto r = decode_exact(wire);
    ASSERT_TRUE(std::holds_alternative<DecodedFrame>(r)) << reason_of(r);
    EXPECT_EQ(std::get<DecodedFrame>(r).consumed, wire.size());
  }
}

TEST(Codec, LargeDataPrefixesNeedMore) {
  auto wire = data_frame(1, 0, sample_data(1 << 20));
  for (std::size_t n : {std::size_t{24}, std::size_t{36}, std::size_t{4096}, wire.size() - 1}) {
    auto r = decode_exact(Bytes(wire).first(n));
    ASSERT_TRUE(std::holds_alternative<NeedMore>(r)) << n << ": " << reason_of(r);
    EXPECT_EQ(std::get<NeedMore>(r).at_least, wire.size());
  }
}

// ---------------------------------------------------------------------------
// Malformed headers

TEST(Codec, BadMagicIsMalformedEarly) {
  auto wire = encode_frame(FrameType::end, to_json(End{}));
  for (std::size_t i : {0u, 1u}) {
    auto bad = wire;
    bad[i] ^= std::byte{0x20};
    EXPECT_NE(reason_of(decode_exact(bad)).find("magic"), std::string::npos);
    // detected from the first wrong byte on, without waiting for a whole header
    EXPECT_TRUE(std::holds_alternative<Malformed>(decode_exact(Bytes(bad).first(i + 1))));
  }
  std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_TRUE(std::holds_alternative<Malformed>(decode_exact(as_bytes(garbage))));
  EXPECT_TRUE(std::holds_alternative<Malformed>(decode_exact(as_bytes(garbage).first(1))));
}

TEST(Codec, EveryHeaderBitFlipIsMalformed) {
  for (const auto& wire : sample_frames()) {
    for (std::size_t i = 0; i < kHeaderSize; ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        auto bad = wire;
        bad[i] ^= std::byte(1u << bit);
        auto r = decode_exact(bad);
        EXPECT_TRUE(std::holds_alternative<Malformed>(r)) << "byte " << i << " bit " << bit;
      }
      auto bad = wire;
      bad[i] ^= std::byte{0xff};
      EXPECT_TRUE(std::holds_alternative<Malformed>(decode_exact(bad))) << "byte " << i << " inverted";
    }
  }
}

TEST(Codec, HeaderCheckIsVerifiedBeforeTheLength) {
  // A huge length with a stale header check: malformed at once, not NeedMore(4 GiB).
  auto wire = header_only(FrameType::data, 100);
  put_u32(&wire[8], 0xffffffffu);
  EXPECT_NE(reason_of(decode_exact(wire)).find("header checksum"), std::string::npos);
}

TEST(Codec, BadFramingVersion) {
  for (std::uint8_t v : {0, 2, 255}) {
    auto h = header_only(FrameType::ping, 0);
    h[2] = std::byte{v};
    reseal(h.data());
    EXPECT_NE(reason_of(decode_exact(h)).find("version"), std::string::npos) << int(v);
  }
}

TEST(Codec, UnknownType) {
  for (std::uint8_t t : {0, 15, 16, 127, 255}) {
    auto h = header_only(FrameType::ping, 0);
    h[3] = std::byte{t};
    reseal(h.data());
    EXPECT_NE(reason_of(decode_exact(h)).find("unknown frame type"), std::string::npos) << int(t);
  }
}

TEST(Codec, NonzeroFlagsOrReserved) {
  for (std::size_t i = 4; i < 8; ++i) {
    for (std::uint8_t v : {0x01, 0x80}) {
      auto h = header_only(FrameType::ping, 0);
      h[i] = std::byte{v};
      reseal(h.data());
      EXPECT_NE(reason_of(decode_exact(h)).find("nonzero"), std::string::npos) << i;
    }
  }
}

TEST(Codec, PayloadLengthOverLimit) {
  for (std::uint32_t len : {static_cast<std::uint32_t>(kMaxPayload + 1), 0x7fffffffu, 0xffffffffu}) {
    auto h = header_only(FrameType::data, len);
    EXPECT_NE(reason_of(decode_exact(h)).find("over limit"), std::string::npos) << len;
  }
  // exactly at the limit is fine: the decoder asks for the rest
  auto h = header_only(FrameType::data, static_cast<std::uint32_t>(kMaxPayload));
  auto r = decode_exact(h);
  ASSERT_TRUE(std::holds_alternative<NeedMore>(r)) << reason_of(r);
  EXPECT_EQ(std::get<NeedMore>(r).at_least, kHeaderSize + kMaxPayload);
}

TEST(Codec, ControlPayloadOverLimit) {
  for (unsigned t = 1; t <= 12; ++t) {
    auto type = static_cast<FrameType>(t);
    if (type == FrameType::data) continue;
    auto h = header_only(type, static_cast<std::uint32_t>(kMaxControlPayload + 1));
    EXPECT_NE(reason_of(decode_exact(h)).find("over limit"), std::string::npos) << frame_type_name(type);
    auto ok = header_only(type, static_cast<std::uint32_t>(kMaxControlPayload));
    EXPECT_TRUE(std::holds_alternative<NeedMore>(decode_exact(ok))) << frame_type_name(type);
  }
  // DATA may be longer than a control frame
  auto h = header_only(FrameType::data, static_cast<std::uint32_t>(kMaxControlPayload + 1));
  EXPECT_TRUE(std::holds_alternative<NeedMore>(decode_exact(h)));
}

// The caller's limit (a receiver before its handshake): a larger header is Malformed at
// once, whatever its type, so none of the payload is waited for.
TEST(Codec, CallersPayloadLimitRefusesByTheHeaderAlone) {
  for (auto type : {FrameType::data, FrameType::hello, FrameType::ping}) {
    auto over = header_only(type, static_cast<std::uint32_t>(kMaxHandshakePayload + 1));
    auto r = decode_frame(over, kMaxHandshakePayload);
    ASSERT_TRUE(std::holds_alternative<Malformed>(r)) << frame_type_name(type);
    EXPECT_FALSE(std::get<Malformed>(r).incompatible);
    EXPECT_NE(std::get<Malformed>(r).reason.find("over the limit"), std::string::npos) << std::get<Malformed>(r).reason;
    auto at = header_only(type, static_cast<std::uint32_t>(kMaxHandshakePayload));
    EXPECT_TRUE(std::holds_alternative<NeedMore>(decode_frame(at, kMaxHandshakePayload))) << frame_type_name(type);
  }
  auto data = header_only(FrameType::data, static_cast<std::uint32_t>(kMaxPayload));
  EXPECT_TRUE(std::holds_alternative<NeedMore>(decode_frame(data))) << "the default limit is kMaxPayload";
}

// ---------------------------------------------------------------------------
// Payload checksum

TEST(Codec, FlippedPayloadBitIsReportedNotTrusted) {
  for (const auto& wire : sample_frames()) {
    for (std::size_t i = kHeaderSize; i < wire.size(); i += (wire.size() > 200 ? 97 : 1)) {
      for (int bit : {0, 7}) {
        auto bad = wire;
        bad[i] ^= std::byte(1u << bit);
        auto r = decode_exact(bad);
        auto* f = std::get_if<DecodedFrame>(&r);
        ASSERT_NE(f, nullptr) << reason_of(r);
        EXPECT_FALSE(f->payload_ok) << "byte " << i << " bit " << bit;
        EXPECT_EQ(f->consumed, wire.size());  // framing still holds: the stream can go on
      }
    }
  }
}

TEST(Codec, WrongPayloadChecksumInHeader) {
  std::string body = "{}";
  auto h = encode_header(FrameType::end, 2, XXH3_64bits(body.data(), body.size()) ^ 1);
  std::vector<std::byte> wire(h.begin(), h.end());
  wire.insert(wire.end(), as_bytes(body).begin(), as_bytes(body).end());
  auto r = decode_exact(wire);
  ASSERT_TRUE(std::holds_alternative<DecodedFrame>(r));
  EXPECT_FALSE(std::get<DecodedFrame>(r).payload_ok);
}

// ---------------------------------------------------------------------------
// Streams

TEST(Codec, FramesBackToBackDecodeInSequence) {
  auto frames = sample_frames();
  std::vector<std::byte> stream;
  for (const auto& f : frames) stream.insert(stream.end(), f.begin(), f.end());
  ExactBuffer buf(stream);
  Bytes rest = buf.span();
  for (const auto& f : frames) {
    auto r = decode_frame(rest);
    auto* d = std::get_if<DecodedFrame>(&r);
    ASSERT_NE(d, nullptr) << reason_of(r);
    EXPECT_EQ(d->consumed, f.size());
    EXPECT_TRUE(d->payload_ok);
    EXPECT_TRUE(same_bytes(d->payload, Bytes(f).subspan(kHeaderSize)));
    rest = rest.subspan(d->consumed);
  }
  EXPECT_TRUE(rest.empty());
  auto r = decode_frame(rest);
  ASSERT_TRUE(std::holds_alternative<NeedMore>(r));
  EXPECT_EQ(std::get<NeedMore>(r).at_least, kHeaderSize);
}

TEST(Codec, FrameFollowedByPartOfTheNext) {
  auto a = encode_frame(FrameType::ping, Bytes(encode_nonce(1)));
  auto b = encode_frame(FrameType::pong, Bytes(encode_nonce(2)));
  std::vector<std::byte> stream = a;
  stream.insert(stream.end(), b.begin(), b.begin() + 30);
  ExactBuffer buf(stream);
  auto r = decode_frame(buf.span());
  ASSERT_TRUE(std::holds_alternative<DecodedFrame>(r));
  EXPECT_EQ(std::get<DecodedFrame>(r).consumed, a.size());
  auto r2 = decode_frame(buf.span().subspan(a.size()));
  ASSERT_TRUE(std::holds_alternative<NeedMore>(r2));
  EXPECT_EQ(std::get<NeedMore>(r2).at_least, b.size());
}

// ---------------------------------------------------------------------------
// Binary bodies

TEST(Codec, DecodeDataRejectsWrongSizes) {
  DataView v;
  for (std::size_t n : {0u, 1u, 11u, 12u, 15u, 16u}) {
    ExactBuffer buf(sample_data(n));
    EXPECT_FALSE(decode_data(buf.span(), v)) << n;
  }
  ExactBuffer buf(sample_data(17));
  ASSERT_TRUE(decode_data(buf.span(), v));
  EXPECT_EQ(v.data.size(), 1u);
}

TEST(Codec, DecodePositionRejectsWrongSizes) {
  Position p;
  for (std::size_t n : {0u, 1u, 11u, 13u, 24u}) {
    ExactBuffer buf(sample_data(n));
    EXPECT_FALSE(decode_position(buf.span(), p)) << n;
  }
  auto body = encode_position({9, 10});
  ExactBuffer buf(body);
  ASSERT_TRUE(decode_position(buf.span(), p));
  EXPECT_EQ(p.file_id, 9u);
  EXPECT_EQ(p.offset, 10u);
}

TEST(Codec, DecodeResendRejectsWrongSizesAndOverflow) {
  Resend r;
  for (std::size_t n : {0u, 12u, 19u, 21u}) {
    ExactBuffer buf(sample_data(n));
    EXPECT_FALSE(decode_resend(buf.span(), r)) << n;
  }
  auto wrap = encode_resend({1, ~std::uint64_t{0}, 2});
  ExactBuffer buf(wrap);
  EXPECT_FALSE(decode_resend(buf.span(), r));
}

TEST(Codec, DecodeNonceRejectsWrongSizes) {
  std::uint64_t n = 0;
  for (std::size_t s : {0u, 1u, 7u, 9u, 16u}) {
    ExactBuffer buf(sample_data(s));
    EXPECT_FALSE(decode_nonce(buf.span(), n)) << s;
  }
  auto body = encode_nonce(77);
  ExactBuffer buf(body);
  ASSERT_TRUE(decode_nonce(buf.span(), n));
  EXPECT_EQ(n, 77u);
}

}  // namespace
}  // namespace ferry::protocol
