// Tests SenderSession alone, without sockets, files or clocks: the test plays the
// receiver with hand-built frames (protocol/codec + messages) and the driver,
// completing ReadChunk / HashPrefix / CheckSource from in-memory bytes. Covers the
// handshake, the window under late and odd ACKs, ACK/RPOS checks, rewinds, resume,
// commit digests, verdicts, refusals, stall and keepalive timers, reconnects, the
// whole-transfer figures in events and HELLO, and eager files and directories (versions
// 3 and 6).
#include "sender/sender_session.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lib/core/source_entry.hpp"

namespace ferry::sender {
namespace {

namespace P = protocol;
using std::chrono::milliseconds;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);
constexpr char kSession[] = "0123456789abcdef0123456789abcdef";
const P::Nonce kPeerNonce{0x5a, 0x01};  // the fake receiver's HELLO nonce
constexpr std::size_t kChunk = 4096;
constexpr std::uint64_t kWindow = 16 * kChunk;
constexpr milliseconds kStall{8000};

std::vector<std::byte> bytes_of(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 g(seed);
  for (auto& b : v) b = static_cast<std::byte>(g());
  return v;
}

// The file digest of version 2: blocks of kChunk (PROTOCOL.md section 10).
P::FileDigest file_digest(P::Bytes b, std::size_t block_size = kChunk) {
  P::FileDigest d;
  P::add_blocks(d, b, 0, block_size);
  return d;
}
std::string hex128(P::Bytes b) { return file_digest(b).hex(); }

// A block as the driver reads it: a copy in a buffer, and its block digest.
ReadBlock block_of(P::Bytes b, std::uint64_t offset) {
  return ReadBlock{ByteBuffer::copy_of(b), P::block_digest(b, offset)};
}
ReadBlock marker_block(std::size_t n) {
  std::vector<std::byte> v(n, std::byte{0xEE});
  return block_of(v, 0);
}

// A frame the sender wrote, decoded.
struct Sent {
  P::FrameType type{};
  std::vector<std::byte> payload;
  std::uint32_t file = 0;        // DATA, PING nonce low bits unused
  std::uint64_t offset = 0;      // DATA
  std::vector<std::byte> data;   // DATA
  std::string text() const { return std::string(reinterpret_cast<const char*>(payload.data()), payload.size()); }
};

SenderConfig config(unsigned attempts = 3) {
  SenderConfig c;
  c.chunk_size = kChunk;
  c.window = kWindow;
  c.max_reads_in_flight = 4;
  c.max_file_attempts = attempts;
  c.stall_timeout = kStall;
  c.session_id = kSession;
  c.software = "test-sender";
  return c;
}

SourceEntry entry(const std::string& path, std::size_t size) {
  SourceEntry e;
  e.wire_path = path;
  e.local_path = "mem:" + path;
  e.size = size;
  e.mtime_ns = 1'000'000'000;
  e.identity = source_identity(size, e.mtime_ns);
  return e;
}

// The receiver and the driver, by hand.
class Harness {
 public:
  explicit Harness(std::vector<std::vector<std::byte>> contents, SenderConfig config_in = config())
      : files(std::move(contents)), cfg(config_in), s(cfg, entries(files), kT0) {}
  // Entries of its own (a tree); contents[i] belongs to ents[i] (empty for a directory).
  Harness(std::vector<SourceEntry> ents, std::vector<std::vector<std::byte>> contents, SenderConfig config_in = config())
      : files(std::move(contents)), cfg(config_in), s(cfg, std::move(ents), kT0) {}

  // Entries pulled from a source of its own; contents[i] belongs to its i-th entry.
  Harness(std::unique_ptr<EntrySource> source, std::vector<std::vector<std::byte>> contents,
          SenderConfig config_in = config())
      : files(std::move(contents)), cfg(config_in), s(cfg, std::move(source), kT0) {}

  static std::vector<SourceEntry> entries(const std::vector<std::vector<std::byte>>& contents) {
    std::vector<SourceEntry> out;
    for (std::size_t i = 0; i < contents.size(); ++i) out.push_back(entry("f" + std::to_string(i), contents[i].size()));
    return out;
  }

  // Takes the session's actions: frames are decoded into `frames`, file work is queued.
  void collect() {
    for (int guard = 0; guard < 1000; ++guard) {
      auto actions = s.take_actions();
      if (actions.empty()) break;
      for (auto& a : actions) {
        if (auto* f = std::get_if<SendFrame>(&a)) {
          std::vector<std::byte> wire = f->head;
          wire.insert(wire.end(), f->body.span().begin(), f->body.span().end());
          auto r = P::decode_frame(wire);
          auto* d = std::get_if<P::DecodedFrame>(&r);
          ASSERT_TRUE(d) << "the sender wrote an undecodable frame";
          ASSERT_EQ(d->consumed, wire.size());
          ASSERT_TRUE(d->payload_ok);
          Sent sent;
          sent.type = d->header.type;
          sent.payload.assign(d->payload.begin(), d->payload.end());
          if (sent.type == P::FrameType::data) {
            P::DataView v;
            ASSERT_TRUE(P::decode_data(d->payload, v));
            sent.file = v.file_id;
            sent.offset = v.offset;
            sent.data.assign(v.data.begin(), v.data.end());
            // Independent of in_flight(): no DATA beyond what the receiver confirmed + window.
            EXPECT_LE(sent.offset + sent.data.size(), confirmed + cfg.window)
                << "DATA at " << sent.offset << " beyond confirmed " << confirmed << " + window";
          }
          frames.push_back(std::move(sent));
        } else if (auto* r = std::get_if<ReadChunk>(&a)) {
          reads.push_back(*r);
        } else if (auto* h = std::get_if<HashPrefix>(&a)) {
          hashes.push_back(*h);
        } else if (auto* k = std::get_if<CheckSource>(&a)) {
          ++checks;
          if (auto_check) {
            s.on_source_checked(k->token, std::optional<SourceEntry>{}, now);
          } else {
            held_checks.push_back(*k);
          }
        } else if (auto* c = std::get_if<CloseConnection>(&a)) {
          closes.push_back(*c);
        }
      }
    }
    EXPECT_LE(s.in_flight(), cfg.window);
    EXPECT_LE(s.blocks_held(), s.max_blocks());
  }

  void connect() {
    s.on_connected(now);
    collect();
  }
  void feed(P::FrameType t, const std::string& body) {
    s.on_bytes(P::encode_frame(t, body), now);
    collect();
  }
  // ACK(offset), or RPOS(offset, length 0): go back to offset.
  void feed_position(P::FrameType t, std::uint32_t file, std::uint64_t offset) {
    if (t == P::FrameType::rpos) return feed_rpos(file, offset, 0);
    auto body = P::encode_position({file, offset});
    s.on_bytes(P::encode_frame(t, P::Bytes(body)), now);
    confirmed = std::max(confirmed, offset);
    collect();
  }
  void feed_rpos(std::uint32_t file, std::uint64_t offset, std::uint64_t length) {
    auto body = P::encode_resend({file, offset, length});
    s.on_bytes(P::encode_frame(P::FrameType::rpos, P::Bytes(body)), now);
    if (length == 0) confirmed = offset;
    collect();
  }
  void receiver_hello(const std::string& session = kSession, P::Role role = P::Role::receiver,
                      std::uint32_t min_v = P::kProtocolVersion, std::uint32_t max_v = P::kProtocolVersion) {
    P::Hello h;
    h.role = role;
    h.session = session;
    h.software = "test-receiver";
    h.nonce = P::nonce_hex(kPeerNonce);  // version 3: every HELLO carries one
    h.min_version = min_v;
    h.max_version = max_v;
    feed(P::FrameType::hello, P::to_json(h));
  }
  void answer(std::uint32_t file, std::uint64_t offset, P::AnswerStatus st = P::AnswerStatus::accept,
              std::vector<P::ByteRange> held = {}) {
    confirmed = offset;
    feed(P::FrameType::answer,
         P::to_json(P::Answer{file, st, offset, st == P::AnswerStatus::refuse ? "no" : "", std::move(held)}));
  }
  void verdict(std::uint32_t file, bool ok) {
    feed(P::FrameType::verdict, P::to_json(P::Verdict{file, ok ? P::VerdictStatus::verified : P::VerdictStatus::failed,
                                                      ok ? "" : "digest mismatch"}));
  }
  // Completes the pending read at `index` from the in-memory file.
  void complete_read(std::size_t index) {
    ReadChunk r = reads.at(index);
    reads.erase(reads.begin() + static_cast<std::ptrdiff_t>(index));
    const auto& f = files.at(r.entry);
    const auto end = std::min<std::uint64_t>(r.offset + r.length, f.size());
    s.on_read_done(r.token, block_of(P::Bytes(f).subspan(r.offset, end - r.offset), r.offset), now);
    collect();
  }
  void complete_all_reads() {
    for (int guard = 0; guard < 100'000 && !reads.empty(); ++guard) complete_read(0);
  }
  void complete_hash(std::size_t index = 0) {
    HashPrefix h = hashes.at(index);
    hashes.erase(hashes.begin() + static_cast<std::ptrdiff_t>(index));
    EXPECT_EQ(h.block_size, cfg.chunk_size);
    s.on_prefix_hashed(h.token, file_digest(P::Bytes(files.at(h.entry)).first(h.length), h.block_size), now);
    collect();
  }
  // HELLO exchange; returns with the OFFER of entry 0 sent.
  void handshake() {
    connect();
    receiver_hello();
  }

  std::vector<Sent> of_type(P::FrameType t) const {
    std::vector<Sent> out;
    for (const auto& f : frames) {
      if (f.type == t) out.push_back(f);
    }
    return out;
  }
  std::vector<Sent> take_frames() { return std::exchange(frames, {}); }
  std::uint64_t data_bytes() const {
    std::uint64_t n = 0;
    for (const auto& f : frames) {
      if (f.type == P::FrameType::data) n += f.data.size();
    }
    return n;
  }

  std::vector<std::vector<std::byte>> files;
  SenderConfig cfg;
  SenderSession s;
  Clock::time_point now = kT0;
  std::uint64_t confirmed = 0;
  bool auto_check = true;
  std::vector<CheckSource> held_checks;  // without auto_check: answered by the test
  std::vector<Sent> frames;
  std::vector<ReadChunk> reads;
  std::vector<HashPrefix> hashes;
  unsigned checks = 0;
  std::vector<CloseConnection> closes;
};

// HELLOs, ANSWER 0 for entry 0, and every read the window allows completed.
void stream_from_zero(Harness& h) {
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();
}

void expect_protocol_failure(Harness& h) {
  EXPECT_EQ(h.s.state(), SenderSession::State::failed);
  EXPECT_TRUE(h.s.finished());
  auto o = h.s.outcome();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code, Errc::protocol) << o.error().message();
  EXPECT_FALSE(o.error().what.empty());
  EXPECT_FALSE(h.of_type(P::FrameType::error).empty()) << "the receiver is told why";
  EXPECT_EQ(h.closes.size(), 1u);
}

// --- handshake ------------------------------------------------------------------

TEST(SenderHandshake, HelloFirstThenOfferAfterReceiverHello) {
  Harness h({bytes_of(100, 1)});
  h.connect();
  ASSERT_EQ(h.frames.size(), 1u);
  EXPECT_EQ(h.frames[0].type, P::FrameType::hello);
  auto hello = P::parse_hello(h.frames[0].payload);
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->role, P::Role::sender);
  EXPECT_EQ(hello->session, kSession);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_hello);
  h.receiver_hello();
  ASSERT_EQ(h.frames.size(), 2u);
  ASSERT_EQ(h.frames[1].type, P::FrameType::offer);
  auto offer = P::parse_offer(h.frames[1].payload);
  ASSERT_TRUE(offer.ok());
  EXPECT_EQ(offer->file_id, 0u);
  EXPECT_EQ(offer->path, "f0");
  EXPECT_EQ(offer->size, 100u);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_answer);
}

TEST(SenderHandshake, HelloWithAnotherSessionIdFails) {
  Harness h({bytes_of(100, 1)});
  h.connect();
  h.receiver_hello("ffffffffffffffffffffffffffffffff");
  expect_protocol_failure(h);
  EXPECT_TRUE(h.of_type(P::FrameType::offer).empty());
}

