// Frame codec over byte spans: a total decoder and allocation-free encoders.
//
//   std::vector<std::byte> wire = encode_frame(FrameType::ack, encode_ack({1, 4096}));
//   DecodeResult r = decode_frame(wire);
//   if (auto* f = std::get_if<DecodedFrame>(&r)) { ... f->payload ... f->consumed ... }
//
// decode_frame never reads past its input: it returns NeedMore (with how many bytes
// would let it progress), Malformed (the stream cannot be trusted any further: close
// the connection), or a DecodedFrame whose payload_ok says whether the payload
// matched its checksum (a bad DATA payload is recoverable with RPOS; a bad control
// payload is not).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "protocol/frame.hpp"

namespace ferry::protocol {

using Bytes = std::span<const std::byte>;

// Big-endian helpers; precondition: the span holds enough bytes.
void put_u16(std::byte* p, std::uint16_t v);
void put_u32(std::byte* p, std::uint32_t v);
void put_u64(std::byte* p, std::uint64_t v);
std::uint16_t get_u16(const std::byte* p);
std::uint32_t get_u32(const std::byte* p);
std::uint64_t get_u64(const std::byte* p);

struct NeedMore {
  std::size_t at_least;  // total bytes needed before the next attempt can progress
};
struct Malformed {
  std::string reason;
  // The header was intact (its check matched) but names a framing version or frame
  // type this build does not know: a peer we cannot talk to, not a damaged stream.
  bool incompatible = false;
};
struct DecodedFrame {
  FrameHeader header;
  Bytes payload;           // points into the decoder's input
  std::size_t consumed;    // header + payload
  bool payload_ok;         // payload matched header.payload_checksum
};
using DecodeResult = std::variant<NeedMore, Malformed, DecodedFrame>;

// Decodes the first frame in `in`. Total: any input yields one of the three results.
DecodeResult decode_frame(Bytes in);

// Writes a header for `type` with a payload of `payload_length` bytes whose XXH3-64
// is `payload_checksum`.
std::array<std::byte, kHeaderSize> encode_header(FrameType type, std::uint32_t payload_length,
                                                 std::uint64_t payload_checksum);

// A whole frame (header + copy of payload). For control frames and tests.
std::vector<std::byte> encode_frame(FrameType type, Bytes payload);
std::vector<std::byte> encode_frame(FrameType type, const std::string& payload);

// DATA without copying the bytes: the header plus the 12-byte prefix (file id,
// offset), checksummed together with `data`. Send it followed by `data` itself.
inline constexpr std::size_t kDataHeadSize = kHeaderSize + kDataPrefixSize;
std::array<std::byte, kDataHeadSize> encode_data_head(std::uint32_t file_id, std::uint64_t offset,
                                                      Bytes data);

// Binary bodies.
struct Position {  // ACK and RPOS
  std::uint32_t file_id = 0;
  std::uint64_t offset = 0;
};
struct DataView {
  std::uint32_t file_id = 0;
  std::uint64_t offset = 0;
  Bytes data;
};
std::array<std::byte, 12> encode_position(Position p);
// Returns false when the payload is not exactly 12 bytes.
bool decode_position(Bytes payload, Position& out);
// Returns false when the payload is shorter than the 12-byte prefix or carries no data.
bool decode_data(Bytes payload, DataView& out);
std::array<std::byte, 8> encode_nonce(std::uint64_t nonce);
bool decode_nonce(Bytes payload, std::uint64_t& out);

inline Bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace ferry::protocol
