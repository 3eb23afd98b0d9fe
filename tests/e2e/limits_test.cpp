// End-to-end: the limits that keep a real ferry-recv --listen standing against peers
// that connect and then do nothing useful (docs/SECURITY.md, "Limits"; issue #11's
// findings "lock-out", "hang" and "memory"). Raw TCP peers from the test hold
// connections open, trickle bytes, hold a path, announce huge frames before HELLO or
// never read their PONGs; real ferry-send processes must still be served, within
// generous bounds, and the receiver's peak memory (VmHWM from /proc/PID/status) must
// stay small.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

namespace P = protocol;
using Clock = std::chrono::steady_clock;

constexpr Millis kReplyLimit = 10s;

// A hand-driven TCP peer, optionally from another loopback source address.
class RawPeer {
 public:
  explicit RawPeer(std::uint16_t port, const char* from = nullptr) {
    fd_ = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    if (from != nullptr) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, from, &src.sin_addr);
      if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
      }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
  }

  // Sends all of `b`, waiting at most until `deadline` for room; false once the peer
  // has closed, or at the deadline (`sent` says how far it got).
  bool send_bytes(P::Bytes b, Clock::time_point deadline = Clock::now() + kReplyLimit) {
    std::size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_.get(), b.data() + done, b.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_.get(), POLLOUT, 0};
      (void)::poll(&p, 1, static_cast<int>(std::min<long long>(left, 200)));
    }
    return true;
  }
  bool send_frame(P::FrameType type, const std::string& json) { return send_bytes(P::frame_of(type, json)); }

  // The next frame within `limit` (PONGs skipped unless asked for); nullopt on EOF,
  // error, timeout or a malformed frame.
  std::optional<P::FrameType> read_frame(std::string* payload = nullptr, Millis limit = kReplyLimit,
                                         bool skip_pongs = true) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
      auto r = P::decode_frame(P::Bytes(buf_));
      if (auto* f = std::get_if<P::DecodedFrame>(&r)) {
        const auto type = f->header.type;
        if (payload) payload->assign(reinterpret_cast<const char*>(f->payload.data()), f->payload.size());
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(f->consumed));
        if (type == P::FrameType::pong && skip_pongs) continue;
        return type;
      }
      if (std::holds_alternative<P::Malformed>(r) || !fill(deadline)) return std::nullopt;
    }
  }

  // True when the receiver closes the connection within `limit` (what it sends before
  // is read and dropped).
  bool closed_by_peer(Millis limit) {
    const auto deadline = Clock::now() + limit;
    while (fill(deadline)) buf_.clear();
    return why_ == "eof" || why_ == "reset";
  }

  const std::string& why() const { return why_; }
  std::size_t sent = 0;

 private:
  bool fill(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) {
      why_ = "timeout";
      return false;
    }
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) == 0) {
      why_ = "timeout";
      return false;
    }
    std::byte tmp[65536];
    ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, MSG_DONTWAIT);
    if (n == 0) {
      why_ = "eof";
      return false;
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) return true;
      why_ = errno == ECONNRESET ? "reset" : std::string("recv: ") + std::strerror(errno);
      return false;
    }
    buf_.insert(buf_.end(), tmp, tmp + n);
    return true;
  }

  Fd fd_;
  std::vector<std::byte> buf_;
  std::string why_;
};

P::Hello sender_hello(const std::string& session) {
  P::Hello h;
  h.role = P::Role::sender;
  h.session = session;
  h.software = "ferry-e2e limits peer";
  h.nonce = std::string(64, 'a');  // version 3: a HELLO carries a nonce (no key here)
  return h;
}

// HELLO as a sender; true when the receiver's HELLO came back.
bool handshake(RawPeer& c, const std::string& session = "0123456789abcdef0123456789abcdef") {
  if (!c.send_frame(P::FrameType::hello, P::to_json(sender_hello(session)))) return false;
  return c.read_frame() == P::FrameType::hello;
}

P::Offer offer_of(const std::string& path, std::uint64_t size, std::uint64_t block) {
  P::Offer o;
  o.file_id = 0;
  o.path = path;
  o.kind = P::EntryKind::file;
  o.size = size;
  o.mtime_ns = 1'700'000'000'000'000'000;
  o.mode = 0644;
  o.identity = "limits-" + path;
  o.block_size = block;
  return o;
}

// HELLO, then OFFER `path`: the receiver's ANSWER must accept it (the peer then holds it).
void hold_path(RawPeer& c, const std::string& path, std::uint64_t size, std::uint64_t block) {
  ASSERT_TRUE(handshake(c));
  ASSERT_TRUE(c.send_frame(P::FrameType::offer, P::to_json(offer_of(path, size, block))));
  std::string body;
  ASSERT_EQ(c.read_frame(&body), P::FrameType::answer) << c.why();
  auto a = P::parse_answer(P::as_bytes(body));
  ASSERT_TRUE(a.ok()) << body;
  ASSERT_EQ(a->status, P::AnswerStatus::accept) << body;
}

