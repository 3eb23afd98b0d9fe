// The link simulator (see link_sim.hpp): drives a real SenderSession and real
// ReceiverSessions the way send_app and recv_app do, over simulated pipes, with an
// in-memory source and destination, in virtual time.
#include "tests/sim/link_sim.hpp"

#include <algorithm>
#include <deque>
#include <limits>
#include <memory>
#include <sstream>

#include "lib/core/session_driver.hpp"
#include "lib/core/source_entry.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "receiver/receiver_session.hpp"
#include "sender/sender_session.hpp"

namespace ferry::sim {
namespace {

namespace P = protocol;
using receiver::ReceiverSession;
using sender::SenderSession;

constexpr Clock::time_point kStart = Clock::time_point{} + std::chrono::hours(24);
// While a pipe trickles, steps are this short, so a trickle of a few KiB does not
// look like a stall to the sender.
constexpr auto kTrickleStep = std::chrono::microseconds(10);
constexpr std::size_t kMaxViolations = 20;

// splitmix64: small, fast and the same on every platform (std distributions are not).
bool aimed_at_a_frame(FaultKind k) { return k == FaultKind::corrupt_block || k == FaultKind::corrupt_prefix; }

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(unsigned num, unsigned den) { return below(den) < num; }
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }

 private:
  std::uint64_t s_;
};

P::FileDigest file_digest_of(P::Bytes b, std::size_t block_size) {
  P::FileDigest d;
  P::add_blocks(d, b, 0, block_size);
  return d;
}

// ---------------------------------------------------------------------------
// The in-memory destination, after lib/file_sink: DestDir::open_partial,
// PartialFile::write/commit/close_keep/close_discard. A partial's journal is always
// saved on close (close_keep), so a resume starts at every byte written.

struct Handle {
  P::Offer offer;
  bool already_final = false;  // the final file is there already: commit re-verifies only
};

class MemoryDest {
 public:
  // A partial and its journal (format 2): the contiguous blocks below `verified` and the
  // blocks written above it (`held`, offset -> length), all of `block_size`.
  struct Partial {
    std::string identity;
    std::uint64_t size = 0;
    std::vector<std::byte> bytes;  // on disk (holes read as zeros)
    std::uint64_t verified = 0;    // what the journal vouches for contiguously (<= bytes.size())
    std::size_t block_size = 0;    // the journal's (0: none yet)
    std::map<std::uint64_t, std::uint64_t> held;
  };
  struct Final {
    std::vector<std::byte> bytes;
    std::int64_t mtime_ns = 0;
  };

  std::map<std::string, Partial> partials;
  std::map<std::string, Final> finals;
  std::set<std::string> dirs;
  std::map<std::string, std::string> links;  // symlinks made (version 4): path -> target
  std::set<std::string> committed;
  std::vector<DestFailure> failures;
  std::vector<std::string>* violations = nullptr;

  Result<receiver::OpenedFile> open(const P::Offer& o, Handle& h) {
    const std::string shown = "/dest/" + o.path;
    if (auto f = failure_of(o.path); f && *f == 0) {
      return make_error(Errc::local_io, "open(" + shown + ")", 28 /* ENOSPC */);
    }
    if (o.kind == P::EntryKind::directory) {
      if (finals.count(o.path)) return make_error(Errc::protocol, "unsafe path '" + o.path + "': a file is in the way");
      receiver::OpenedFile made;
      made.created = dirs.insert(o.path).second;
      return made;
    }
    if (o.kind == P::EntryKind::symlink) {  // as DestDir::make_symlink: a file is replaced
      if (dirs.count(o.path)) return make_error(Errc::protocol, "unsafe path '" + o.path + "': a directory is in the way");
      finals.erase(o.path);
      links[o.path] = o.target;
      return receiver::OpenedFile{};
    }
    if (dirs.count(o.path)) return make_error(Errc::local_io, "cannot write " + shown + ": a directory is in the way");
    h = Handle{o, false};
    receiver::OpenedFile out;
    auto pit = partials.find(o.path);
    if (pit == partials.end()) {
      auto fit = finals.find(o.path);
      if (fit != finals.end() && fit->second.bytes.size() == o.size && fit->second.mtime_ns == o.mtime_ns) {
        h.already_final = true;
        out.offset = o.size;
        P::add_blocks(out.prefix, fit->second.bytes, 0, o.block_size);
        return out;
      }
      partials[o.path] = Partial{o.identity, o.size, {}, 0, o.block_size, {}};
      return out;
    }
    return resume(pit->second, o, out);
  }

  Result<void> write(const Handle& h, std::uint64_t offset, P::Bytes data) {
    auto it = partials.find(h.offer.path);
    if (h.already_final || it == partials.end()) {
      return make_error(Errc::internal, "write without a partial: /dest/" + h.offer.path);
    }
    if (auto f = failure_of(h.offer.path); f && *f > 0 && offset + data.size() > *f) {
      return make_error(Errc::local_io, "write(/dest/" + h.offer.path + ")", 28 /* ENOSPC */);
    }
    Partial& p = it->second;
    if (p.bytes.size() < offset + data.size()) p.bytes.resize(static_cast<std::size_t>(offset + data.size()));
    std::copy(data.begin(), data.end(), p.bytes.begin() + static_cast<std::ptrdiff_t>(offset));
    // The journal follows the writes (PartialFile saves it at the latest on close_keep),
    // so a later open resumes from every block written.
    p.held[offset] = data.size();
    while (!p.held.empty() && p.held.begin()->first <= p.verified) {
      p.verified = std::max(p.verified, p.held.begin()->first + p.held.begin()->second);
      p.held.erase(p.held.begin());
    }
    return {};
  }

  Result<void> commit(const Handle& h) {
    if (h.already_final) return {};
    auto it = partials.find(h.offer.path);
    if (it == partials.end()) return make_error(Errc::internal, "commit without a partial: " + h.offer.path);
    if (it->second.bytes.size() != h.offer.size && violations && violations->size() < kMaxViolations) {
      violations->push_back("committed " + h.offer.path + " with " + std::to_string(it->second.bytes.size()) +
                            " bytes, offered " + std::to_string(h.offer.size));
    }
    finals[h.offer.path] = Final{std::move(it->second.bytes), h.offer.mtime_ns};
    partials.erase(it);
    committed.insert(h.offer.path);
    return {};
  }

  // lib/fs/file_batch's commit_batch for one eager file: straight to its final name;
  // an eager directory (version 6) is made, or found there already.
  Result<void> commit_small(const P::Offer& o, std::vector<std::byte> data) {
    if (o.kind == P::EntryKind::directory) {
      if (finals.count(o.path)) return make_error(Errc::protocol, "unsafe path '" + o.path + "': a file is in the way");
      dirs.insert(o.path);
      return {};
    }
    if (auto f = failure_of(o.path); f && *f <= data.size()) {
      return make_error(Errc::local_io, "write(/dest/" + o.path + ")", 28 /* ENOSPC */);
    }
    if (dirs.count(o.path)) return make_error(Errc::local_io, "cannot write /dest/" + o.path + ": a directory is in the way");
    if (data.size() != o.size && violations && violations->size() < kMaxViolations) {
      violations->push_back("eager file " + o.path + " committed with " + std::to_string(data.size()) + " bytes");
    }
    finals[o.path] = Final{std::move(data), o.mtime_ns};
    committed.insert(o.path);
    return {};
  }

