// The ferry frame: a fixed 24-byte header followed by a payload.
//
// Header (all integers big-endian), see docs/PROTOCOL.md section 2:
//   0  2  magic 0x46 0x59 ("FY")
//   2  1  framing version (kFrameVersion)
//   3  1  frame type (FrameType)
//   4  2  flags, must be 0
//   6  2  reserved, must be 0
//   8  4  payload length (<= kMaxPayload)
//  12  8  XXH3-64 of the payload (seed 0); DATA: the block digest of its data
//          (protocol/digest.hpp block_digest: seeded with the offset)
//  20  4  header check: low 32 bits of XXH3-64 over bytes 0..19
// The header check is verified before the length is trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ferry::protocol {

inline constexpr std::uint8_t kMagic0 = 0x46;  // 'F'
inline constexpr std::uint8_t kMagic1 = 0x59;  // 'Y'
inline constexpr std::uint8_t kFrameVersion = 1;
// Negotiated in HELLO. Version 2 (docs/PROTOCOL.md): whole blocks per DATA frame, a
// seeded block digest in the DATA header, a file digest over the block digests, RPOS
// naming the range to send again. Version 3 adds authentication (a nonce and a "key"
// flag in HELLO, and the AUTH frame: protocol/auth.hpp) and eager files (OFFERs of small
// files in directories the receiver created: OFFER `eager`, ANSWER `created`; several
// files in flight; VERDICTs after a batched commit). A peer of an older version fails
// the HELLO exchange. Version 4 adds symlinks (OFFER kind "symlink" with a `target`,
// answered by an ANSWER alone: docs/PROTOCOL.md 4.4, 6.1), a session purpose in HELLO
// ("check", "dry_run": the receiver writes nothing) and the CHECK frame (type 14) that
// answers an entry of a check session (issue #12, PROTOCOL.md section 6.11). Version 5
// (issue #10) raises kMaxEagerFiles from 256 to 1,024, so that a receiver's batches of
// small files (one syncfs each) grow four times; nothing else changes. Version 6 (issue
// #10) adds eager directories: a directory inside one the receiver created on this
// connection (or inside an eager one) is offered with `eager` and not waited for; the
// receiver makes it in its batch and answers ANSWER accept or refuse, so a tree's
// directories no longer cost a round trip each; and a file wholly acknowledged whose
// COMMIT is sent no longer holds the sender back: its VERDICT comes later, by id
// (kMaxCommittingFiles). Version 7 (issue #10) raises kMaxEagerFiles from 1,024 to
// 4,096; nothing else changes.
inline constexpr std::uint32_t kProtocolVersion = 7;
inline constexpr std::size_t kHeaderSize = 24;

// Chunk sizes: DATA payload bytes per frame.
inline constexpr std::size_t kDefaultChunkSize = 256 * 1024;
inline constexpr std::size_t kMinChunkSize = 1024;
inline constexpr std::size_t kMaxChunkSize = 16 * 1024 * 1024;
inline constexpr std::size_t kDataPrefixSize = 16;  // file id (4) + offset (8) + prefix check (4)
// Hard upper bound on any frame's payload; a larger length is malformed.
inline constexpr std::size_t kMaxPayload = kMaxChunkSize + kDataPrefixSize;
// Control frames (JSON bodies) are far smaller; a larger one is a peer violation.
inline constexpr std::size_t kMaxControlPayload = 64 * 1024;
// Largest payload a receiver accepts before the handshake (HELLO, and authentication
// where there is one) is complete: a stranger cannot make it buffer a 16 MiB frame.
inline constexpr std::size_t kMaxHandshakePayload = kMaxControlPayload;

// Most blocks a receiver holds above its contiguous written point, and so records in a
// journal (docs/PROTOCOL.md 6.2 and 7.2); a sender never needs more.
inline constexpr std::size_t kMaxHeldBlocks = 65'536;

// Eager files (OFFER `eager`) a sender may have in flight (OFFER sent, VERDICT not yet
// received), and the bytes of their data; a receiver treats more as a violation.
// 4,096 since version 7 (1,024 in versions 5 and 6, 256 before): one file in flight
// costs a receiver its bytes (within kMaxEagerBytes) and about a hundred bytes of
// bookkeeping. The latency of an eager file is that of about four batches (staged,
// written, made durable, its name made durable by the next batch); with 1,024 in flight
// a sender spent about a quarter of issue #10's tree (c) waiting for this bound.
inline constexpr std::size_t kMaxEagerFiles = 4096;
inline constexpr std::uint64_t kMaxEagerBytes = 16 * 1024 * 1024;
// Version 6: ordinary files whose COMMIT was sent and whose every byte was acknowledged,
// which the sender no longer waits for (their VERDICTs come later, by id); a receiver
// treats more than this many, besides the sender's current file, as a violation. Each
// costs a receiver an open partial (two descriptors) until its commit ends.
inline constexpr std::size_t kMaxCommittingFiles = 16;

// 16 MiB (4 MiB before issue #10's last step): eager files are counted in the window
// until their VERDICT, which waits for the receiver's batch to be durable, so a small
// window stalled trees of small files; measured on scenario (c) and a 1 GiB file, it is
// faster for both (docs/ARCHITECTURE.md). The window is not negotiated.
inline constexpr std::uint64_t kDefaultWindow = 16 * 1024 * 1024;
inline constexpr std::uint64_t kMinWindow = 64 * 1024;
inline constexpr std::uint64_t kMaxWindow = 1024ull * 1024 * 1024;

enum class FrameType : std::uint8_t {
  hello = 1,    // JSON: version negotiation, session id
  offer = 2,    // JSON: sender offers a file or directory
  answer = 3,   // JSON: receiver's verified offset for an offer, or a refusal
  data = 4,     // binary: file id, offset, prefix check, one block's bytes
  ack = 5,      // binary: file id, cumulative verified-and-written offset
  rpos = 6,     // binary: file id, offset, length: blocks to send again (bad chunk)
  commit = 7,   // JSON: the sender's file digest (XXH3-128 over the block digests)
  verdict = 8,  // JSON: receiver's "verified" or "failed"
  error = 9,    // JSON: fatal error, connection closes after it
  end = 10,     // JSON: sender has no more files / receiver confirms
  ping = 11,    // binary: nonce (keepalive)
  pong = 12,    // binary: echoed nonce
  auth = 13,    // binary: a MAC proving the shared key (protocol/auth.hpp)
  check = 14,   // JSON, version 4: receiver's comparison of an entry in a check session
};

// True for the types this version knows.
bool is_known_type(std::uint8_t t);
std::string_view frame_type_name(FrameType t);

struct FrameHeader {
  std::uint8_t version = kFrameVersion;
  FrameType type = FrameType::hello;
  std::uint32_t payload_length = 0;
  std::uint64_t payload_checksum = 0;
};

}  // namespace ferry::protocol
