// Tests ReceiverSession alone, without sockets or files: the test plays the sender
// (hand-built frames) and the driver (completes OpenFile with an OpenedFile it
// chooses, performs WriteChunk into an in-memory buffer, completes CommitFile).
// Covers bad chunks and RPOS, ACK pacing, commit verdicts, unsafe paths, protocol
// violations, END, corrupt input, the whole-transfer figures of events, and eager
// files and directories (versions 3 and 6).
#include "receiver/receiver_session.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ferry::receiver {
namespace {

namespace P = protocol;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);
constexpr char kSession[] = "00112233445566778899aabbccddeeff";
const P::Nonce kPeerNonce{0xa5, 0x02};  // the fake sender's HELLO nonce
constexpr std::size_t kChunk = 4096;

std::vector<std::byte> bytes_of(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 g(seed);
  for (auto& b : v) b = static_cast<std::byte>(g());
  return v;
}

// The file digest of version 2: blocks of kChunk (PROTOCOL.md section 10).
P::FileDigest file_digest(P::Bytes b) {
  P::FileDigest d;
  P::add_blocks(d, b, 0, kChunk);
  return d;
}
std::string hex128(P::Bytes b) { return file_digest(b).hex(); }

std::vector<std::byte> data_frame(std::uint32_t file, std::uint64_t offset, P::Bytes data) {
  auto head = P::encode_data_head(file, offset, P::block_digest(data, offset), data.size());
  std::vector<std::byte> out(head.size() + data.size());  // (insert() trips GCC 12's -Warray-bounds)
  std::copy(head.begin(), head.end(), out.begin());
  std::copy(data.begin(), data.end(), out.begin() + static_cast<std::ptrdiff_t>(head.size()));
  return out;
}

// A DATA frame whose payload no longer matches its checksum (one bit flipped).
std::vector<std::byte> bad_data_frame(std::uint32_t file, std::uint64_t offset, P::Bytes data) {
  auto out = data_frame(file, offset, data);
  out[P::kDataHeadSize + data.size() / 2] ^= std::byte{0x08};
  return out;
}

// A DATA frame whose prefix (file id, offset) no longer matches its prefix check.
std::vector<std::byte> bad_prefix_frame(std::uint32_t file, std::uint64_t offset, P::Bytes data) {
  auto out = data_frame(file, offset, data);
  out[P::kHeaderSize + 6] ^= std::byte{0x01};  // a bit of the offset
  return out;
}

// Every block of `src` as DATA frames of file 0, back to back.
std::vector<std::byte> all_data_frames(const std::vector<std::byte>& src) {
  std::vector<std::byte> wire;
  for (std::size_t off = 0; off < src.size(); off += kChunk) {
    auto f = data_frame(0, off, P::Bytes(src).subspan(off, std::min(kChunk, src.size() - off)));
    wire.insert(wire.end(), f.begin(), f.end());
  }
  return wire;
}

struct Sent {
  P::FrameType type{};
  std::vector<std::byte> payload;
  P::Position pos;  // ACK
  P::Resend rs;     // RPOS
};

struct PendingWrite {
  std::uint32_t file_id;
  std::uint64_t offset;
  std::uint64_t length;
};

class Harness {
 public:
  explicit Harness(std::uint64_t window = 1024 * 1024) : r(ReceiverConfig{window, "test-receiver"}, kT0) {}
  explicit Harness(ReceiverConfig config) : r(std::move(config), kT0) {}

  // Performs the session's actions as recv_app does: WriteChunk's bytes land at once
  // (its span is valid until the next input); the write completes at once, or waits
  // in `pending` with defer_writes. OpenFile and CommitFile are left for the test.
  void collect() {
    for (int guard = 0; guard < 1000; ++guard) {
      auto actions = r.take_actions();
      if (actions.empty()) break;
      for (auto& a : actions) {
        if (auto* f = std::get_if<SendFrame>(&a)) {
          auto res = P::decode_frame(f->head);
          auto* d = std::get_if<P::DecodedFrame>(&res);
          ASSERT_TRUE(d) << "the receiver wrote an undecodable frame";
          ASSERT_TRUE(d->payload_ok);
          Sent s;
          s.type = d->header.type;
          s.payload.assign(d->payload.begin(), d->payload.end());
          if (s.type == P::FrameType::ack) {
            EXPECT_TRUE(P::decode_position(d->payload, s.pos));
          }
          if (s.type == P::FrameType::rpos) {
            EXPECT_TRUE(P::decode_resend(d->payload, s.rs));
          }
          frames.push_back(std::move(s));
        } else if (auto* o = std::get_if<OpenFile>(&a)) {
          opens.push_back(*o);
        } else if (auto* w = std::get_if<WriteChunk>(&a)) {
          EXPECT_EQ(w->digest, P::block_digest(w->data, w->offset));
          if (file.size() < w->offset + w->data.size()) file.resize(w->offset + w->data.size());
          std::copy(w->data.begin(), w->data.end(), file.begin() + static_cast<std::ptrdiff_t>(w->offset));
          ++writes;
          if (defer_writes) {
            pending.push_back({w->file_id, w->offset, w->data.size()});
          } else {
            r.on_chunk_written(w->file_id, w->offset, w->data.size(), Result<void>(), now);
          }
        } else if (auto* c = std::get_if<CommitFile>(&a)) {
          commits.push_back(*c);
        } else if (auto* sm = std::get_if<CommitSmallFile>(&a)) {
          smalls.push_back(std::move(*sm));
        } else if (auto* cl = std::get_if<CloseFile>(&a)) {
          closes_file.push_back(*cl);
        } else if (auto* cc = std::get_if<CloseConnection>(&a)) {
          closes.push_back(*cc);
        } else if (auto* d = std::get_if<DigestFinalFile>(&a)) {
          digests.push_back(*d);
        } else if (auto* pf = std::get_if<ProbeFile>(&a)) {
          probes.push_back(*pf);
        }
      }
    }
  }

  void feed(const std::vector<std::byte>& wire) {
    r.on_bytes(wire, now);
    collect();
  }
  void feed(P::FrameType t, const std::string& body) { feed(P::encode_frame(t, body)); }
  void drained() {
    r.on_input_drained(now);
    collect();
  }

  void hello(const std::optional<TransferProgress>& figures = std::nullopt,
             P::Purpose purpose = P::Purpose::transfer) {
    P::Hello h;
    h.purpose = purpose;
    h.role = P::Role::sender;
    h.session = kSession;
    h.software = "test-sender";
    h.nonce = P::nonce_hex(kPeerNonce);  // version 3: every HELLO carries one
    if (figures) {
      h.files_total = figures->files_total;
      h.bytes_total = figures->bytes_total;
      h.files_done = figures->files_done;
      h.bytes_done = figures->bytes_done;
    }
    feed(P::FrameType::hello, P::to_json(h));
  }
  void offer(std::uint32_t id, const std::string& path, std::uint64_t size) {
    P::Offer o;
    o.file_id = id;
    o.path = path;
    o.size = size;
    o.mtime_ns = 5;
    o.identity = "size=" + std::to_string(size) + ",mtime_ns=5";
    o.block_size = kChunk;
    feed(P::FrameType::offer, P::to_json(o));
  }
  // Completes the pending OpenFile with `offset` bytes already held (from `held`), and
  // the blocks at `held_blocks` above it.
  void open(std::uint64_t offset = 0, const std::vector<std::byte>& held = {},
            const std::vector<std::uint64_t>& held_blocks = {}) {
    ASSERT_EQ(opens.size(), 1u);
    OpenedFile of;
    of.offset = offset;
    of.prefix = file_digest(P::Bytes(held).first(offset));
    file.assign(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(offset));
    for (auto b : held_blocks) {
      const auto len = std::min<std::uint64_t>(kChunk, held.size() - b);
      of.held.push_back({b, len, P::block_digest(P::Bytes(held).subspan(b, len), b)});
      if (file.size() < b + len) file.resize(b + len);
      std::copy_n(held.begin() + static_cast<std::ptrdiff_t>(b), len, file.begin() + static_cast<std::ptrdiff_t>(b));
    }
    const auto id = opens[0].file_id;
    opens.clear();
    r.on_file_opened(id, of, now);
    collect();
  }
  // HELLO, OFFER, open at 0.
  void start(std::uint64_t size, const std::string& path = "a.bin") {
    hello();
    offer(0, path, size);
    open();
    frames.clear();
  }

  std::vector<Sent> of_type(P::FrameType t) const {
    std::vector<Sent> out;
    for (const auto& f : frames) {
      if (f.type == t) out.push_back(f);
    }
    return out;
  }

  ReceiverSession r;
  Clock::time_point now = kT0;
  std::vector<Sent> frames;
  std::vector<OpenFile> opens;
  std::vector<CommitFile> commits;
  std::vector<CommitSmallFile> smalls;
  std::vector<CloseFile> closes_file;
  std::vector<CloseConnection> closes;
  std::vector<DigestFinalFile> digests;  // version 4, check sessions
  std::vector<ProbeFile> probes;         // version 4, dry-run sessions
  std::vector<std::byte> file;  // the destination file's bytes
  unsigned writes = 0;
  bool defer_writes = false;
  std::vector<PendingWrite> pending;  // with defer_writes: written, not yet completed
  void complete_write(std::size_t i) {
    PendingWrite w = pending.at(i);
    pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
    r.on_chunk_written(w.file_id, w.offset, w.length, Result<void>(), now);
    collect();
  }
};

void expect_violation(Harness& h) {
  EXPECT_TRUE(h.r.failed());
  EXPECT_EQ(h.of_type(P::FrameType::error).size(), 1u) << "the sender is told why";
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_EQ(h.closes[0].reason.code, Errc::protocol) << h.closes[0].reason.message();
  ASSERT_TRUE(h.r.failure().has_value());
  auto e = P::parse_error(h.of_type(P::FrameType::error)[0].payload);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->code, "protocol");
  EXPECT_FALSE(e->message.empty());
}

// --- handshake ----------------------------------------------------------------------------

TEST(ReceiverHandshake, EchoesSessionAsReceiver) {
  Harness h;
  h.hello();
  auto hellos = h.of_type(P::FrameType::hello);
  ASSERT_EQ(hellos.size(), 1u);
  auto m = P::parse_hello(hellos[0].payload);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->role, P::Role::receiver);
  EXPECT_EQ(m->session, kSession);
  EXPECT_EQ(h.r.session_id(), kSession);
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
}

TEST(ReceiverHandshake, FramesBeforeHelloAreViolations) {
  {
    Harness h;
    h.offer(0, "a.bin", 10);
    expect_violation(h);
    EXPECT_TRUE(h.opens.empty());
  }
  {
    Harness h;
    auto d = bytes_of(100, 1);
    h.feed(data_frame(0, 0, d));
    expect_violation(h);
    EXPECT_EQ(h.writes, 0u);
  }
  {
    Harness h;
    h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
    expect_violation(h);
  }
}

TEST(ReceiverHandshake, SenderHelloWithWrongRoleIsAViolation) {
  Harness h;
  P::Hello m;
  m.role = P::Role::receiver;
  m.session = kSession;
  m.nonce = P::nonce_hex(kPeerNonce);
  h.feed(P::FrameType::hello, P::to_json(m));
  expect_violation(h);
}

// --- DATA, RPOS ----------------------------------------------------------------------------