  void close(const Handle& h, bool discard) {
    if (!discard) return;  // close_keep: the journal describes what is there
    if (h.already_final) {
      // The final file did not match: it stays, and the next offer fills a fresh partial.
      partials[h.offer.path] = Partial{h.offer.identity, h.offer.size, {}, 0, h.offer.block_size, {}};
      return;
    }
    partials.erase(h.offer.path);
  }

 private:
  // An existing partial, as PartialFile::open does with journal format 2: start over
  // when the source or the block size changed; resume at the last whole block the
  // journal vouches for contiguously; list the journal's blocks above it as held.
  Result<receiver::OpenedFile> resume(Partial& p, const P::Offer& o, receiver::OpenedFile& out) {
    if (p.identity != o.identity || p.size != o.size) {
      out.note = "the source changed since the partial was written; starting over";
      p = Partial{o.identity, o.size, {}, 0, o.block_size, {}};
    } else if (p.block_size != 0 && p.block_size != o.block_size) {
      out.note = "block size changed (" + std::to_string(p.block_size) + " -> " + std::to_string(o.block_size) +
                 "); starting over";
      p = Partial{o.identity, o.size, {}, 0, o.block_size, {}};
    }
    p.block_size = o.block_size;
    p.verified = std::min<std::uint64_t>(p.verified, p.bytes.size());
    if (p.verified != o.size) p.verified -= p.verified % o.block_size;  // the last whole block
    std::uint64_t journal_end = p.verified;
    for (auto it = p.held.begin(); it != p.held.end();) {
      const bool good = it->first >= p.verified && it->first + it->second <= p.bytes.size();
      if (good) journal_end = std::max(journal_end, it->first + it->second);
      it = good ? std::next(it) : p.held.erase(it);
    }
    if (p.bytes.size() > journal_end) {  // cut back to what the journal vouches for
      out.note = "partial longer than its journal; cut back";
      p.bytes.resize(static_cast<std::size_t>(journal_end));
    }
    out.offset = p.verified;
    P::add_blocks(out.prefix, P::Bytes(p.bytes).first(static_cast<std::size_t>(p.verified)), 0, o.block_size);
    for (const auto& [off, len] : p.held) {
      const auto block = P::Bytes(p.bytes).subspan(static_cast<std::size_t>(off), static_cast<std::size_t>(len));
      out.held.push_back(receiver::HeldBlock{off, len, P::block_digest(block, off)});
    }
    return out;
  }

  std::optional<std::uint64_t> failure_of(const std::string& path) const {
    for (const auto& f : failures) {
      if (f.path == path) return f.at;
    }
    return std::nullopt;
  }
};

// ---------------------------------------------------------------------------
// Pipes and connections.

struct Segment {
  std::vector<std::byte> bytes;
  std::size_t pos = 0;
  Clock::time_point ready;
};

struct Pipe {
  std::deque<Segment> q;
  std::uint64_t offset = 0;  // bytes that passed the fault point, over the whole case
  bool black_hole = false;   // for the current connection
  Clock::time_point stalled_until{};
  std::uint64_t trickle_left = 0;

  void new_connection() {
    q.clear();
    black_hole = false;
    stalled_until = {};
    trickle_left = 0;
  }
};

struct Conn {
  std::uint64_t id = 0;
  std::unique_ptr<ReceiverSession> rx;
  std::optional<Handle> handle;                   // the receiver's open file
  std::map<std::uint32_t, std::uint64_t> rx_pos;  // last ANSWER/ACK/RPOS offset the receiver sent
  std::map<std::uint32_t, std::string> offered;   // file id -> path of the sender's OFFERs
  std::set<std::string> created;                  // directories the receiver's ANSWERs said it created
  std::set<std::uint32_t> eager;                  // eager OFFERs (their DATA needs no ANSWER)
  bool closing = false;
};

struct IoOp {
  Clock::time_point at;
  std::uint64_t seq = 0;
  bool hash = false;  // HashPrefix, else ReadChunk
  std::uint32_t entry = 0;
  std::uint64_t offset = 0, length = 0, token = 0;
  std::size_t block_size = 0;  // HashPrefix
};

// A WriteChunk on the receiver's pool: positional, completes after 0..io_latency, so
// writes in flight complete in any order.
struct WriteOp {
  Clock::time_point at;
  std::uint64_t seq = 0;
  std::uint64_t conn = 0;
  Handle handle;
  std::uint32_t file_id = 0;
  std::uint64_t offset = 0;
  std::vector<std::byte> data;  // copied: the session's span is valid only until its next input
};

struct DestOp {
  Clock::time_point at;
  std::uint64_t conn = 0;
  bool commit = false;  // else open
  bool small = false;   // a CommitSmallFile (offer and data)
  std::uint32_t file_id = 0;
  P::Offer offer;  // open, small
  Handle handle;   // commit
  std::vector<std::byte> data;  // small
};

enum class Flush { none, to_receiver, to_sender };

// Who ends a connection. The receiver's own drive() is on the stack when its session
// asks for the close, and carries on with what on_disconnected queues.
enum class Closer { link, sender, receiver };

std::vector<SourceEntry> entries_of(const SimCase& c) {
  std::vector<SourceEntry> out;
  for (const auto& f : c.files) {
    SourceEntry e;
    e.wire_path = f.path;
    e.local_path = "mem:" + f.path;
    e.kind = f.directory ? P::EntryKind::directory : P::EntryKind::file;
    if (!f.link_target.empty()) e.kind = P::EntryKind::symlink;
    e.link_target = f.link_target;
    e.size = f.directory ? 0 : f.data.size();
    e.mtime_ns = f.mtime_ns;
    e.mode = f.directory ? 0755 : 0644;
    e.identity = source_identity(e.size, e.mtime_ns);
    out.push_back(std::move(e));
  }
  return out;
}

sender::SenderConfig sender_config(const SimCase& c) {
  sender::SenderConfig cfg;
  cfg.chunk_size = c.chunk_size;
  cfg.window = c.window;
  cfg.max_reads_in_flight = c.max_reads_in_flight;
  cfg.max_file_attempts = c.max_file_attempts;
  cfg.stall_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c.stall_timeout);
  cfg.session_id = P::hex64(c.link.seed) + P::hex64(~c.link.seed);
  cfg.software = "ferry-sim";
  return cfg;
}