TEST(SenderHandshake, HelloWithWrongRoleFails) {
  Harness h({bytes_of(100, 1)});
  h.connect();
  h.receiver_hello(kSession, P::Role::sender);
  expect_protocol_failure(h);
}

TEST(SenderHandshake, HelloWithNoCommonVersionFails) {
  Harness h({bytes_of(100, 1)});
  h.connect();
  h.receiver_hello(kSession, P::Role::receiver, P::kProtocolVersion + 1, P::kProtocolVersion + 5);
  expect_protocol_failure(h);
  EXPECT_NE(h.s.outcome().error().what.find("version"), std::string::npos) << h.s.outcome().error().what;
}

TEST(SenderHandshake, AnyOtherFrameBeforeHelloFails) {
  Harness h({bytes_of(100, 1)});
  h.connect();
  h.feed(P::FrameType::answer, P::to_json(P::Answer{0, P::AnswerStatus::accept, 0, ""}));
  expect_protocol_failure(h);
}

// --- window, ACK, RPOS -------------------------------------------------------------

TEST(SenderWindow, NeverExceededWithLateAndOddAcks) {
  const auto file = bytes_of(1024 * 1024 + 123, 2);
  for (unsigned seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Harness h({file});
    h.handshake();
    h.answer(0, 0);
    std::mt19937_64 g(seed);
    std::vector<std::byte> got(file.size());
    std::uint64_t acked = 0, sent = 0;
    bool committed = false;
    std::string commit_hex;
    for (int step = 0; step < 200'000 && !committed; ++step) {
      // Whatever the session wrote so far.
      for (const auto& f : h.take_frames()) {
        if (f.type == P::FrameType::data) {
          ASSERT_EQ(f.offset, sent) << "DATA in order";
          std::copy(f.data.begin(), f.data.end(), got.begin() + static_cast<std::ptrdiff_t>(f.offset));
          sent += f.data.size();
        }
        if (f.type == P::FrameType::commit) {
          committed = true;
          auto c = P::parse_commit(f.payload);
          ASSERT_TRUE(c.ok());
          commit_hex = c->xxh3_128;
        }
      }
      ASSERT_LE(h.s.in_flight(), kWindow);
      ASSERT_LE(sent - acked, kWindow);
      switch (g() % 3) {
        case 0:  // a read completes, in any order
          if (!h.reads.empty()) h.complete_read(g() % h.reads.size());
          break;
        case 1:  // a late ACK of an odd amount, anywhere in (acked, sent]
          if (sent > acked && g() % 4 == 0) {
            acked += 1 + g() % (sent - acked);
            h.feed_position(P::FrameType::ack, 0, acked);
          }
          break;
        default:
          if (h.reads.empty() && sent > acked) {  // stuck on the window: the ACK comes
            acked = sent;
            h.feed_position(P::FrameType::ack, 0, acked);
          }
          break;
      }
    }
    ASSERT_TRUE(committed);
    EXPECT_EQ(sent, file.size());
    EXPECT_TRUE(got == file) << "the DATA frames carry the file";
    EXPECT_EQ(commit_hex, hex128(file));
  }
}

TEST(SenderWindow, AcksAdvanceTheWindowAndMoreReadsAppear) {
  Harness h({bytes_of(40 * kChunk, 3)});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();
  EXPECT_TRUE(h.reads.empty());
  EXPECT_EQ(h.data_bytes(), kWindow) << "one window, then it waits";
  EXPECT_EQ(h.s.in_flight(), kWindow);
  h.take_frames();

  const std::uint64_t ack = 2 * kChunk + 1000;  // odd: 2 whole chunks fit behind it
  h.feed_position(P::FrameType::ack, 0, ack);
  ASSERT_EQ(h.reads.size(), 2u);
  std::uint64_t requested = 0;
  for (const auto& r : h.reads) {
    EXPECT_GE(r.offset, kWindow);
    requested += r.length;
  }
  EXPECT_LE(requested, ack);
  EXPECT_EQ(h.reads.front().offset, kWindow);
  h.complete_all_reads();
  EXPECT_EQ(h.data_bytes(), 2 * kChunk);
  EXPECT_LE(h.s.in_flight(), kWindow);
}

TEST(SenderWindow, AckBeyondWhatWasSentIsAViolation) {
  Harness h({bytes_of(10 * kChunk, 4)});
  h.handshake();
  h.answer(0, 0);
  h.complete_read(0);  // one chunk sent
  ASSERT_EQ(h.data_bytes(), kChunk);
  h.feed_position(P::FrameType::ack, 0, kChunk + 1);
  expect_protocol_failure(h);
}

TEST(SenderWindow, AckGoingBackwardsIsAViolation) {
  Harness h({bytes_of(10 * kChunk, 5)});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();
  h.feed_position(P::FrameType::ack, 0, 3 * kChunk);
  ASSERT_FALSE(h.s.finished());
  h.feed_position(P::FrameType::ack, 0, 2 * kChunk);
  expect_protocol_failure(h);
}

TEST(SenderWindow, AckForAnotherFileIsAViolation) {
  Harness h({bytes_of(10 * kChunk, 6), bytes_of(10, 7)});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();
  h.feed_position(P::FrameType::ack, 1, kChunk);
  expect_protocol_failure(h);
}

// RPOS length 0 (go-back, PROTOCOL.md 6.4): version 1's rewind.
TEST(SenderRpos, GoBackRewindsToTheOffsetAndCountsResentBytes) {
  const auto file = bytes_of(12 * kChunk, 8);
  Harness h({file});
  stream_from_zero(h);
  static_assert(12 * kChunk < kWindow);
  ASSERT_EQ(h.data_bytes(), 12 * kChunk);
  const std::uint64_t sent_before = h.data_bytes();
  auto first_commits = h.of_type(P::FrameType::commit);
  ASSERT_EQ(first_commits.size(), 1u) << "every block was sent once: COMMIT";
  h.take_frames();
  EXPECT_EQ(h.s.totals().bytes_resent, 0u);

  const std::uint64_t x = 5 * kChunk;
  h.feed_position(P::FrameType::rpos, 0, x);
  EXPECT_FALSE(h.s.finished());
  EXPECT_EQ(h.s.totals().chunks_rejected, 1u);
  h.complete_all_reads();
  auto data = h.of_type(P::FrameType::data);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.front().offset, x) << "the next DATA restarts at the RPOS offset";
  for (std::size_t i = 0; i < data.size(); ++i) EXPECT_EQ(data[i].offset, x + i * kChunk);
  EXPECT_EQ(h.s.totals().bytes_resent, sent_before - x);

  // Version 2: the COMMIT went out once, after the first sends; the receiver keeps it
  // (version 1 sent it again after the rewound tail).
  EXPECT_EQ(data.back().offset + data.back().data.size(), file.size());
  EXPECT_TRUE(h.of_type(P::FrameType::commit).empty()) << "COMMIT is not sent again";
  auto c = P::parse_commit(first_commits[0].payload);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->xxh3_128, hex128(file)) << "re-sent bytes are hashed once";
}

TEST(SenderRpos, StaleReadsFromBeforeTheRewindAreNotSent) {
  Harness h({bytes_of(12 * kChunk, 9)});
  h.handshake();
  h.answer(0, 0);
  h.complete_read(0);
  h.complete_read(0);  // two chunks sent, more reads pending
  ASSERT_GE(h.reads.size(), 2u);
  auto stale = h.reads;
  h.reads.clear();
  h.take_frames();
  h.feed_position(P::FrameType::rpos, 0, kChunk);
  for (const auto& r : stale) {  // they complete after the rewind, with marker bytes
    h.s.on_read_done(r.token, marker_block(r.length), h.now);
    h.collect();
  }
  h.complete_all_reads();
  auto data = h.of_type(P::FrameType::data);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.front().offset, kChunk);
  const auto& f = h.files[0];
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (i > 0) {
      EXPECT_EQ(data[i].offset, data[i - 1].offset + kChunk);
    }
    EXPECT_TRUE(std::equal(data[i].data.begin(), data[i].data.end(), f.begin() + static_cast<std::ptrdiff_t>(data[i].offset)))
        << "DATA at " << data[i].offset << " came from a read issued before the rewind";
  }
}

// --- version 2: blocks, selective re-sends, held ranges, the buffer bound --------------

TEST(SenderBlocks, OfferCarriesTheBlockSizeAndReadsAreWholeBlocks) {
  const auto file = bytes_of(5 * kChunk + 9, 30);
  Harness h({file});
  h.handshake();
  auto offers = h.of_type(P::FrameType::offer);
  ASSERT_EQ(offers.size(), 1u);
  EXPECT_EQ(P::parse_offer(offers[0].payload)->block_size, kChunk);
  h.answer(0, 0);
  for (const auto& r : h.reads) {
    EXPECT_EQ(r.offset % kChunk, 0u);
    EXPECT_EQ(r.length, std::min<std::uint64_t>(kChunk, file.size() - r.offset));
  }
  h.complete_all_reads();
  for (const auto& d : h.of_type(P::FrameType::data)) EXPECT_EQ(d.offset % kChunk, 0u);
  EXPECT_EQ(h.data_bytes(), file.size());
}

TEST(SenderRpos, ResendsExactlyTheNamedBlocksOnceAndNoSecondCommit) {
  const auto file = bytes_of(12 * kChunk, 31);
  Harness h({file});
  stream_from_zero(h);
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  h.take_frames();
  h.feed_rpos(0, 5 * kChunk, kChunk);  // one block
  h.feed_rpos(0, 8 * kChunk, 2 * kChunk);  // two blocks
  EXPECT_EQ(h.s.totals().chunks_rejected, 2u);
  h.complete_all_reads();
  auto data = h.of_type(P::FrameType::data);
  ASSERT_EQ(data.size(), 3u);
  std::vector<std::uint64_t> offsets;
  for (const auto& d : data) {
    offsets.push_back(d.offset);
    EXPECT_TRUE(std::equal(d.data.begin(), d.data.end(), file.begin() + static_cast<std::ptrdiff_t>(d.offset)));
  }
  std::sort(offsets.begin(), offsets.end());
  EXPECT_EQ(offsets, (std::vector<std::uint64_t>{5 * kChunk, 8 * kChunk, 9 * kChunk}));
  EXPECT_EQ(h.s.totals().bytes_resent, 3 * kChunk);
  EXPECT_TRUE(h.of_type(P::FrameType::commit).empty()) << "COMMIT is sent once, not after re-sends";
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_verdict);
  h.verdict(0, true);
  EXPECT_EQ(h.s.totals().files_verified, 1u);
}

TEST(SenderRpos, ResentBlocksGoOutBeforeNewData) {
  const auto file = bytes_of(40 * kChunk, 32);
  Harness h({file});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();  // a window's worth sent
  ASSERT_EQ(h.data_bytes(), kWindow);
  h.take_frames();
  h.feed_rpos(0, 2 * kChunk, kChunk);
  h.feed_position(P::FrameType::ack, 0, 2 * kChunk);  // opens the window for new blocks too
  h.complete_all_reads();
  auto data = h.of_type(P::FrameType::data);
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data[0].offset, 2 * kChunk) << "the re-sent block first";
  EXPECT_EQ(data[1].offset, kWindow) << "then new data, in order";
}

TEST(SenderRpos, RangesOutsideWhatWasSentOrOffBlockBoundariesAreViolations) {
  struct Bad {
    std::uint64_t offset, length;
  };
  for (Bad b : {Bad{kChunk + 1, kChunk}, Bad{kChunk, kChunk + 1}, Bad{10 * kChunk, kChunk}, Bad{0, kChunk}}) {
    SCOPED_TRACE(std::to_string(b.offset) + "+" + std::to_string(b.length));
    Harness h({bytes_of(12 * kChunk, 33)});
    h.handshake();
    h.answer(0, 0);
    for (int i = 0; i < 4; ++i) h.complete_read(0);  // [0, 4 chunks) sent
    h.feed_position(P::FrameType::ack, 0, kChunk);  // acked 1 chunk: [0, 1 chunk) is below
    h.feed_rpos(0, b.offset, b.length);
    expect_protocol_failure(h);
  }
}

TEST(SenderAnswer, OffsetOffABlockBoundaryIsAViolation) {
  Harness h({bytes_of(10 * kChunk, 34)});
  h.handshake();
  h.answer(0, 3 * kChunk + 17);
  expect_protocol_failure(h);
}