TEST(ReceiverData, BadChunkIsReportedAloneAndTheChunksAfterItAreKept) {
  const auto src = bytes_of(8 * kChunk, 2);
  auto chunk = [&](std::size_t i) { return P::Bytes(src).subspan(i * kChunk, kChunk); };
  Harness h;
  h.start(src.size());

  h.feed(data_frame(0, 0, chunk(0)));
  h.feed(bad_data_frame(0, kChunk, chunk(1)));
  h.feed(data_frame(0, 2 * kChunk, chunk(2)));
  h.feed(bad_data_frame(0, 3 * kChunk, chunk(3)));
  h.feed(data_frame(0, 4 * kChunk, chunk(4)));
  EXPECT_EQ(h.writes, 3u) << "the good chunks after a bad one are written (positional)";
  EXPECT_TRUE(h.of_type(P::FrameType::rpos).empty()) << "reports wait for the end of the batch";
  h.drained();
  auto rpos = h.of_type(P::FrameType::rpos);
  ASSERT_EQ(rpos.size(), 2u) << "one RPOS per missing range";
  EXPECT_EQ(rpos[0].rs.file_id, 0u);
  EXPECT_EQ(rpos[0].rs.offset, kChunk);
  EXPECT_EQ(rpos[0].rs.length, kChunk);
  EXPECT_EQ(rpos[1].rs.offset, 3 * kChunk);
  EXPECT_EQ(rpos[1].rs.length, kChunk);
  auto acks = h.of_type(P::FrameType::ack);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].pos.offset, kChunk) << "ACK is the contiguous written point";
  h.frames.clear();
  h.drained();
  EXPECT_TRUE(h.of_type(P::FrameType::rpos).empty()) << "never twice for the same block";

  // The re-sent chunk 1 arrives; chunk 3 arrives damaged again: reported again.
  h.feed(data_frame(0, kChunk, chunk(1)));
  h.feed(bad_data_frame(0, 3 * kChunk, chunk(3)));
  h.drained();
  rpos = h.of_type(P::FrameType::rpos);
  ASSERT_EQ(rpos.size(), 1u);
  EXPECT_EQ(rpos[0].rs.offset, 3 * kChunk);
  ASSERT_FALSE(h.of_type(P::FrameType::ack).empty());
  EXPECT_EQ(h.of_type(P::FrameType::ack).back().pos.offset, 3 * kChunk);
  // A duplicate is dropped.
  const unsigned writes = h.writes;
  h.feed(data_frame(0, 2 * kChunk, chunk(2)));
  EXPECT_EQ(h.writes, writes);
  for (std::size_t i : {3u, 5u, 6u, 7u}) h.feed(data_frame(0, i * kChunk, chunk(i)));
  EXPECT_TRUE(h.file == src);
  EXPECT_EQ(h.r.written(), src.size());
  EXPECT_EQ(h.r.totals().chunks_rejected, 3u);
  EXPECT_TRUE(h.closes.empty());
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  EXPECT_EQ(h.commits.size(), 1u);
}

TEST(ReceiverData, BadPrefixAsksToGoBackFromTheContiguousPoint) {
  const auto src = bytes_of(6 * kChunk, 21);
  auto chunk = [&](std::size_t i) { return P::Bytes(src).subspan(i * kChunk, kChunk); };
  Harness h;
  h.start(src.size());
  h.feed(data_frame(0, 0, chunk(0)));
  h.feed(bad_prefix_frame(0, kChunk, chunk(1)));
  h.feed(data_frame(0, 2 * kChunk, chunk(2)));
  h.drained();
  auto rpos = h.of_type(P::FrameType::rpos);
  ASSERT_EQ(rpos.size(), 1u);
  EXPECT_EQ(rpos[0].rs.offset, kChunk);
  EXPECT_EQ(rpos[0].rs.length, 0u) << "go back: the damaged frame's offset cannot be trusted";
  // The sender goes back: 1 is new, 2 a duplicate (dropped), the rest new.
  for (std::size_t i = 1; i < 6; ++i) h.feed(data_frame(0, i * kChunk, chunk(i)));
  EXPECT_EQ(h.writes, 6u);
  EXPECT_TRUE(h.file == src);
  EXPECT_TRUE(h.closes.empty());
}

// The last block's prefix is damaged and the COMMIT follows in the same batch: not a
// "COMMIT before all data" (that block could have been any block); the COMMIT is kept
// through the go-back (the sender does not send it again). Found by sweep seed 2206.
TEST(ReceiverData, CommitAfterADamagedPrefixIsKeptThroughTheGoBack) {
  const auto src = bytes_of(2 * kChunk, 27);
  auto chunk = [&](std::size_t i) { return P::Bytes(src).subspan(i * kChunk, kChunk); };
  Harness h;
  h.start(src.size());
  h.feed(data_frame(0, 0, chunk(0)));
  h.feed(bad_prefix_frame(0, kChunk, chunk(1)));
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  EXPECT_TRUE(h.closes.empty()) << (h.closes.empty() ? "" : h.closes[0].reason.message());
  h.drained();
  auto rpos = h.of_type(P::FrameType::rpos);
  ASSERT_EQ(rpos.size(), 1u);
  EXPECT_EQ(rpos[0].rs.offset, kChunk);
  EXPECT_EQ(rpos[0].rs.length, 0u);
  h.feed(data_frame(0, kChunk, chunk(1)));
  EXPECT_EQ(h.commits.size(), 1u);
  EXPECT_TRUE(h.file == src);
}

TEST(ReceiverData, OutOfOrderWritesAckTheContiguousPointAndCommitWaitsForTheMissing) {
  const auto src = bytes_of(6 * kChunk + 100, 22);
  auto block = [&](std::size_t i) {
    return P::Bytes(src).subspan(i * kChunk, std::min<std::size_t>(kChunk, src.size() - i * kChunk));
  };
  Harness h;
  h.start(src.size());
  h.defer_writes = true;
  for (std::size_t i : {0u, 2u, 3u, 4u, 5u, 6u}) h.feed(data_frame(0, i * kChunk, block(i)));
  h.feed(bad_data_frame(0, kChunk, block(1)));
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  EXPECT_TRUE(h.commits.empty()) << "COMMIT waits for the missing block";
  EXPECT_TRUE(h.closes.empty());
  h.drained();
  ASSERT_EQ(h.of_type(P::FrameType::rpos).size(), 1u);
  // Writes complete in reverse order: nothing is acknowledged until block 0 is written.
  while (h.pending.size() > 1) h.complete_write(h.pending.size() - 1);
  h.drained();
  EXPECT_TRUE(h.of_type(P::FrameType::ack).empty());
  h.complete_write(0);
  h.drained();
  ASSERT_EQ(h.of_type(P::FrameType::ack).size(), 1u);
  EXPECT_EQ(h.of_type(P::FrameType::ack)[0].pos.offset, kChunk);
  h.feed(data_frame(0, kChunk, block(1)));  // the re-sent block
  EXPECT_TRUE(h.commits.empty()) << "its write has not completed";
  h.complete_write(0);
  ASSERT_EQ(h.commits.size(), 1u) << "the remembered COMMIT verifies once the file is complete";
  EXPECT_TRUE(h.file == src);
}

TEST(ReceiverData, BlocksBeyondTheHeldBoundAreDroppedAndReportedLater) {
  // 1 KiB blocks: block 0 missing, then kMaxHeldBlocks blocks above it, then 2 more.
  constexpr std::size_t kBlock = 1024;
  const std::size_t n = ReceiverSession::kMaxHeldBlocks + 3;
  const auto src = bytes_of(n * kBlock, 23);
  auto frame = [&](std::size_t i) {
    return data_frame(0, i * kBlock, P::Bytes(src).subspan(i * kBlock, kBlock));
  };
  Harness h;
  h.hello();
  P::Offer o;
  o.path = "big.bin";
  o.size = src.size();
  o.identity = "x";
  o.block_size = kBlock;
  h.feed(P::FrameType::offer, P::to_json(o));
  h.open();
  h.frames.clear();
  h.feed(bad_data_frame(0, 0, P::Bytes(src).first(kBlock)));
  std::vector<std::byte> wire;
  for (std::size_t i = 1; i < n; ++i) {
    auto f = frame(i);
    wire.insert(wire.end(), f.begin(), f.end());
  }
  h.feed(wire);
  EXPECT_EQ(h.writes, ReceiverSession::kMaxHeldBlocks) << "the last two blocks are dropped";
  h.drained();
  auto rpos = h.of_type(P::FrameType::rpos);
  ASSERT_EQ(rpos.size(), 1u) << "block 0; no room for the dropped ones yet";
  EXPECT_EQ(rpos[0].rs.offset, 0u);
  h.frames.clear();
  h.feed(frame(0));
  h.drained();
  rpos = h.of_type(P::FrameType::rpos);
  ASSERT_EQ(rpos.size(), 1u) << "the dropped blocks, once there is room";
  EXPECT_EQ(rpos[0].rs.offset, (n - 2) * kBlock);
  EXPECT_EQ(rpos[0].rs.length, 2 * kBlock);
  h.feed(frame(n - 2));
  h.feed(frame(n - 1));
  EXPECT_TRUE(h.file == src);
  EXPECT_EQ(h.r.written(), src.size());
}

TEST(ReceiverData, InputSpaceThenOnInputIsOnBytesWithoutTheCopy) {
  const auto src = bytes_of(3 * kChunk + 5, 24);
  Harness h;
  h.start(src.size());
  const auto wire = all_data_frames(src);
  for (std::size_t i = 0; i < wire.size();) {
    auto space = h.r.input_space(1000);
    ASSERT_GE(space.size(), 1000u);
    const std::size_t n = std::min<std::size_t>(std::min<std::size_t>(space.size(), 1000), wire.size() - i);
    std::copy_n(wire.begin() + static_cast<std::ptrdiff_t>(i), n, space.begin());
    h.r.on_input(n, h.now);
    h.collect();
    i += n;
  }
  EXPECT_TRUE(h.file == src);
}

TEST(ReceiverOpen, HeldBlocksAreListedInAnswerCountedAndNotRewritten) {
  const auto src = bytes_of(10 * kChunk + 10, 25);
  Harness h;
  h.hello();
  h.offer(0, "h.bin", src.size());
  h.open(2 * kChunk, src, {4 * kChunk, 5 * kChunk, 7 * kChunk, 10 * kChunk});
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  auto a = P::parse_answer(answers[0].payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->offset, 2 * kChunk);
  const std::vector<P::ByteRange> want{{4 * kChunk, 2 * kChunk}, {7 * kChunk, kChunk}, {10 * kChunk, 10}};
  EXPECT_EQ(a->held, want) << "merged ranges";
  for (std::size_t i : {2u, 3u, 6u, 8u, 9u}) {
    h.feed(data_frame(0, i * kChunk, P::Bytes(src).subspan(i * kChunk, kChunk)));
  }
  EXPECT_EQ(h.writes, 5u);
  EXPECT_EQ(h.r.written(), src.size()) << "held blocks count as written";
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  EXPECT_EQ(h.commits.size(), 1u) << "held blocks' digests are in the file digest";
}

TEST(ReceiverOpen, HeldBlocksBeyondSixtyFourRangesAreNotListedNorCounted) {
  const auto src = bytes_of(200 * kChunk, 26);
  Harness h;
  h.hello();
  h.offer(0, "m.bin", src.size());
  std::vector<std::uint64_t> held;
  for (std::uint64_t b = 1; b < 200; b += 2) held.push_back(b * kChunk);  // 100 single-block ranges
  h.open(0, src, held);
  auto a = P::parse_answer(h.of_type(P::FrameType::answer)[0].payload);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->held.size(), P::kMaxHeldRanges);
  EXPECT_EQ(a->held.back().offset, 127 * kChunk);
  for (std::size_t i = 0; i < 200; ++i) {
    if (i % 2 == 1 && i <= 127) continue;  // held and listed
    h.feed(data_frame(0, i * kChunk, P::Bytes(src).subspan(i * kChunk, kChunk)));
  }
  EXPECT_EQ(h.r.written(), src.size());
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  EXPECT_EQ(h.commits.size(), 1u);
}

TEST(ReceiverData, OneFrameSplitAcrossManyReads) {
  const auto src = bytes_of(3 * kChunk + 5, 3);
  Harness h;
  h.start(src.size());
  const auto wire = all_data_frames(src);
  for (std::size_t i = 0; i < wire.size(); i += 7) {
    h.feed(std::vector<std::byte>(wire.begin() + static_cast<std::ptrdiff_t>(i),
                                  wire.begin() + static_cast<std::ptrdiff_t>(std::min(i + 7, wire.size()))));
  }
  EXPECT_TRUE(h.file == src);
}

