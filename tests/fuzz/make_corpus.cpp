// Writes the seed corpus for fuzz_decode: valid frames of every type and a few
// near-misses. Run: build/tests/fuzz/ferry-make-corpus tests/fuzz/corpus/decode
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "protocol/auth.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"

namespace P = ferry::protocol;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::vector<std::pair<std::string, std::vector<std::byte>>> out;
  P::Hello h;
  h.session = std::string(32, 'a');
  h.software = "ferry";
  h.nonce = std::string(64, 'b');
  h.keyed = true;
  out.emplace_back("hello", P::frame_of(P::FrameType::hello, P::to_json(h)));
  P::Offer o;
  o.file_id = 1;
  o.path = "dir/file.bin";
  o.size = 1000;
  o.identity = "size=1000,mtime_ns=1";
  o.block_size = 4096;
  out.emplace_back("offer", P::frame_of(P::FrameType::offer, P::to_json(o)));
  o.eager = true;
  o.size = 100;
  out.emplace_back("offer_eager", P::frame_of(P::FrameType::offer, P::to_json(o)));
  o.eager = false;
  o.size = 1000;
  o.path = "../escape";
  out.emplace_back("offer_escape", P::frame_of(P::FrameType::offer, P::to_json(o)));
  P::Offer link{3, "dir/link", P::EntryKind::symlink, 0, 1, 0777, "symlink"};
  link.target = "../file.bin";
  out.emplace_back("offer_symlink", P::frame_of(P::FrameType::offer, P::to_json(link)));
  out.emplace_back("answer", P::frame_of(P::FrameType::answer, P::to_json(P::Answer{1, P::AnswerStatus::accept, 10, ""})));
  P::Answer created{2, P::AnswerStatus::accept, 0, ""};
  created.created = true;
  out.emplace_back("answer_created", P::frame_of(P::FrameType::answer, P::to_json(created)));
  out.emplace_back("answer_held", P::frame_of(P::FrameType::answer,
                                              P::to_json(P::Answer{1, P::AnswerStatus::accept, 4096, "", {{8192, 4096}}})));
  out.emplace_back("commit", P::frame_of(P::FrameType::commit, P::to_json(P::Commit{1, 1000, std::string(32, '0')})));
  out.emplace_back("verdict", P::frame_of(P::FrameType::verdict, P::to_json(P::Verdict{1, P::VerdictStatus::failed, "x"})));
  out.emplace_back("error", P::frame_of(P::FrameType::error, P::to_json(P::ErrorBody{"protocol", "bad"})));
  out.emplace_back("end", P::frame_of(P::FrameType::end, P::to_json(P::End{1, 1000})));
  auto pos = P::encode_position({1, 4096});
  out.emplace_back("ack", P::encode_frame(P::FrameType::ack, P::Bytes(pos)));
  auto resend = P::encode_resend({1, 4096, 4096});
  out.emplace_back("rpos", P::encode_frame(P::FrameType::rpos, P::Bytes(resend)));
  std::vector<std::byte> data(100, std::byte{0x5a});
  auto head = P::encode_data_head(1, 0, P::block_digest(data, 0), data.size());
  std::vector<std::byte> frame(head.begin(), head.end());
  frame.insert(frame.end(), data.begin(), data.end());
  out.emplace_back("data", frame);
  P::AuthInput in;
  in.session = h.session;
  out.emplace_back("auth", P::auth_frame(P::AuthKey{}, in));
  // Two frames back to back, and a truncated one.
  auto two = out[0].second;
  two.insert(two.end(), out[1].second.begin(), out[1].second.end());
  out.emplace_back("two_frames", two);
  out.emplace_back("truncated", std::vector<std::byte>(frame.begin(), frame.begin() + 30));
  for (const auto& [name, bytes] : out) {
    std::ofstream f(std::string(argv[1]) + "/" + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  return 0;
}
