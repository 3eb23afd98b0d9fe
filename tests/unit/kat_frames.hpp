// The fixed frames behind the known-answer vectors (tests/unit/vectors/frames.txt).
//
// Shared by gen_vectors.cpp, which prints them, and codec_kat_test.cpp, which checks
// that today's encoder still produces the committed bytes. Every input here is a
// constant: changing one changes the vectors, which must then be regenerated.
//
//   for (const auto& k : kat_frames()) std::cout << k.name << ' ' << to_hex(k.wire) << '\n';
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "protocol/auth.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"

namespace ferry::kat {

struct KatFrame {
  std::string name;
  protocol::FrameType type;
  std::vector<std::byte> wire;
};

// The fixed message inputs, reused by the test to check what the vectors decode to.
inline protocol::Hello kat_hello() {
  protocol::Hello h{protocol::kProtocolVersion, protocol::kProtocolVersion, protocol::Role::sender,
                    "00112233445566778899aabbccddeeff", "ferry kat"};
  h.nonce = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
  h.keyed = true;
  return h;
}
// The AUTH vector: key bytes 0x80..0x9f; the sender proves it for the HELLO above
// (nonce 0x00..0x1f) to a receiver whose nonce is 0x20..0x3f.
inline protocol::AuthKey kat_auth_key() {
  std::array<std::uint8_t, protocol::kKeySize> k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(0x80 + i);
  return protocol::AuthKey(k);
}
inline protocol::AuthInput kat_auth_input() {
  protocol::AuthInput in;
  in.version = protocol::kProtocolVersion;
  in.session = kat_hello().session;
  in.prover = protocol::Role::sender;
  for (std::size_t i = 0; i < protocol::kNonceSize; ++i) {
    in.prover_nonce[i] = static_cast<std::uint8_t>(i);
    in.peer_nonce[i] = static_cast<std::uint8_t>(0x20 + i);
  }
  return in;
}
inline protocol::Offer kat_offer_file() {
  return {7,
          "dir/sub/file.bin",
          protocol::EntryKind::file,
          1048577,
          1700000000123456789,
          0640,
          "size=1048577,mtime_ns=1700000000123456789",
          262144};
}
// Version 3: a small file sent eagerly, and the ANSWER of a directory made for its offer.
inline protocol::Offer kat_offer_eager() {
  return {10, "dir/new/small.txt", protocol::EntryKind::file, 6, 1700000000123456789, 0644,
          "size=6,mtime_ns=1700000000123456789", 262144, true};
}
// Version 6: an eager directory (inside one the receiver created): no block size, size 0.
inline protocol::Offer kat_offer_eager_dir() {
  return {12, "dir/new/sub", protocol::EntryKind::directory, 0, 1700000000123456789, 0755, "dir", 0, true};
}
inline protocol::Answer kat_answer_created() {
  protocol::Answer a{8, protocol::AnswerStatus::accept, 0, ""};
  a.created = true;
  return a;
}
// Version 4: a refusal because a file operation failed at the receiver.
inline protocol::Answer kat_answer_refuse_io() {
  protocol::Answer a{9, protocol::AnswerStatus::refuse, 0, "open(/srv/in/a.bin): No space left on device"};
  a.local_io = true;
  return a;
}
// Version 4: a symlink, its target carried verbatim (no block size, no data).
inline protocol::Offer kat_offer_symlink() {
  protocol::Offer o{11, "dir/current", protocol::EntryKind::symlink, 0, 1700000000123456789, 0777, "symlink"};
  o.target = "../releases/v2";
  return o;
}

// Version 4 (PROTOCOL.md 6.11): a check session's HELLO, asking for directory names,
// and the CHECK answers of a file that differs and of a directory with its names.
inline protocol::Hello kat_hello_check() {
  protocol::Hello h = kat_hello();
  h.purpose = protocol::Purpose::check;
  h.list_extra = true;
  return h;
}
inline protocol::CheckReply kat_check_different() {
  protocol::CheckReply c;
  c.file_id = 7;
  c.result = protocol::CheckResult::different;
  c.reason = "content";
  return c;
}
inline protocol::CheckReply kat_check_names() {
  protocol::CheckReply c;
  c.file_id = 8;
  c.result = protocol::CheckResult::identical;
  c.names = {"a.txt", "sub"};
  return c;
}
inline protocol::Offer kat_offer_dir() {
  return {8, "dir/empty", protocol::EntryKind::directory, 0, -1, 0755, "dir"};
}
inline protocol::Answer kat_answer_accept() {
  return {7, protocol::AnswerStatus::accept, 524288, "resuming", {{786432, 262144}}};
}
inline protocol::Answer kat_answer_refuse() {
  return {9, protocol::AnswerStatus::refuse, 0, "unsafe path '../x': '..' path component"};
}
inline protocol::Commit kat_commit() {
  return {7, 1048577, "85ca3a0dfcfe59849331f43fcdbd2eb8"};
}
inline protocol::Verdict kat_verdict_verified() {
  return {7, protocol::VerdictStatus::verified, ""};
}
inline protocol::Verdict kat_verdict_failed() {
  return {7, protocol::VerdictStatus::failed, "digest mismatch"};
}
inline protocol::ErrorBody kat_error() {
  return {"protocol", "unsupported framing version 2"};
}
inline protocol::End kat_end() {
  return {3, 1048577};
}
inline constexpr std::uint32_t kKatDataFile = 7;
inline constexpr std::uint64_t kKatDataOffset = 0x0000000100040000ull;  // a multiple of 256 KiB
inline std::vector<std::byte> kat_data_bytes() {
  std::vector<std::byte> d(300);
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = std::byte(static_cast<unsigned char>(i * 31 + 7));
  return d;
}
inline constexpr protocol::Position kKatAck{7, 1048576};
inline constexpr protocol::Resend kKatRpos{7, 262144, 262144};
inline constexpr std::uint64_t kKatPing = 0x0123456789abcdefull;
inline constexpr std::uint64_t kKatPong = 0xfedcba9876543210ull;

inline std::vector<std::byte> concat(protocol::Bytes a, protocol::Bytes b) {
  std::vector<std::byte> out(a.size() + b.size());
  // memcpy, not insert: GCC 12 reports a false -Warray-bounds for insert from a std::array.
  if (!a.empty()) std::memcpy(out.data(), a.data(), a.size());
  if (!b.empty()) std::memcpy(out.data() + a.size(), b.data(), b.size());
  return out;
}

inline std::vector<KatFrame> kat_frames() {
  using protocol::encode_frame;
  using protocol::FrameType;
  using protocol::to_json;
  std::vector<KatFrame> v;
  auto add_json = [&](std::string name, FrameType t, const std::string& body) {
    v.push_back({std::move(name), t, encode_frame(t, body)});
  };
  add_json("hello", FrameType::hello, to_json(kat_hello()));
  add_json("offer_file", FrameType::offer, to_json(kat_offer_file()));
  add_json("offer_dir", FrameType::offer, to_json(kat_offer_dir()));
  add_json("answer_accept", FrameType::answer, to_json(kat_answer_accept()));
  add_json("answer_refuse", FrameType::answer, to_json(kat_answer_refuse()));
  add_json("offer_eager", FrameType::offer, to_json(kat_offer_eager()));
  add_json("offer_symlink", FrameType::offer, to_json(kat_offer_symlink()));
  add_json("offer_eager_dir", FrameType::offer, to_json(kat_offer_eager_dir()));
  add_json("answer_created", FrameType::answer, to_json(kat_answer_created()));
  add_json("answer_refuse_io", FrameType::answer, to_json(kat_answer_refuse_io()));
  auto data = kat_data_bytes();
  auto head = protocol::encode_data_head(kKatDataFile, kKatDataOffset,
                                         protocol::block_digest(data, kKatDataOffset), data.size());
  v.push_back({"data", FrameType::data, concat(head, data)});
  auto ack = protocol::encode_position(kKatAck);
  v.push_back({"ack", FrameType::ack, encode_frame(FrameType::ack, protocol::Bytes(ack))});
  auto rpos = protocol::encode_resend(kKatRpos);
  v.push_back({"rpos", FrameType::rpos, encode_frame(FrameType::rpos, protocol::Bytes(rpos))});
  add_json("commit", FrameType::commit, to_json(kat_commit()));
  add_json("verdict_verified", FrameType::verdict, to_json(kat_verdict_verified()));
  add_json("verdict_failed", FrameType::verdict, to_json(kat_verdict_failed()));
  add_json("error", FrameType::error, to_json(kat_error()));
  add_json("end", FrameType::end, to_json(kat_end()));
  auto ping = protocol::encode_nonce(kKatPing);
  v.push_back({"ping", FrameType::ping, encode_frame(FrameType::ping, protocol::Bytes(ping))});
  auto pong = protocol::encode_nonce(kKatPong);
  v.push_back({"pong", FrameType::pong, encode_frame(FrameType::pong, protocol::Bytes(pong))});
  v.push_back({"auth", FrameType::auth, protocol::auth_frame(kat_auth_key(), kat_auth_input())});
  add_json("hello_check", FrameType::hello, to_json(kat_hello_check()));
  add_json("check_different", FrameType::check, to_json(kat_check_different()));
  add_json("check_names", FrameType::check, to_json(kat_check_names()));
  return v;
}

inline std::string to_hex(protocol::Bytes b) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (std::byte x : b) {
    auto u = std::to_integer<unsigned>(x);
    s += kHex[u >> 4];
    s += kHex[u & 0xf];
  }
  return s;
}

}  // namespace ferry::kat