// Version 1 made any offset but the next expected one a violation; version 2 accepts
// blocks out of order (positional writes) and refuses only misplaced ones.
TEST(ReceiverData, DataOffABlockBoundaryIsAViolation) {
  const auto src = bytes_of(4 * kChunk, 4);
  Harness h;
  h.start(src.size());
  h.feed(data_frame(0, kChunk + 1, P::Bytes(src).subspan(kChunk, kChunk)));
  expect_violation(h);
  EXPECT_EQ(h.writes, 0u);
}

TEST(ReceiverData, DataShorterThanItsBlockIsAViolation) {
  const auto src = bytes_of(4 * kChunk, 4);
  Harness h;
  h.start(src.size());
  h.feed(data_frame(0, kChunk, P::Bytes(src).subspan(kChunk, kChunk - 1)));
  expect_violation(h);
  EXPECT_EQ(h.writes, 0u);
}

TEST(ReceiverData, DataBeyondTheOfferedSizeIsAViolation) {
  const auto src = bytes_of(101, 5);
  Harness h;
  h.start(100);
  h.feed(data_frame(0, 0, src));
  expect_violation(h);
  EXPECT_EQ(h.writes, 0u);
}

TEST(ReceiverData, DataBeforeOfferIsAViolation) {
  const auto src = bytes_of(100, 6);
  Harness h;
  h.hello();
  h.feed(data_frame(0, 0, src));
  expect_violation(h);
  EXPECT_EQ(h.writes, 0u);
}

TEST(ReceiverData, DataForAnotherFileIsAViolation) {
  const auto src = bytes_of(100, 7);
  Harness h;
  h.start(100);
  h.feed(data_frame(1, 0, src));
  expect_violation(h);
}

// --- ACK pacing --------------------------------------------------------------------------------

TEST(ReceiverAck, AtLeastEveryQuarterWindowAndWhenDrained) {
  const std::uint64_t window = 16 * kChunk;
  const auto src = bytes_of(40 * kChunk + 100, 8);
  Harness h(window);
  h.start(src.size());
  // Everything in one read: only the quarter-window rule can ACK during it.
  const auto wire = all_data_frames(src);
  h.feed(wire);
  ASSERT_TRUE(h.file == src);
  auto acks = h.of_type(P::FrameType::ack);
  ASSERT_FALSE(acks.empty());
  std::uint64_t prev = 0;
  for (const auto& a : acks) {
    EXPECT_GT(a.pos.offset, prev);
    EXPECT_LE(a.pos.offset - prev, window / 4 + kChunk) << "an ACK at least every window/4 (chunk granularity)";
    prev = a.pos.offset;
  }
  EXPECT_LE(src.size() - prev, window / 4);
  EXPECT_LT(prev, src.size()) << "the tail waits for the drain";
  h.frames.clear();
  h.drained();
  acks = h.of_type(P::FrameType::ack);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].pos.offset, src.size());
  h.frames.clear();
  h.drained();
  EXPECT_TRUE(h.of_type(P::FrameType::ack).empty()) << "nothing new, no ACK";
}

TEST(ReceiverAck, DrainAcksASingleSmallChunk) {
  const auto src = bytes_of(10 * kChunk, 9);
  Harness h(4 * 1024 * 1024);
  h.start(src.size());
  h.feed(data_frame(0, 0, P::Bytes(src).first(kChunk)));
  EXPECT_TRUE(h.of_type(P::FrameType::ack).empty());
  h.drained();
  auto acks = h.of_type(P::FrameType::ack);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].pos.offset, kChunk);
  EXPECT_EQ(h.r.written(), kChunk);
}

// --- commit ---------------------------------------------------------------------------------------

void send_all(Harness& h, const std::vector<std::byte>& src, std::uint64_t from = 0) {
  for (std::uint64_t off = from; off < src.size(); off += kChunk) {
    h.feed(data_frame(0, off, P::Bytes(src).subspan(off, std::min<std::uint64_t>(kChunk, src.size() - off))));
  }
}

TEST(ReceiverCommit, MismatchingDigestFailsAndDiscards) {
  const auto src = bytes_of(3 * kChunk + 1, 10);
  Harness h;
  h.start(src.size());
  send_all(h, src);
  h.frames.clear();
  auto other = src;
  other[0] ^= std::byte{1};
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(other)}));
  EXPECT_TRUE(h.commits.empty()) << "never committed";
  auto v = h.of_type(P::FrameType::verdict);
  ASSERT_EQ(v.size(), 1u);
  auto verdict = P::parse_verdict(v[0].payload);
  ASSERT_TRUE(verdict.ok());
  EXPECT_EQ(verdict->status, P::VerdictStatus::failed);
  EXPECT_FALSE(verdict->reason.empty());
  ASSERT_EQ(h.closes_file.size(), 1u);
  EXPECT_TRUE(h.closes_file[0].discard);
  EXPECT_TRUE(h.closes.empty()) << "the connection goes on (the file is re-sent)";
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
  // The re-offer is served.
  h.offer(0, "a.bin", src.size());
  EXPECT_EQ(h.opens.size(), 1u);
}

TEST(ReceiverCommit, MatchingDigestCommitsThenAnswersVerified) {
  const auto src = bytes_of(5 * kChunk, 11);
  Harness h;
  h.start(src.size());
  send_all(h, src);
  h.frames.clear();
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  ASSERT_EQ(h.commits.size(), 1u);
  EXPECT_TRUE(h.of_type(P::FrameType::verdict).empty()) << "VERDICT only after the commit is done";
  // Version 6: the commit runs while the session takes the sender's next OFFER.
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
  EXPECT_EQ(h.r.eager_pending(), 1u);
  h.r.on_file_committed(0, Result<void>(), h.now);
  h.collect();
  auto v = h.of_type(P::FrameType::verdict);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(P::parse_verdict(v[0].payload)->status, P::VerdictStatus::verified);
  EXPECT_EQ(h.r.totals().files_verified, 1u);
  EXPECT_TRUE(h.closes_file.empty());
}

TEST(ReceiverCommit, ResumedFileVerifiesWithThePrefixDigest) {
  const auto src = bytes_of(6 * kChunk + 9, 12);
  Harness h;
  h.hello();
  h.offer(0, "r.bin", src.size());
  const std::uint64_t held = 2 * kChunk;  // a block boundary (version 2)
  h.open(held, src);
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  auto a = P::parse_answer(answers[0].payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->status, P::AnswerStatus::accept);
  EXPECT_EQ(a->offset, held);
  send_all(h, src, held);
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  EXPECT_EQ(h.commits.size(), 1u);
  EXPECT_TRUE(h.file == src);
}

TEST(ReceiverCommit, CommitBeforeAllDataIsAViolation) {
  const auto src = bytes_of(3 * kChunk, 13);
  Harness h;
  h.start(src.size());
  h.feed(data_frame(0, 0, P::Bytes(src).first(kChunk)));
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  expect_violation(h);
  EXPECT_TRUE(h.commits.empty());
}

TEST(ReceiverCommit, FailedCommitAnswersFailed) {
  const auto src = bytes_of(kChunk, 14);
  Harness h;
  h.start(src.size());
  send_all(h, src);
  h.frames.clear();
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  ASSERT_EQ(h.commits.size(), 1u);
  h.r.on_file_committed(0, make_error(Errc::local_io, "rename(/dest/a.bin)", 28), h.now);
  h.collect();
  auto v = h.of_type(P::FrameType::verdict);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(P::parse_verdict(v[0].payload)->status, P::VerdictStatus::failed);
}

// --- paths ----------------------------------------------------------------------------------------

TEST(ReceiverPaths, UnsafePathsAreRefusedAndTheNextOfferIsServed) {
  Harness h;
  h.hello();
  const std::vector<std::string> bad = {"../x", "/abs", "a/../b", "", "a//b", "./a", std::string("a\0b", 3)};
  std::uint32_t id = 0;
  for (const auto& p : bad) {
    SCOPED_TRACE("path '" + p + "'");
    h.frames.clear();
    h.offer(id, p, 10);
    EXPECT_TRUE(h.opens.empty()) << "no OpenFile for an unsafe path";
    auto answers = h.of_type(P::FrameType::answer);
    ASSERT_EQ(answers.size(), 1u);
    auto a = P::parse_answer(answers[0].payload);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->status, P::AnswerStatus::refuse);
    EXPECT_EQ(a->file_id, id);
    EXPECT_FALSE(a->note.empty()) << "the sender is told why";
    EXPECT_TRUE(h.closes.empty());
    ++id;
  }
  h.offer(id, "fine/name.bin", 10);
  ASSERT_EQ(h.opens.size(), 1u);
  EXPECT_EQ(h.opens[0].offer.path, "fine/name.bin");
  EXPECT_EQ(h.r.totals().files_failed, bad.size());
}

TEST(ReceiverPaths, RefusedOpenAnswersRefuseAndGoesOn) {
  Harness h;
  h.hello();
  h.offer(0, "a.bin", 10);
  ASSERT_EQ(h.opens.size(), 1u);
  h.opens.clear();
  h.r.on_file_opened(0, make_error(Errc::local_io, "open(/dest/a.bin)", 13), h.now);
  h.collect();
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(P::parse_answer(answers[0].payload)->status, P::AnswerStatus::refuse);
  h.offer(1, "b.bin", 10);
  EXPECT_EQ(h.opens.size(), 1u);
}

// --- END, corrupt input, disconnect ------------------------------------------------------------------

