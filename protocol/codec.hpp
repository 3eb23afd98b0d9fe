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
// payload is not). For DATA it also says which part failed (data_check): a good
// prefix names the block to send again; a bad one cannot be trusted at all.
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
// What decode_frame found of a DATA payload (PROTOCOL.md 4.1). All false and 0 for
// other frame types, and for a DATA payload too short to hold the prefix and a byte.
struct DataCheck {
  bool prefix_ok = false;      // the prefix check matched: file id and offset are trustworthy
  bool data_ok = false;        // and block_digest(data, offset) matched the header
  std::uint64_t digest = 0;    // block_digest(data, offset), computed once (when prefix_ok)
};
struct DecodedFrame {
  FrameHeader header;
  Bytes payload;           // points into the decoder's input
  std::size_t consumed;    // header + payload
  bool payload_ok;         // payload matched its checksum (DATA: prefix_ok && data_ok)
  DataCheck data_check{};  // DATA only
};
using DecodeResult = std::variant<NeedMore, Malformed, DecodedFrame>;

// Decodes the first frame in `in`. Total: any input yields one of the three results.
// `max_payload` is the largest payload the caller accepts now (at most kMaxPayload;
// a receiver passes kMaxHandshakePayload until its handshake is complete): a header
// announcing more is Malformed at once, before any of the payload is buffered.
DecodeResult decode_frame(Bytes in, std::size_t max_payload = kMaxPayload);

// Writes a header for `type` with a payload of `payload_length` bytes whose XXH3-64
// is `payload_checksum`.
std::array<std::byte, kHeaderSize> encode_header(FrameType type, std::uint32_t payload_length,
                                                 std::uint64_t payload_checksum);

// A whole frame (header + copy of payload). For control frames and tests.
std::vector<std::byte> encode_frame(FrameType type, Bytes payload);
std::vector<std::byte> encode_frame(FrameType type, const std::string& payload);

// DATA without copying or rehashing the bytes: the header plus the 16-byte prefix (file
// id, offset, prefix check) for a block of `data_length` bytes whose block_digest
// (protocol/digest.hpp, computed once when the block was read) is `digest`. Send it
// followed by the block's bytes. Precondition: 1 <= data_length <= kMaxChunkSize.
inline constexpr std::size_t kDataHeadSize = kHeaderSize + kDataPrefixSize;
std::array<std::byte, kDataHeadSize> encode_data_head(std::uint32_t file_id, std::uint64_t offset,
                                                      std::uint64_t digest, std::size_t data_length);

// Binary bodies.
struct Position {  // ACK
  std::uint32_t file_id = 0;
  std::uint64_t offset = 0;
};
// RPOS (PROTOCOL.md 6.4): length > 0: send the blocks covering [offset, offset+length)
// again; length == 0: send everything again from offset.
struct Resend {
  std::uint32_t file_id = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
struct DataView {
  std::uint32_t file_id = 0;
  std::uint64_t offset = 0;
  Bytes data;
};
std::array<std::byte, 12> encode_position(Position p);
// Returns false when the payload is not exactly 12 bytes.
bool decode_position(Bytes payload, Position& out);
std::array<std::byte, 20> encode_resend(Resend r);
// Returns false when the payload is not exactly 20 bytes or offset + length overflows.
bool decode_resend(Bytes payload, Resend& out);
// Returns false when the payload is not longer than the 16-byte prefix (no data).
// Does not check the prefix: decode_frame did (DecodedFrame::data_check).
bool decode_data(Bytes payload, DataView& out);
std::array<std::byte, 8> encode_nonce(std::uint64_t nonce);
bool decode_nonce(Bytes payload, std::uint64_t& out);

inline Bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace ferry::protocol