class Sim {
 public:
  explicit Sim(const SimCase& c)
      : c_(c), rng_(c.link.seed * 0x2545F4914F6CDD1Dull + 17), tx_(sender_config(c), entries_of(c), kStart),
        // As the engine sizes it: the session's bound plus 2.
        read_pool_(c.chunk_size, tx_.max_blocks() + 2), fired_(c.link.faults.size(), false),
        frame_hits_(c.link.faults.size(), 0) {
    dest_.failures = c.dest_failures;
    dest_.violations = &res_.invariant_violations;
    for (const auto& p : c.partials) {
      MemoryDest::Partial mp{p.identity, p.size, p.bytes, p.verified.value_or(p.bytes.size()),
                             p.block_size ? p.block_size : c.chunk_size, {}};
      for (auto off : p.held_blocks) {
        mp.held[off] = std::min<std::uint64_t>(mp.block_size, p.size - std::min(p.size, off));
      }
      dest_.partials[p.path] = std::move(mp);
    }
    for (const auto& f : c.finals) dest_.finals[f.path] = MemoryDest::Final{f.bytes, f.mtime_ns};
  }

  SimResult run() {
    connect();
    while (!tx_.finished() && !res_.gave_up) {
      if (++res_.steps > c_.max_steps) {
        give_up("step bound (" + std::to_string(c_.max_steps) + ") reached");
        break;
      }
      graveyard_.clear();
      step();
      if (tx_.finished() || res_.gave_up) break;
      if (!advance_time()) {
        res_.deadlock = true;
        give_up("deadlock: nothing in flight, nothing scheduled, sender in state " +
                std::to_string(static_cast<int>(tx_.state())));
      }
    }
    // Pool jobs already started finish on their own (a commit in flight still lands).
    while (!dest_ops_.empty()) {
      now_ = std::max(now_, dest_ops_.front().at);
      complete_dest_op();
    }
    while (!writes_.empty()) complete_write(writes_.begin());
    res_.read_pool_high_water = read_pool_.high_water();
    res_.entries_high_water = tx_.peak_entries_held();
    res_.finished = tx_.finished();
    if (res_.finished) {
      auto o = tx_.outcome();
      if (!o) res_.failure = o.error();
    }
    res_.totals = tx_.totals();
    res_.elapsed = std::chrono::duration_cast<Tick>(now_ - kStart);
    for (auto& [path, f] : dest_.finals) res_.finals[path] = f.bytes;
    res_.committed = dest_.committed;
    res_.directories = dest_.dirs;
    res_.links = dest_.links;
    for (const auto& [path, p] : dest_.partials) res_.partials_left.push_back(path);
    return std::move(res_);
  }