TEST(ReceiverEnd, EndIsAnsweredWithEnd) {
  Harness h;
  h.hello();
  h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
  auto ends = h.of_type(P::FrameType::end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_TRUE(P::parse_end(ends[0].payload).ok());
  EXPECT_TRUE(h.r.ended());
  EXPECT_TRUE(h.closes.empty()) << "the sender closes after END";
}

// A sender whose last file failed locally (it shrank, a read error) ends the
// transfer with that file open: the receiver keeps the partial and answers END.
TEST(ReceiverEnd, EndWhileAFileIsOpenKeepsThePartialAndEnds) {
  Harness h;
  h.start(100);
  h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
  ASSERT_EQ(h.closes_file.size(), 1u);
  EXPECT_FALSE(h.closes_file[0].discard);
  EXPECT_TRUE(h.closes.empty());
  EXPECT_TRUE(h.r.ended());
}

// --- whole-transfer figures ------------------------------------------------------------------------

// Sends `src` as DATA of `file` from `from` on, then drains (an ACK and a progress event).
void send_file(Harness& h, std::uint32_t file, const std::vector<std::byte>& src, std::uint64_t from = 0) {
  for (std::uint64_t off = from; off < src.size(); off += kChunk) {
    h.feed(data_frame(file, off, P::Bytes(src).subspan(off, std::min<std::uint64_t>(kChunk, src.size() - off))));
  }
  h.drained();
}

void commit(Harness& h, std::uint32_t file, const std::vector<std::byte>& src, bool good = true) {
  auto digest_of = src;
  if (!good) digest_of.at(0) ^= std::byte{1};
  h.feed(P::FrameType::commit, P::to_json(P::Commit{file, src.size(), hex128(digest_of)}));
  if (!good) return;
  ASSERT_EQ(h.commits.size(), 1u);
  h.commits.clear();
  h.r.on_file_committed(file, Result<void>(), h.now);
  h.collect();
}

void offer_dir(Harness& h, std::uint32_t id, const std::string& path) {
  P::Offer o;
  o.file_id = id;
  o.path = path;
  o.kind = P::EntryKind::directory;
  o.identity = "dir";
  h.feed(P::FrameType::offer, P::to_json(o));
}

const Event* last_of(const std::vector<Event>& events, EventType t, const std::string& path) {
  const Event* found = nullptr;
  for (const auto& e : events) {
    if (e.type == t && e.path == path) found = &e;
  }
  return found;
}

TEST(ReceiverTransfer, FiguresAreTheSendersHelloPlusThisConnection) {
  // The sender had finished 2 entries (5000 bytes) of 6 (5000 + a + 100) before this connection.
  const auto a = bytes_of(3 * kChunk + 5, 30);
  const std::uint64_t total = 5000 + a.size() + 100;
  Harness h;
  h.hello(TransferProgress{2, 6, 5000, total});
  std::vector<Event> ev;
  auto take = [&] {
    for (auto& e : h.r.take_events()) ev.push_back(std::move(e));
  };
  EXPECT_EQ(h.r.transfer().files_total, 6u);
  EXPECT_EQ(h.r.transfer().bytes_done, 5000u);

  h.offer(2, "a.bin", a.size());
  h.open();
  take();
  const Event* start = last_of(ev, EventType::file_start, "a.bin");
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->transfer.files_done, 2u);
  EXPECT_EQ(start->transfer.bytes_done, 5000u);
  EXPECT_EQ(start->transfer.files_total, 6u);
  EXPECT_EQ(start->transfer.bytes_total, total);
  send_file(h, 2, a);
  take();
  const Event* prog = last_of(ev, EventType::progress, "a.bin");
  ASSERT_NE(prog, nullptr);
  EXPECT_EQ(prog->transfer.bytes_done, 5000 + a.size()) << "what is written of the current file counts";
  EXPECT_EQ(prog->transfer.files_done, 2u);
  commit(h, 2, a);
  take();
  const Event* ver = last_of(ev, EventType::file_verified, "a.bin");
  ASSERT_NE(ver, nullptr);
  EXPECT_EQ(ver->transfer.files_done, 3u);
  EXPECT_EQ(ver->transfer.bytes_done, 5000 + a.size());

  offer_dir(h, 3, "d");
  h.open();
  take();
  const Event* dir = last_of(ev, EventType::file_verified, "d");
  ASSERT_NE(dir, nullptr);
  EXPECT_EQ(dir->offset, 0u) << "a directory's offset is not the previous file's";
  EXPECT_EQ(dir->size, 0u);
  EXPECT_EQ(dir->transfer.files_done, 4u);

  h.offer(4, "../x", 100);  // refused: finished, its size done
  take();
  const Event* bad = last_of(ev, EventType::file_failed, "../x");
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->offset, 0u);
  EXPECT_EQ(bad->transfer.files_done, 5u);
  EXPECT_EQ(bad->transfer.bytes_done, total);

  TransferProgress prev;
  for (const auto& e : ev) {
    SCOPED_TRACE(std::string(event_type_name(e.type)) + " " + e.path);
    EXPECT_LE(e.transfer.files_done, e.transfer.files_total);
    EXPECT_LE(e.transfer.bytes_done, e.transfer.bytes_total);
    EXPECT_GE(e.transfer.bytes_done, prev.bytes_done);
    prev = e.transfer;
  }
}

// The sender's HELLO totals are a count made before its walk: a tree that grew since
// brings more entries than announced, and the receiver raises its totals rather than
// report done == total while entries still arrive.
TEST(ReceiverTransfer, MoreEntriesThanTheHelloSaidRaiseTheTotal) {
  Harness h;
  h.hello(TransferProgress{0, 1, 0, 0});
  offer_dir(h, 0, "d");
  h.open();
  offer_dir(h, 1, "e");
  h.open();
  offer_dir(h, 2, "f");
  h.open();
  const auto ev = h.r.take_events();
  const Event* last = last_of(ev, EventType::file_verified, "f");
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->transfer.files_done, 3u);
  EXPECT_EQ(last->transfer.files_total, 3u) << "raised to what arrived, not done capped at 1";
  for (const auto& e : ev) EXPECT_LE(e.transfer.files_done, e.transfer.files_total);
}

TEST(ReceiverTransfer, WithoutHelloFiguresTotalsAreUnknownAndDoneIsThisConnection) {
  const auto a = bytes_of(2 * kChunk, 31);
  Harness h;
  h.hello();
  h.offer(0, "a.bin", a.size());
  const std::uint64_t held = kChunk;
  h.open(held, a);
  auto ev = h.r.take_events();
  const Event* resume = last_of(ev, EventType::resume, "a.bin");
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(resume->transfer.files_total, 0u) << "unknown";
  EXPECT_EQ(resume->transfer.bytes_total, 0u) << "unknown";
  EXPECT_EQ(resume->transfer.bytes_done, held) << "the resumed part is done";
  send_file(h, 0, a, held);
  commit(h, 0, a);
  ev = h.r.take_events();
  const Event* ver = last_of(ev, EventType::file_verified, "a.bin");
  ASSERT_NE(ver, nullptr);
  EXPECT_EQ(ver->transfer.files_done, 1u);
  EXPECT_EQ(ver->transfer.bytes_done, a.size());
  EXPECT_EQ(ver->transfer.files_total, 0u);
}

TEST(ReceiverTransfer, AFileSentAgainAfterAMismatchCountsOnce) {
  const auto a = bytes_of(2 * kChunk + 1, 32);
  Harness h;
  h.hello(TransferProgress{0, 1, 0, a.size()});
  h.offer(0, "a.bin", a.size());
  h.open();
  send_file(h, 0, a);
  commit(h, 0, a, /*good=*/false);
  auto ev = h.r.take_events();
  const Event* failed = last_of(ev, EventType::file_failed, "a.bin");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->transfer.files_done, 1u) << "failed, as far as the receiver knows";
  EXPECT_EQ(failed->transfer.bytes_done, a.size());
  // Offered again: in progress, not done; its bytes count as they arrive again.
  h.offer(0, "a.bin", a.size());
  h.open();
  ev = h.r.take_events();
  const Event* start = last_of(ev, EventType::file_start, "a.bin");
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->transfer.files_done, 0u);
  EXPECT_EQ(start->transfer.bytes_done, 0u);
  send_file(h, 0, a);
  commit(h, 0, a);
  ev = h.r.take_events();
  const Event* ver = last_of(ev, EventType::file_verified, "a.bin");
  ASSERT_NE(ver, nullptr);
  EXPECT_EQ(ver->transfer.files_done, 1u);
  EXPECT_EQ(ver->transfer.bytes_done, a.size());
  EXPECT_EQ(h.r.totals().files_failed, 0u);
}

TEST(ReceiverTransfer, ASendersFiguresBelowWhatArrivesAreRaised) {
  // More than the sender announced (its count was made before its walk, or it lies):
  // done never above total, and done is what arrived; the total is raised to it.
  Harness h;
  h.hello(TransferProgress{1, 1, 10, 10});
  h.offer(0, "a.bin", 50);
  h.open();
  send_file(h, 0, bytes_of(50, 33));
  auto ev = h.r.take_events();
  const Event* prog = last_of(ev, EventType::progress, "a.bin");
  ASSERT_NE(prog, nullptr);
  EXPECT_EQ(prog->transfer.files_done, 1u);
  EXPECT_EQ(prog->transfer.bytes_done, 60u);
  EXPECT_EQ(prog->transfer.bytes_total, 60u);
  EXPECT_EQ(prog->transfer.files_total, 1u);
}

TEST(ReceiverInput, CorruptHeaderClosesTheConnection) {
  for (std::size_t at : {std::size_t{0}, std::size_t{2}, std::size_t{9}, std::size_t{21}}) {
    SCOPED_TRACE("flipped header byte " + std::to_string(at));
    Harness k;
    k.hello();
    auto wire = P::encode_frame(P::FrameType::end, P::to_json(P::End{0, 0}));
    wire[at] ^= std::byte{0x10};
    k.feed(wire);
    ASSERT_EQ(k.closes.size(), 1u);
    EXPECT_TRUE(k.r.failed());
    EXPECT_FALSE(k.r.ended());
  }
}

TEST(ReceiverInput, BadControlPayloadChecksumClosesTheConnection) {
  Harness h;
  h.hello();
  P::Offer o;
  o.path = "a.bin";
  o.size = 10;
  auto wire = P::encode_frame(P::FrameType::offer, P::to_json(o));
  wire[P::kHeaderSize + 3] ^= std::byte{0x01};  // inside the JSON
  h.feed(wire);
  EXPECT_TRUE(h.opens.empty()) << "a damaged OFFER is never acted upon";
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_TRUE(h.r.failed());
}

TEST(ReceiverInput, DisconnectKeepsThePartial) {
  const auto src = bytes_of(3 * kChunk, 15);
  Harness h;
  h.start(src.size());
  h.feed(data_frame(0, 0, P::Bytes(src).first(kChunk)));
  h.r.on_disconnected(make_error(Errc::connection, "test: reset"), h.now);
  h.collect();
  ASSERT_EQ(h.closes_file.size(), 1u);
  EXPECT_FALSE(h.closes_file[0].discard) << "the journal is kept for a resume";
  EXPECT_TRUE(h.r.failed());
}

// --- limits: deadlines and small frames before the handshake -------------------------------

constexpr auto kHandshake = std::chrono::seconds(10);  // ReceiverConfig's defaults
constexpr auto kPeer = std::chrono::seconds(60);
constexpr auto kBusy = std::chrono::seconds(120);

// Advances the harness clock to `t` and fires the session's timer as a driver would.
void fire_at(Harness& h, Clock::time_point t) {
  h.now = t;
  h.r.on_timeout(h.now);
  h.collect();
}

TEST(ReceiverLimits, NoHelloWithinTheHandshakeTimeoutClosesWithoutAFrame) {
  Harness h;
  ASSERT_EQ(h.r.next_deadline(), kT0 + kHandshake);
  EXPECT_FALSE(h.r.handshake_complete());
  fire_at(h, kT0 + kHandshake - std::chrono::milliseconds(1));
  EXPECT_TRUE(h.closes.empty()) << "not before the deadline";
  // Bytes that do not complete a frame (a trickled HELLO) do not move the deadline.
  auto hello = P::frame_of(P::FrameType::hello, "{}");
  h.feed(std::vector<std::byte>(hello.begin(), hello.begin() + 10));
  EXPECT_EQ(h.r.next_deadline(), kT0 + kHandshake);
  fire_at(h, kT0 + kHandshake);
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_FALSE(h.closes[0].flush) << "a peer that may not read is dropped at once";
  EXPECT_EQ(h.closes[0].reason.code, Errc::connection);
  EXPECT_TRUE(h.frames.empty());
  EXPECT_TRUE(h.r.failed());
  EXPECT_EQ(h.r.next_deadline(), std::nullopt);
}

TEST(ReceiverLimits, OnlySmallFramesBeforeTheHandshake) {
  Harness h;
  EXPECT_EQ(h.r.max_payload(), P::kMaxHandshakePayload);
  // A header announcing a maximum-length DATA frame closes at once: nothing is buffered.
  auto head = P::encode_header(P::FrameType::data, static_cast<std::uint32_t>(P::kMaxPayload), 0);
  h.feed(std::vector<std::byte>(head.begin(), head.end()));
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_TRUE(h.r.failed());
  // After HELLO the full length is allowed.
  Harness after;
  after.hello();
  EXPECT_TRUE(after.r.handshake_complete());
  EXPECT_EQ(after.r.max_payload(), P::kMaxPayload);
  after.feed(std::vector<std::byte>(head.begin(), head.end()));
  EXPECT_TRUE(after.closes.empty()) << "waits for the rest of the frame";
}

TEST(ReceiverLimits, PingsAreNotProgressButFramesAre) {
  Harness h;
  h.now = kT0 + std::chrono::seconds(1);
  h.hello();
  ASSERT_EQ(h.r.next_deadline(), h.now + kPeer);
  const auto after_hello = h.now;
  for (int i = 1; i <= 5; ++i) {
    h.now = after_hello + std::chrono::seconds(10 * i);
    auto ping = P::encode_nonce(static_cast<std::uint64_t>(i));
    h.feed(P::encode_frame(P::FrameType::ping, P::Bytes(ping)));
  }
  EXPECT_EQ(h.of_type(P::FrameType::pong).size(), 5u) << "PINGs are answered";
  EXPECT_EQ(h.r.next_deadline(), after_hello + kPeer) << "but do not move the deadline";
  // An OFFER is progress; while it is being opened the clock stops.
  h.offer(0, "a.bin", 3 * kChunk);
  EXPECT_EQ(h.r.next_deadline(), std::nullopt);
  h.now += std::chrono::minutes(5);  // a slow open is the receiver's own time
  h.open();
  EXPECT_EQ(h.r.next_deadline(), h.now + kPeer);
  fire_at(h, h.now + kPeer);
  ASSERT_EQ(h.closes.size(), 1u);
  EXPECT_EQ(h.closes[0].reason.code, Errc::connection);
  EXPECT_NE(h.closes[0].reason.message().find("no progress"), std::string::npos) << h.closes[0].reason.message();
}