TEST(SenderAnswer, HeldRangesAreReadForTheDigestButNotSent) {
  const auto file = bytes_of(24 * kChunk + 100, 35);
  Harness h({file});
  h.handshake();
  // The receiver holds [4, 8) and [20, end) chunks above its offset of 2 chunks.
  h.answer(0, 2 * kChunk, P::AnswerStatus::accept, {{4 * kChunk, 4 * kChunk}, {20 * kChunk, 4 * kChunk + 100}});
  ASSERT_EQ(h.hashes.size(), 1u);
  h.complete_hash();
  for (int round = 0; round < 100 && h.of_type(P::FrameType::commit).empty(); ++round) {
    h.complete_all_reads();
    std::uint64_t end = 2 * kChunk;
    for (const auto& f : h.of_type(P::FrameType::data)) end = std::max(end, f.offset + f.data.size());
    if (end >= 4 * kChunk) end = std::max<std::uint64_t>(end, 8 * kChunk);   // the receiver counts held blocks
    if (end >= 20 * kChunk) end = file.size();
    h.feed_position(P::FrameType::ack, 0, end);
  }
  for (const auto& d : h.of_type(P::FrameType::data)) {
    EXPECT_FALSE(d.offset >= 4 * kChunk && d.offset < 8 * kChunk) << "held block sent at " << d.offset;
    EXPECT_LT(d.offset, 20 * kChunk) << "held block sent at " << d.offset;
  }
  EXPECT_EQ(h.data_bytes(), (2 + 12) * kChunk);
  auto commits = h.of_type(P::FrameType::commit);
  ASSERT_EQ(commits.size(), 1u);
  EXPECT_EQ(P::parse_commit(commits[0].payload)->xxh3_128, hex128(file)) << "held blocks are in the digest";
  EXPECT_EQ(h.s.totals().bytes_resent, 0u);
}

TEST(SenderAnswer, AnAckOverHeldBlocksNotYetReadIsAccepted) {
  const auto file = bytes_of(40 * kChunk, 36);
  Harness h({file});
  h.handshake();
  h.answer(0, 0, P::AnswerStatus::accept, {{kChunk, 30 * kChunk}});
  h.complete_read(0);  // block 0 sent; the held blocks are far beyond the window
  h.feed_position(P::FrameType::ack, 0, 31 * kChunk);
  EXPECT_FALSE(h.s.finished()) << (h.s.finished() ? h.s.outcome().error().message() : "");
  h.complete_all_reads();
  for (int round = 0; round < 100 && h.of_type(P::FrameType::commit).empty(); ++round) {
    h.complete_all_reads();
    std::uint64_t end = 31 * kChunk;
    for (const auto& f : h.of_type(P::FrameType::data)) end = std::max(end, f.offset + f.data.size());
    h.feed_position(P::FrameType::ack, 0, end);
  }
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  EXPECT_EQ(P::parse_commit(h.of_type(P::FrameType::commit)[0].payload)->xxh3_128, hex128(file));
  EXPECT_EQ(h.data_bytes(), 10 * kChunk);
}

TEST(SenderBuffers, NeverMoreBlocksHeldThanTheBoundUnderRandomCompletions) {
  const auto file = bytes_of(100 * kChunk + 5, 37);
  SenderConfig cfg = config();
  cfg.max_reads_in_flight = 6;
  Harness h({file}, cfg);
  h.handshake();
  h.answer(0, 0);
  std::mt19937 g(7);
  std::size_t most = 0;
  for (int round = 0; round < 10'000 && h.of_type(P::FrameType::commit).empty(); ++round) {
    if (!h.reads.empty()) h.complete_read(g() % h.reads.size());  // collect() checks the bound
    most = std::max(most, h.s.blocks_held());
    if (g() % 4 == 0) {
      std::uint64_t end = h.confirmed;
      for (const auto& f : h.of_type(P::FrameType::data)) end = std::max(end, f.offset + f.data.size());
      if (g() % 3 == 0 && end > h.confirmed + kChunk) {
        h.feed_rpos(0, h.confirmed, kChunk);  // one block again, now and then
      }
      h.feed_position(P::FrameType::ack, 0, end);
    }
  }
  EXPECT_LE(most, h.s.max_blocks());
  EXPECT_EQ(h.s.max_blocks(), kWindow / kChunk + 6);
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  EXPECT_EQ(P::parse_commit(h.of_type(P::FrameType::commit)[0].payload)->xxh3_128, hex128(file));
}

// --- resume, commit, verdicts ---------------------------------------------------------

TEST(SenderResume, AnswerOffsetHashesThePrefixThenSendsFromThere) {
  const auto file = bytes_of(10 * kChunk + 77, 10);
  Harness h({file});
  h.handshake();
  const std::uint64_t x = 3 * kChunk;  // a block boundary (version 2)
  h.answer(0, x);
  ASSERT_EQ(h.hashes.size(), 1u);
  EXPECT_EQ(h.hashes[0].length, x);
  EXPECT_EQ(h.hashes[0].entry, 0u);
  EXPECT_TRUE(h.reads.empty()) << "no read before the prefix is hashed";
  EXPECT_EQ(h.s.state(), SenderSession::State::hashing_prefix);
  EXPECT_EQ(h.s.in_flight(), 0u);
  h.complete_hash();
  ASSERT_FALSE(h.reads.empty());
  EXPECT_EQ(h.reads.front().offset, x);
  for (int round = 0; round < 10 && h.of_type(P::FrameType::commit).empty(); ++round) {
    h.complete_all_reads();
    std::uint64_t end = x;
    for (const auto& f : h.of_type(P::FrameType::data)) end = std::max(end, f.offset + f.data.size());
    h.feed_position(P::FrameType::ack, 0, end);
  }
  auto data = h.of_type(P::FrameType::data);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.front().offset, x);
  EXPECT_EQ(h.data_bytes(), file.size() - x);
  auto commits = h.of_type(P::FrameType::commit);
  ASSERT_EQ(commits.size(), 1u);
  EXPECT_EQ(P::parse_commit(commits[0].payload)->xxh3_128, hex128(file));
}

TEST(SenderResume, AnswerAtFullSizeSendsNoDataOnlyTheCommit) {
  const auto file = bytes_of(5 * kChunk + 3, 11);
  Harness h({file});
  h.handshake();
  h.answer(0, file.size());
  ASSERT_EQ(h.hashes.size(), 1u);
  EXPECT_EQ(h.hashes[0].length, file.size());
  h.complete_hash();
  EXPECT_TRUE(h.reads.empty());
  EXPECT_TRUE(h.of_type(P::FrameType::data).empty());
  EXPECT_EQ(h.checks, 1u) << "the source is re-checked before the COMMIT";
  auto commits = h.of_type(P::FrameType::commit);
  ASSERT_EQ(commits.size(), 1u);
  auto c = P::parse_commit(commits[0].payload);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->size, file.size());
  EXPECT_EQ(c->xxh3_128, hex128(file));
  h.verdict(0, true);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  h.feed(P::FrameType::end, P::to_json(P::End{1, file.size()}));
  EXPECT_EQ(h.s.state(), SenderSession::State::done);
  EXPECT_TRUE(h.s.outcome().ok());
  EXPECT_EQ(h.s.totals().bytes_payload, 0u);
}

TEST(SenderCommit, DigestIsXxh3_128OfTheWholeFile) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, kChunk - 1, kChunk, kChunk + 1, 3 * kWindow + 5}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const auto file = bytes_of(size, 12 + static_cast<unsigned>(size));
    Harness h({file});
    h.handshake();
    h.answer(0, 0);
    for (int round = 0; round < 100 && h.of_type(P::FrameType::commit).empty(); ++round) {
      h.complete_all_reads();
      std::uint64_t end = 0;
      for (const auto& f : h.of_type(P::FrameType::data)) end = std::max(end, f.offset + f.data.size());
      if (end > 0) h.feed_position(P::FrameType::ack, 0, end);
    }
    auto commits = h.of_type(P::FrameType::commit);
    ASSERT_EQ(commits.size(), 1u);
    auto c = P::parse_commit(commits[0].payload);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->size, size);
    EXPECT_EQ(c->xxh3_128, hex128(file));
    // Version 6: every byte acknowledged and COMMIT sent, the session goes on; END
    // waits for the VERDICT.
    EXPECT_EQ(h.s.state(), SenderSession::State::pipelining);
    EXPECT_TRUE(h.of_type(P::FrameType::end).empty());
    h.feed(P::FrameType::verdict, P::to_json(P::Verdict{0, P::VerdictStatus::verified, {}}));
    EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_end);
    EXPECT_EQ(h.s.totals().files_verified, 1u);
  }
}

// Sends the whole current file (ANSWER 0) up to its COMMIT.
void send_whole_file(Harness& h, std::uint32_t file) {
  h.answer(file, 0);
  for (int round = 0; round < 1000 && h.of_type(P::FrameType::commit).empty(); ++round) {
    h.complete_all_reads();
    std::uint64_t end = 0;
    bool any = false;
    for (const auto& f : h.of_type(P::FrameType::data)) {
      end = std::max(end, f.offset + f.data.size());
      any = true;
    }
    if (any) h.feed_position(P::FrameType::ack, file, end);
  }
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
}

TEST(SenderVerdict, FailedReoffersFromZeroAndFailsAfterMaxAttempts) {
  const auto file = bytes_of(3 * kChunk, 13);
  Harness h({file}, config(/*attempts=*/2));
  h.handshake();
  h.take_frames();
  send_whole_file(h, 0);
  h.take_frames();
  h.verdict(0, false);
  // Attempt 2: offered again, sent again from 0.
  auto offers = h.of_type(P::FrameType::offer);
  ASSERT_EQ(offers.size(), 1u);
  EXPECT_EQ(P::parse_offer(offers[0].payload)->file_id, 0u);
  EXPECT_FALSE(h.s.finished());
  h.take_frames();
  send_whole_file(h, 0);
  auto data = h.of_type(P::FrameType::data);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.front().offset, 0u);
  EXPECT_EQ(h.data_bytes(), file.size());
  EXPECT_EQ(P::parse_commit(h.of_type(P::FrameType::commit)[0].payload)->xxh3_128, hex128(file));
  h.take_frames();
  h.verdict(0, false);
  // Failed for good: no third offer; the session ends.
  EXPECT_TRUE(h.of_type(P::FrameType::offer).empty());
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
  ASSERT_TRUE(h.s.finished());
  auto o = h.s.outcome();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code, Errc::verification) << o.error().message();
  EXPECT_EQ(h.s.totals().files_failed, 1u);
}

TEST(SenderVerdict, RefusedAnswerMovesOnAndEndsPartial) {
  const auto good = bytes_of(kChunk + 1, 14);
  Harness h({bytes_of(100, 15), good});
  h.handshake();
  h.take_frames();
  h.answer(0, 0, P::AnswerStatus::refuse);
  auto offers = h.of_type(P::FrameType::offer);
  ASSERT_EQ(offers.size(), 1u);
  EXPECT_EQ(P::parse_offer(offers[0].payload)->file_id, 1u);
  EXPECT_TRUE(h.reads.empty()) << "nothing read for the refused file";
  h.take_frames();
  send_whole_file(h, 1);
  h.verdict(1, true);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  h.feed(P::FrameType::end, P::to_json(P::End{1, good.size()}));
  ASSERT_TRUE(h.s.finished());
  auto o = h.s.outcome();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code, Errc::partial) << o.error().message();
  EXPECT_EQ(h.s.totals().files_verified, 1u);
  EXPECT_EQ(h.s.totals().files_failed, 1u);
}

// Accepts entry 0 and fails its read with EIO.
void fail_first_read(Harness& h) {
  h.answer(0, 0);
  ASSERT_EQ(h.reads.size(), 1u);
  const auto token = h.reads[0].token;
  h.reads.clear();
  h.s.on_read_done(token, make_error(Errc::local_io, "read(/src/a): Input/output error"), h.now);
  h.collect();
}