 private:
  void violation(std::string what) {
    if (res_.invariant_violations.size() < kMaxViolations) {
      res_.invariant_violations.push_back("t=" + std::to_string(elapsed_ms()) + "ms: " + std::move(what));
    }
  }
  long long elapsed_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now_ - kStart).count();
  }
  void trace(const std::string& line) {
    if (c_.trace) res_.trace.push_back("t=" + std::to_string(elapsed_ms()) + "ms " + line);
  }
  void trace_event(const char* who, const Event& e) {
    if (!c_.trace) return;
    trace(std::string(who) + " " + event_type_name(e.type) + " " + e.path + " @" + std::to_string(e.offset) +
          (e.detail.empty() ? "" : ": " + e.detail));
  }
  void give_up(const std::string& why) {
    if (res_.gave_up) return;
    res_.gave_up = true;
    res_.failure = make_error(Errc::connection, "simulator gave up: " + why);
  }
  Clock::time_point io_time() { return now_ + Tick(rng_.below(static_cast<std::uint64_t>(c_.io_latency.count()) + 1)); }

  // --- connections ---------------------------------------------------------

  void connect() {
    auto k = std::make_unique<Conn>();
    k->id = next_conn_id_++;
    trace("connection " + std::to_string(k->id) + " up");
    receiver::ReceiverConfig rc;
    rc.window = c_.window;
    rc.software = "ferry-sim-recv";
    k->rx = std::make_unique<ReceiverSession>(rc, now_);
    conn_ = std::move(k);
    ++conn_gen_;
    to_rx_.new_connection();
    to_tx_.new_connection();
    tx_connected_ = true;
    tx_.on_connected(now_);
    drive_sender();
  }

  // Ends the current connection. `flush`: the closing side's queued bytes are still
  // delivered (close after flush), as the apps do for a final ERROR or END.
  void close_connection(const Error& why, Flush flush, Closer by) {
    if (!conn_ || conn_->closing) return;
    conn_->closing = true;
    trace("connection " + std::to_string(conn_->id) + " closing: " + why.message());
    if (flush == Flush::to_receiver) flush_pipe(to_rx_, Dir::to_receiver);
    if (flush == Flush::to_sender) flush_pipe(to_tx_, Dir::to_sender);
    Conn* k = conn_.get();
    k->rx->on_disconnected(why, now_);
    if (by != Closer::receiver) drive_receiver(*k);
    if (tx_connected_) {
      tx_connected_ = false;
      tx_.on_disconnected(why, now_);
      drive_sender();
    }
    graveyard_.push_back(std::move(conn_));
    ++conn_gen_;
    to_rx_.new_connection();
    to_tx_.new_connection();
    if (tx_.finished()) return;
    if (res_.reconnects >= c_.max_reconnects) {
      give_up("reconnect bound (" + std::to_string(c_.max_reconnects) + ") reached; last: " + why.message());
      return;
    }
    reconnect_at_ = now_ + c_.reconnect_delay;
  }

  // --- the sender ----------------------------------------------------------

  // The engines' loop (lib/core/session_driver.hpp). The sender's own closes do not
  // feed it again (it already counts itself disconnected), so nothing re-enters it.
  void drive_sender() {
    drive(tx_, [this](sender::Action& a) { perform_tx(a); }, [this](const Event& e) { trace_event("send", e); });
    // Nothing in a drive acknowledges data, so in_flight() is highest at its end.
    if (tx_.in_flight() > c_.window) {
      violation("sender in_flight() " + std::to_string(tx_.in_flight()) + " > window " + std::to_string(c_.window));
    }
  }

  void perform_tx(sender::Action& a) {
    if (auto* f = std::get_if<SendFrame>(&a)) {
      if (!conn_ || conn_->closing || !tx_connected_) return;
      check_data_window(*f);
      Segment s;
      s.bytes = std::move(f->head);
      s.bytes.insert(s.bytes.end(), f->body.span().begin(), f->body.span().end());
      s.ready = now_ + c_.link.delay;
      strike_frame(s.bytes);
      to_rx_.q.push_back(std::move(s));
    } else if (auto* r = std::get_if<sender::ReadChunk>(&a)) {
      io_.push_back(IoOp{io_time(), next_seq_++, false, r->entry, r->offset, r->length, r->token});
    } else if (auto* h = std::get_if<sender::HashPrefix>(&a)) {
      io_.push_back(IoOp{io_time(), next_seq_++, true, h->entry, 0, h->length, h->token, h->block_size});
    } else if (auto* k = std::get_if<sender::CheckSource>(&a)) {
      // The in-memory source never changes.
      tx_.on_source_checked(k->token, std::optional<SourceEntry>{}, now_);  // drive() carries on
    } else if (auto* cl = std::get_if<CloseConnection>(&a)) {
      if (!tx_connected_) return;
      tx_connected_ = false;  // the sender already counts itself disconnected
      close_connection(cl->reason, Flush::to_receiver, Closer::sender);
    }
  }

  // corrupt_block and corrupt_prefix: flip a bit of the DATA frame they aim at.
  void strike_frame(std::vector<std::byte>& frame) {
    if (frame.size() <= P::kDataHeadSize || static_cast<P::FrameType>(frame[3]) != P::FrameType::data) return;
    const std::uint64_t off = P::get_u64(frame.data() + P::kHeaderSize + 4);
    for (std::size_t i = 0; i < fired_.size(); ++i) {
      const Fault& f = c_.link.faults[i];
      if (fired_[i] || !aimed_at_a_frame(f.kind) || f.at != off || frame_hits_[i]++ != f.amount) continue;
      fired_[i] = true;
      ++res_.faults_fired;
      const std::size_t at = f.kind == FaultKind::corrupt_block
                                 ? P::kDataHeadSize + rng_.below(frame.size() - P::kDataHeadSize)
                                 : P::kHeaderSize + rng_.below(P::kDataPrefixSize);
      frame[at] ^= static_cast<std::byte>(1u << rng_.below(8));
      trace(std::string("fault ") + fault_kind_name(f.kind) + " on the DATA frame of block @" + std::to_string(off));
    }
  }

  // Independent of the session's own bookkeeping: a DATA frame may reach at most one
  // window past the highest position the receiver has named on this connection.
  // Eager OFFERs (version 3) only for a file of one block in a directory the receiver
  // created on this connection; their one DATA frame needs no ANSWER. An eager
  // directory (version 6) must be in such a directory too, and counts as one from its
  // OFFER on (the receiver makes it before what follows).
  void check_offer(const SendFrame& f) {
    if (f.head.size() <= P::kHeaderSize || static_cast<P::FrameType>(f.head[3]) != P::FrameType::offer) return;
    auto o = P::parse_offer(P::Bytes(f.head).subspan(P::kHeaderSize));
    if (!o) return;
    conn_->offered[o->file_id] = o->path;
    if (!o->eager) return;
    conn_->eager.insert(o->file_id);
    const auto slash = o->path.rfind('/');
    if (slash == std::string::npos || !conn_->created.count(o->path.substr(0, slash))) {
      violation("eager OFFER of " + o->path + " outside a directory the receiver created on this connection");
    }
    if (o->kind == P::EntryKind::directory) conn_->created.insert(o->path);
  }

  void check_data_window(const SendFrame& f) {
    check_offer(f);
    if (f.head.size() < P::kDataHeadSize || static_cast<P::FrameType>(f.head[3]) != P::FrameType::data) return;
    const std::uint32_t file = P::get_u32(f.head.data() + P::kHeaderSize);
    const std::uint64_t off = P::get_u64(f.head.data() + P::kHeaderSize + 4);
    if (conn_->eager.count(file)) {
      if (off != 0 || f.body.size() > c_.chunk_size) violation("eager DATA is not one whole block at 0");
      return;
    }
    auto it = conn_->rx_pos.find(file);
    if (it == conn_->rx_pos.end()) {
      violation("DATA for file " + std::to_string(file) + " before the receiver's ANSWER");
      return;
    }
    if (off + f.body.size() > it->second + c_.window) {
      violation("DATA [" + std::to_string(off) + ", " + std::to_string(off + f.body.size()) +
                ") beyond receiver position " + std::to_string(it->second) + " + window " + std::to_string(c_.window));
    }
  }

  void complete_io_op() {
    auto it = std::min_element(io_.begin(), io_.end(),
                               [](const IoOp& a, const IoOp& b) { return a.at != b.at ? a.at < b.at : a.seq < b.seq; });
    IoOp op = *it;
    io_.erase(it);
    const auto& data = c_.files.at(op.entry).data;
    if (op.hash) {
      if (op.length > data.size()) {
        violation("HashPrefix beyond the file");
        tx_.on_prefix_hashed(op.token, make_error(Errc::local_io, "read: short file"), now_);
      } else {
        tx_.on_prefix_hashed(op.token, file_digest_of(P::Bytes(data).first(op.length), op.block_size), now_);
      }
    } else {
      tx_.on_read_done(op.token, read_block(op, data), now_);
    }
    drive_sender();
  }

  // A ReadChunk as the engine performs it: into a pooled buffer, with the block digest.
  sender::ReadBlock read_block(const IoOp& op, const std::vector<std::byte>& data) {
    if (op.offset + op.length > data.size()) violation("ReadChunk beyond the file");
    if (op.length > c_.chunk_size) violation("ReadChunk of more than a block");
    const auto b = static_cast<std::size_t>(std::min<std::uint64_t>(op.offset, data.size()));
    const auto e = static_cast<std::size_t>(std::min<std::uint64_t>(op.offset + op.length, data.size()));
    const auto bytes = P::Bytes(data).subspan(b, e - b);
    auto buffer = read_pool_.acquire();
    if (!buffer) {
      violation("the read pool ran dry: " + std::to_string(read_pool_.outstanding()) + " buffers out");
      return sender::ReadBlock{ByteBuffer::copy_of(bytes), P::block_digest(bytes, op.offset)};
    }
    buffer->resize(bytes.size());
    std::copy(bytes.begin(), bytes.end(), buffer->data());
    return sender::ReadBlock{std::move(*buffer), P::block_digest(bytes, op.offset)};
  }

  // --- the receiver ---------------------------------------------------------

  // The engines' loop (lib/core/session_driver.hpp). A close the receiver asks for
  // feeds it again from inside this drive, which carries on (Closer::receiver).
  void drive_receiver(Conn& k) {
    rx_driving_ = true;
    drive(*k.rx, [this, &k](receiver::Action& a) { perform_rx(k, a); },
          [this](const Event& e) { trace_event("recv", e); });
    rx_driving_ = false;
  }

  void perform_rx(Conn& k, receiver::Action& a) {
    const bool live = conn_.get() == &k && !k.closing;
    if (auto* f = std::get_if<SendFrame>(&a)) {
      if (!live) return;
      note_position(k, *f);
      Segment s;
      s.bytes = std::move(f->head);
      s.bytes.insert(s.bytes.end(), f->body.span().begin(), f->body.span().end());
      s.ready = now_ + c_.link.delay;
      to_tx_.q.push_back(std::move(s));
    } else if (auto* cl = std::get_if<CloseConnection>(&a)) {
      if (live) close_connection(cl->reason, Flush::to_sender, Closer::receiver);
    } else if (auto* o = std::get_if<receiver::OpenFile>(&a)) {
      DestOp op;
      op.at = std::max(dest_time(), now_ + c_.open_latency);
      op.conn = k.id;
      op.file_id = o->file_id;
      op.offer = o->offer;
      dest_ops_.push_back(std::move(op));
    } else if (auto* w = std::get_if<receiver::WriteChunk>(&a)) {
      if (!k.handle) {
        k.rx->on_chunk_written(w->file_id, w->offset, w->data.size(),
                               make_error(Errc::internal, "write without an open file"), now_);  // drive() carries on
        return;
      }
      if (P::block_digest(w->data, w->offset) != w->digest) violation("WriteChunk digest is not the block's");
      writes_.push_back(WriteOp{io_time(), next_seq_++, k.id, *k.handle, w->file_id, w->offset,
                                std::vector<std::byte>(w->data.begin(), w->data.end())});
    } else if (auto* cm = std::get_if<receiver::CommitFile>(&a)) {
      if (!k.handle) {
        k.rx->on_file_committed(cm->file_id, make_error(Errc::internal, "commit without an open file"),
                                now_);  // drive() carries on
        return;
      }
      DestOp op;
      op.at = dest_time();
      op.conn = k.id;
      op.commit = true;
      op.file_id = cm->file_id;
      op.handle = std::move(*k.handle);
      k.handle.reset();
      dest_ops_.push_back(std::move(op));
    } else if (auto* sm = std::get_if<receiver::CommitSmallFile>(&a)) {
      DestOp op;
      op.at = dest_time();
      op.conn = k.id;
      op.small = true;
      op.file_id = sm->file_id;
      op.offer = std::move(sm->offer);
      op.data = std::move(sm->data);
      dest_ops_.push_back(std::move(op));
    } else if (auto* c = std::get_if<receiver::CloseFile>(&a)) {
      if (k.handle) {
        flush_writes(k.handle->offer.path);  // the driver closes after its writes land
        dest_.close(*k.handle, c->discard);
      }
      k.handle.reset();
    }
  }

  // Completes one write: it lands whether or not its connection is still there.
  void complete_write(std::vector<WriteOp>::iterator it) {
    WriteOp w = std::move(*it);
    writes_.erase(it);
    auto [last, fresh] = last_write_.try_emplace(w.handle.offer.path, w.offset);
    if (!fresh && w.offset < last->second) ++res_.writes_out_of_order;
    last->second = w.offset;
    auto r = dest_.write(w.handle, w.offset, w.data);
    Conn* k = conn_ && conn_->id == w.conn && !conn_->closing ? conn_.get() : nullptr;
    if (!k) return;
    k->rx->on_chunk_written(w.file_id, w.offset, w.data.size(), std::move(r), now_);
    if (!rx_driving_) drive_receiver(*k);  // else the running drive() picks it up
  }
  // Writes due now complete in a random order (the pool has several threads).
  void complete_due_writes() {
    for (;;) {
      std::vector<std::size_t> due;
      for (std::size_t i = 0; i < writes_.size(); ++i) {
        if (writes_[i].at <= now_) due.push_back(i);
      }
      if (due.empty()) return;
      complete_write(writes_.begin() + static_cast<std::ptrdiff_t>(due[rng_.below(due.size())]));
    }
  }
  void flush_writes(const std::string& path) {
    for (auto it = writes_.begin(); it != writes_.end();) {
      if (it->handle.offer.path == path) {
        complete_write(it);
        it = writes_.begin();
      } else {
        ++it;
      }
    }
  }

  // Pool jobs complete in the order they were started (one path is never opened
  // twice at once, as recv_app's busy set ensures).
  Clock::time_point dest_time() {
    auto t = io_time();
    if (!dest_ops_.empty()) t = std::max(t, dest_ops_.back().at);
    return t;
  }

  void note_position(Conn& k, const SendFrame& f) {
    auto r = P::decode_frame(f.head);
    auto* fr = std::get_if<P::DecodedFrame>(&r);
    if (!fr) {
      violation("receiver sent an undecodable frame");
      return;
    }
    if (fr->header.type == P::FrameType::answer) {
      auto a = P::parse_answer(fr->payload);
      if (a && a->status == P::AnswerStatus::accept) k.rx_pos[a->file_id] = a->offset;
      if (a && a->created && k.offered.count(a->file_id)) k.created.insert(k.offered[a->file_id]);
    } else if (fr->header.type == P::FrameType::ack) {
      P::Position p;
      if (P::decode_position(fr->payload, p)) k.rx_pos[p.file_id] = std::max(k.rx_pos[p.file_id], p.offset);
    } else if (fr->header.type == P::FrameType::rpos) {
      P::Resend rs;  // a go-back (length 0) names the contiguous point, as an ACK does
      if (P::decode_resend(fr->payload, rs) && rs.length == 0) {
        k.rx_pos[rs.file_id] = std::max(k.rx_pos[rs.file_id], rs.offset);
      }
    }
  }

  void complete_dest_op() {
    DestOp op = std::move(dest_ops_.front());
    dest_ops_.pop_front();
    Conn* k = conn_ && conn_->id == op.conn && !conn_->closing ? conn_.get() : nullptr;
    if (op.small) {
      auto r = dest_.commit_small(op.offer, std::move(op.data));
      if (!k) return;  // the connection is gone; the batch landed anyway
      k->rx->on_file_committed(op.file_id, std::move(r), now_);
      drive_receiver(*k);
      return;
    }
    if (op.commit) {
      auto r = dest_.commit(op.handle);
      if (!k) return;  // the connection is gone; the commit landed anyway
      k->rx->on_file_committed(op.file_id, std::move(r), now_);
      drive_receiver(*k);
      return;
    }
    flush_writes(op.offer.path);  // writes of an earlier connection land before the open
    Handle h;
    auto r = dest_.open(op.offer, h);
    if (!k) return;  // opened for a connection that is gone: the partial stays (close_keep)
    if (r && op.offer.kind == P::EntryKind::file) k->handle = h;
    k->rx->on_file_opened(op.file_id, std::move(r), now_);
    drive_receiver(*k);
  }

  // --- the pipes -------------------------------------------------------------

  std::optional<std::size_t> due_fault(Dir d, std::uint64_t offset) const {
    for (std::size_t i = 0; i < fired_.size(); ++i) {
      const Fault& f = c_.link.faults[i];
      if (!fired_[i] && !aimed_at_a_frame(f.kind) && f.dir == d && f.at <= offset) return i;
    }
    return std::nullopt;
  }
  std::optional<std::uint64_t> next_fault_at(Dir d, std::uint64_t offset) const {
    std::optional<std::uint64_t> best;
    for (std::size_t i = 0; i < fired_.size(); ++i) {
      const auto& f = c_.link.faults[i];
      if (!fired_[i] && !aimed_at_a_frame(f.kind) && f.dir == d && f.at > offset && (!best || f.at < *best)) {
        best = f.at;
      }
    }
    return best;
  }

  void deliver(Dir d, P::Bytes piece) {
    if (d == Dir::to_receiver) {
      if (!conn_ || conn_->closing) return;
      if (rx_driving_) violation("simulator fed the receiver while it was draining");
      Conn& k = *conn_;
      k.rx->on_bytes(piece, now_);
      drive_receiver(k);
    } else {
      if (!tx_connected_) return;
      tx_.on_bytes(piece, now_);
      drive_sender();
    }
  }

  // One step of pipe `p` at now_: up to `rate` bytes (1..7 while trickling).
  void move_bytes(Pipe& p, Dir d) {
    const auto gen = conn_gen_;
    std::uint64_t budget = c_.link.rate;
    while (budget > 0 && !p.q.empty() && gen == conn_gen_) {
      Segment& s = p.q.front();
      if (s.ready > now_ || p.stalled_until > now_) break;
      if (auto i = due_fault(d, p.offset)) {
        fired_[*i] = true;
        ++res_.faults_fired;
        const Fault& f = c_.link.faults[*i];
        trace(std::string("fault ") + fault_kind_name(f.kind) + (d == Dir::to_receiver ? " >rx @" : " >tx @") +
              std::to_string(p.offset));
        switch (f.kind) {
          case FaultKind::corrupt:
            s.bytes[s.pos] ^= static_cast<std::byte>(1u << rng_.below(8));
            break;
          case FaultKind::cut:
            close_connection(make_error(Errc::connection, "simulated cut"), Flush::none, Closer::link);
            return;
          case FaultKind::truncate:
            p.q.clear();
            close_connection(make_error(Errc::connection, "simulated truncation"),
                             d == Dir::to_receiver ? Flush::to_sender : Flush::to_receiver, Closer::link);
            return;
          case FaultKind::black_hole:
            p.black_hole = true;
            break;
          case FaultKind::stall:
            p.stalled_until = now_ + Tick(f.amount);
            return;
          case FaultKind::trickle:
            p.trickle_left = f.amount;
            break;
          case FaultKind::corrupt_block:
          case FaultKind::corrupt_prefix:
            break;  // never due by stream offset (aimed_at_a_frame)
        }
        continue;
      }
      std::uint64_t n = std::min<std::uint64_t>(budget, s.bytes.size() - s.pos);
      if (auto at = next_fault_at(d, p.offset)) n = std::min(n, *at - p.offset);
      const bool trickling = p.trickle_left > 0;
      if (trickling) {
        n = std::min({n, rng_.between(1, 7), p.trickle_left});
      } else if (rng_.chance(1, 8)) {
        n = std::min(n, rng_.between(1, 4096));  // odd splits for the decoders
      }
      std::vector<std::byte> piece(s.bytes.begin() + static_cast<std::ptrdiff_t>(s.pos),
                                   s.bytes.begin() + static_cast<std::ptrdiff_t>(s.pos + n));
      s.pos += n;
      if (s.pos == s.bytes.size()) p.q.pop_front();
      p.offset += n;
      budget -= n;
      if (trickling) p.trickle_left -= n;
      if (!p.black_hole) deliver(d, piece);
      if (trickling) break;
    }
  }

  // Delivers everything queued in `p` at once (the closing side's last frames).
  // Corruption and black holes still apply; a cut or truncation ends the flush.
  void flush_pipe(Pipe& p, Dir d) {
    std::vector<std::byte> all;
    while (!p.q.empty()) {
      Segment& s = p.q.front();
      if (auto i = due_fault(d, p.offset)) {
        const Fault& f = c_.link.faults[*i];
        fired_[*i] = true;
        ++res_.faults_fired;
        if (f.kind == FaultKind::cut || f.kind == FaultKind::truncate) {
          p.q.clear();
          break;
        }
        if (f.kind == FaultKind::corrupt) s.bytes[s.pos] ^= static_cast<std::byte>(1u << rng_.below(8));
        if (f.kind == FaultKind::black_hole) p.black_hole = true;
        continue;
      }
      std::uint64_t n = s.bytes.size() - s.pos;
      if (auto at = next_fault_at(d, p.offset)) n = std::min(n, *at - p.offset);
      if (!p.black_hole) {
        all.insert(all.end(), s.bytes.begin() + static_cast<std::ptrdiff_t>(s.pos),
                   s.bytes.begin() + static_cast<std::ptrdiff_t>(s.pos + n));
      }
      s.pos += n;
      p.offset += n;
      if (s.pos == s.bytes.size()) p.q.pop_front();
    }
    if (!all.empty()) deliver(d, all);
  }

  bool deliverable_now(const Pipe& p) const {
    return !p.q.empty() && p.q.front().ready <= now_ && p.stalled_until <= now_;
  }

  // --- the loop --------------------------------------------------------------

  void step() {
    // File reads and hashes (the sender's thread pool), in completion order.
    for (int guard = 0; guard < 10'000; ++guard) {
      auto it = std::find_if(io_.begin(), io_.end(), [&](const IoOp& o) { return o.at <= now_; });
      if (it == io_.end()) break;
      complete_io_op();
      if (tx_.finished()) return;
    }
    // The receiver's pool jobs.
    while (!dest_ops_.empty() && dest_ops_.front().at <= now_) complete_dest_op();
    complete_due_writes();
    // The wire.
    move_bytes(to_rx_, Dir::to_receiver);
    if (conn_ && !conn_->closing && (!deliverable_now(to_rx_) || to_rx_.black_hole || rng_.chance(1, 4))) {
      // recv_app calls this after every read callback: "nothing left to read".
      Conn& k = *conn_;
      k.rx->on_input_drained(now_);
      drive_receiver(k);
    }
    if (tx_.finished()) return;
    move_bytes(to_tx_, Dir::to_sender);
    if (tx_.finished()) return;
    // Redial.
    if (!conn_ && reconnect_at_ && *reconnect_at_ <= now_) {
      reconnect_at_.reset();
      ++res_.reconnects;
      connect();
    }
    // The sender's timer.
    if (auto dl = tx_.next_deadline(); dl && *dl <= now_) {
      tx_.on_timeout(now_);
      drive_sender();
    }
  }

  // Moves now_ to the next thing that can happen; false when nothing can.
  bool advance_time() {
    std::optional<Clock::time_point> next;
    auto consider = [&](Clock::time_point t) { next = next ? std::min(*next, t) : t; };
    bool trickling = false;
    for (const Pipe* p : {&to_rx_, &to_tx_}) {
      if (p->q.empty()) continue;
      const auto t = std::max(p->q.front().ready, p->stalled_until);
      consider(t);
      if (p->trickle_left > 0 && t <= now_) trickling = true;
    }
    for (const auto& o : io_) consider(o.at);
    if (!dest_ops_.empty()) consider(dest_ops_.front().at);
    for (const auto& w : writes_) consider(w.at);
    if (auto dl = tx_.next_deadline()) consider(*dl);
    if (!conn_ && reconnect_at_) consider(*reconnect_at_);
    if (!next) return false;
    const Clock::time_point min_next =
        trickling ? now_ + std::chrono::duration_cast<Clock::duration>(kTrickleStep) : now_ + Tick(1);
    now_ = std::max(*next, min_next);
    return true;
  }

  const SimCase& c_;
  Rng rng_;
  Clock::time_point now_ = kStart;
  SenderSession tx_;
  BufferPool read_pool_;
  bool tx_connected_ = false;
  bool rx_driving_ = false;  // only to check that nothing feeds it bytes meanwhile
  std::unique_ptr<Conn> conn_;
  // Closed connections, freed at the next step: a close the receiver asks for comes
  // from inside drive_receiver(), which still holds the Conn.
  std::vector<std::unique_ptr<Conn>> graveyard_;
  std::uint64_t next_conn_id_ = 1;
  std::uint64_t conn_gen_ = 0;
  Pipe to_rx_, to_tx_;
  std::vector<bool> fired_;
  std::vector<std::uint64_t> frame_hits_;  // DATA frames seen so far for each aimed fault
  std::map<std::string, std::uint64_t> last_write_;  // per path: the last write completed
  std::vector<IoOp> io_;
  std::uint64_t next_seq_ = 0;
  std::deque<DestOp> dest_ops_;
  std::vector<WriteOp> writes_;
  std::optional<Clock::time_point> reconnect_at_;
  MemoryDest dest_;
  SimResult res_;
};