TEST(ReceiverLimits, ADataFrameArrivingSlowlyIsProgressATrickleIsNot) {
  const auto src = bytes_of(64 * 1024, 23);
  Harness h;
  h.hello();
  P::Offer o;
  o.path = "a.bin";
  o.size = src.size();
  o.identity = "x";
  o.block_size = src.size();  // one 64 KiB block
  h.feed(P::FrameType::offer, P::to_json(o));
  h.open();
  const auto frame = data_frame(0, 0, P::Bytes(src));
  const auto opened = h.now;
  // 1 KiB a second: a slow link, but each 16 KiB of the frame is progress.
  std::size_t at = 0;
  for (int s = 1; s <= 40; ++s) {
    h.now = opened + std::chrono::seconds(s);
    h.feed(std::vector<std::byte>(frame.begin() + static_cast<std::ptrdiff_t>(at),
                                  frame.begin() + static_cast<std::ptrdiff_t>(at + 1024)));
    at += 1024;
  }
  EXPECT_GE(*h.r.next_deadline(), opened + std::chrono::seconds(32) + kPeer);
  // The same frame a few bytes a second is not.
  Harness t;
  t.hello();
  t.feed(P::FrameType::offer, P::to_json(o));
  t.open();
  for (int s = 1; s <= 59; ++s) {
    t.now = opened + std::chrono::seconds(s);
    t.feed(std::vector<std::byte>(frame.begin() + 100 * (s - 1), frame.begin() + 100 * s));
  }
  EXPECT_EQ(t.r.next_deadline(), opened + kPeer);
}

TEST(ReceiverLimits, ASenderWaitingForOurWritesOrCommitIsNotReaped) {
  const auto src = bytes_of(2 * kChunk, 21);
  Harness h;
  h.defer_writes = true;
  h.start(src.size());
  h.feed(all_data_frames(src));
  EXPECT_EQ(h.r.next_deadline(), std::nullopt) << "writes in flight: the sender waits for us";
  h.now += std::chrono::minutes(10);
  h.complete_write(0);
  EXPECT_EQ(h.r.next_deadline(), std::nullopt) << "one write still in flight";
  h.complete_write(0);
  EXPECT_EQ(h.r.next_deadline(), h.now + kPeer) << "the clock restarts when our work ends";
  h.feed(P::FrameType::commit, P::to_json(P::Commit{0, src.size(), hex128(src)}));
  ASSERT_EQ(h.commits.size(), 1u);
  EXPECT_EQ(h.r.next_deadline(), std::nullopt) << "committing (fsync, rename) is ours";
  h.now += std::chrono::minutes(10);
  h.r.on_file_committed(0, Result<void>(), h.now);
  h.collect();
  EXPECT_EQ(h.r.next_deadline(), h.now + kPeer);
}

TEST(ReceiverLimits, AResumeGivesTheSenderTimeToHashWhatItSkips) {
  const std::uint64_t size = 1024ull * kChunk;  // 4 MiB: 62 ms at the minimum hash rate
  const auto src = bytes_of(size, 22);
  Harness h;
  h.hello();
  h.offer(0, "a.bin", size);
  h.open(size / 2, src);
  const auto allowance = std::chrono::milliseconds((size / 2) / (ReceiverSession::kMinSenderHashRate / 1000));
  EXPECT_GT(allowance.count(), 0);
  EXPECT_EQ(h.r.next_deadline(), h.now + allowance + kPeer);
}

TEST(ReceiverLimits, AWaitForABusyPathIsRefusedAfterTheBusyTimeout) {
  Harness h;
  h.hello();
  h.offer(3, "a.bin", 100);
  ASSERT_EQ(h.opens.size(), 1u);
  h.r.on_path_busy(3, h.now);
  EXPECT_TRUE(h.r.waiting_for_path());
  EXPECT_EQ(h.r.next_deadline(), h.now + kBusy);
  fire_at(h, h.now + kBusy);
  EXPECT_FALSE(h.r.waiting_for_path()) << "the driver forgets the wait";
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  auto a = P::parse_answer(answers[0].payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->file_id, 3u);
  EXPECT_EQ(a->status, P::AnswerStatus::refuse);
  EXPECT_NE(a->note.find("busy"), std::string::npos) << a->note;
  EXPECT_TRUE(h.closes.empty()) << "refused, not fatal: the sender goes on";
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
  // The driver's late completion of the abandoned open is ignored.
  h.opens.clear();
  h.r.on_file_opened(3, OpenedFile{}, h.now);
  h.collect();
  EXPECT_EQ(h.of_type(P::FrameType::answer).size(), 1u);
}

TEST(ReceiverLimits, APathReleasedInTimeEndsTheWait) {
  Harness h;
  h.hello();
  h.offer(0, "a.bin", 100);
  h.r.on_path_busy(0, h.now);
  h.now += kBusy / 2;
  h.r.on_path_free(0);
  EXPECT_FALSE(h.r.waiting_for_path());
  EXPECT_EQ(h.r.next_deadline(), std::nullopt) << "the open is the receiver's work";
  fire_at(h, h.now + kBusy);  // a slow open past the busy deadline is not refused
  EXPECT_TRUE(h.of_type(P::FrameType::answer).empty());
  h.open();
  EXPECT_FALSE(h.r.waiting_for_path());
  EXPECT_EQ(h.r.next_deadline(), h.now + kPeer);
  ASSERT_EQ(h.of_type(P::FrameType::answer).size(), 1u);
}

TEST(ReceiverLimits, ASenderStayingAfterEndIsReaped) {
  Harness h;
  h.hello();
  h.feed(P::FrameType::end, P::to_json(P::End{0, 0}));
  ASSERT_TRUE(h.r.ended());
  EXPECT_EQ(h.r.next_deadline(), h.now + kPeer);
  fire_at(h, h.now + kPeer);
  EXPECT_EQ(h.closes.size(), 1u);
}

}  // namespace
}  // namespace ferry::receiver

// --- version 3: eager files ---------------------------------------------------------------

namespace ferry::receiver {
namespace {

// OFFER (eager), DATA (unless empty) and COMMIT of a small file, back to back; `digest`
// overrides the COMMIT's, `damage` flips a bit of the DATA's block.
std::vector<std::byte> eager_frames(std::uint32_t id, const std::string& path, const std::vector<std::byte>& data,
                                    std::optional<std::string> digest = std::nullopt, bool damage = false) {
  P::Offer o;
  o.file_id = id;
  o.path = path;
  o.size = data.size();
  o.mtime_ns = 5;
  o.mode = 0640;
  o.identity = "size=" + std::to_string(data.size()) + ",mtime_ns=5";
  o.block_size = kChunk;
  o.eager = true;
  std::vector<std::byte> wire = P::encode_frame(P::FrameType::offer, P::to_json(o));
  if (!data.empty()) {
    auto d = damage ? bad_data_frame(id, 0, data) : data_frame(id, 0, data);
    wire.insert(wire.end(), d.begin(), d.end());
  }
  auto c = P::encode_frame(P::FrameType::commit,
                           P::to_json(P::Commit{id, data.size(), digest.value_or(hex128(data))}));
  wire.insert(wire.end(), c.begin(), c.end());
  return wire;
}

// The bodies of the frames of type `t` the session sent, each parsed by `parse`.
template <class Parse>
auto parsed_of(const Harness& h, P::FrameType t, Parse parse) {
  std::vector<std::remove_cvref_t<decltype(*parse(P::Bytes{}))>> out;
  for (const auto& f : h.of_type(t)) {
    auto v = parse(f.payload);
    EXPECT_TRUE(v.ok());
    if (v) out.push_back(*v);
  }
  return out;
}

std::vector<P::Verdict> verdicts(const Harness& h) { return parsed_of(h, P::FrameType::verdict, P::parse_verdict); }

TEST(ReceiverEager, FileIsVerifiedInMemoryAndAnsweredAfterItsBatch) {
  Harness h;
  h.hello();
  h.frames.clear();
  const auto a = bytes_of(3000, 1), b = bytes_of(0, 2), c = bytes_of(kChunk, 3);
  auto wire = eager_frames(1, "t/a", a);
  for (auto& more : {eager_frames(2, "t/b", b), eager_frames(3, "t/c", c)}) wire.insert(wire.end(), more.begin(), more.end());
  h.feed(wire);
  ASSERT_EQ(h.smalls.size(), 3u);
  EXPECT_EQ(h.smalls[0].data, a);
  EXPECT_EQ(h.smalls[0].offer.path, "t/a");
  EXPECT_EQ(h.smalls[0].offer.mode, 0640u);
  EXPECT_TRUE(h.smalls[1].data.empty());
  EXPECT_EQ(h.smalls[2].data, c);
  EXPECT_TRUE(h.frames.empty()) << "no ANSWER, no ACK, no VERDICT before the batch is durable";
  EXPECT_EQ(h.r.eager_pending(), 3u);
  // The batch completes out of order: each VERDICT names its file.
  h.r.on_file_committed(3, Result<void>(), h.now);
  h.r.on_file_committed(1, Result<void>(), h.now);
  h.r.on_file_committed(2, make_error(Errc::local_io, "rename(/d/t/b): No space left on device"), h.now);
  h.collect();
  auto v = verdicts(h);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].file_id, 3u);
  EXPECT_EQ(v[0].status, P::VerdictStatus::verified);
  EXPECT_EQ(v[1].file_id, 1u);
  EXPECT_EQ(v[2].file_id, 2u);
  EXPECT_EQ(v[2].status, P::VerdictStatus::failed);
  EXPECT_EQ(h.r.totals().files_verified, 2u);
  EXPECT_EQ(h.r.totals().bytes_verified, a.size() + c.size());
  EXPECT_EQ(h.r.totals().files_failed, 1u);
  EXPECT_EQ(h.r.eager_pending(), 0u);
  EXPECT_FALSE(h.r.failed());
}

TEST(ReceiverEager, ArrivesInAnySplitOfTheInput) {
  Harness h;
  h.hello();
  const auto a = bytes_of(2500, 4);
  const auto wire = eager_frames(1, "t/a", a);
  for (std::size_t i = 0; i < wire.size(); i += 7) {
    h.feed(std::vector<std::byte>(wire.begin() + static_cast<std::ptrdiff_t>(i),
                                  wire.begin() + static_cast<std::ptrdiff_t>(std::min(wire.size(), i + 7))));
  }
  ASSERT_EQ(h.smalls.size(), 1u);
  EXPECT_EQ(h.smalls[0].data, a) << "the block is copied: the input buffer moves on";
}

TEST(ReceiverEager, DamagedDataOrWrongDigestFailsTheFileNotTheConnection) {
  Harness h;
  h.hello();
  h.frames.clear();
  const auto a = bytes_of(3000, 5);
  h.feed(eager_frames(1, "t/a", a, std::nullopt, /*damage=*/true));
  h.feed(eager_frames(2, "t/b", a, std::string(32, '0')));
  h.feed(eager_frames(3, "t/c", a));
  ASSERT_EQ(h.smalls.size(), 1u);
  EXPECT_EQ(h.smalls[0].file_id, 3u);
  auto v = verdicts(h);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].file_id, 1u);
  EXPECT_EQ(v[0].status, P::VerdictStatus::failed);
  EXPECT_EQ(v[1].file_id, 2u);
  EXPECT_EQ(v[1].reason.find(hex128(a)), std::string::npos) << "no digest of the receiver's in the reason";
  EXPECT_EQ(h.r.totals().chunks_rejected, 1u);
  EXPECT_FALSE(h.r.failed());
}