// Nothing delivered because no source could be read is local I/O, not "partial"; the
// outcome names the first failure. Refusals by the receiver stay partial.
TEST(SenderVerdict, NothingDeliveredForUnreadableSourcesIsLocalIoNotPartial) {
  Harness h({bytes_of(100, 15), bytes_of(200, 16)});
  h.handshake();
  fail_first_read(h);
  h.answer(1, 0, P::AnswerStatus::refuse);
  h.feed(P::FrameType::end, P::to_json(P::End{2, 0}));
  ASSERT_TRUE(h.s.finished());
  EXPECT_EQ(h.s.totals().files_failed, 2u);
  auto partial = h.s.outcome();
  ASSERT_FALSE(partial.ok());
  EXPECT_EQ(partial.error().code, Errc::partial) << "a refusal has no cause on the wire: " << partial.error().message();

  Harness g({bytes_of(100, 15)});
  g.handshake();
  fail_first_read(g);
  g.feed(P::FrameType::end, P::to_json(P::End{1, 0}));
  ASSERT_TRUE(g.s.finished());
  auto o = g.s.outcome();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code, Errc::local_io) << o.error().message();
  EXPECT_NE(o.error().message().find("nothing delivered: 1 of 1 entries failed (first: "), std::string::npos)
      << o.error().message();
  EXPECT_NE(o.error().message().find("Input/output error"), std::string::npos) << o.error().message();
}

// A refusal marked local_io (the receiver could not write) counts as local I/O too.
TEST(SenderVerdict, NothingDeliveredForReceiverIoRefusalsIsLocalIo) {
  Harness h({bytes_of(100, 15), bytes_of(200, 16)});
  h.handshake();
  for (std::uint32_t id : {0u, 1u}) {
    P::Answer a{id, P::AnswerStatus::refuse, 0, "open(/in/x): No space left on device"};
    a.local_io = true;
    h.feed(P::FrameType::answer, P::to_json(a));
  }
  h.feed(P::FrameType::end, P::to_json(P::End{2, 0}));
  ASSERT_TRUE(h.s.finished());
  auto o = h.s.outcome();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code, Errc::local_io) << o.error().message();
  EXPECT_NE(o.error().message().find("receiver could not write it: open(/in/x)"), std::string::npos)
      << o.error().message();
}

// --- timers ---------------------------------------------------------------------------

TEST(SenderTimers, NoAckWithBytesOutstandingStallsAndCloses) {
  Harness h({bytes_of(10 * kChunk, 16)});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();
  ASSERT_GT(h.data_bytes(), 0u);
  const auto since = h.now;
  auto deadline = h.s.next_deadline();
  ASSERT_TRUE(deadline.has_value());
  // Not before the deadline.
  h.now = *deadline - milliseconds(1);
  h.s.on_timeout(h.now);
  h.collect();
  EXPECT_TRUE(h.closes.empty());
  // Keepalives on the way are answered (PONGs), but PONGs are not acknowledgements.
  for (int guard = 0; guard < 100 && h.closes.empty(); ++guard) {
    deadline = h.s.next_deadline();
    ASSERT_TRUE(deadline.has_value());
    h.now = *deadline;
    h.s.on_timeout(h.now);
    h.take_frames();
    h.collect();
    for (const auto& f : h.of_type(P::FrameType::ping)) {
      std::uint64_t nonce = 0;
      ASSERT_TRUE(P::decode_nonce(f.payload, nonce));
      auto body = P::encode_nonce(nonce);
      h.s.on_bytes(P::encode_frame(P::FrameType::pong, P::Bytes(body)), h.now);
      h.collect();
    }
    if (h.closes.empty()) {
      EXPECT_LT(h.now - since, kStall);
    }
  }
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_GE(h.now - since, kStall);
  EXPECT_EQ(h.s.totals().stall_timeouts, 1u);
  EXPECT_EQ(h.closes[0].reason.code, Errc::connection);
  EXPECT_FALSE(h.s.finished()) << "a stall is retryable";
  EXPECT_EQ(h.s.state(), SenderSession::State::disconnected);
  EXPECT_FALSE(h.s.next_deadline().has_value());
}

TEST(SenderTimers, TimeoutAtDeadlinePlusStallTimeoutCloses) {
  Harness h({bytes_of(10 * kChunk, 17)});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();
  auto deadline = h.s.next_deadline();
  ASSERT_TRUE(deadline.has_value());
  h.now = *deadline + kStall;
  h.s.on_timeout(h.now);
  h.collect();
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_EQ(h.s.totals().stall_timeouts, 1u);
}

TEST(SenderTimers, KeepalivePingWhileWaiting) {
  Harness h({bytes_of(100, 18)});
  h.handshake();  // OFFER sent, waiting for the ANSWER
  h.take_frames();
  auto deadline = h.s.next_deadline();
  ASSERT_TRUE(deadline.has_value());
  EXPECT_LE(*deadline - h.now, kStall);
  h.s.on_timeout(*deadline - milliseconds(1));
  h.collect();
  EXPECT_TRUE(h.frames.empty()) << "nothing before the deadline";
  h.now = *deadline;
  h.s.on_timeout(h.now);
  h.collect();
  auto pings = h.of_type(P::FrameType::ping);
  ASSERT_EQ(pings.size(), 1u);
  EXPECT_TRUE(h.closes.empty());
  std::uint64_t nonce = 0;
  ASSERT_TRUE(P::decode_nonce(pings[0].payload, nonce));
  auto body = P::encode_nonce(nonce);
  h.s.on_bytes(P::encode_frame(P::FrameType::pong, P::Bytes(body)), h.now);
  h.collect();
  auto next = h.s.next_deadline();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, h.now) << "a PONG pushes the deadline out";
  EXPECT_EQ(h.s.totals().stall_timeouts, 0u);
}

TEST(SenderTimers, SilentReceiverWhileWaitingForAnswerCloses) {
  Harness h({bytes_of(100, 19)});
  h.handshake();
  for (int guard = 0; guard < 100 && h.closes.empty(); ++guard) {
    auto d = h.s.next_deadline();
    ASSERT_TRUE(d.has_value());
    h.now = *d;
    h.s.on_timeout(h.now);
    h.collect();
  }
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_GE(h.now - kT0, kStall);
  EXPECT_EQ(h.s.totals().stall_timeouts, 1u);
}

TEST(SenderTimers, PeerPingIsAnsweredWithPong) {
  Harness h({bytes_of(100, 20)});
  h.handshake();
  h.take_frames();
  auto body = P::encode_nonce(0xfeedbeef);
  h.s.on_bytes(P::encode_frame(P::FrameType::ping, P::Bytes(body)), h.now);
  h.collect();
  auto pongs = h.of_type(P::FrameType::pong);
  ASSERT_EQ(pongs.size(), 1u);
  std::uint64_t nonce = 0;
  ASSERT_TRUE(P::decode_nonce(pongs[0].payload, nonce));
  EXPECT_EQ(nonce, 0xfeedbeefu);
}

// --- reconnect ----------------------------------------------------------------------------

TEST(SenderReconnect, ResendsHelloReoffersAndIgnoresOldReads) {
  const auto file = bytes_of(20 * kChunk, 21);
  Harness h({file});
  h.handshake();
  h.answer(0, 0);
  h.complete_read(0);
  h.complete_read(0);
  ASSERT_FALSE(h.reads.empty());
  auto old_reads = h.reads;
  h.reads.clear();
  h.s.on_disconnected(make_error(Errc::connection, "test: connection reset"), h.now);
  h.collect();
  EXPECT_EQ(h.s.state(), SenderSession::State::disconnected);
  EXPECT_FALSE(h.s.next_deadline().has_value());
  h.take_frames();

  h.now += milliseconds(500);
  h.connect();
  ASSERT_EQ(h.frames.size(), 1u);
  EXPECT_EQ(h.frames[0].type, P::FrameType::hello);
  // A read for the old connection completes now (marker bytes): nothing is sent from it.
  for (const auto& r : old_reads) {
    h.s.on_read_done(r.token, marker_block(r.length), h.now);
    h.collect();
  }
  EXPECT_TRUE(h.of_type(P::FrameType::data).empty());
  h.receiver_hello();
  auto offers = h.of_type(P::FrameType::offer);
  ASSERT_EQ(offers.size(), 1u);
  EXPECT_EQ(P::parse_offer(offers[0].payload)->file_id, 0u) << "the current file is offered again";
  EXPECT_EQ(h.s.in_flight(), 0u) << "nothing is in flight on the new connection";
  h.take_frames();
  // The receiver holds one chunk (the other was lost with the connection).
  h.answer(0, kChunk);
  h.complete_all_reads();
  auto data = h.of_type(P::FrameType::data);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.front().offset, kChunk);
  for (const auto& d : data) {
    EXPECT_TRUE(std::equal(d.data.begin(), d.data.end(), file.begin() + static_cast<std::ptrdiff_t>(d.offset)))
        << "DATA at " << d.offset << " came from a read of the old connection";
  }
  EXPECT_EQ(h.s.totals().bytes_resent, kChunk);
}

// After a reconnect the receiver may take longer than the stall timeout to answer
// (it re-hashes a large partial) while it answers PINGs: that is not a stall.
TEST(SenderReconnect, SlowAnswerAfterReconnectIsNotAStall) {
  Harness h({bytes_of(20 * kChunk, 22)});
  h.handshake();
  h.answer(0, 0);
  h.complete_all_reads();  // a window outstanding
  h.s.on_disconnected(make_error(Errc::connection, "test: cut"), h.now);
  h.collect();
  h.connect();
  h.receiver_hello();  // OFFER sent; no ANSWER for 3 stall timeouts, PINGs answered
  const auto since = h.now;
  while (h.now - since < 3 * kStall) {
    auto d = h.s.next_deadline();
    ASSERT_TRUE(d.has_value());
    h.now = *d;
    h.take_frames();
    h.s.on_timeout(h.now);
    h.collect();
    ASSERT_TRUE(h.closes.empty()) << "closed after " << (h.now - since).count() << " ns";
    for (const auto& f : h.of_type(P::FrameType::ping)) {
      std::uint64_t nonce = 0;
      ASSERT_TRUE(P::decode_nonce(f.payload, nonce));
      auto body = P::encode_nonce(nonce);
      h.s.on_bytes(P::encode_frame(P::FrameType::pong, P::Bytes(body)), h.now);
      h.collect();
    }
  }
  EXPECT_EQ(h.s.totals().stall_timeouts, 0u);
}

TEST(SenderReconnect, DisconnectWhileHashingIgnoresTheLateHash) {
  const auto file = bytes_of(10 * kChunk, 23);
  Harness h({file});
  h.handshake();
  h.answer(0, 4 * kChunk);
  ASSERT_EQ(h.hashes.size(), 1u);
  auto stale = h.hashes[0];
  h.hashes.clear();
  h.s.on_disconnected(make_error(Errc::connection, "test: cut"), h.now);
  h.connect();
  h.s.on_prefix_hashed(stale.token, file_digest(P::Bytes(file).first(stale.length)), h.now);
  h.collect();
  EXPECT_TRUE(h.reads.empty());
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_hello);
}

// --- whole-transfer figures -------------------------------------------------------------------

// Checks what every event says about the whole transfer against the totals and the
// previous event: done never above total, and never going down.
void check_transfer_events(const std::vector<Event>& events, std::uint64_t files_total, std::uint64_t bytes_total) {
  TransferProgress prev;
  for (const auto& e : events) {
    SCOPED_TRACE(std::string(event_type_name(e.type)) + " " + e.path + " at " + std::to_string(e.offset));
    const auto& t = e.transfer;
    EXPECT_EQ(t.files_total, files_total);
    EXPECT_EQ(t.bytes_total, bytes_total);
    EXPECT_LE(t.files_done, t.files_total);
    EXPECT_LE(t.bytes_done, t.bytes_total);
    EXPECT_GE(t.files_done, prev.files_done) << "files_done went down";
    EXPECT_GE(t.bytes_done, prev.bytes_done) << "bytes_done went down";
    prev = t;
  }
}

// Sends the current file from the ANSWER offset already given up to its COMMIT,
// acknowledging everything sent.
void send_rest(Harness& h, std::uint32_t file) {
  if (!h.hashes.empty()) h.complete_hash();
  for (int round = 0; round < 1000 && h.of_type(P::FrameType::commit).empty(); ++round) {
    h.complete_all_reads();
    std::uint64_t end = 0;
    for (const auto& f : h.of_type(P::FrameType::data)) end = std::max(end, f.offset + f.data.size());
    if (end > 0) h.feed_position(P::FrameType::ack, file, end);
  }
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
}