std::string size_text(std::uint64_t n) { return std::to_string(n); }

}  // namespace

const char* fault_kind_name(FaultKind k) {
  switch (k) {
    case FaultKind::corrupt: return "corrupt";
    case FaultKind::cut: return "cut";
    case FaultKind::truncate: return "truncate";
    case FaultKind::black_hole: return "black_hole";
    case FaultKind::stall: return "stall";
    case FaultKind::trickle: return "trickle";
    case FaultKind::corrupt_block: return "corrupt_block";
    case FaultKind::corrupt_prefix: return "corrupt_prefix";
  }
  return "?";
}

SimResult run_case(const SimCase& c) { return Sim(c).run(); }

std::vector<std::byte> random_bytes(std::uint64_t seed, std::size_t n) {
  Rng g(seed ^ 0xA5A5A5A5DEADBEEFull);
  std::vector<std::byte> out(n);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v = g.next();
    for (int b = 0; b < 8; ++b) out[i + static_cast<std::size_t>(b)] = static_cast<std::byte>(v >> (8 * b));
  }
  std::uint64_t v = g.next();
  for (; i < n; ++i, v >>= 8) out[i] = static_cast<std::byte>(v);
  return out;
}

std::string SimResult::summary() const {
  std::ostringstream o;
  o << "finished=" << finished << " outcome=" << (failure ? failure->message() : "ok")
    << (deadlock ? " DEADLOCK" : "") << " reconnects=" << reconnects << " steps=" << steps
    << " elapsed=" << elapsed.count() << "ms faults_fired=" << faults_fired
    << " payload=" << totals.bytes_payload << " resent=" << totals.bytes_resent
    << " rejected=" << totals.chunks_rejected << " stalls=" << totals.stall_timeouts
    << " verified=" << totals.files_verified << " failed=" << totals.files_failed;
  for (const auto& v : invariant_violations) o << "\n  violation: " << v;
  return o.str();
}

