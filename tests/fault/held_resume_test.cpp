// Protocol version 2, held blocks across a receiver crash: the receiver writes the
// good blocks after a corrupt one ("held" above the contiguous verified point) and
// records them in its journal (format 2, `held`). After kill -9 of the receiver, a new
// ferry-recv on the same DEST re-verifies them and lists them in ANSWER `held`; the
// sender, reconnecting, sends only what is missing, not everything above the
// contiguous offset.
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "tests/fault/fault_harness.hpp"

namespace ferry::fault {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

// What a journal (format 2, documented JSON) vouches for: the contiguous verified
// point and the blocks held above it.
struct JournalView {
  std::uint64_t verified = 0;
  std::uint64_t block_size = 0;
  std::uint64_t held_blocks = 0;
  std::uint64_t held_bytes() const { return held_blocks * block_size; }  // no held block is the file's last here
};

// nullopt while the journal is absent or unreadable (it is replaced atomically, but
// may not exist yet).
std::optional<JournalView> read_journal(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  auto j = Json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  for (const char* k : {"verified", "block_size"}) {
    if (!j.contains(k) || !j[k].is_number_unsigned()) return std::nullopt;
  }
  if (!j.contains("held") || !j["held"].is_array()) return std::nullopt;
  return JournalView{j["verified"].get<std::uint64_t>(), j["block_size"].get<std::uint64_t>(), j["held"].size()};
}

// Bytes of the receiver's HELLO and ANSWER (accept, offset 0, no held ranges) for a
// new file: the first frames of its stream, before any ACK or RPOS.
std::uint64_t receiver_hello_answer_bytes() {
  protocol::Hello h;
  h.role = protocol::Role::receiver;
  h.session = std::string(32, '0');
  h.software = "ferry-recv " FERRY_VERSION;
  h.nonce = std::string(64, '0');  // the receiver's nonce: always 64 hex digits
  protocol::Answer a;
  a.file_id = 1;
  return 2 * protocol::kHeaderSize + protocol::to_json(h).size() + protocol::to_json(a).size();
}

TEST(HeldBlocks, SurviveReceiverKill9AndAreNotResent) {
  Scratch s;
  const std::uint64_t size = 6 * kMiB, window = 6 * kMiB, chunk = 256 * 1024;
  const std::uint64_t rate = 1 * kMiB;  // bytes/s upstream on the first connection
  const auto src = s.random_file("src.bin", size, 71);
  const std::string journal = s.dest() + "/.src.bin.ferry-journal";
  const std::string recv_sock = "unix:" + s.at("recv.sock");

  auto recv1 = start_receiver(s, {"--once", "--idle-timeout", "60"}, {}, "recv1", recv_sock);
  ASSERT_EQ(recv1.address, recv_sock);
  // First connection only (--faulty 1): upstream at 1 MiB/s with one bit flipped in the
  // block at 256K..512K (flip-payload counts stream bytes: byte 300K of the upstream is
  // inside the second DATA frame, which spans about 262.5K..524.7K); downstream, the
  // receiver's HELLO and ANSWER get through, then everything it says vanishes (at most
  // the first few bytes of the next frame pass, an incomplete frame): its ACK and its
  // RPOS for the corrupt block never reach the sender, which keeps sending the rest of
  // its 6 MiB window, and the receiver keeps writing those blocks as held ones.
  const std::uint64_t down_pass = receiver_hello_answer_bytes() + 8;
  auto proxy = start_proxy(s, recv1.address,
                           {"--faulty", "1", "--seed", "3", "--up", "rate=" + std::to_string(rate), "--up",
                            "flip-payload=300K", "--down", "blackhole-after=" + std::to_string(down_pass)},
                           "proxy", "unix:" + s.at("proxy.sock"));
  ASSERT_EQ(proxy.address, "unix:" + s.at("proxy.sock"));
  // Stall timeout 10 s: no ACK reaches the sender on the first connection, so it must
  // outlast the ~4.5 s until the kill. After the kill the proxy keeps the sender's side
  // open (the downstream black hole swallows the end of stream too) and discards what
  // it sends: this timeout is what makes the sender redial.
  auto args = flow_args(window, chunk, "10");
  args.insert(args.end(), {"--retries", "20"});
  Process send(sender_spec(s, proxy.address, args, {src}));

  // Poll the receiver's journal until it vouches for at least 3.5 MiB of held blocks
  // (saved about every second while blocks arrive at 1 MiB/s: ~4.5 s), then kill -9 the
  // receiver right away.
  const std::uint64_t want_held = 7 * kMiB / 2;
  std::optional<JournalView> seen;
  const auto deadline = Clock::now() + 40s;
  while (Clock::now() < deadline && send.running() && recv1.proc.running()) {
    seen = read_journal(journal);
    if (seen && seen->held_bytes() >= want_held) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(seen && seen->held_bytes() >= want_held)
      << "the journal never held " << want_held
      << " bytes (last seen: " << (seen ? std::to_string(seen->held_bytes()) : std::string("none"))
      << ")\nreceiver stderr:\n"
      << recv1.proc.err() << "\nsender stderr:\n"
      << send.err();
  recv1.proc.kill_and_reap();  // SIGKILL

  // What the crashed receiver left behind: the corrupt block is the contiguous point,
  // the blocks after it are held.
  const auto left = read_journal(journal);
  ASSERT_TRUE(left.has_value()) << read_text(journal);
  EXPECT_EQ(left->block_size, chunk);
  EXPECT_EQ(left->verified, chunk) << "the block at 256K..512K arrived corrupt and its RPOS was swallowed";
  const std::uint64_t held_at_kill = left->held_bytes();
  EXPECT_GE(held_at_kill, want_held);

  // A new receiver on the same DEST and the same address; the sender redials it
  // (clean connections from now on).
  auto recv2 = start_receiver(s, {"--once", "--idle-timeout", "60"}, {}, "recv2", recv_sock);
  ASSERT_EQ(recv2.address, recv_sock);
  auto r = finish_sender(send);
  ASSERT_EQ(r.exit_code, 0) << r.diagnostics();
  EXPECT_EQ(recv2.proc.wait(15s), std::optional<int>(0)) << "ferry-recv stderr:\n" << recv2.proc.err();
  auto log = stop_proxy(proxy, s);
  expect_delivered(s, "src.bin", src);
  EXPECT_EQ(log.fired("up flipped bit"), 1u) << log.dump();
  EXPECT_EQ(log.fired("down black hole"), 1u) << log.dump();
  ASSERT_FALSE(log.conns.empty());
  EXPECT_EQ(log.conns[0]["down"]["out"].get<std::uint64_t>(), down_pass) << log.dump();
  EXPECT_EQ(r.total("chunks_rejected"), 0u) << "the RPOS was to be swallowed\n" << r.diagnostics();
  EXPECT_GE(r.total("reconnects"), 1u) << r.diagnostics();

  // The new receiver resumed from the contiguous point (the corrupt block).
  std::optional<std::uint64_t> resumed_at;
  for (const auto& e : json_lines(s.at("recv2.out"))) {
    if (e.value("event", "") == "resume" && e.contains("offset")) resumed_at = e["offset"].get<std::uint64_t>();
  }
  EXPECT_EQ(resumed_at, std::optional<std::uint64_t>(chunk)) << read_text(s.at("recv2.out"));

  // What was re-sent. The first connection never sees an ACK or an RPOS: the sender
  // sends its whole 6 MiB window into it (after the kill the proxy discards the rest)
  // until its stall timeout, so every byte of the second connection is a re-send. The
  // new receiver answers with offset = verified (the corrupt block) and the journal's
  // held ranges; skipping them, the sender re-sends at most
  //   size - verified - held_at_kill   (<= 6M - 256K - 3.5M = 2.25 MiB < size/2),
  // i.e. the corrupt block, the blocks after the last held range (among them those
  // written after the last journal save: the partial has them, the journal does not
  // vouch for them) and whatever never reached the receiver. A resume from the
  // contiguous offset alone (held ranges ignored) re-sends size - verified = 5.75 MiB,
  // held_at_kill (>= 3.5 MiB) more: both bounds below fail then.
  const std::uint64_t resent = r.total("bytes_resent");
  const std::uint64_t bound = size - left->verified - held_at_kill;
  EXPECT_LE(resent, bound) << "held blocks were sent again\n" << r.diagnostics();
  EXPECT_LT(resent, size / 2) << r.diagnostics();
  EXPECT_GE(resent, chunk) << "the corrupt block must have been sent again\n" << r.diagnostics();

  // On the wire: every connection after the first is clean, and together they carry at
  // most the file minus the verified prefix and the held blocks (plus DATA heads and
  // control frames): the held ranges reached the sender in ANSWER and it skipped them.
  std::uint64_t later_up = 0;
  for (const auto& c : log.conns) {
    if (c.value("conn", 0) > 1) later_up += c["up"]["in"].get<std::uint64_t>();
  }
  const std::uint64_t later_payload = size - left->verified - held_at_kill;
  const std::uint64_t later_bound =
      later_payload + (later_payload / chunk + 1) * protocol::kDataHeadSize + log.conns.size() * 4096;
  EXPECT_LE(later_up, later_bound) << log.dump();

  std::cerr << "[held] held_at_kill=" << held_at_kill << " verified=" << left->verified << " bytes_resent=" << resent
            << " bound=" << bound << " bytes_payload=" << r.total("bytes_payload")
            << " reconnects=" << r.total("reconnects") << " stall_timeouts=" << r.total("stall_timeouts")
            << " chunks_rejected=" << r.total("chunks_rejected") << " later_up=" << later_up
            << " later_bound=" << later_bound << "\n";
}

}  // namespace
}  // namespace ferry::fault