TEST(ReceiverEager, UnsafePathIsRefusedAndItsDataDropped) {
  Harness h;
  h.hello();
  h.frames.clear();
  h.feed(eager_frames(1, "../x", bytes_of(100, 6)));
  h.feed(eager_frames(2, "t/ok", bytes_of(100, 7)));
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  auto a = P::parse_answer(answers[0].payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->file_id, 1u);
  EXPECT_EQ(a->status, P::AnswerStatus::refuse);
  ASSERT_EQ(h.smalls.size(), 1u);
  EXPECT_EQ(h.smalls[0].offer.path, "t/ok");
  EXPECT_FALSE(h.r.failed());
}

TEST(ReceiverEager, MoreThanTheBoundInFlightIsAViolation) {
  Harness h;
  h.hello();
  const auto one = bytes_of(10, 8);
  for (std::uint32_t i = 0; i < P::kMaxEagerFiles; ++i) h.feed(eager_frames(i, "t/f" + std::to_string(i), one));
  EXPECT_EQ(h.r.eager_pending(), P::kMaxEagerFiles);
  EXPECT_FALSE(h.r.failed());
  h.feed(eager_frames(P::kMaxEagerFiles, "t/over", one));
  expect_violation(h);
}

TEST(ReceiverEager, MoreThanTheByteBoundInFlightIsAViolation) {
  Harness h(64 * 1024 * 1024);
  h.hello();
  P::Offer o;
  o.file_id = 1;
  o.path = "t/big";
  o.block_size = static_cast<std::uint32_t>(P::kMaxChunkSize);
  o.size = 9 * 1024 * 1024;
  o.identity = "x";
  o.eager = true;
  const auto big = bytes_of(static_cast<std::size_t>(o.size), 10);
  P::FileDigest d;
  d.add_block(P::block_digest(big, 0));
  h.feed(P::FrameType::offer, P::to_json(o));
  h.feed(data_frame(1, 0, big));
  h.feed(P::FrameType::commit, P::to_json(P::Commit{1, o.size, d.hex()}));
  ASSERT_EQ(h.smalls.size(), 1u);
  EXPECT_FALSE(h.r.failed());
  o.file_id = 2;
  o.path = "t/big2";
  o.size = P::kMaxEagerBytes - 9 * 1024 * 1024 + 1;  // one byte past the bound in all
  h.feed(P::FrameType::offer, P::to_json(o));
  expect_violation(h);
}

// An eager OFFER of file 1 at "t/a" of `size` bytes (blocks of kChunk).
P::Offer eager_offer(std::uint64_t size) {
  P::Offer o;
  o.file_id = 1;
  o.path = "t/a";
  o.size = size;
  o.identity = "x";
  o.block_size = kChunk;
  o.eager = true;
  return o;
}

TEST(ReceiverEager, MisplacedFramesAreViolations) {
  const auto a = bytes_of(3000, 9);
  struct Misplaced {
    const char* what;
    std::uint64_t offered;
    std::vector<std::byte> then;  // fed after the OFFER (nothing: the OFFER alone)
  };
  const std::vector<Misplaced> cases{
      {"COMMIT before the DATA", a.size(),
       P::encode_frame(P::FrameType::commit, P::to_json(P::Commit{1, a.size(), hex128(a)}))},
      {"DATA that is not the whole file", a.size(), data_frame(1, 0, P::Bytes(a).first(1000))},
      {"an eager OFFER of a file larger than one block", kChunk + 1, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    Harness h;
    h.hello();
    h.feed(P::FrameType::offer, P::to_json(eager_offer(c.offered)));
    if (!c.then.empty()) h.feed(c.then);
    expect_violation(h);
  }
  {  // END while eager files are being committed
    Harness h;
    h.hello();
    h.feed(eager_frames(1, "t/a", a));
    h.feed(P::FrameType::end, P::to_json(P::End{1, a.size()}));
    expect_violation(h);
  }
}

TEST(ReceiverEager, DirectoryAnswerSaysWhetherItWasCreated) {
  for (bool created : {true, false}) {
    Harness h;
    h.hello();
    P::Offer o;
    o.file_id = 0;
    o.path = "t";
    o.kind = P::EntryKind::directory;
    o.identity = "dir";
    h.feed(P::FrameType::offer, P::to_json(o));
    ASSERT_EQ(h.opens.size(), 1u);
    OpenedFile made;
    made.created = created;
    h.r.on_file_opened(0, made, h.now);
    h.collect();
    auto answers = h.of_type(P::FrameType::answer);
    ASSERT_EQ(answers.size(), 1u);
    auto a = P::parse_answer(answers[0].payload);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->created, created);
  }
}

// --- version 6: eager directories ------------------------------------------------------

// An eager OFFER of directory `id` at `path` (size 0, no block size).
std::vector<std::byte> eager_dir_frame(std::uint32_t id, const std::string& path) {
  P::Offer o;
  o.file_id = id;
  o.path = path;
  o.kind = P::EntryKind::directory;
  o.mode = 0755;
  o.identity = "dir";
  o.eager = true;
  return P::encode_frame(P::FrameType::offer, P::to_json(o));
}

std::vector<P::Answer> answers_of(const Harness& h) { return parsed_of(h, P::FrameType::answer, P::parse_answer); }

TEST(ReceiverEager, DirectoryIsStagedAndAcceptedAfterItsBatch) {
  Harness h;
  h.hello();
  h.frames.clear();
  h.feed(eager_dir_frame(1, "t/s"));
  ASSERT_EQ(h.smalls.size(), 1u);
  EXPECT_EQ(h.smalls[0].file_id, 1u);
  EXPECT_EQ(h.smalls[0].offer.kind, P::EntryKind::directory);
  EXPECT_EQ(h.smalls[0].offer.path, "t/s");
  EXPECT_TRUE(h.smalls[0].data.empty());
  EXPECT_TRUE(h.opens.empty()) << "made in the batch, not opened";
  EXPECT_TRUE(h.frames.empty()) << "no ANSWER before the batch made it";
  EXPECT_EQ(h.r.eager_pending(), 1u);
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle) << "no DATA or COMMIT follows";
  h.r.on_file_committed(1, Result<void>(), h.now);
  h.collect();
  auto a = answers_of(h);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].file_id, 1u);
  EXPECT_EQ(a[0].status, P::AnswerStatus::accept);
  EXPECT_EQ(a[0].offset, 0u);
  EXPECT_TRUE(a[0].held.empty());
  EXPECT_FALSE(a[0].created);
  EXPECT_TRUE(h.of_type(P::FrameType::verdict).empty()) << "a directory never gets a VERDICT";
  EXPECT_EQ(h.r.eager_pending(), 0u);
  EXPECT_EQ(h.r.totals().files_verified, 1u);
  EXPECT_EQ(h.r.totals().files_failed, 0u);
  bool verified = false;
  for (const auto& e : h.r.take_events()) verified |= e.type == EventType::file_verified && e.path == "t/s";
  EXPECT_TRUE(verified);
  EXPECT_FALSE(h.r.failed());
}

// The batch's error is the refusal's note; local_io says whether it was the receiver's
// own I/O (an obstacle in the way is not).
TEST(ReceiverEager, DirectoryTheBatchCouldNotMakeIsRefusedWithTheError) {
  struct Case {
    Error error;
    bool local_io;
  };
  for (const Case& c : {Case{make_error(Errc::local_io, "mkdir(/d/t/s)", ENOSPC), true},
                        Case{make_error(Errc::protocol, "unsafe path '/d/t/s': a symlink or file is in the way"),
                             false}}) {
    SCOPED_TRACE(c.error.message());
    Harness h;
    h.hello();
    h.frames.clear();
    h.feed(eager_dir_frame(1, "t/s"));
    ASSERT_EQ(h.smalls.size(), 1u);
    h.r.on_file_committed(1, c.error, h.now);
    h.collect();
    auto a = answers_of(h);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].file_id, 1u);
    EXPECT_EQ(a[0].status, P::AnswerStatus::refuse);
    EXPECT_EQ(a[0].note, c.error.message());
    EXPECT_EQ(a[0].local_io, c.local_io);
    EXPECT_TRUE(h.of_type(P::FrameType::verdict).empty());
    EXPECT_EQ(h.r.totals().files_failed, 1u);
    EXPECT_EQ(h.r.totals().files_verified, 0u);
    EXPECT_EQ(h.r.eager_pending(), 0u);
    EXPECT_FALSE(h.r.failed()) << "a refusal, not an end of the connection";
  }
}

TEST(ReceiverEager, DirectoryWithAnUnsafePathIsRefusedAtOnce) {
  for (const std::string& path : {std::string("../x"), std::string("t/../x"), std::string("/abs"),
                                  std::string("t//s"), std::string("t/./s")}) {
    SCOPED_TRACE(path);
    Harness h;
    h.hello();
    h.frames.clear();
    h.feed(eager_dir_frame(1, path));
    EXPECT_TRUE(h.smalls.empty()) << "nothing to make";
    EXPECT_EQ(h.r.eager_pending(), 0u);
    auto a = answers_of(h);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].file_id, 1u);
    EXPECT_EQ(a[0].status, P::AnswerStatus::refuse);
    EXPECT_EQ(a[0].note.rfind("unsafe path: ", 0), 0u) << a[0].note;
    EXPECT_EQ(h.r.totals().files_failed, 1u);
    EXPECT_FALSE(h.r.failed());
    // The session goes on: the next eager file is taken.
    h.feed(eager_frames(2, "t/ok", bytes_of(100, 11)));
    ASSERT_EQ(h.smalls.size(), 1u);
    EXPECT_EQ(h.smalls[0].offer.path, "t/ok");
  }
}

// A tree's eager directory and the eager files inside it arrive in one input: all are
// staged in order, and each gets its one answer (ANSWER for the directory, VERDICT for
// the files).
TEST(ReceiverEager, FilesAfterAnEagerDirectoryInTheSameInputAreTaken) {
  Harness h;
  h.hello();
  h.frames.clear();
  const auto a = bytes_of(700, 12), b = bytes_of(kChunk, 13);
  auto wire = eager_dir_frame(1, "t/s");
  for (auto& more : {eager_frames(2, "t/s/a", a), eager_dir_frame(3, "t/s/u"), eager_frames(4, "t/s/u/b", b)}) {
    wire.insert(wire.end(), more.begin(), more.end());
  }
  h.feed(wire);
  ASSERT_EQ(h.smalls.size(), 4u);
  EXPECT_EQ(h.smalls[0].offer.kind, P::EntryKind::directory);
  EXPECT_EQ(h.smalls[1].offer.path, "t/s/a");
  EXPECT_EQ(h.smalls[1].data, a);
  EXPECT_EQ(h.smalls[2].offer.kind, P::EntryKind::directory);
  EXPECT_EQ(h.smalls[2].offer.path, "t/s/u");
  EXPECT_EQ(h.smalls[3].offer.path, "t/s/u/b");
  EXPECT_EQ(h.smalls[3].data, b);
  EXPECT_TRUE(h.frames.empty());
  EXPECT_EQ(h.r.eager_pending(), 4u);
  for (std::uint32_t id = 1; id <= 4; ++id) h.r.on_file_committed(id, Result<void>(), h.now);
  h.collect();
  auto answers = answers_of(h);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].file_id, 1u);
  EXPECT_EQ(answers[1].file_id, 3u);
  EXPECT_EQ(answers[0].status, P::AnswerStatus::accept);
  EXPECT_EQ(answers[1].status, P::AnswerStatus::accept);
  auto v = verdicts(h);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].file_id, 2u);
  EXPECT_EQ(v[1].file_id, 4u);
  EXPECT_EQ(v[0].status, P::VerdictStatus::verified);
  EXPECT_EQ(v[1].status, P::VerdictStatus::verified);
  EXPECT_EQ(h.r.totals().files_verified, 4u);
  EXPECT_EQ(h.r.totals().bytes_verified, a.size() + b.size());
  EXPECT_EQ(h.r.eager_pending(), 0u);
  // END is fine once all are answered.
  h.feed(P::FrameType::end, P::to_json(P::End{5, a.size() + b.size()}));
  EXPECT_EQ(h.of_type(P::FrameType::end).size(), 1u);
  EXPECT_FALSE(h.r.failed());
}