std::string describe(const SimCase& c) {
  std::ostringstream o;
  o << "case '" << c.name << "' seed=" << c.link.seed << " chunk=" << c.chunk_size << " window=" << c.window
    << " rate=" << c.link.rate << " delay=" << c.link.delay.count() << " io=" << c.io_latency.count() << " files=[";
  for (std::size_t i = 0; i < c.files.size(); ++i) {
    const SimFile& f = c.files[i];
    o << (i ? " " : "") << f.path
      << (f.directory ? "/" : !f.link_target.empty() ? "->" + f.link_target : ":" + size_text(f.data.size()));
  }
  o << "] faults=[";
  for (std::size_t i = 0; i < c.link.faults.size(); ++i) {
    const auto& f = c.link.faults[i];
    o << (i ? " " : "") << fault_kind_name(f.kind) << (f.dir == Dir::to_receiver ? ">rx@" : ">tx@") << f.at;
    if (f.amount) o << "+" << f.amount;
  }
  o << "]";
  for (const auto& p : c.partials) {
    o << " partial:" << p.path << ":" << p.bytes.size() << (p.verified ? "/" + std::to_string(*p.verified) : "") << "("
      << p.identity << ")";
  }
  for (const auto& f : c.finals) o << " final:" << f.path << ":" << f.bytes.size();
  for (const auto& f : c.dest_failures) o << " dest_failure:" << f.path << "@" << f.at;
  return o.str();
}