std::vector<std::byte> ping_frame(std::uint64_t nonce) {
  auto body = P::encode_nonce(nonce);
  return P::encode_frame(P::FrameType::ping, P::Bytes(body));
}

// A header with a valid header check announcing `length` bytes of `type`.
std::vector<std::byte> header_only(P::FrameType type, std::uint32_t length) {
  auto h = P::encode_header(type, length, 0);
  return {h.begin(), h.end()};
}

// The peak resident set of process `pid` in KiB (VmHWM), 0 when unreadable.
std::uint64_t peak_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

std::size_t count_matches(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A receiver whose peak RSS is measured: in a sanitizer build (.ci/run, FERRY_ASAN) its
// allocator keeps freed memory in quarantine (256 MiB by default), which is not ferry's;
// the receiver started here gets a quarantine of 8 MiB, so the bound still measures
// what ferry holds (use-after-free detection stays on, over a shorter window).
class SmallQuarantine {
 public:
  SmallQuarantine() {
#if defined(__SANITIZE_ADDRESS__)
    const char* old = std::getenv("ASAN_OPTIONS");
    saved_ = old ? std::optional<std::string>(old) : std::nullopt;
    const std::string mine = (saved_ ? *saved_ + ":" : std::string()) + "quarantine_size_mb=8";
    ::setenv("ASAN_OPTIONS", mine.c_str(), 1);
#endif
  }
  ~SmallQuarantine() {
#if defined(__SANITIZE_ADDRESS__)
    if (saved_) {
      ::setenv("ASAN_OPTIONS", saved_->c_str(), 1);
    } else {
      ::unsetenv("ASAN_OPTIONS");
    }
#endif
  }
  SmallQuarantine(const SmallQuarantine&) = delete;
  SmallQuarantine& operator=(const SmallQuarantine&) = delete;

 private:
  std::optional<std::string> saved_;
};

class Limits : public ::testing::Test {
 protected:
  void start(const std::vector<std::string>& args) {
    std::vector<std::string> all = args;
    all.push_back(dest_);
    recv_ = start_receiver(t_.path(), "recv", "127.0.0.1:0", all);
  }
  void start_measured() {
    SmallQuarantine q;
    start({});
  }

  // A real ferry-send of `name` (a fresh random file of `size` bytes), started now.
  std::unique_ptr<Process> send_file(const std::string& name, std::uint64_t size,
                                     const std::vector<std::string>& extra = {}) {
    write_random_file(t_ / ("src/" + name), size, size + name.size());
    std::vector<std::string> argv{kSendBin, "--connect", recv_.address};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(t_ / ("src/" + name));
    return Process::start(argv, t_.path(), "send-" + name);
  }

  void expect_delivered(Process& send, const std::string& name, Millis limit = 60s) {
    EXPECT_EQ(send.wait(limit), ExitStatus::exited_with(0)) << send.describe() << recv_.proc->describe();
    EXPECT_EQ(compare_files(t_ / ("src/" + name), dest_ + "/" + name), "");
  }

  void TearDown() override {
    if (!recv_.proc) return;
    ASSERT_TRUE(recv_.proc->running()) << recv_.proc->describe();
    recv_.proc->signal(SIGTERM);
    EXPECT_EQ(recv_.proc->wait(), ExitStatus::exited_with(128 + SIGTERM)) << recv_.proc->describe();
  }

  TempDir t_;
  std::string dest_ = t_ / "dest";
  Receiver recv_;
};

// Lock-out: 300 idle connections from one address (127.0.0.2) used to take all 256
// slots and refuse every real sender. With the defaults, that address gets its share
// (16) and the rest are refused at once; a sender from 127.0.0.1 is served. The
// refusals are logged once per address per 10 s, the next line counting those
// suppressed in between.
TEST_F(Limits, IdleConnectionsFromOneAddressDoNotLockOutASender) {
  start({"--handshake-timeout", "60"});  // the share protects the sender here, not reaping
  std::vector<std::unique_ptr<RawPeer>> idle;
  for (int i = 0; i < 300; ++i) idle.push_back(std::make_unique<RawPeer>(recv_.port, "127.0.0.2"));
  const auto flooded = Clock::now();
  auto send = send_file("a.bin", 3'000'000);
  expect_delivered(*send, "a.bin");
  // All but the share were closed by the receiver.
  std::size_t closed = 0;
  for (auto& p : idle) closed += p->closed_by_peer(50ms) ? 1 : 0;
  EXPECT_EQ(closed, 300u - 16u) << "the share of 127.0.0.2 is 16 connections";
  const std::string refused = "refused a connection from 127.0.0.2";
  EXPECT_EQ(count_matches(recv_.proc->stderr_text(), refused), 1u) << recv_.proc->describe();
  EXPECT_NE(recv_.proc->stderr_text().find("--max-per-address"), std::string::npos) << recv_.proc->describe();
  // One more after the interval: a second line, with the count of those suppressed.
  std::this_thread::sleep_until(flooded + 10500ms);
  RawPeer late(recv_.port, "127.0.0.2");
  EXPECT_TRUE(late.closed_by_peer(kReplyLimit));
  EXPECT_TRUE(wait_until([&] { return count_matches(recv_.proc->stderr_text(), refused) == 2; }, 10s))
      << recv_.proc->describe();
  EXPECT_NE(recv_.proc->stderr_text().find("283 more refused from there"), std::string::npos)
      << recv_.proc->describe();
}

// The cap is configurable, and connections that never complete their handshake are
// closed at the handshake deadline, freeing their slots: a sender that comes later is
// served although idle strangers had taken every slot.
TEST_F(Limits, HandshakeDeadlineFreesTheSlotsOfIdleConnections) {
  start({"--max-connections", "5", "--max-per-address", "0", "--handshake-timeout", "1"});
  std::vector<std::unique_ptr<RawPeer>> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(std::make_unique<RawPeer>(recv_.port));
  // A HELLO trickled one byte every 100 ms does not complete within the deadline.
  RawPeer trickle_hello(recv_.port);
  RawPeer over(recv_.port);
  EXPECT_TRUE(over.closed_by_peer(5s)) << "a sixth connection is refused: " << over.why();
  const auto hello = P::frame_of(P::FrameType::hello, P::to_json(sender_hello("aa")));
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < hello.size() && i < 40; ++i) {
    if (!trickle_hello.send_bytes(P::Bytes(hello).subspan(i, 1))) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(trickle_hello.closed_by_peer(10s)) << trickle_hello.why();
  for (auto& p : idle) EXPECT_TRUE(p->closed_by_peer(10s)) << p->why();
  EXPECT_LT(Clock::now() - t0, 10s);
  auto send = send_file("a.bin", 1'000'000);
  expect_delivered(*send, "a.bin");
  EXPECT_TRUE(wait_until(
      [&] {
        return recv_.proc->stderr_text().find("no complete handshake from the sender within 1 s") != std::string::npos;
      },
      10s))
      << recv_.proc->describe();
}

// Progress: a peer that only sends PINGs (answered, but no progress), and one that
// trickles an OFFER a byte at a time, are closed after --peer-timeout.
TEST_F(Limits, PingOnlyAndTricklingPeersAreReaped) {
  start({"--peer-timeout", "2"});
  RawPeer pinger(recv_.port), trickler(recv_.port);
  ASSERT_TRUE(handshake(pinger));
  ASSERT_TRUE(handshake(trickler, "fedcba9876543210fedcba9876543210"));
  const auto offer = P::frame_of(P::FrameType::offer, P::to_json(offer_of("t.bin", 100, 4096)));
  const auto t0 = Clock::now();
  bool pinger_open = true, trickler_open = true;
  for (std::size_t i = 0; (pinger_open || trickler_open) && Clock::now() - t0 < 20s; ++i) {
    if (pinger_open) pinger_open = pinger.send_bytes(ping_frame(i)) && !pinger.closed_by_peer(100ms);
    if (trickler_open) {
      trickler_open = trickler.send_bytes(P::Bytes(offer).subspan(i % offer.size(), 1)) &&
                      !trickler.closed_by_peer(100ms);
    }
  }
  EXPECT_FALSE(pinger_open) << "a PING-only peer was kept";
  EXPECT_FALSE(trickler_open) << "a trickling peer was kept";
  EXPECT_LT(Clock::now() - t0, 15s);
  // The receiver closes first and logs right after (the line may trail the close).
  EXPECT_TRUE(wait_until(
      [&] { return count_matches(recv_.proc->stderr_text(), "no progress from the sender for 2 s") >= 2; }, 10s))
      << recv_.proc->describe();
}

// The hang: an idle peer holds a path (OFFER accepted, then only PINGs). A real
// ferry-send --stall-timeout 2 of that path used to wait forever (the receiver's PONGs
// kept it alive). The holder is reaped after --peer-timeout and the sender delivers;
// a sender of another path is served meanwhile.
TEST_F(Limits, IdleHolderOfAPathIsReapedAndTheWaitingSenderDelivers) {
  start({"--peer-timeout", "3"});
  RawPeer holder(recv_.port);
  hold_path(holder, "held.bin", 1'000'000, 65536);
  if (HasFatalFailure()) return;
  auto waiting = send_file("held.bin", 1'000'000, {"--stall-timeout", "2"});
  auto other = send_file("other.bin", 1'000'000, {"--stall-timeout", "2"});
  expect_delivered(*other, "other.bin", 15s);
  // The holder keeps pinging until it is closed.
  const auto t0 = Clock::now();
  bool open = true;
  for (std::uint64_t i = 0; open && Clock::now() - t0 < 20s; ++i) {
    open = holder.send_bytes(ping_frame(i)) && !holder.closed_by_peer(250ms);
  }
  EXPECT_FALSE(open) << "the idle holder was kept";
  expect_delivered(*waiting, "held.bin", 30s);
}

// A holder that does make progress (one block a second) keeps its path; a sender
// waiting for it gets a clear refusal after --busy-timeout instead of hanging.
TEST_F(Limits, SenderWaitingForABusyPathIsRefusedWithinTheBusyTimeout) {
  start({"--busy-timeout", "2"});
  constexpr std::uint64_t kBlock = 4096, kBlocks = 64;
  RawPeer holder(recv_.port);
  hold_path(holder, "held.bin", kBlock * kBlocks, kBlock);
  if (HasFatalFailure()) return;
  const auto t0 = Clock::now();
  auto waiting = send_file("held.bin", 100'000, {"--stall-timeout", "2"});
  std::vector<std::byte> block(kBlock, std::byte{7});
  std::optional<ExitStatus> status;
  for (std::uint64_t i = 0; i < kBlocks && !status && Clock::now() - t0 < 30s; ++i) {
    const std::uint64_t offset = i * kBlock;
    auto head = P::encode_data_head(0, offset, P::block_digest(P::Bytes(block), offset), block.size());
    ASSERT_TRUE(holder.send_bytes(P::Bytes(head.data(), head.size())) && holder.send_bytes(P::Bytes(block)));
    std::this_thread::sleep_for(500ms);
    status = waiting->poll();
  }
  if (!status) status = waiting->wait(30s);
  EXPECT_EQ(*status, ExitStatus::exited_with(7)) << waiting->describe();
  EXPECT_LT(Clock::now() - t0, 25s);
  EXPECT_NE(waiting->stderr_text().find("busy"), std::string::npos) << waiting->describe();
  EXPECT_FALSE(exists_nofollow(dest_ + "/held.bin"));
}

// Memory: 16 connections announcing a maximum-length DATA frame before HELLO, and
// sending its bytes, took the receiver to 297 MiB. Now the header alone closes them.
TEST_F(Limits, LargeFramesBeforeTheHandshakeAreNotBuffered) {
  start_measured();
  const auto head = header_only(P::FrameType::data, static_cast<std::uint32_t>(P::kMaxPayload));
  std::vector<std::byte> filler(1024 * 1024, std::byte{0x5a});
  std::vector<std::unique_ptr<RawPeer>> peers;
  for (int i = 0; i < 16; ++i) {
    auto p = std::make_unique<RawPeer>(recv_.port);
    bool open = p->send_bytes(P::Bytes(head));
    for (int mib = 0; open && mib < 16; ++mib) open = p->send_bytes(P::Bytes(filler), Clock::now() + 2s);
    peers.push_back(std::move(p));
  }
  for (auto& p : peers) EXPECT_TRUE(p->closed_by_peer(10s)) << p->why();
  const auto peak = peak_rss_kib(recv_.proc->pid());
  EXPECT_GT(peak, 0u);
  EXPECT_LT(peak, 64u * 1024) << "peak RSS " << peak << " KiB";
}

// Memory: 96 MiB of PINGs whose PONGs are never read took the receiver to 290 MiB.
// Now it stops reading once the unsent replies pass their bound.
TEST_F(Limits, UnreadRepliesDoNotGrowTheReceiver) {
  start_measured();
  RawPeer flooder(recv_.port);
  ASSERT_TRUE(handshake(flooder));
  std::vector<std::byte> pings;
  for (std::uint64_t i = 0; i < 32768; ++i) {  // 1 MiB of PINGs
    auto f = ping_frame(i);
    pings.insert(pings.end(), f.begin(), f.end());
  }
  const auto t0 = Clock::now();
  for (int mib = 0; mib < 96 && Clock::now() - t0 < 8s; ++mib) {
    if (!flooder.send_bytes(P::Bytes(pings), t0 + 8s)) break;
  }
  // How much the kernel's socket buffers took before the receiver stopped reading
  // depends on tcp_rmem/tcp_wmem; what it may not do is hold the replies itself.
  const auto peak = peak_rss_kib(recv_.proc->pid());
  EXPECT_GT(peak, 0u);
  EXPECT_LT(peak, 64u * 1024) << "peak RSS " << peak << " KiB after " << flooder.sent << " bytes of PINGs";
  // And still serves a real sender meanwhile.
  auto send = send_file("a.bin", 1'000'000);
  expect_delivered(*send, "a.bin");
}

}  // namespace
}  // namespace ferry::e2e