// Appends the session's events so far to `ev`.
void take_events_into(Harness& h, std::vector<Event>& ev) {
  for (auto& e : h.s.take_events()) ev.push_back(std::move(e));
}

const Event* last_of(const std::vector<Event>& events, EventType t, const std::string& path) {
  const Event* found = nullptr;
  for (const auto& e : events) {
    if (e.type == t && e.path == path) found = &e;
  }
  return found;
}

TEST(SenderTransfer, FiguresAcrossFilesARefusalAResumeAndAResend) {
  // f0 sent whole, f1 refused, f2 resumed at 2 chunks, f3 fails its verdict once and is sent again.
  const std::vector<std::size_t> sizes = {3 * kChunk, 100, 5 * kChunk + 7, 2 * kChunk};
  std::vector<std::vector<std::byte>> files;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    files.push_back(bytes_of(sizes[i], 40 + static_cast<unsigned>(i)));
    total += sizes[i];
  }
  Harness h(files);
  std::vector<Event> ev;
  auto take = [&] { take_events_into(h, ev); };
  EXPECT_EQ(h.s.transfer().files_total, 4u);
  EXPECT_EQ(h.s.transfer().bytes_total, total);
  EXPECT_EQ(h.s.transfer().bytes_done, 0u);
  h.handshake();
  take();
  ASSERT_NE(last_of(ev, EventType::file_start, "f0"), nullptr);
  EXPECT_EQ(last_of(ev, EventType::file_start, "f0")->transfer.files_done, 0u);

  h.take_frames();
  send_whole_file(h, 0);
  take();
  const Event* p0 = last_of(ev, EventType::progress, "f0");
  ASSERT_NE(p0, nullptr);
  EXPECT_EQ(p0->transfer.bytes_done, sizes[0]) << "the acknowledged offset counts while the file is open";
  EXPECT_EQ(p0->transfer.files_done, 0u);
  h.verdict(0, true);
  take();
  const Event* v0 = last_of(ev, EventType::file_verified, "f0");
  ASSERT_NE(v0, nullptr);
  EXPECT_EQ(v0->transfer.files_done, 1u);
  EXPECT_EQ(v0->transfer.bytes_done, sizes[0]);

  h.take_frames();
  h.answer(1, 0, P::AnswerStatus::refuse);
  take();
  const Event* f1 = last_of(ev, EventType::file_failed, "f1");
  ASSERT_NE(f1, nullptr);
  EXPECT_EQ(f1->transfer.files_done, 2u) << "a refused entry is finished";
  EXPECT_EQ(f1->transfer.bytes_done, sizes[0] + sizes[1]) << "and its size is done";

  h.take_frames();
  const std::uint64_t held = 2 * kChunk;
  h.answer(2, held);
  take();
  const Event* r2 = last_of(ev, EventType::resume, "f2");
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(r2->offset, held);
  EXPECT_EQ(r2->transfer.bytes_done, sizes[0] + sizes[1] + held) << "the resumed part counts as done";
  send_rest(h, 2);
  h.verdict(2, true);
  take();
  const Event* v2 = last_of(ev, EventType::file_verified, "f2");
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ(v2->transfer.files_done, 3u);
  EXPECT_EQ(v2->transfer.bytes_done, sizes[0] + sizes[1] + sizes[2]);

  h.take_frames();
  send_whole_file(h, 3);
  h.verdict(3, false);  // offered again, sent again from 0
  take();
  const std::size_t resend_from = ev.size();
  h.take_frames();
  send_whole_file(h, 3);
  take();
  for (std::size_t i = resend_from; i < ev.size(); ++i) {
    if (ev[i].type != EventType::progress) continue;
    // The first attempt was acknowledged whole: the re-send adds nothing.
    EXPECT_EQ(ev[i].transfer.bytes_done, total)
        << "a re-send does not count its bytes again (offset " << ev[i].offset << ")";
  }
  EXPECT_NE(last_of(ev, EventType::progress, "f3"), nullptr);
  h.verdict(3, true);
  take();
  const Event* v3 = last_of(ev, EventType::file_verified, "f3");
  ASSERT_NE(v3, nullptr);
  EXPECT_EQ(v3->transfer.files_done, 4u);
  EXPECT_EQ(v3->transfer.bytes_done, total);
  check_transfer_events(ev, 4, total);
  for (const auto& e : ev) {
    if (e.type == EventType::file_start || e.type == EventType::progress) {
      EXPECT_LT(e.transfer.files_done, 4u) << "an entry in progress is not done";
    }
  }
}

TEST(SenderTransfer, HelloCarriesTotalsAndWhatWasFinishedBeforeThisConnection) {
  const auto a = bytes_of(2 * kChunk, 50), c = bytes_of(10 * kChunk, 51);
  Harness h({a, c});
  h.connect();
  auto hello = P::parse_hello(h.frames.at(0).payload);
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->files_total, std::optional<std::uint64_t>(2));
  EXPECT_EQ(hello->bytes_total, std::optional<std::uint64_t>(a.size() + c.size()));
  EXPECT_EQ(hello->files_done, std::optional<std::uint64_t>(0));
  EXPECT_EQ(hello->bytes_done, std::optional<std::uint64_t>(0));
  h.receiver_hello();
  send_whole_file(h, 0);
  h.verdict(0, true);
  h.take_frames();
  h.answer(1, 0);
  h.complete_all_reads();
  h.feed_position(P::FrameType::ack, 1, 4 * kChunk);
  const std::uint64_t before = h.s.transfer().bytes_done;
  EXPECT_EQ(before, a.size() + 4 * kChunk);
  h.s.on_disconnected(make_error(Errc::connection, "test: cut"), h.now);
  h.collect();
  h.take_frames();
  h.connect();
  hello = P::parse_hello(h.frames.at(0).payload);
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->files_total, std::optional<std::uint64_t>(2));
  EXPECT_EQ(hello->files_done, std::optional<std::uint64_t>(1));
  EXPECT_EQ(hello->bytes_done, std::optional<std::uint64_t>(a.size()))
      << "the current file's part is not included: the receiver adds what it holds";
  // The receiver lost some of what it acknowledged: the figure does not go back.
  h.receiver_hello();
  h.answer(1, 2 * kChunk);
  EXPECT_EQ(h.s.transfer().bytes_done, before);
  h.s.take_events();
  send_rest(h, 1);
  h.verdict(1, true);
  auto ev = h.s.take_events();
  check_transfer_events(ev, 2, a.size() + c.size());
  ASSERT_NE(last_of(ev, EventType::file_verified, "f1"), nullptr);
  EXPECT_EQ(last_of(ev, EventType::file_verified, "f1")->transfer.bytes_done, a.size() + c.size());
}

TEST(SenderEnd, NoEntriesSendsEndAndFinishesOnTheReply) {
  Harness h({});
  h.handshake();
  auto ends = h.of_type(P::FrameType::end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_FALSE(h.s.finished());
  h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
  EXPECT_EQ(h.s.state(), SenderSession::State::done);
  EXPECT_TRUE(h.s.outcome().ok());
  ASSERT_EQ(h.closes.size(), 1u);
}

TEST(SenderInput, CorruptFrameFromReceiverDropsTheConnection) {
  Harness h({bytes_of(100, 24)});
  h.connect();
  auto wire = P::encode_frame(P::FrameType::hello, std::string("{}"));
  wire[0] = std::byte{0};  // bad magic
  h.s.on_bytes(wire, h.now);
  h.collect();
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_EQ(h.closes[0].reason.code, Errc::connection);
  EXPECT_FALSE(h.s.finished()) << "retryable: the app redials";
}

}  // namespace
}  // namespace ferry::sender

// --- version 3: eager files -----------------------------------------------------------

namespace ferry::sender {
namespace {

SourceEntry dir_entry(const std::string& path) {
  SourceEntry e = entry(path, 0);
  e.kind = P::EntryKind::directory;
  e.identity = "dir";
  return e;
}

// Directory "t", then `sizes` as files t/f0, t/f1, ... (contents from bytes_of).
Harness tree_harness(const std::vector<std::size_t>& sizes, SenderConfig cfg = config()) {
  std::vector<SourceEntry> ents{dir_entry("t")};
  std::vector<std::vector<std::byte>> contents{{}};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ents.push_back(entry("t/f" + std::to_string(i), sizes[i]));
    contents.push_back(bytes_of(sizes[i], static_cast<unsigned>(i + 40)));
  }
  return Harness(std::move(ents), std::move(contents), cfg);
}

void answer_dir(Harness& h, std::uint32_t file, bool created) {
  P::Answer a{file, P::AnswerStatus::accept, 0, ""};
  a.created = created;
  h.feed(P::FrameType::answer, P::to_json(a));
}

std::vector<P::Offer> offers(const Harness& h) {
  std::vector<P::Offer> out;
  for (const auto& f : h.of_type(P::FrameType::offer)) {
    auto o = P::parse_offer(f.payload);
    EXPECT_TRUE(o.ok());
    if (o) out.push_back(*o);
  }
  return out;
}

TEST(SenderEager, SmallFilesInACreatedDirectoryGoOutWithoutWaiting) {
  Harness h = tree_harness({100, 0, kChunk, 3 * kChunk});
  h.handshake();
  answer_dir(h, 0, /*created=*/true);
  h.take_frames();
  h.complete_all_reads();
  // Entry order on the wire: OFFER+DATA+COMMIT of each small file, then the big file's
  // ordinary OFFER, with no ANSWER or VERDICT in between.
  std::vector<P::FrameType> types;
  for (const auto& f : h.frames) types.push_back(f.type);
  using T = P::FrameType;
  const std::vector<T> want{T::offer, T::data, T::commit, T::offer, T::commit, T::offer, T::data, T::commit, T::offer};
  EXPECT_EQ(types, want);
  auto o = offers(h);
  ASSERT_EQ(o.size(), 4u);
  EXPECT_TRUE(o[0].eager && o[1].eager && o[2].eager);
  EXPECT_FALSE(o[3].eager) << "a file of more than one block goes the ordinary way";
  auto commits = h.of_type(T::commit);
  EXPECT_EQ(P::parse_commit(commits[0].payload)->xxh3_128, hex128(h.files[1]));
  EXPECT_EQ(P::parse_commit(commits[1].payload)->xxh3_128, hex128({}));
  EXPECT_EQ(h.s.eager_in_flight(), 3u);
  // Their VERDICTs arrive while the big file streams; END only after all of them.
  h.answer(4, 0);
  h.verdict(2, true);
  h.verdict(1, true);
  h.complete_all_reads();
  h.feed_position(T::ack, 4, 3 * kChunk);
  h.verdict(4, true);
  EXPECT_TRUE(h.of_type(T::end).empty()) << "an eager file still has no VERDICT";
  h.verdict(3, true);
  EXPECT_EQ(h.of_type(T::end).size(), 1u);
  EXPECT_EQ(h.s.totals().files_verified, 5u);
  EXPECT_EQ(h.s.totals().bytes_resent, 0u);
}

TEST(SenderEager, NotInADirectoryTheReceiverAlreadyHad) {
  Harness h = tree_harness({100, 200});
  h.handshake();
  answer_dir(h, 0, /*created=*/false);
  auto o = offers(h);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_FALSE(o[1].eager) << "the receiver may hold it: ask first";
  EXPECT_TRUE(h.reads.empty()) << "nothing read before the ANSWER";
}

TEST(SenderEager, AFailedVerdictSendsTheFileAgainTheOrdinaryWayAsAResend) {
  Harness h = tree_harness({100, 200});
  h.handshake();
  answer_dir(h, 0, true);
  h.complete_all_reads();
  h.take_frames();
  h.verdict(1, false);
  h.verdict(2, true);
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].file_id, 1u);
  EXPECT_FALSE(o[0].eager);
  EXPECT_EQ(h.s.totals().chunks_rejected, 1u);
  h.answer(1, 0);
  h.complete_all_reads();
  h.verdict(1, true);
  EXPECT_EQ(h.s.totals().bytes_resent, 100u);
  EXPECT_EQ(h.s.totals().files_verified, 3u);
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
}