std::vector<std::string> check_result(const SimCase& c, const SimResult& r, bool check_resend_bound) {
  std::vector<std::string> problems;
  for (const auto& v : r.invariant_violations) problems.push_back("invariant: " + v);
  if (r.deadlock) problems.push_back("deadlock: " + (r.failure ? r.failure->message() : std::string()));
  std::map<std::string, const SimFile*> source;
  for (const auto& f : c.files) source[f.path] = &f;

  // Never a file under a final name, committed by this run, that differs from its source.
  for (const auto& path : r.committed) {
    auto it = source.find(path);
    if (it == source.end()) {
      problems.push_back("committed " + path + ", which was never offered");
      continue;
    }
    const auto& got = r.finals.at(path);
    if (got != it->second->data) {
      problems.push_back("committed " + path + " differs from its source (" + std::to_string(got.size()) + " vs " +
                         std::to_string(it->second->data.size()) + " bytes)");
    }
  }
  if (r.ok()) {
    for (const auto& f : c.files) {
      if (f.directory) {
        if (!r.directories.count(f.path)) problems.push_back("directory " + f.path + " not created");
        continue;
      }
      if (!f.link_target.empty()) {
        auto link = r.links.find(f.path);
        if (link == r.links.end() || link->second != f.link_target) problems.push_back("symlink " + f.path + " not made");
        continue;
      }
      auto it = r.finals.find(f.path);
      if (it == r.finals.end()) {
        problems.push_back("outcome ok but " + f.path + " is not in place");
      } else if (it->second != f.data) {
        problems.push_back("outcome ok but " + f.path + " differs from its source");
      }
    }
    for (const auto& p : r.partials_left) problems.push_back("outcome ok but a partial of " + p + " is left");
  } else if (!r.failure || r.failure->what.empty()) {
    problems.push_back("the run failed without a reason");
  }

  if (check_resend_bound && c.finals.empty()) {
    std::uint64_t total = 0;
    for (const auto& f : c.files) total += f.data.size();
    const std::uint64_t slack = (r.reconnects + r.totals.chunks_rejected) * (c.window + c.chunk_size);
    if (r.totals.bytes_payload > total + slack) {
      problems.push_back("sent " + std::to_string(r.totals.bytes_payload) + " payload bytes for " +
                         std::to_string(total) + " with " + std::to_string(r.reconnects) + " reconnects and " +
                         std::to_string(r.totals.chunks_rejected) + " rewinds (bound " +
                         std::to_string(total + slack) + ")");
    }
  }
  return problems;
}