// --- version 4: check and dry-run sessions (receiver/receiver_inspect.cpp) -----------------

P::Commit commit_of(std::uint32_t id, const std::vector<std::byte>& data) {
  return P::Commit{id, data.size(), file_digest(data).hex()};
}
std::vector<P::CheckReply> checks_of(const Harness& h) { return parsed_of(h, P::FrameType::check, P::parse_check); }
// No writing action ever: the session's whole output in check and dry-run sessions.
void expect_nothing_written(const Harness& h) {
  EXPECT_TRUE(h.opens.empty());
  EXPECT_EQ(h.writes, 0u);
  EXPECT_TRUE(h.commits.empty());
  EXPECT_TRUE(h.smalls.empty());
  EXPECT_TRUE(h.closes_file.empty());
}

TEST(ReceiverInspect, CheckComparesDigestsAndNeverRevealsItsOwn) {
  Harness h;
  h.hello(std::nullopt, P::Purpose::check);
  const auto data = bytes_of(3 * kChunk + 5, 1);
  h.offer(0, "a.bin", data.size());
  ASSERT_EQ(h.digests.size(), 1u);
  EXPECT_EQ(h.digests[0].offer.block_size, kChunk);
  h.feed(P::FrameType::commit, P::to_json(commit_of(0, data)));  // the sender was faster
  EXPECT_TRUE(checks_of(h).empty()) << "no answer before the receiver's own digest";
  FinalFile f{FinalFile::Kind::file, data.size(), false, file_digest(data), {}, false};
  h.r.on_final_digested(0, f, h.now);
  h.collect();
  ASSERT_EQ(checks_of(h).size(), 1u);
  EXPECT_EQ(checks_of(h)[0].result, P::CheckResult::identical);
  // Another file: the receiver's digest is ready first, ANSWER asks for the COMMIT;
  // the content differs; the CHECK carries no digest.
  h.offer(1, "b.bin", data.size());
  auto other = data;
  other[7] ^= std::byte{1};
  h.r.on_final_digested(1, FinalFile{FinalFile::Kind::file, data.size(), false, file_digest(other), {}, false}, h.now);
  h.collect();
  EXPECT_EQ(h.of_type(P::FrameType::answer).size(), 1u);
  h.feed(P::FrameType::commit, P::to_json(commit_of(1, data)));
  ASSERT_EQ(checks_of(h).size(), 2u);
  EXPECT_EQ(checks_of(h)[1].result, P::CheckResult::different);
  EXPECT_EQ(checks_of(h)[1].reason, "content");
  const std::string body(reinterpret_cast<const char*>(h.of_type(P::FrameType::check)[1].payload.data()),
                         h.of_type(P::FrameType::check)[1].payload.size());
  EXPECT_EQ(body.find(file_digest(other).hex()), std::string::npos);
  EXPECT_FALSE(h.r.failed());
  expect_nothing_written(h);
}

TEST(ReceiverInspect, MissingPartialAndOtherSizeAreAnsweredWithoutTheCommit) {
  Harness h;
  h.hello(std::nullopt, P::Purpose::check);
  h.offer(0, "gone.bin", 10);
  h.r.on_final_digested(0, FinalFile{}, h.now);
  h.collect();
  h.offer(1, "half.bin", 10);
  h.r.on_final_digested(1, FinalFile{FinalFile::Kind::missing, 0, true, {}, {}, false}, h.now);
  h.collect();
  h.offer(2, "short.bin", 10);
  h.r.on_final_digested(2, FinalFile{FinalFile::Kind::file, 9, false, {}, {}, false}, h.now);
  h.collect();
  // A COMMIT that crossed the CHECK on the wire is dropped, not a violation.
  h.feed(P::FrameType::commit, P::to_json(P::Commit{2, 10, std::string(32, 'a')}));
  auto c = checks_of(h);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].result, P::CheckResult::missing);
  EXPECT_EQ(c[1].result, P::CheckResult::partial);
  EXPECT_EQ(c[2].result, P::CheckResult::different);
  EXPECT_EQ(c[2].reason, "size");
  EXPECT_FALSE(h.r.failed());
  expect_nothing_written(h);
}

// A hostile sender: DATA in a check session is a violation, and nothing is written.
TEST(ReceiverInspect, DataInACheckSessionIsAViolation) {
  Harness h;
  h.hello(std::nullopt, P::Purpose::check);
  const auto data = bytes_of(100, 2);
  h.offer(0, "a.bin", data.size());
  h.feed(data_frame(0, 0, data));
  expect_violation(h);
  expect_nothing_written(h);
}

TEST(ReceiverInspect, EagerOfferAndSecondCommitAreViolations) {
  {
    Harness h;
    h.hello(std::nullopt, P::Purpose::check);
    P::Offer o;
    o.path = "e.txt";
    o.size = 3;
    o.block_size = kChunk;
    o.eager = true;
    h.feed(P::FrameType::offer, P::to_json(o));
    expect_violation(h);
    expect_nothing_written(h);
  }
  {
    Harness h;
    h.hello(std::nullopt, P::Purpose::check);
    const auto data = bytes_of(10, 3);
    h.offer(0, "a.bin", data.size());
    h.feed(P::FrameType::commit, P::to_json(commit_of(0, data)));
    h.feed(P::FrameType::commit, P::to_json(commit_of(0, data)));
    expect_violation(h);
    expect_nothing_written(h);
  }
  {
    Harness h;  // an OFFER while the receiver still hashes: one look at a time
    h.hello(std::nullopt, P::Purpose::check);
    h.offer(0, "a.bin", 10);
    h.offer(1, "b.bin", 10);
    expect_violation(h);
    EXPECT_EQ(h.digests.size(), 1u);
  }
}

TEST(ReceiverInspect, DryRunAnswersAsATransferWouldAndRefusesCommitAndData) {
  Harness h;
  h.hello(std::nullopt, P::Purpose::dry_run);
  const auto data = bytes_of(4 * kChunk, 4);
  h.offer(0, "a.bin", data.size());
  ASSERT_EQ(h.probes.size(), 1u);
  OpenedFile planned;
  planned.offset = kChunk;
  planned.held.push_back({2 * kChunk, kChunk, 0});
  h.r.on_file_probed(0, planned, h.now);
  h.collect();
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  auto a = P::parse_answer(answers[0].payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->offset, kChunk);
  ASSERT_EQ(a->held.size(), 1u);
  EXPECT_EQ(a->held[0].offset, 2 * kChunk);
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
  h.feed(P::FrameType::commit, P::to_json(commit_of(0, data)));
  expect_violation(h);
  expect_nothing_written(h);

  Harness d;
  d.hello(std::nullopt, P::Purpose::dry_run);
  d.offer(0, "a.bin", data.size());
  d.feed(data_frame(0, 0, P::Bytes(data).first(kChunk)));
  expect_violation(d);
  expect_nothing_written(d);
}

}  // namespace
}  // namespace ferry::receiver

// --- version 4: symlinks -----------------------------------------------------------------

namespace ferry::receiver {
namespace {

std::string link_offer(std::uint32_t id, const std::string& path, const std::string& target) {
  P::Offer o;
  o.file_id = id;
  o.path = path;
  o.kind = P::EntryKind::symlink;
  o.mtime_ns = 5;
  o.mode = 0777;
  o.identity = "symlink";
  o.target = target;
  return P::to_json(o);
}

std::optional<P::Answer> only_answer(const Harness& h) {
  auto answers = h.of_type(P::FrameType::answer);
  EXPECT_EQ(answers.size(), 1u);
  if (answers.size() != 1) return std::nullopt;
  auto a = P::parse_answer(answers[0].payload);
  EXPECT_TRUE(a.ok());
  return a ? std::optional<P::Answer>(*a) : std::nullopt;
}

TEST(ReceiverLinks, ALinkIsMadeByTheDriverAndAnsweredWithoutData) {
  Harness h;
  h.hello();
  h.frames.clear();
  h.feed(P::FrameType::offer, link_offer(0, "d/l", "/etc/passwd"));
  ASSERT_EQ(h.opens.size(), 1u) << "the driver makes the link";
  EXPECT_EQ(h.opens[0].offer.kind, P::EntryKind::symlink);
  EXPECT_EQ(h.opens[0].offer.target, "/etc/passwd") << "stored verbatim under the default policy";
  EXPECT_TRUE(h.of_type(P::FrameType::answer).empty()) << "answered once it is made";
  h.opens.clear();
  h.r.on_file_opened(0, OpenedFile{}, h.now);
  h.collect();
  auto a = only_answer(h);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, P::AnswerStatus::accept);
  EXPECT_EQ(a->offset, 0u);
  EXPECT_FALSE(a->created);
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
  EXPECT_EQ(h.r.totals().files_verified, 1u);
  bool verified = false;
  for (const auto& e : h.r.take_events()) verified |= e.type == EventType::file_verified && e.detail == "symlink";
  EXPECT_TRUE(verified);
}

TEST(ReceiverLinks, DataOrCommitForALinkIsAViolation) {
  {
    Harness h;
    h.hello();
    h.feed(P::FrameType::offer, link_offer(0, "l", "x"));
    h.opens.clear();
    h.r.on_file_opened(0, OpenedFile{}, h.now);
    h.collect();
    auto d = bytes_of(10, 9);
    h.feed(data_frame(0, 0, d));
    expect_violation(h);
    EXPECT_EQ(h.writes, 0u);
  }
  {
    Harness h;
    h.hello();
    h.feed(P::FrameType::offer, link_offer(0, "l", "x"));
    h.opens.clear();
    h.r.on_file_opened(0, OpenedFile{}, h.now);
    h.collect();
    h.feed(P::FrameType::commit, P::to_json(P::Commit{0, 0, std::string(32, '0')}));
    expect_violation(h);
  }
  {
    Harness h;  // a link with a size is a malformed OFFER
    h.hello();
    h.feed(P::FrameType::offer,
           R"({"file":0,"path":"l","kind":"symlink","size":3,"mtime_ns":0,"mode":511,"identity":"s","target":"x"})");
    expect_violation(h);
    EXPECT_TRUE(h.opens.empty());
  }
}

TEST(ReceiverLinks, NoLinksRefusesEveryLinkAndSafeLinksTheEscapingOnes) {
  struct Case {
    LinkPolicy policy;
    std::string path, target;
    bool made;
  };
  const std::vector<Case> cases = {
      {LinkPolicy::none, "l", "x", false},          {LinkPolicy::safe, "l", "/etc", false},
      {LinkPolicy::safe, "l", "../x", false},       {LinkPolicy::safe, "d/l", "../../x", false},
      {LinkPolicy::safe, "d/l", "a/../../../x", false},
      {LinkPolicy::safe, "d/l", "../x", true},      {LinkPolicy::safe, "d/e/l", "./../.././x//y", true},
      {LinkPolicy::safe, "l", "a/b/../c", true},    {LinkPolicy::all, "l", "/etc", true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path + " -> " + c.target);
    EXPECT_EQ(!link_refusal(c.policy, c.path, c.target).has_value(), c.made);
    ReceiverConfig cfg{1024 * 1024, "test-receiver"};
    cfg.links = c.policy;
    Harness h(cfg);
    h.hello();
    h.frames.clear();
    h.feed(P::FrameType::offer, link_offer(0, c.path, c.target));
    EXPECT_EQ(h.opens.size(), c.made ? 1u : 0u);
    if (!c.made) {
      auto a = only_answer(h);
      ASSERT_TRUE(a);
      EXPECT_EQ(a->status, P::AnswerStatus::refuse);
      EXPECT_FALSE(a->note.empty());
      EXPECT_TRUE(h.closes.empty()) << "a refusal, not a violation";
    }
  }
}

}  // namespace
}  // namespace ferry::receiver