TEST(SenderEager, AfterALostConnectionFilesWithoutVerdictAreOfferedOrdinarily) {
  Harness h = tree_harness({100, 200, 300});
  h.handshake();
  answer_dir(h, 0, true);
  h.complete_all_reads();
  h.verdict(1, true);
  h.s.on_disconnected(make_error(Errc::connection, "cut"), h.now);
  h.take_frames();
  h.handshake();
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].file_id, 2u) << "file 1 has its VERDICT; the others are asked for";
  EXPECT_FALSE(o[0].eager);
  h.answer(2, 200);  // the receiver committed it before the cut: only verified
  h.complete_hash();
  EXPECT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  h.verdict(2, true);
  EXPECT_EQ(h.data_bytes(), 0u) << "nothing of it sent again";
  o = offers(h);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[1].file_id, 3u);
  EXPECT_FALSE(o[1].eager);
}

TEST(SenderEager, InFlightIsBoundedByTheWindowAndTheFileCount) {
  std::vector<std::size_t> sizes(300, 1000);
  Harness h = tree_harness(sizes);
  h.handshake();
  answer_dir(h, 0, true);
  h.complete_all_reads();
  EXPECT_LE(h.s.eager_in_flight() * 1000, kWindow);
  EXPECT_GE(h.s.eager_in_flight(), kWindow / 1000 - 1);
  SenderConfig wide = config();
  wide.window = 64 * 1024 * 1024;
  std::vector<std::size_t> tiny(P::kMaxEagerFiles + 44, 1);
  Harness h2 = tree_harness(tiny, wide);
  h2.handshake();
  answer_dir(h2, 0, true);
  h2.complete_all_reads();
  EXPECT_EQ(h2.s.eager_in_flight(), P::kMaxEagerFiles);
  // VERDICTs make room, and every file gets through.
  for (std::uint32_t id = 1; id <= tiny.size() && !h2.s.finished(); ++id) {
    h2.verdict(id, true);
    h2.complete_all_reads();
  }
  EXPECT_EQ(h2.s.totals().files_verified, tiny.size() + 1);  // and the directory
}

// Regression (a real tree stalled after 75 files): one slow read holds the files behind
// it until the blocks bound is reached; sending them frees every block at once, and the
// files not read yet must still be read then, with no later read or new entry to prompt it.
TEST(SenderEager, FilesBehindASlowReadAreReadOnceTheBlocksBoundFreesUp) {
  std::vector<std::size_t> sizes(40, 1000);  // all fit the window: every one taken at once
  Harness h = tree_harness(sizes);
  h.handshake();
  answer_dir(h, 0, true);
  ASSERT_FALSE(h.reads.empty());
  // The first file's read stays pending while those behind it complete and are held.
  for (int guard = 0; guard < 1000 && h.reads.size() > 1; ++guard) h.complete_read(1);
  EXPECT_EQ(h.s.blocks_held(), h.s.max_blocks()) << "the bound was reached behind the slow read";
  h.complete_read(0);
  std::uint32_t next_verdict = 1;
  for (int guard = 0; guard < 1000 && !h.s.finished(); ++guard) {
    const auto sent = offers(h).size();  // the directory's and the files'
    for (; next_verdict < sent; ++next_verdict) h.verdict(next_verdict, true);
    if (h.reads.empty() && offers(h).size() == sent) break;  // nothing moves any more
    h.complete_all_reads();
  }
  EXPECT_EQ(h.s.totals().files_verified, 41u) << "the pipeline stopped with files unread";
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
}

TEST(SenderEager, AnswerAcceptingAnEagerFileIsAViolation) {
  Harness h = tree_harness({100});
  h.handshake();
  answer_dir(h, 0, true);
  h.complete_all_reads();
  h.answer(1, 0);
  expect_protocol_failure(h);
}

// --- version 6: eager directories ------------------------------------------------------

// Directory "t", directory "t/s", then files t/s/f0, t/s/f1, ... of `sizes`.
Harness nested_harness(const std::vector<std::size_t>& sizes, SenderConfig cfg = config()) {
  std::vector<SourceEntry> ents{dir_entry("t"), dir_entry("t/s")};
  std::vector<std::vector<std::byte>> contents{{}, {}};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ents.push_back(entry("t/s/f" + std::to_string(i), sizes[i]));
    contents.push_back(bytes_of(sizes[i], static_cast<unsigned>(i + 60)));
  }
  return Harness(std::move(ents), std::move(contents), cfg);
}

TEST(SenderEager, ADirectoryInACreatedOneAndItsFilesGoOutWithoutWaiting) {
  Harness h = nested_harness({100});
  h.handshake();
  h.take_frames();
  answer_dir(h, 0, /*created=*/true);
  h.complete_all_reads();
  std::vector<P::FrameType> types;
  for (const auto& f : h.frames) types.push_back(f.type);
  using T = P::FrameType;
  const std::vector<T> want{T::offer, T::offer, T::data, T::commit};
  EXPECT_EQ(types, want) << "the directory's OFFER alone, then the file's, with no ANSWER awaited";
  auto o = offers(h);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].path, "t/s");
  EXPECT_EQ(o[0].kind, P::EntryKind::directory);
  EXPECT_TRUE(o[0].eager);
  EXPECT_EQ(o[0].block_size, 0u);
  EXPECT_EQ(o[1].path, "t/s/f0");
  EXPECT_TRUE(o[1].eager) << "its directory counts as created from its OFFER on";
  EXPECT_EQ(P::parse_commit(h.of_type(T::commit)[0].payload)->xxh3_128, hex128(h.files[2]));
  EXPECT_EQ(h.s.eager_in_flight(), 2u);
  h.answer(1, 0);  // the directory is made
  EXPECT_TRUE(h.of_type(T::end).empty()) << "the file still has no VERDICT";
  EXPECT_EQ(h.s.totals().files_verified, 2u);
  h.verdict(2, true);
  EXPECT_EQ(h.of_type(T::end).size(), 1u);
  EXPECT_EQ(h.s.totals().files_verified, 3u);
  EXPECT_EQ(h.s.totals().files_failed, 0u);
  h.feed(T::end, P::to_json(P::End{3, 100}));
  ASSERT_TRUE(h.s.finished());
  EXPECT_TRUE(h.s.outcome().ok()) << h.s.outcome().error().message();
}

// The window holds 16 files of one block: the 17th is taken only after the refusal of
// their directory, and then goes the ordinary way (the directory is no longer created).
TEST(SenderEager, ARefusedDirectoryFailsAndItsLaterFilesGoTheOrdinaryWay) {
  std::vector<std::size_t> sizes(kWindow / kChunk + 1, kChunk);
  Harness h = nested_harness(sizes);
  h.handshake();
  answer_dir(h, 0, true);
  h.complete_all_reads();
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u + sizes.size());  // t, t/s and all files but the last
  for (std::size_t i = 1; i < o.size(); ++i) EXPECT_TRUE(o[i].eager) << o[i].path;
  h.take_frames();
  h.answer(1, 0, P::AnswerStatus::refuse);
  EXPECT_EQ(h.s.totals().files_failed, 1u);
  EXPECT_FALSE(h.s.finished()) << "a refusal fails the entry, not the session";
  h.complete_all_reads();
  o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].path, "t/s/f" + std::to_string(sizes.size() - 1));
  EXPECT_FALSE(o[0].eager) << "its directory was refused: ask first";
  EXPECT_TRUE(h.of_type(P::FrameType::data).empty()) << "nothing sent before its ANSWER";
}

TEST(SenderEager, AfterALostConnectionAnUnansweredEagerDirectoryIsOfferedOrdinarily) {
  Harness h = nested_harness({100});
  h.handshake();
  answer_dir(h, 0, true);
  h.complete_all_reads();
  ASSERT_EQ(offers(h).size(), 3u);
  h.s.on_disconnected(make_error(Errc::connection, "cut"), h.now);
  h.take_frames();
  h.handshake();
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u) << "one at a time: nothing is taken as created on a new connection";
  EXPECT_EQ(o[0].path, "t/s");
  EXPECT_EQ(o[0].kind, P::EntryKind::directory);
  EXPECT_FALSE(o[0].eager);
  answer_dir(h, 1, /*created=*/false);
  o = offers(h);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[1].path, "t/s/f0");
  EXPECT_FALSE(o[1].eager);
}

TEST(SenderEager, AVerdictOrAnAnswerWithAnOffsetForAnEagerDirectoryIsAViolation) {
  {
    Harness h = nested_harness({100});
    h.handshake();
    answer_dir(h, 0, true);
    h.complete_all_reads();
    h.verdict(1, true);
    expect_protocol_failure(h);
  }
  {
    Harness h = nested_harness({});
    h.handshake();
    answer_dir(h, 0, true);
    h.feed(P::FrameType::answer, P::to_json(P::Answer{1, P::AnswerStatus::accept, 1, ""}));
    expect_protocol_failure(h);
  }
}

// --- version 4: check and dry-run sessions (sender/sender_inspect.cpp) ------------------

SenderConfig inspect_config(P::Purpose purpose) {
  SenderConfig c = config();
  c.purpose = purpose;
  return c;
}

TEST(SenderInspect, CheckHashesSendsCommitAndNeverData) {
  const auto data = bytes_of(3 * kChunk + 1, 1);
  Harness h({data, bytes_of(10, 2)}, inspect_config(P::Purpose::check));
  h.connect();
  auto hello = P::parse_hello(h.of_type(P::FrameType::hello).at(0).payload);
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->purpose, P::Purpose::check);
  h.receiver_hello();
  ASSERT_EQ(h.of_type(P::FrameType::offer).size(), 1u);
  auto offer = P::parse_offer(h.of_type(P::FrameType::offer)[0].payload);
  ASSERT_TRUE(offer.ok());
  EXPECT_FALSE(offer->eager);
  ASSERT_EQ(h.hashes.size(), 1u) << "the whole file is hashed at once";
  EXPECT_EQ(h.hashes[0].length, data.size());
  h.s.on_prefix_hashed(h.hashes[0].token, file_digest(data), h.now);
  h.collect();
  auto commits = h.of_type(P::FrameType::commit);
  ASSERT_EQ(commits.size(), 1u);
  auto c = P::parse_commit(commits[0].payload);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->xxh3_128, hex128(data));
  h.feed(P::FrameType::check, P::to_json(P::CheckReply{0, P::CheckResult::identical, {}, {}, false}));
  // The second file: the receiver answers "missing" before our hash is done; the late
  // hash is dropped and no COMMIT goes out for it.
  ASSERT_EQ(h.of_type(P::FrameType::offer).size(), 2u);
  h.feed(P::FrameType::check, P::to_json(P::CheckReply{1, P::CheckResult::missing, {}, {}, false}));
  h.s.on_prefix_hashed(h.hashes.at(1).token, file_digest(bytes_of(10, 2)), h.now);
  h.collect();
  EXPECT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_TRUE(h.reads.empty());
  EXPECT_TRUE(h.of_type(P::FrameType::data).empty());
  EXPECT_TRUE(h.s.totals().checked);
  EXPECT_EQ(h.s.totals().check_identical, 1u);
  EXPECT_EQ(h.s.totals().check_missing, 1u);
}

TEST(SenderInspect, UnreadableSourceFailsAfterTheReceiversAnswer) {
  Harness h({bytes_of(100, 1)}, inspect_config(P::Purpose::check));
  h.connect();
  h.receiver_hello();
  ASSERT_EQ(h.hashes.size(), 1u);
  h.s.on_prefix_hashed(h.hashes[0].token, make_error(Errc::local_io, "open(f0): gone"), h.now);
  h.collect();
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty()) << "waits for the receiver's answer first";
  h.answer(0, 0);  // the receiver holds a file of that size and waits for a COMMIT
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.totals().files_failed, 1u);
  EXPECT_TRUE(h.of_type(P::FrameType::commit).empty());
}

TEST(SenderInspect, CheckOutsideACheckOrForAnotherEntryIsAViolation) {
  Harness h({bytes_of(100, 1)});
  h.connect();
  h.receiver_hello();
  h.feed(P::FrameType::check, P::to_json(P::CheckReply{0, P::CheckResult::identical, {}, {}, false}));
  EXPECT_FALSE(h.of_type(P::FrameType::error).empty());
  EXPECT_TRUE(h.s.finished());
}

