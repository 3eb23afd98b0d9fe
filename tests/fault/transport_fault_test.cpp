// Fault catalogue entries 1-4 and 9 (issue 3, docs/RELIABILITY.md): the real
// ferry-send and ferry-recv through ferry-fault-proxy, which black-holes, cuts,
// resets, corrupts, trickles and stalls the byte stream. Each transfer must end with
// the file delivered byte for byte, DEST clean, and the sender within the bound
// bytes_payload <= size + (reconnects + rejected chunks) x (window + chunk) + chunk.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "protocol/codec.hpp"
#include "tests/fault/fault_harness.hpp"

namespace ferry::fault {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

struct Outcome {
  SendResult sent;
  ProxyLog log;
};

// One file from s/NAME through a proxy with `proxy_args` to a --once receiver.
Outcome through_proxy(const Scratch& s, const std::vector<std::string>& proxy_args,
                      const std::vector<std::string>& send_args, const std::string& src) {
  Outcome o;
  auto recv = start_receiver(s, {"--once", "--idle-timeout", "60"});
  if (recv.address.empty()) return o;
  auto proxy = start_proxy(s, recv.address, proxy_args);
  if (proxy.address.empty()) return o;
  o.sent = run_sender(s, proxy.address, send_args, src);
  if (o.sent.exit_code == 0) {
    // --once: the receiver ends by itself once the transfer is verified.
    EXPECT_EQ(recv.proc.wait(15s), std::optional<int>(0)) << "ferry-recv stderr:\n" << recv.proc.err();
  }
  o.log = stop_proxy(proxy, s);
  return o;
}

// The transfer through one flipped payload bit ended well, the bad chunk repaired in
// place: no stall timeout, no reconnect, at most two chunks sent again.
void expect_repaired_in_place(const Outcome& o, const Scratch& s, const std::string& src, std::uint64_t chunk) {
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  ASSERT_EQ(o.log.fired("up flipped bit"), 1u) << o.log.dump();
  EXPECT_EQ(o.sent.total("reconnects"), 0u) << o.sent.diagnostics();
  EXPECT_EQ(o.sent.total("stall_timeouts"), 0u) << o.sent.diagnostics();
  EXPECT_LE(o.sent.total("bytes_resent"), 2 * chunk) << o.sent.diagnostics();
}

// What the clients wrote on the wire, all connections: the payload bound, plus each
// DATA frame's head (kDataHeadSize), plus a few KiB of control frames per connection.
void expect_wire_bound(const Outcome& o, std::uint64_t size, std::uint64_t window, std::uint64_t chunk) {
  const std::uint64_t payload = size + (o.sent.total("reconnects") + o.sent.total("chunks_rejected")) * (window + chunk) + chunk;
  const std::uint64_t bound = payload + (payload / chunk + 1) * protocol::kDataHeadSize + o.log.conns.size() * 4096;
  EXPECT_LE(o.log.up_in(), bound) << "bytes written to the proxy exceed the bound\n" << o.log.dump();
}

// ---------------------------------------------------------------------------
// 1. Silent black hole: every write accepted, everything after N bytes discarded.

TEST(BlackHole, EveryConnectionKeptOpenForever) {
  Scratch s;
  const std::uint64_t size = 2 * kMiB;
  const auto src = s.random_file("src.bin", size, 11);
  // N = 768 KiB > --window 256 KiB: each connection delivers some, then swallows the rest.
  auto o = through_proxy(s, {"--faulty", "all", "--up", "blackhole-after=768K"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_GE(o.sent.total("stall_timeouts"), 2u) << o.sent.diagnostics();
  EXPECT_GE(o.sent.total("reconnects"), 2u);
  EXPECT_GE(o.log.fired("black hole"), 2u) << o.log.dump();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
  expect_wire_bound(o, size, kWindow, kChunk);
}

TEST(BlackHole, EveryConnectionClosedAfterHold) {
  Scratch s;
  const std::uint64_t size = 2 * kMiB;
  const auto src = s.random_file("src.bin", size, 12);
  // The transport closes 0.3 s after it started discarding: EOF is no proof of delivery.
  auto o = through_proxy(s, {"--faulty", "all", "--up", "blackhole-after=768K", "--hold", "0.3"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_GE(o.sent.total("reconnects"), 2u) << o.sent.diagnostics();
  EXPECT_GE(o.log.fired("hold of the black hole over"), 2u) << o.log.dump();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
  expect_wire_bound(o, size, kWindow, kChunk);
}

TEST(BlackHole, AcknowledgementsSwallowed) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const std::uint64_t window = 1 * kMiB;
  const auto src = s.random_file("src.bin", size, 13);
  // The receiver's HELLO and ANSWER get through, then its ACKs vanish.
  auto o = through_proxy(s, {"--faulty", "1", "--down", "blackhole-after=400"}, flow_args(window), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_GE(o.sent.total("stall_timeouts"), 1u) << o.sent.diagnostics();
  EXPECT_GE(o.sent.total("reconnects"), 1u);
  EXPECT_EQ(o.log.fired("down black hole"), 1u) << o.log.dump();
  expect_payload_bound(o.sent, size, window, kChunk);
}

TEST(BlackHole, ReceiversFinalEndLostAfterEveryFileVerified) {
  // The receiver's last frame (its END reply) is swallowed: every file was verified,
  // and the --once receiver, its part done, exits. The sender must not report a failure.
  const std::uint64_t size = 960;
  std::uint64_t down_total = 0;
  {
    Scratch s;  // a clean pass measures the receiver's stream
    const auto src = s.random_file("src.bin", size, 14);
    auto o = through_proxy(s, {}, flow_args(), src);
    ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics();
    ASSERT_EQ(o.log.conns.size(), 1u) << o.log.dump();
    down_total = o.log.conns[0]["down"]["out"].get<std::uint64_t>();
  }
  Scratch s;
  const auto src = s.random_file("src.bin", size, 14);
  auto args = flow_args();
  args.insert(args.end(), {"--retries", "2"});
  auto o = through_proxy(s, {"--faulty", "1", "--down", "blackhole-after=" + std::to_string(down_total - 1)}, args, src);
  expect_delivered(s, "src.bin", src);
  EXPECT_EQ(o.sent.total("files_verified"), 1u) << o.sent.diagnostics();
  EXPECT_EQ(o.sent.exit_code, 0) << "every file was verified; a lost END reply is no failure\n"
                                 << o.sent.diagnostics() << o.log.dump();
}

// ---------------------------------------------------------------------------
// 2. Early close and reset at random offsets, either direction.

using CutParam = std::tuple<const char* /*direction*/, const char* /*fault*/>;
class Cut : public ::testing::TestWithParam<CutParam> {};

TEST_P(Cut, AtRandomOffsetsResumes) {
  const auto [dir, fault] = GetParam();
  const bool up = std::string(dir) == "up";
  const std::uint64_t size = 3 * kMiB;
  for (std::uint64_t seed : {1u, 2u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Scratch s;
    const auto src = s.random_file("src.bin", size, 20 + seed);
    // Downstream the receiver writes little (HELLO, ANSWER, ACKs): cut within it.
    const std::string spec = std::string(fault) + (up ? "=1K..3M" : "=1..1500");
    auto o = through_proxy(s, {"--faulty", "3", "--seed", std::to_string(seed), std::string("--") + dir, spec},
                           flow_args(), src);
    ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
    expect_delivered(s, "src.bin", src);
    const std::string what = std::string(fault) == "close-after" ? " close after " : " reset after ";
    EXPECT_GE(o.log.fired(std::string(dir) + what), 1u) << o.log.dump();
    // Every cut costs a reconnect, except one that hits the receiver's final END reply:
    // every verdict is in by then, so the sender ends without redialling.
    const std::uint64_t lost_end = o.sent.out.find("before the receiver confirmed END") != std::string::npos;
    EXPECT_GE(o.sent.total("reconnects") + lost_end, o.log.fired(std::string(dir) + what)) << o.sent.diagnostics();
    expect_payload_bound(o.sent, size, kWindow, kChunk);
    expect_wire_bound(o, size, kWindow, kChunk);
  }
}

INSTANTIATE_TEST_SUITE_P(Fault, Cut,
                         ::testing::Combine(::testing::Values("up", "down"),
                                            ::testing::Values("close-after", "reset-after")),
                         [](const auto& p) {
                           std::string n = std::string(std::get<0>(p.param)) + "_" + std::get<1>(p.param);
                           for (auto& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(UnixSockets, ResetAtRandomOffsetsResumes) {
  // The same through unix sockets at both ends of the proxy.
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 25);
  auto recv = start_receiver(s, {"--once", "--idle-timeout", "60"}, {}, "recv", "unix:" + s.at("recv.sock"));
  ASSERT_EQ(recv.address, "unix:" + s.at("recv.sock"));
  auto proxy = start_proxy(s, recv.address, {"--faulty", "2", "--seed", "3", "--up", "reset-after=1K..2M"}, "proxy",
                           "unix:" + s.at("proxy.sock"));
  ASSERT_EQ(proxy.address, "unix:" + s.at("proxy.sock"));
  auto r = run_sender(s, proxy.address, flow_args(), src);
  ASSERT_EQ(r.exit_code, 0) << r.diagnostics();
  EXPECT_EQ(recv.proc.wait(15s), std::optional<int>(0)) << recv.proc.err();
  auto log = stop_proxy(proxy, s);
  expect_delivered(s, "src.bin", src);
  EXPECT_EQ(log.fired("up reset after"), 2u) << log.dump();
  EXPECT_GE(r.total("reconnects"), 2u) << r.diagnostics();
  expect_payload_bound(r, size, kWindow, kChunk);
}

// ---------------------------------------------------------------------------
// 3. Corruption in flight.

TEST(Corruption, PayloadBitFlipResendsOnlyThatChunk) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 31);
  auto o = through_proxy(s, {"--faulty", "1", "--seed", "5", "--up", "flip-payload=1M..2M"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  ASSERT_EQ(o.log.fired("up flipped bit"), 1u) << o.log.dump();
  EXPECT_GE(o.sent.total("chunks_rejected"), 1u) << o.sent.diagnostics();
  EXPECT_EQ(o.sent.total("reconnects"), 0u) << "a bad payload is repaired in place (RPOS)\n" << o.sent.diagnostics();
  // Protocol version 2: the receiver keeps the good blocks after the bad one and asks
  // for that block alone (selective RPOS), not for the rest of the window.
  EXPECT_LE(o.sent.total("bytes_resent"), 2 * kChunk) << o.sent.diagnostics();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
}

// The same on a slow link (2 MiB/s) and on a trickling one: a corrupt chunk costs one
// chunk, never a window, a stall timeout or a reconnect.
TEST(Corruption, PayloadBitFlipOnASlowLinkResendsOnlyThatChunk) {
  Scratch s;
  const std::uint64_t size = 2 * kMiB;
  const auto src = s.random_file("src.bin", size, 34);
  auto o = through_proxy(s, {"--faulty", "1", "--seed", "8", "--up", "rate=2M", "--up", "flip-payload=512K"},
                         flow_args(kWindow, kChunk, "5"), src);
  expect_repaired_in_place(o, s, src, kChunk);
}

TEST(Corruption, PayloadBitFlipOnATricklingLinkResendsOnlyThatChunk) {
  Scratch s;
  const std::uint64_t size = 192 * 1024, chunk = 16 * 1024;
  const auto src = s.random_file("src.bin", size, 35);
  auto o = through_proxy(s,
                         {"--faulty", "1", "--seed", "9", "--up", "trickle", "--up", "flip-payload=64K", "--down",
                          "trickle", "--trickle-delay", "40"},
                         flow_args(64 * 1024, chunk, "10"), src);
  expect_repaired_in_place(o, s, src, chunk);
}

TEST(Corruption, HeaderBitFlipFromSenderReconnects) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 32);
  auto o = through_proxy(s, {"--faulty", "1", "--seed", "6", "--up", "flip-header=1M"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  ASSERT_EQ(o.log.fired("up flipped bit"), 1u) << o.log.dump();
  EXPECT_GE(o.sent.total("reconnects"), 1u) << o.sent.diagnostics();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
  expect_wire_bound(o, size, kWindow, kChunk);
}

TEST(Corruption, HeaderBitFlipFromReceiverReconnects) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 33);
  // Byte 300 onwards of the receiver's stream: an ACK's header.
  auto o = through_proxy(s, {"--faulty", "1", "--seed", "7", "--down", "flip-header=300"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  ASSERT_EQ(o.log.fired("down flipped bit"), 1u) << o.log.dump();
  EXPECT_GE(o.sent.total("reconnects"), 1u) << o.sent.diagnostics();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
}

TEST(Corruption, ControlFrameBitFlipsNeverActedUpon) {
  // A flipped bit anywhere in the first 400 bytes from either side (HELLO, OFFER with
  // the file name and size, ANSWER): detected, the connection dropped, nothing is
  // created under a wrong name.
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Scratch s;
    const std::uint64_t size = 1 * kMiB;
    const auto src = s.random_file("src.bin", size, 40 + seed);
    const char* dir = seed % 2 ? "--up" : "--down";
    auto o = through_proxy(s, {"--faulty", "1", "--seed", std::to_string(seed), dir, "flip-at=0..400"}, flow_args(),
                           src);
    ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
    expect_delivered(s, "src.bin", src);
    ASSERT_EQ(o.log.fired("flipped bit"), 1u) << o.log.dump();
    EXPECT_GE(o.sent.total("reconnects"), 1u) << o.sent.diagnostics();
  }
}

// ---------------------------------------------------------------------------
// 4. Trickle: bytes delivered 1 to 7 at a time, both ways.

TEST(Trickle, OneToSevenBytesAtATimeBothWays) {
  Scratch s;
  const std::uint64_t size = 192 * 1024;
  const auto src = s.random_file("src.bin", size, 51);
  auto o = through_proxy(s, {"--up", "trickle", "--down", "trickle", "--trickle-delay", "40"},
                         flow_args(64 * 1024, 16 * 1024, "10"), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_EQ(o.sent.total("reconnects"), 0u) << o.sent.diagnostics();
  EXPECT_EQ(o.sent.total("bytes_payload"), size);
}

// ---------------------------------------------------------------------------
// 9. A peer that stops reading (the proxy stops forwarding: back-pressure reaches
// the writer) for longer than --stall-timeout.

TEST(Stall, UpstreamLongerThanStallTimeoutReconnects) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 61);
  auto o = through_proxy(s, {"--faulty", "1", "--up", "stall-after=1M", "--for", "4"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_GE(o.sent.total("stall_timeouts"), 1u) << o.sent.diagnostics();
  EXPECT_GE(o.sent.total("reconnects"), 1u);
  EXPECT_EQ(o.log.fired("up stall after"), 1u) << o.log.dump();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
}

TEST(Stall, DownstreamLongerThanStallTimeoutReconnects) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 62);
  auto o = through_proxy(s, {"--faulty", "1", "--down", "stall-after=400", "--for", "4"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_GE(o.sent.total("stall_timeouts"), 1u) << o.sent.diagnostics();
  EXPECT_GE(o.sent.total("reconnects"), 1u);
  expect_payload_bound(o.sent, size, kWindow, kChunk);
}

TEST(Stall, ForeverReaderGoneReconnects) {
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 63);
  auto o = through_proxy(s, {"--faulty", "1", "--up", "stall-after=1M"}, flow_args(), src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_GE(o.sent.total("stall_timeouts"), 1u) << o.sent.diagnostics();
  expect_payload_bound(o.sent, size, kWindow, kChunk);
}

TEST(Stall, ShorterThanStallTimeoutKeepsTheConnection) {
  // A slow but live path: a 0.5 s pause with --stall-timeout 3 is not a dead connection.
  Scratch s;
  const std::uint64_t size = 3 * kMiB;
  const auto src = s.random_file("src.bin", size, 64);
  auto o = through_proxy(s, {"--faulty", "1", "--up", "stall-after=1M", "--for", "0.5"}, flow_args(kWindow, kChunk, "3"),
                         src);
  ASSERT_EQ(o.sent.exit_code, 0) << o.sent.diagnostics() << o.log.dump();
  expect_delivered(s, "src.bin", src);
  EXPECT_EQ(o.log.fired("up stall over"), 1u) << o.log.dump();
  EXPECT_EQ(o.sent.total("stall_timeouts"), 0u) << o.sent.diagnostics();
  EXPECT_EQ(o.sent.total("reconnects"), 0u);
  EXPECT_EQ(o.sent.total("bytes_payload"), size);
}

}  // namespace
}  // namespace ferry::fault
