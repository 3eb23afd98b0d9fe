#include "protocol/codec.hpp"

#include <xxhash.h>

#include <cstring>

#include "protocol/digest.hpp"

namespace ferry::protocol {

void put_u16(std::byte* p, std::uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
void put_u32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (24 - 8 * i));
}
void put_u64(std::byte* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = std::byte(v >> (56 - 8 * i));
}
std::uint16_t get_u16(const std::byte* p) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                                    std::to_integer<unsigned>(p[1]));
}
std::uint32_t get_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}
std::uint64_t get_u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

bool is_known_type(std::uint8_t t) {
  return t >= static_cast<std::uint8_t>(FrameType::hello) &&
         t <= static_cast<std::uint8_t>(FrameType::check);
}

std::string_view frame_type_name(FrameType t) {
  switch (t) {
    case FrameType::hello: return "HELLO";
    case FrameType::offer: return "OFFER";
    case FrameType::answer: return "ANSWER";
    case FrameType::data: return "DATA";
    case FrameType::ack: return "ACK";
    case FrameType::rpos: return "RPOS";
    case FrameType::commit: return "COMMIT";
    case FrameType::verdict: return "VERDICT";
    case FrameType::error: return "ERROR";
    case FrameType::end: return "END";
    case FrameType::ping: return "PING";
    case FrameType::pong: return "PONG";
    case FrameType::auth: return "AUTH";
    case FrameType::check: return "CHECK";
  }
  return "UNKNOWN";
}

namespace {
std::uint32_t header_check(const std::byte* h) {
  return static_cast<std::uint32_t>(XXH3_64bits(h, 20));
}

// The DATA prefix check: low 32 bits of XXH3-64 of the file id and offset (12 bytes).
std::uint32_t prefix_check(const std::byte* prefix) {
  return static_cast<std::uint32_t>(XXH3_64bits(prefix, 12));
}

// The one pass over a DATA frame's bytes: the prefix check, then the block digest.
DataCheck check_data(Bytes payload, std::uint64_t header_digest) {
  DataCheck c;
  if (payload.size() <= kDataPrefixSize) return c;
  const std::byte* p = payload.data();
  c.prefix_ok = get_u32(p + 12) == prefix_check(p);
  if (!c.prefix_ok) return c;
  c.digest = block_digest(payload.subspan(kDataPrefixSize), get_u64(p + 4));
  c.data_ok = c.digest == header_digest;
  return c;
}
}  // namespace

std::array<std::byte, kHeaderSize> encode_header(FrameType type, std::uint32_t payload_length,
                                                 std::uint64_t payload_checksum) {
  std::array<std::byte, kHeaderSize> h{};
  h[0] = std::byte{kMagic0};
  h[1] = std::byte{kMagic1};
  h[2] = std::byte{kFrameVersion};
  h[3] = std::byte{static_cast<std::uint8_t>(type)};
  // bytes 4..7: flags and reserved, zero
  put_u32(&h[8], payload_length);
  put_u64(&h[12], payload_checksum);
  put_u32(&h[20], header_check(h.data()));
  return h;
}