TEST(SenderInspect, DryRunReportsWhatATransferWouldDo) {
  Harness h({bytes_of(4 * kChunk, 1), bytes_of(10, 2), bytes_of(3, 3)}, inspect_config(P::Purpose::dry_run));
  h.connect();
  h.receiver_hello();
  h.answer(0, kChunk, P::AnswerStatus::accept, {{2 * kChunk, kChunk}});
  h.answer(1, 10);
  h.answer(2, 0);
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_TRUE(h.reads.empty());
  EXPECT_TRUE(h.hashes.empty());
  EXPECT_TRUE(h.of_type(P::FrameType::data).empty());
  EXPECT_TRUE(h.of_type(P::FrameType::commit).empty());
  const Totals& t = h.s.totals();
  EXPECT_EQ(t.plan_resume, 1u);
  EXPECT_EQ(t.plan_complete, 1u);
  EXPECT_EQ(t.plan_send, 1u);
  EXPECT_EQ(t.plan_bytes, 2 * kChunk + 3) << "the resumed file's missing blocks and the new file";
}

}  // namespace
}  // namespace ferry::sender

// --- version 4: symlinks -----------------------------------------------------------------

namespace ferry::sender {
namespace {

SourceEntry link_entry(const std::string& path, const std::string& target) {
  SourceEntry e = entry(path, 0);
  e.kind = P::EntryKind::symlink;
  e.identity = "symlink";
  e.link_target = target;
  return e;
}

TEST(SenderLinks, ALinkIsOfferedWithItsTargetAndCountedVerifiedOnAccept) {
  Harness h({link_entry("l", "../x/y"), entry("f", 100)}, {{}, bytes_of(100, 77)});
  h.handshake();
  auto sent = offers(h);
  ASSERT_EQ(sent.size(), 1u) << "one entry at a time: the link's ANSWER comes first";
  EXPECT_EQ(sent[0].kind, P::EntryKind::symlink);
  EXPECT_EQ(sent[0].target, "../x/y");
  EXPECT_EQ(sent[0].size, 0u);
  EXPECT_FALSE(sent[0].eager);
  EXPECT_TRUE(h.reads.empty()) << "a link has no data to read";
  h.answer(0, 0);
  EXPECT_EQ(h.s.totals().files_verified, 1u);
  sent = offers(h);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[1].path, "f");
  EXPECT_TRUE(h.of_type(P::FrameType::data).empty());
  EXPECT_TRUE(h.of_type(P::FrameType::commit).empty()) << "no COMMIT for a link";
}

TEST(SenderLinks, ARefusedLinkFailsThatEntryAndTheTransferIsPartial) {
  Harness h({link_entry("l", "/etc")}, {{}});
  h.handshake();
  h.answer(0, 0, P::AnswerStatus::refuse);
  EXPECT_EQ(h.s.totals().files_failed, 1u);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
  ASSERT_TRUE(h.s.finished());
  ASSERT_FALSE(h.s.outcome().ok());
  EXPECT_EQ(h.s.outcome().error().code, Errc::partial);
}

TEST(SenderLinks, AnAnswerWithHeldRangesForALinkIsAViolation) {
  Harness h({link_entry("l", "x")}, {{}});
  h.handshake();
  h.answer(0, 0, P::AnswerStatus::accept, {P::ByteRange{0, 1}});
  expect_protocol_failure(h);
}

TEST(SenderLinks, ALinkInACreatedDirectoryIsNotSentEagerly) {
  Harness h({dir_entry("t"), link_entry("t/l", "f0"), entry("t/f0", 10)}, {{}, {}, bytes_of(10, 3)});
  h.handshake();
  answer_dir(h, 0, /*created=*/true);
  auto sent = offers(h);
  ASSERT_GE(sent.size(), 2u);
  EXPECT_EQ(sent[1].kind, P::EntryKind::symlink);
  EXPECT_FALSE(sent[1].eager);
  h.answer(1, 0);
  EXPECT_EQ(h.s.totals().files_verified, 2u);
}

// --- entries pulled from a source (issue #10) -----------------------------------

// A source whose count, made before its walk, differs from what the walk then yields.
class CountedSource final : public EntrySource {
 public:
  CountedSource(std::vector<SourceEntry> entries, EntryCounts counted) : entries_(std::move(entries)), counted_(counted) {}
  std::optional<SourceEntry> next() override {
    if (next_ >= entries_.size()) return std::nullopt;
    ++pulled;
    return entries_[next_++];
  }
  EntryCounts expected() const override { return counted_; }
  std::size_t pulled = 0;

 private:
  std::vector<SourceEntry> entries_;
  std::size_t next_ = 0;
  EntryCounts counted_;
};

// Sends entries 0..n-1 one after the other (each accepted at 0 and verified).
void send_all(Harness& h, std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) {
    h.take_frames();
    send_whole_file(h, i);
    h.verdict(i, true);
  }
}

TEST(SenderTotals, ACountBelowWhatTheWalkMeetsIsRaisedAndExactAtTheEnd) {
  // Counted: 2 entries, a + 50 bytes. Met: f1 grew to b, and f2 appeared.
  const auto a = bytes_of(2 * kChunk, 70), b = bytes_of(kChunk + 5, 71), c = bytes_of(100, 72);
  auto source = std::make_unique<CountedSource>(
      std::vector<SourceEntry>{entry("f0", a.size()), entry("f1", b.size()), entry("f2", c.size())},
      EntryCounts{2, a.size() + 50});
  CountedSource* src = source.get();
  Harness h(std::move(source), {a, b, c});
  h.connect();
  EXPECT_EQ(src->pulled, 0u) << "nothing is pulled before the receiver's HELLO";
  auto hello = P::parse_hello(h.frames.at(0).payload);
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->files_total, std::optional<std::uint64_t>(2)) << "the count, before the walk met anything";
  EXPECT_EQ(hello->bytes_total, std::optional<std::uint64_t>(a.size() + 50));
  h.receiver_hello();
  send_all(h, 3);
  auto ends = h.of_type(P::FrameType::end);
  ASSERT_EQ(ends.size(), 1u);
  auto end = P::parse_end(ends[0].payload);
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(end->files, 3u) << "END carries the entries met";
  const TransferProgress t = h.s.transfer();
  EXPECT_EQ(t.files_total, 3u);
  EXPECT_EQ(t.bytes_total, a.size() + b.size() + c.size());
  EXPECT_EQ(t.files_done, 3u);
  EXPECT_EQ(t.bytes_done, t.bytes_total);
  TransferProgress prev;
  for (const auto& e : h.s.take_events()) {
    SCOPED_TRACE(std::string(event_type_name(e.type)) + " " + e.path);
    EXPECT_LE(e.transfer.files_done, e.transfer.files_total);
    EXPECT_LE(e.transfer.bytes_done, e.transfer.bytes_total);
    EXPECT_GE(e.transfer.files_total, prev.files_total) << "a tree that grew: the totals only go up";
    EXPECT_GE(e.transfer.bytes_total, prev.bytes_total);
    prev = e.transfer;
  }
  EXPECT_EQ(h.s.peak_entries_held(), 2u) << "the current entry and one of look-ahead";
}

TEST(SenderTotals, ACountAboveWhatTheWalkMeetsIsExactOnceTheSourceEnds) {
  // Counted: 4 entries; two vanished before the walk met them.
  const auto a = bytes_of(kChunk, 73), b = bytes_of(3 * kChunk, 74);
  auto source = std::make_unique<CountedSource>(std::vector<SourceEntry>{entry("f0", a.size()), entry("f1", b.size())},
                                                EntryCounts{4, 10 * kChunk});
  Harness h(std::move(source), {a, b});
  h.handshake();
  EXPECT_EQ(h.s.transfer().files_total, 4u) << "the count, until the walk ends";
  send_all(h, 2);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.transfer().files_total, 2u);
  EXPECT_EQ(h.s.transfer().bytes_total, a.size() + b.size());
  h.feed(P::FrameType::end, P::to_json(P::End{2, a.size() + b.size()}));
  ASSERT_TRUE(h.s.outcome().ok());
  EXPECT_EQ(h.s.totals().files_verified, 2u);
}

// Finished entries are dropped (two take_actions() rounds later): a session fed 20,000
// entries one file after the other never holds more than a few.
TEST(SenderWindow, FinishedEntriesAreReleased) {
  constexpr std::uint32_t kEntries = 20'000;
  std::vector<SourceEntry> ents;
  std::vector<std::vector<std::byte>> contents(kEntries, bytes_of(10, 75));
  for (std::uint32_t i = 0; i < kEntries; ++i) ents.push_back(entry("f" + std::to_string(i), 10));
  Harness h(std::move(ents), std::move(contents));
  h.handshake();
  for (std::uint32_t i = 0; i < kEntries; ++i) {
    h.take_frames();
    h.answer(i, 0);
    h.complete_all_reads();
    h.verdict(i, true);
    ASSERT_LE(h.s.entries_held(), 4u) << "after entry " << i;
  }
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.totals().files_verified, kEntries);
  EXPECT_LE(h.s.peak_entries_held(), 4u);
  EXPECT_LE(h.s.peak_entries_held(), kMaxHeldEntries);
}

// --check-extra with entries pulled one at a time: the receiver's names of a directory
// wait until the walk leaves it (its children all came before), so nested directories
// report their extra names when the first entry outside them is met, innermost first.
TEST(SenderInspect, ExtraNamesAreReportedWhenTheWalkLeavesTheirDirectory) {
  auto dir = [](const std::string& path) {
    SourceEntry e = entry(path, 0);
    e.kind = P::EntryKind::directory;
    e.identity = "dir";
    return e;
  };
  std::vector<SourceEntry> ents{dir("d"), entry("d/a", 10), dir("d/s"), entry("d/s/x", 10), entry("e", 10)};
  SenderConfig cfg = inspect_config(P::Purpose::check);
  cfg.list_extra = true;
  Harness h(std::move(ents), {{}, bytes_of(10, 80), {}, bytes_of(10, 81), bytes_of(10, 82)}, cfg);
  h.handshake();
  auto reply = [&](std::uint32_t id, std::vector<std::string> names) {
    h.feed(P::FrameType::check, P::to_json(P::CheckReply{id, names.empty() ? P::CheckResult::missing
                                                                             : P::CheckResult::identical,
                                                         {}, std::move(names), false}));
  };
  std::vector<Event> ev;
  auto take = [&] { take_events_into(h, ev); };
  reply(0, {"a", "s", "zz"});
  reply(1, {});
  reply(2, {"x", "y"});
  take();
  EXPECT_EQ(h.s.totals().check_extra, 0u) << "nothing is extra while the walk is inside the directory";
  reply(3, {});
  reply(4, {});
  take();
  EXPECT_EQ(h.s.totals().check_extra, 2u);
  std::vector<std::string> order;
  for (const auto& e : ev) {
    if (e.type == EventType::entry_checked) order.push_back(e.path + "=" + e.detail);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"d=identical", "d/a=missing", "d/s=identical", "d/s/x=missing",
                                             "d/s/y=extra", "d/zz=extra", "e=missing"}));
}

}  // namespace
}  // namespace ferry::sender

// --- version 6: pipelined commits of ordinary files ---------------------------------------------------

namespace ferry::sender {
namespace {

std::vector<std::vector<std::byte>> files_of(const std::vector<std::size_t>& sizes, unsigned seed) {
  std::vector<std::vector<std::byte>> out;
  for (std::size_t i = 0; i < sizes.size(); ++i) out.push_back(bytes_of(sizes[i], seed + static_cast<unsigned>(i)));
  return out;
}

TEST(SenderPipelined, TheNextOfferGoesOutWithoutWaitingForTheVerdict) {
  const auto files = files_of({3 * kChunk + 5, 5 * kChunk}, 60);
  Harness h(files);
  h.handshake();
  h.take_frames();
  send_whole_file(h, 0);
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u) << "f1 is offered with no VERDICT for f0";
  EXPECT_EQ(o[0].file_id, 1u);
  EXPECT_FALSE(o[0].eager);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_answer);
  EXPECT_EQ(h.s.transfer().bytes_done, files[0].size()) << "a committing file counts as done";
  EXPECT_EQ(h.s.transfer().files_done, 0u);
  EXPECT_EQ(h.s.totals().files_verified, 0u);