// --- version 4: symlinks in check sessions ----------------------------------------------

namespace ferry::receiver {
namespace {

// A link offered in a check (--check --links) is compared by its text, with no COMMIT:
// the same text is identical, another text or another kind is different.
TEST(ReceiverInspect, CheckComparesALinkByItsText) {
  Harness h;
  h.hello(std::nullopt, P::Purpose::check);
  auto final_link = [](const std::string& text) {
    FinalFile f;
    f.kind = FinalFile::Kind::symlink;
    f.target = text;
    return f;
  };
  h.feed(P::FrameType::offer, link_offer(0, "same", "../a"));
  h.r.on_final_digested(0, final_link("../a"), h.now);
  h.collect();
  h.feed(P::FrameType::offer, link_offer(1, "moved", "../a"));
  h.r.on_final_digested(1, final_link("../b"), h.now);
  h.collect();
  h.feed(P::FrameType::offer, link_offer(2, "file_there", "../a"));
  h.r.on_final_digested(2, FinalFile{FinalFile::Kind::file, 4, false, {}, {}, false}, h.now);
  h.collect();
  h.feed(P::FrameType::offer, link_offer(3, "gone", "../a"));
  h.r.on_final_digested(3, FinalFile{}, h.now);
  h.collect();
  h.offer(4, "was_a_link", 10);  // a file offered where a link is
  h.r.on_final_digested(4, final_link("x"), h.now);
  h.collect();
  EXPECT_TRUE(h.of_type(P::FrameType::answer).empty()) << "no COMMIT is awaited for a link";
  auto c = checks_of(h);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[0].result, P::CheckResult::identical);
  EXPECT_EQ(c[1].result, P::CheckResult::different);
  EXPECT_EQ(c[1].reason, "target");
  EXPECT_EQ(c[2].result, P::CheckResult::different);
  EXPECT_EQ(c[2].reason, "kind");
  EXPECT_EQ(c[3].result, P::CheckResult::missing);
  EXPECT_EQ(c[4].result, P::CheckResult::different);
  EXPECT_EQ(c[4].reason, "kind");
  EXPECT_FALSE(h.r.failed());
  expect_nothing_written(h);
}

}  // namespace
}  // namespace ferry::receiver

// --- ferry-recv --inspect-only ------------------------------------------------------------

namespace ferry::receiver {
namespace {

ReceiverConfig inspect_only_config() {
  ReceiverConfig c{1024 * 1024, "test-receiver"};
  c.inspect_only = true;
  return c;
}

TEST(ReceiverInspectOnly, ATransferIsRefusedWithAnError) {
  Harness h(inspect_only_config());
  h.hello();
  EXPECT_EQ(h.of_type(P::FrameType::error).size(), 1u) << "a transfer session needs an ERROR";
  EXPECT_TRUE(h.r.failed());
  ASSERT_TRUE(h.r.failure().has_value());
  EXPECT_NE(h.r.failure()->message().find("--inspect-only"), std::string::npos) << h.r.failure()->message();
  expect_nothing_written(h);
}

TEST(ReceiverInspectOnly, CheckAndDryRunSessionsAreServed) {
  for (P::Purpose purpose : {P::Purpose::check, P::Purpose::dry_run}) {
    Harness h(inspect_only_config());
    h.hello(std::nullopt, purpose);
    EXPECT_TRUE(h.of_type(P::FrameType::error).empty());
    h.offer(0, "a.bin", 10);
    EXPECT_FALSE(h.r.failed());
    expect_nothing_written(h);
  }
}


// --- version 6: ordinary files committed while the next entry goes on -----------------------------

// OFFER, open at 0, every DATA, then the COMMIT of `src` as file `id` (the digest matches).
void receive_and_commit(Harness& h, std::uint32_t id, const std::string& path, const std::vector<std::byte>& src) {
  h.offer(id, path, src.size());
  h.open();
  send_file(h, id, src);
  h.feed(P::FrameType::commit, P::to_json(P::Commit{id, src.size(), hex128(src)}));
}

TEST(ReceiverPipelined, TheNextOfferIsTakenWhileAFileCommits) {
  const auto a = bytes_of(3 * kChunk + 5, 70), b = bytes_of(2 * kChunk + 1, 71);
  Harness h;
  h.hello();
  receive_and_commit(h, 0, "a.bin", a);
  ASSERT_EQ(h.commits.size(), 1u);
  EXPECT_EQ(h.commits[0].file_id, 0u);
  EXPECT_EQ(h.r.state(), ReceiverSession::State::idle);
  h.frames.clear();
  h.offer(1, "b.bin", b.size());
  ASSERT_EQ(h.opens.size(), 1u) << "the next OFFER is opened while file 0 commits";
  EXPECT_EQ(h.opens[0].file_id, 1u);
  EXPECT_FALSE(h.r.failed());
  EXPECT_TRUE(h.of_type(P::FrameType::error).empty());
  h.open();
  auto answers = h.of_type(P::FrameType::answer);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(P::parse_answer(answers[0].payload)->status, P::AnswerStatus::accept);
  send_file(h, 1, b);
  EXPECT_TRUE(h.of_type(P::FrameType::verdict).empty()) << "no VERDICT before the commit is done";
  EXPECT_EQ(h.r.eager_pending(), 1u);

  h.r.on_file_committed(0, Result<void>(), h.now);
  h.collect();
  auto v = verdicts(h);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file_id, 0u);
  EXPECT_EQ(v[0].status, P::VerdictStatus::verified);
  EXPECT_EQ(h.r.totals().files_verified, 1u);
  EXPECT_EQ(h.r.totals().bytes_verified, a.size());
  EXPECT_EQ(h.r.state(), ReceiverSession::State::receiving) << "file 1 stays current";
  EXPECT_EQ(h.r.eager_pending(), 0u);

  h.frames.clear();
  h.feed(P::FrameType::commit, P::to_json(P::Commit{1, b.size(), hex128(b)}));
  ASSERT_EQ(h.commits.size(), 2u);
  EXPECT_EQ(h.commits[1].file_id, 1u);
  h.r.on_file_committed(1, Result<void>(), h.now);
  h.collect();
  v = verdicts(h);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file_id, 1u);
  EXPECT_EQ(v[0].status, P::VerdictStatus::verified);
  EXPECT_EQ(h.r.totals().files_verified, 2u);
  EXPECT_EQ(h.r.totals().bytes_verified, a.size() + b.size());
  h.feed(P::FrameType::end, P::to_json(P::End{2, a.size() + b.size()}));
  EXPECT_TRUE(h.r.ended());
  EXPECT_TRUE(h.closes.empty());
}

TEST(ReceiverPipelined, AFailedBackgroundCommitAnswersFailedWithTheError) {
  const auto a = bytes_of(2 * kChunk, 72), b = bytes_of(kChunk + 3, 73);
  Harness h;
  h.hello();
  receive_and_commit(h, 0, "a.bin", a);
  ASSERT_EQ(h.commits.size(), 1u);
  h.offer(1, "b.bin", b.size());
  h.open();
  h.frames.clear();
  const auto err = make_error(Errc::local_io, "rename(/dest/a.bin)", 28);
  h.r.on_file_committed(0, err, h.now);
  h.collect();
  auto v = verdicts(h);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file_id, 0u);
  EXPECT_EQ(v[0].status, P::VerdictStatus::failed);
  EXPECT_EQ(v[0].reason, err.message());
  EXPECT_NE(v[0].reason.find("rename(/dest/a.bin)"), std::string::npos) << v[0].reason;
  EXPECT_EQ(h.r.totals().files_verified, 0u);
  EXPECT_FALSE(h.r.failed()) << "the connection goes on";
  EXPECT_TRUE(h.closes.empty());
  EXPECT_EQ(h.r.state(), ReceiverSession::State::receiving) << "file 1 stays current";
  // File 1 still verifies.
  send_file(h, 1, b);
  h.feed(P::FrameType::commit, P::to_json(P::Commit{1, b.size(), hex128(b)}));
  ASSERT_EQ(h.commits.size(), 2u);
  h.r.on_file_committed(1, Result<void>(), h.now);
  h.collect();
  v = verdicts(h);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[1].file_id, 1u);
  EXPECT_EQ(v[1].status, P::VerdictStatus::verified);
}

TEST(ReceiverPipelined, MoreThanTheBoundCommittingIsAViolation) {
  const std::size_t fine = P::kMaxCommittingFiles + 1;  // the sender's committing files and its current one
  std::vector<std::vector<std::byte>> srcs;
  for (std::size_t i = 0; i <= fine; ++i) srcs.push_back(bytes_of(kChunk + 1 + i, 80 + static_cast<unsigned>(i)));
  Harness h;
  h.hello();
  for (std::uint32_t i = 0; i < fine; ++i) {
    SCOPED_TRACE("file " + std::to_string(i));
    receive_and_commit(h, i, "c" + std::to_string(i), srcs[i]);
    ASSERT_FALSE(h.r.failed());
    ASSERT_EQ(h.commits.size(), i + 1u);
  }
  EXPECT_EQ(h.r.eager_pending(), fine);
  EXPECT_TRUE(h.of_type(P::FrameType::error).empty());
  const auto over = static_cast<std::uint32_t>(fine);
  receive_and_commit(h, over, "c" + std::to_string(over), srcs[over]);
  expect_violation(h);
  EXPECT_EQ(h.commits.size(), fine) << "the one beyond the bound is not committed";
  auto e = P::parse_error(h.of_type(P::FrameType::error).at(0).payload);
  ASSERT_TRUE(e.ok());
  EXPECT_NE(e->message.find("committing"), std::string::npos) << e->message;
}

TEST(ReceiverPipelined, AVerdictMakesRoomForAnotherCommit) {
  const std::size_t fine = P::kMaxCommittingFiles + 1;
  Harness h;
  h.hello();
  for (std::uint32_t i = 0; i < fine; ++i) receive_and_commit(h, i, "c" + std::to_string(i), bytes_of(kChunk + 2, 90 + i));
  ASSERT_FALSE(h.r.failed());
  h.r.on_file_committed(3, Result<void>(), h.now);
  h.collect();
  const auto more = static_cast<std::uint32_t>(fine);
  receive_and_commit(h, more, "more", bytes_of(kChunk + 2, 120));
  EXPECT_FALSE(h.r.failed());
  EXPECT_EQ(h.commits.size(), fine + 1);
  EXPECT_EQ(h.r.eager_pending(), fine);
}

TEST(ReceiverPipelined, EndWhileACommitIsPendingIsAViolation) {
  const auto a = bytes_of(2 * kChunk + 7, 74);
  Harness h;
  h.hello();
  receive_and_commit(h, 0, "a.bin", a);
  ASSERT_EQ(h.commits.size(), 1u);
  h.frames.clear();
  h.feed(P::FrameType::end, P::to_json(P::End{1, a.size()}));
  expect_violation(h);
  EXPECT_FALSE(h.r.ended());
  EXPECT_TRUE(h.of_type(P::FrameType::end).empty());
  // The commit's late completion sends nothing on the failed connection.
  h.frames.clear();
  h.r.on_file_committed(0, Result<void>(), h.now);
  h.collect();
  EXPECT_TRUE(h.of_type(P::FrameType::verdict).empty());
}

TEST(ReceiverPipelined, EndOnceEveryCommitIsAnsweredEnds) {
  const auto a = bytes_of(2 * kChunk + 7, 75);
  Harness h;
  h.hello();
  receive_and_commit(h, 0, "a.bin", a);
  h.r.on_file_committed(0, Result<void>(), h.now);
  h.collect();
  h.feed(P::FrameType::end, P::to_json(P::End{1, a.size()}));
  EXPECT_TRUE(h.r.ended());
  auto ends = h.of_type(P::FrameType::end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(P::parse_end(ends[0].payload)->files, 1u);
}

}  // namespace
}  // namespace ferry::receiver