namespace {

// random_case()'s steps, in the order they draw from `g` (the order is part of what a
// seed means: a replayed seed must give the same case).

// 0..3 entries (sizes around the chunk size, up to 3 MiB; sometimes a directory);
// returns their total size.
std::uint64_t add_random_files(Rng& g, std::uint64_t seed, SimCase& c) {
  const std::uint64_t chunk = c.chunk_size;
  const unsigned n = static_cast<unsigned>(g.below(4));
  std::uint64_t total = 0;
  for (unsigned i = 0; i < n; ++i) {
    SimFile f;
    f.path = (g.chance(1, 3) ? "sub/f" : "f") + std::to_string(i) + ".bin";
    f.mtime_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(g.below(1'000'000'000));
    if (g.chance(1, 12)) {
      f.path = "dir" + std::to_string(i);
      f.directory = true;
      c.files.push_back(std::move(f));
      continue;
    }
    std::uint64_t size = 0;
    switch (g.below(10)) {
      case 0: size = 0; break;
      case 1: size = 1; break;
      case 2: size = chunk - 1; break;
      case 3: size = chunk; break;
      case 4: size = chunk + 1; break;
      case 5: size = g.between(2, 8) * chunk + g.below(3) - 1; break;
      case 6:
      case 7: size = g.below(64 * 1024); break;
      case 8: size = g.below(3 * 1024 * 1024 + 1); break;
      default: size = 3 * 1024 * 1024 - g.below(chunk); break;
    }
    f.data = random_bytes(seed * 131 + i, static_cast<std::size_t>(size));
    total += size;
    c.files.push_back(std::move(f));
  }
  return total;
}

// A tree of small files (one case in three), put first: directories "t" and "t/s" and
// 2..40 files of at most one chunk in them (most go eagerly, several in flight: version
// 3), sometimes with one of them already at the destination; returns their total size.
std::uint64_t add_random_tree(Rng& g, std::uint64_t seed, SimCase& c) {
  if (!g.chance(1, 3)) return 0;
  std::vector<SimFile> tree;
  for (const char* d : {"t", "t/s"}) {
    SimFile dir;
    dir.path = d;
    dir.directory = true;
    tree.push_back(std::move(dir));
  }
  const unsigned n = static_cast<unsigned>(g.between(2, 40));
  std::uint64_t total = 0;
  for (unsigned i = 0; i < n; ++i) {
    SimFile f;
    f.path = std::string(g.chance(1, 2) ? "t/s/" : "t/") + "small" + std::to_string(i);
    f.mtime_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i);
    f.data = random_bytes(seed * 977 + i, static_cast<std::size_t>(g.below(c.chunk_size + 1)));
    total += f.data.size();
    tree.push_back(std::move(f));
  }
  if (g.chance(1, 4)) c.finals.push_back({tree.back().path, tree.back().data, tree.back().mtime_ns});
  c.files.insert(c.files.begin(), std::make_move_iterator(tree.begin()), std::make_move_iterator(tree.end()));
  return total;
}

// What the destination already holds (one case in eight).
void add_random_preset(Rng& g, std::uint64_t seed, SimCase& c) {
  if (c.files.empty() || !g.chance(1, 8)) return;
  const std::uint64_t chunk = c.chunk_size;
  const SimFile& f = c.files[g.below(c.files.size())];
  if (f.directory || f.data.empty()) return;
  const std::string id = source_identity(f.data.size(), f.mtime_ns);
  switch (g.below(4)) {
    case 0: {  // a partial of this very file: resume (sometimes with an unjournaled tail)
      const auto k = static_cast<std::ptrdiff_t>(g.below(f.data.size() + 1));
      PresetPartial p{f.path, std::vector<std::byte>(f.data.begin(), f.data.begin() + k), id, f.data.size(), {}, 0, {}};
      if (g.chance(1, 2)) {
        p.verified = p.bytes.size();
        auto junk = random_bytes(seed + 7, static_cast<std::size_t>(g.below(3 * chunk)));
        p.bytes.insert(p.bytes.end(), junk.begin(), junk.end());
      }
      c.partials.push_back(std::move(p));
      break;
    }
    case 1:  // a partial of an older version: start over
      c.partials.push_back({f.path, random_bytes(seed + 99, f.data.size() / 2), "size=1,mtime_ns=1", 1, {}, 0, {}});
      break;
    case 2:  // the very file is already there: only re-verified
      c.finals.push_back({f.path, f.data, f.mtime_ns});
      break;
    default: {  // a file with the same size and mtime but other bytes: fails, then re-sent
      auto other = f.data;
      other[g.below(other.size())] ^= std::byte{0x40};
      c.finals.push_back({f.path, std::move(other), f.mtime_ns});
      break;
    }
  }
}

// A symlink (version 4) at the end of one case in four, with a target that may point
// anywhere (it is stored, never followed).
void add_random_link(Rng& g, SimCase& c) {
  if (!g.chance(1, 4)) return;
  SimFile link;
  link.path = g.chance(1, 2) ? "ln" : "t/ln";
  link.link_target = g.pick(std::vector<std::string>{"f0.bin", "../../etc/passwd", "/abs/target", "dangling/x"});
  c.files.push_back(std::move(link));
}

// Up to `max_faults` faults, spread over the bytes each direction is expected to carry
// for `n` entries of `total` bytes.
void add_random_faults(Rng& g, std::uint64_t total, std::uint64_t n, unsigned max_faults, SimCase& c) {
  const std::uint64_t chunk = c.chunk_size;
  const std::uint64_t to_rx_len = total + 400 * (n + 1) + 2 * P::kDataHeadSize * (total / chunk + 1);
  const std::uint64_t to_tx_len = 300 * (n + 1) + 36 * (2 * total / (c.window / 4) + total / chunk + 2);
  const unsigned faults = static_cast<unsigned>(g.below(max_faults + 1));
  for (unsigned i = 0; i < faults; ++i) {
    Fault f;
    f.kind = static_cast<FaultKind>(g.below(6));
    f.dir = g.chance(7, 10) ? Dir::to_receiver : Dir::to_sender;
    f.at = g.below((f.dir == Dir::to_receiver ? to_rx_len : to_tx_len) + 1);
    if (f.kind == FaultKind::stall) f.amount = g.between(1, static_cast<std::uint64_t>(c.stall_timeout.count()) / 2);
    if (f.kind == FaultKind::trickle) f.amount = g.between(1, 16 * 1024);
    c.link.faults.push_back(f);
  }
}

}  // namespace

SimCase random_case(std::uint64_t seed, unsigned max_faults) {
  Rng g(seed * 0x9E3779B97F4A7C15ull + 0x1234567);
  SimCase c;
  c.name = "sweep";
  c.link.seed = seed;
  c.chunk_size = g.pick(std::vector<std::size_t>{4096, 8192, 16384, 32768, 65536});
  std::vector<std::uint64_t> windows;
  for (std::uint64_t w : {16u << 10, 32u << 10, 64u << 10, 128u << 10, 256u << 10}) {
    if (w >= c.chunk_size) windows.push_back(w);
  }
  c.window = g.pick(windows);
  c.max_reads_in_flight = static_cast<unsigned>(g.between(1, 6));
  c.io_latency = Tick(g.below(4));
  c.link.delay = Tick(g.below(21));
  c.link.rate = g.pick(std::vector<std::uint64_t>{4096, 16384, 65536, 262144, 1048576});
  std::uint64_t total = add_random_files(g, seed, c);
  add_random_preset(g, seed, c);
  total += add_random_tree(g, seed, c);
  add_random_faults(g, total, c.files.size(), max_faults, c);
  add_random_link(g, c);  // last: the draws before it, and so older seeds' cases, are unchanged
  return c;
}

}  // namespace ferry::sim