  h.take_frames();
  h.answer(1, 0);
  h.complete_read(0);  // f1 streams
  ASSERT_EQ(h.s.state(), SenderSession::State::streaming);
  h.verdict(0, true);
  EXPECT_EQ(h.s.totals().files_verified, 1u);
  EXPECT_EQ(h.s.totals().bytes_verified, files[0].size());
  EXPECT_EQ(h.s.transfer().files_done, 1u);
  EXPECT_GE(h.s.transfer().bytes_done, files[0].size());
  EXPECT_EQ(h.s.state(), SenderSession::State::streaming) << "f1 goes on";
  EXPECT_TRUE(h.of_type(P::FrameType::error).empty());

  send_rest(h, 1);
  EXPECT_EQ(h.s.state(), SenderSession::State::pipelining);
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty()) << "END waits for f1's VERDICT";
  h.verdict(1, true);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_end);
  h.feed(P::FrameType::end, P::to_json(P::End{2, files[0].size() + files[1].size()}));
  ASSERT_TRUE(h.s.finished());
  EXPECT_TRUE(h.s.outcome().ok());
  EXPECT_EQ(h.s.totals().files_verified, 2u);
  EXPECT_EQ(h.s.totals().bytes_resent, 0u);
}

TEST(SenderPipelined, EndWaitsForEveryVerdictInAnyOrder) {
  const auto files = files_of({kChunk + 1, 2 * kChunk + 9}, 62);
  Harness h(files);
  h.handshake();
  h.take_frames();
  send_whole_file(h, 0);
  h.take_frames();
  send_whole_file(h, 1);
  EXPECT_EQ(h.s.state(), SenderSession::State::pipelining);
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty());
  EXPECT_EQ(h.s.transfer().bytes_done, files[0].size() + files[1].size());
  h.verdict(1, true);
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty()) << "f0 has no VERDICT yet";
  EXPECT_EQ(h.s.totals().files_verified, 1u);
  h.verdict(0, true);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.totals().files_verified, 2u);
  // A second VERDICT for a file already answered is not for any file in flight.
  h.verdict(0, true);
  expect_protocol_failure(h);
}

TEST(SenderPipelined, AnAckBeforeTheCommitMovesOnAtTheCommit) {
  const auto files = files_of({3 * kChunk + 5, kChunk}, 64);
  Harness h(files);
  h.auto_check = false;
  h.handshake();
  h.take_frames();
  h.answer(0, 0);
  for (int round = 0; round < 100 && h.held_checks.empty(); ++round) h.complete_all_reads();
  ASSERT_EQ(h.held_checks.size(), 1u) << "every block sent: the source is checked";
  h.feed_position(P::FrameType::ack, 0, files[0].size());
  EXPECT_EQ(h.s.state(), SenderSession::State::streaming);
  EXPECT_TRUE(h.of_type(P::FrameType::commit).empty());
  EXPECT_TRUE(offers(h).empty()) << "nothing moves on before the COMMIT";
  const CheckSource check = h.held_checks.front();
  h.held_checks.clear();
  h.s.on_source_checked(check.token, std::optional<SourceEntry>{}, h.now);
  h.collect();
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u) << "every byte acknowledged: the COMMIT moves on at once";
  EXPECT_EQ(o[0].file_id, 1u);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_answer);
}

TEST(SenderPipelined, AnAckAfterTheCommitMovesOnAtThatAck) {
  const auto files = files_of({3 * kChunk + 5, kChunk}, 66);
  Harness h(files);
  h.handshake();
  h.take_frames();
  h.answer(0, 0);
  for (int round = 0; round < 100 && h.of_type(P::FrameType::commit).empty(); ++round) h.complete_all_reads();
  ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_verdict);
  h.feed_position(P::FrameType::ack, 0, 2 * kChunk);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_verdict) << "bytes still unacknowledged";
  EXPECT_TRUE(offers(h).empty());
  h.feed_position(P::FrameType::ack, 0, files[0].size());
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].file_id, 1u);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_answer);
}

TEST(SenderPipelined, AFailedVerdictOffersTheFileAgainLaterAsAResend) {
  const auto files = files_of({3 * kChunk + 5, 2 * kChunk, kChunk + 7}, 68);
  const std::uint64_t total = files[0].size() + files[1].size() + files[2].size();
  Harness h(files);
  std::vector<Event> ev;
  auto take = [&] { take_events_into(h, ev); };
  h.handshake();
  h.take_frames();
  send_whole_file(h, 0);
  ASSERT_EQ(offers(h).size(), 1u);
  EXPECT_EQ(offers(h)[0].file_id, 1u);
  take();
  const auto before = h.s.transfer().bytes_done;
  h.verdict(0, false);
  take();
  EXPECT_GE(h.s.transfer().bytes_done, before) << "bytes_done never goes down";
  EXPECT_EQ(h.s.transfer().files_done, 0u);
  const Event* w = last_of(ev, EventType::warning, "f0");
  ASSERT_NE(w, nullptr) << "the failed VERDICT is reported";
  EXPECT_NE(w->detail.find("verification failed"), std::string::npos) << w->detail;
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_answer) << "f1 stays current";

  h.take_frames();
  send_whole_file(h, 1);
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].file_id, 0u) << "f0 again, after f1 (taken before) and before f2";
  EXPECT_FALSE(o[0].eager);
  h.take_frames();
  send_whole_file(h, 0);
  auto data = h.of_type(P::FrameType::data);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.front().offset, 0u);
  EXPECT_EQ(h.data_bytes(), files[0].size());
  EXPECT_EQ(h.s.totals().bytes_resent, files[0].size());
  o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].file_id, 2u);
  h.verdict(1, true);
  h.verdict(0, true);
  h.take_frames();
  send_whole_file(h, 2);
  h.verdict(2, true);
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  h.feed(P::FrameType::end, P::to_json(P::End{3, total}));
  take();
  ASSERT_TRUE(h.s.finished());
  EXPECT_TRUE(h.s.outcome().ok());
  EXPECT_EQ(h.s.totals().files_verified, 3u);
  EXPECT_EQ(h.s.totals().files_failed, 0u);
  EXPECT_EQ(h.s.transfer().bytes_done, total);
  check_transfer_events(ev, 3, total);
}

TEST(SenderPipelined, AFailedVerdictAtTheLastAttemptFailsTheFile) {
  const auto files = files_of({2 * kChunk + 1, kChunk}, 70);
  Harness h(files, config(/*attempts=*/2));
  h.handshake();
  h.take_frames();
  send_whole_file(h, 0);
  h.verdict(0, false);
  h.take_frames();
  send_whole_file(h, 1);
  ASSERT_EQ(offers(h).size(), 1u);
  EXPECT_EQ(offers(h)[0].file_id, 0u);
  h.take_frames();
  send_whole_file(h, 0);  // attempt 2, committing again
  h.verdict(1, true);
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty());
  h.verdict(0, false);
  EXPECT_TRUE(offers(h).empty()) << "no third attempt";
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.transfer().bytes_done, files[0].size() + files[1].size());
  h.feed(P::FrameType::end, P::to_json(P::End{1, files[1].size()}));
  ASSERT_TRUE(h.s.finished());
  auto out = h.s.outcome();
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code, Errc::verification) << out.error().message();
  EXPECT_NE(out.error().message().find("failed verification"), std::string::npos) << out.error().message();
  EXPECT_EQ(h.s.totals().files_failed, 1u);
  EXPECT_EQ(h.s.totals().files_verified, 1u);
}

TEST(SenderPipelined, AtMostTheBoundCommitWithoutTheirVerdicts) {
  const std::size_t n = P::kMaxCommittingFiles + 2;
  std::vector<std::size_t> sizes(n, kChunk + 1);  // top level and two blocks: never eager
  Harness h(files_of(sizes, 72));
  h.handshake();
  for (std::uint32_t i = 0; i < P::kMaxCommittingFiles; ++i) {
    SCOPED_TRACE("file " + std::to_string(i));
    h.take_frames();
    send_whole_file(h, i);
    auto o = offers(h);
    ASSERT_EQ(o.size(), 1u);
    EXPECT_EQ(o[0].file_id, i + 1) << "moved on without a VERDICT";
    EXPECT_FALSE(o[0].eager);
  }
  const auto last = static_cast<std::uint32_t>(P::kMaxCommittingFiles);
  h.take_frames();
  send_whole_file(h, last);
  EXPECT_EQ(h.s.state(), SenderSession::State::awaiting_verdict) << "the bound is full: its VERDICT is awaited";
  EXPECT_TRUE(offers(h).empty());
  EXPECT_TRUE(h.of_type(P::FrameType::verdict).empty());
  h.take_frames();
  h.verdict(0, true);  // one of the committing files: its slot goes to the waiting one
  auto o = offers(h);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].file_id, last + 1) << "a VERDICT that frees a slot lets the waiting file move on";
  EXPECT_EQ(h.s.totals().files_verified, 1u);
  for (std::uint32_t i = 1; i <= last; ++i) h.verdict(i, true);
  EXPECT_EQ(h.s.totals().files_verified, P::kMaxCommittingFiles + 1);
  h.take_frames();
  send_whole_file(h, last + 1);
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty());
  h.verdict(last + 1, true);
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_EQ(h.s.totals().files_verified, n);
}

TEST(SenderPipelined, AfterALostConnectionCommittingFilesAreOfferedAgainOrdinarily) {
  const auto files = files_of({3 * kChunk + 5, 2 * kChunk, kChunk + 7, 4 * kChunk, kChunk + 3}, 74);
  std::uint64_t total = 0;
  for (const auto& f : files) total += f.size();
  Harness h(files);
  std::vector<Event> ev;
  auto take = [&] { take_events_into(h, ev); };
  h.handshake();
  h.take_frames();
  send_whole_file(h, 0);
  h.take_frames();
  send_whole_file(h, 1);
  h.take_frames();
  send_whole_file(h, 2);
  h.verdict(1, true);  // f0 and f2 have none
  ASSERT_EQ(offers(h).size(), 1u);
  EXPECT_EQ(offers(h)[0].file_id, 3u);
  take();
  const auto before = h.s.transfer();
  EXPECT_EQ(before.bytes_done, files[0].size() + files[1].size() + files[2].size());
  EXPECT_EQ(before.files_done, 1u);

  h.s.on_disconnected(make_error(Errc::connection, "test: cut"), h.now);
  h.collect();
  take();
  EXPECT_GE(h.s.transfer().bytes_done, before.bytes_done) << "bytes_done does not go down on the loss";
  h.take_frames();
  h.now += milliseconds(300);
  h.handshake();
  take();
  EXPECT_GE(h.s.transfer().bytes_done, before.bytes_done);
  std::vector<std::uint32_t> order;
  // f0 was committed before the cut: the receiver holds it whole.
  for (int guard = 0; guard < 10 && !h.s.finished(); ++guard) {
    auto o = offers(h);
    if (o.empty()) break;
    ASSERT_EQ(o.size(), 1u);
    const auto id = o[0].file_id;
    EXPECT_FALSE(o[0].eager);
    order.push_back(id);
    h.take_frames();
    if (id == 0) {
      h.answer(0, files[0].size());
      h.complete_hash();
      ASSERT_EQ(h.of_type(P::FrameType::commit).size(), 1u);
      EXPECT_EQ(h.data_bytes(), 0u);
    } else {
      send_whole_file(h, id);
    }
    take();
    EXPECT_GE(h.s.transfer().bytes_done, before.bytes_done);
    h.verdict(id, true);
    take();
  }
  // f3, current at the cut, is offered again first (the receiver may hold part of it);
  // then f0 and f2 in entry order, before the new f4. f1 has its VERDICT.
  EXPECT_EQ(order, (std::vector<std::uint32_t>{3, 0, 2, 4}));
  ASSERT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  h.feed(P::FrameType::end, P::to_json(P::End{5, total}));
  ASSERT_TRUE(h.s.finished());
  EXPECT_TRUE(h.s.outcome().ok()) << h.s.outcome().error().message();
  EXPECT_EQ(h.s.totals().files_verified, 5u);
  EXPECT_EQ(h.s.transfer().bytes_done, total);
  EXPECT_EQ(h.s.totals().bytes_resent, files[2].size()) << "f2 sent again whole; f0 only verified";
  check_transfer_events(ev, 5, total);
}

}  // namespace
}  // namespace ferry::sender