std::vector<std::byte> encode_frame(FrameType type, Bytes payload) {
  auto h = encode_header(type, static_cast<std::uint32_t>(payload.size()),
                         XXH3_64bits(payload.data(), payload.size()));
  std::vector<std::byte> out;
  out.reserve(h.size() + payload.size());
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<std::byte> encode_frame(FrameType type, const std::string& payload) {
  return encode_frame(type, as_bytes(payload));
}

std::array<std::byte, kDataHeadSize> encode_data_head(std::uint32_t file_id, std::uint64_t offset,
                                                      std::uint64_t digest, std::size_t data_length) {
  std::array<std::byte, kDataHeadSize> out{};
  auto h = encode_header(FrameType::data, static_cast<std::uint32_t>(kDataPrefixSize + data_length), digest);
  std::memcpy(out.data(), h.data(), h.size());
  std::byte* prefix = out.data() + kHeaderSize;
  put_u32(prefix, file_id);
  put_u64(prefix + 4, offset);
  put_u32(prefix + 12, prefix_check(prefix));
  return out;
}

DecodeResult decode_frame(Bytes in, std::size_t max_payload) {
  if (in.size() < kHeaderSize) {
    // Reject a wrong magic as early as possible so garbage is not buffered.
    if (!in.empty() && in[0] != std::byte{kMagic0}) return Malformed{"bad magic"};
    if (in.size() > 1 && in[1] != std::byte{kMagic1}) return Malformed{"bad magic"};
    return NeedMore{kHeaderSize};
  }
  const std::byte* h = in.data();
  if (h[0] != std::byte{kMagic0} || h[1] != std::byte{kMagic1}) return Malformed{"bad magic"};
  if (get_u32(h + 20) != header_check(h)) return Malformed{"header checksum mismatch"};
  const auto version = std::to_integer<std::uint8_t>(h[2]);
  if (version != kFrameVersion) {
    return Malformed{"unsupported framing version " + std::to_string(version), true};
  }
  const auto type = std::to_integer<std::uint8_t>(h[3]);
  if (!is_known_type(type)) return Malformed{"unknown frame type " + std::to_string(type), true};
  if (get_u16(h + 4) != 0 || get_u16(h + 6) != 0) return Malformed{"nonzero flags or reserved bits"};
  const std::uint32_t len = get_u32(h + 8);
  if (len > kMaxPayload) return Malformed{"payload length " + std::to_string(len) + " over limit"};
  if (len > max_payload) {
    return Malformed{"payload length " + std::to_string(len) + " over the limit of " + std::to_string(max_payload) +
                     " bytes for now"};
  }
  if (static_cast<FrameType>(type) != FrameType::data && len > kMaxControlPayload) {
    return Malformed{"control payload length " + std::to_string(len) + " over limit"};
  }
  if (in.size() - kHeaderSize < len) return NeedMore{kHeaderSize + len};
  DecodedFrame f;
  f.header.version = version;
  f.header.type = static_cast<FrameType>(type);
  f.header.payload_length = len;
  f.header.payload_checksum = get_u64(h + 12);
  f.payload = in.subspan(kHeaderSize, len);
  f.consumed = kHeaderSize + len;
  if (f.header.type == FrameType::data) {
    f.data_check = check_data(f.payload, f.header.payload_checksum);
    f.payload_ok = f.data_check.prefix_ok && f.data_check.data_ok;
  } else {
    f.payload_ok = XXH3_64bits(f.payload.data(), f.payload.size()) == f.header.payload_checksum;
  }
  return f;
}

std::array<std::byte, 12> encode_position(Position p) {
  std::array<std::byte, 12> out{};
  put_u32(&out[0], p.file_id);
  put_u64(&out[4], p.offset);
  return out;
}

bool decode_position(Bytes payload, Position& out) {
  if (payload.size() != 12) return false;
  out.file_id = get_u32(payload.data());
  out.offset = get_u64(payload.data() + 4);
  return true;
}

std::array<std::byte, 20> encode_resend(Resend r) {
  std::array<std::byte, 20> out{};
  put_u32(&out[0], r.file_id);
  put_u64(&out[4], r.offset);
  put_u64(&out[12], r.length);
  return out;
}

bool decode_resend(Bytes payload, Resend& out) {
  if (payload.size() != 20) return false;
  out.file_id = get_u32(payload.data());
  out.offset = get_u64(payload.data() + 4);
  out.length = get_u64(payload.data() + 12);
  return out.offset + out.length >= out.offset;
}

bool decode_data(Bytes payload, DataView& out) {
  if (payload.size() <= kDataPrefixSize) return false;
  out.file_id = get_u32(payload.data());
  out.offset = get_u64(payload.data() + 4);
  out.data = payload.subspan(kDataPrefixSize);
  return true;
}

std::array<std::byte, 8> encode_nonce(std::uint64_t nonce) {
  std::array<std::byte, 8> out{};
  put_u64(out.data(), nonce);
  return out;
}

bool decode_nonce(Bytes payload, std::uint64_t& out) {
  if (payload.size() != 8) return false;
  out = get_u64(payload.data());
  return true;
}

}  // namespace ferry::protocol
