// Fuzz target: the frame decoder and every binary/JSON body parser on hostile bytes.
// Contract under test: decode_frame is total (never reads past its input, never
// crashes, consumed <= input size) and every parser rejects or accepts cleanly.
// Built as a libFuzzer target with -DFERRY_FUZZ=ON under clang; otherwise as a
// corpus replayer run by ctest (see replay_main.cpp).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "protocol/auth.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/wire_path.hpp"

namespace P = ferry::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  P::Bytes in(reinterpret_cast<const std::byte*>(data), size);
  // Walk the input as a stream of frames, as a session does.
  while (!in.empty()) {
    auto r = P::decode_frame(in);
    auto* f = std::get_if<P::DecodedFrame>(&r);
    if (!f) break;
    if (f->consumed == 0 || f->consumed > in.size()) std::abort();
    P::DataView d;
    P::Position pos;
    P::Resend resend;
    std::uint64_t nonce;
    (void)P::decode_data(f->payload, d);
    (void)P::decode_position(f->payload, pos);
    (void)P::decode_resend(f->payload, resend);
    (void)P::decode_nonce(f->payload, nonce);
    (void)P::parse_hello(f->payload);
    if (auto o = P::parse_offer(f->payload)) (void)P::wire_path_problem(o->path);
    (void)P::parse_answer(f->payload);
    (void)P::parse_commit(f->payload);
    (void)P::parse_verdict(f->payload);
    (void)P::parse_error(f->payload);
    (void)P::parse_end(f->payload);
    (void)P::auth_verify(P::AuthKey{}, P::AuthInput{}, f->payload);
    in = in.subspan(f->consumed);
  }
  // The body parsers on raw input too (no framing in the way).
  (void)P::parse_offer(P::Bytes(reinterpret_cast<const std::byte*>(data), size));
  (void)P::parse_hello(P::Bytes(reinterpret_cast<const std::byte*>(data), size));
  return 0;
}
