#include "receiver/receiver.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "lib/core/byte_buffer.hpp"
#include "lib/core/session_driver.hpp"
#include "lib/engine/backoff.hpp"
#include "lib/engine/engine.hpp"
#include "lib/fs/file_batch.hpp"
#include "lib/fs/dest_check.hpp"
#include "lib/fs/dest_probe.hpp"
#include "lib/fs/file_sink.hpp"
#include "lib/fs/file_source.hpp"
#include "lib/net/admission.hpp"
#include "lib/net/connection.hpp"
#include "lib/uv/uv_owner.hpp"
#include "receiver/receiver_session.hpp"

namespace ferry {

using receiver::ReceiverConfig;
using receiver::ReceiverSession;

namespace {

// One connected sender.
// Bytes of one sender's blocks being written on the thread pool at once (copies of the
// session's input); beyond it a block is written on the loop thread instead.
constexpr std::size_t kWriteBudget = 8 * 1024 * 1024;
// The most one read from a sender's connection takes at once.
constexpr std::size_t kReadSize = 512 * 1024;
// A batch of eager files starts when it reaches either bound, else when the sender's
// input is drained, its previous batch finished or it left (lib/fs/file_batch makes a
// batch durable together).
constexpr std::size_t kBatchFiles = 512;
constexpr std::uint64_t kBatchBytes = 8 * 1024 * 1024;
// Before the handshake is complete: a stranger's connection costs little memory.
constexpr std::size_t kHandshakeReadSize = 16 * 1024;
// Replies (ACK, RPOS, PONG, ...) queued for a sender that does not read them: above the
// high mark its connection is not read until the queue is down to the low mark.
constexpr std::size_t kReplyQueueHigh = 256 * 1024;
constexpr std::size_t kReplyQueueLow = 64 * 1024;

// Block writes of one sender queued on the thread pool, counted from queueing to the end
// of their pwrite: a Receiver destroyed mid-file waits for them to land before it saves
// the journal, since another Receiver in this process may open the same partial at once.
class WritesInFlight {
 public:
  void started() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
  }
  void finished() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --count_;
    }
    landed_.notify_all();
  }
  // False when they did not all land within `limit` (a disk that hangs).
  bool wait_all(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    return landed_.wait_for(lock, limit, [this] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable landed_;
  unsigned count_ = 0;
};

// A batch of eager files on its way into DEST (ReceiverEngine::pump_batches).
struct BatchJob {
  std::vector<StagedFile> files;
  std::vector<std::uint32_t> ids;
  std::vector<std::string> keys;  // in busy_ until the batch is renamed
  // Declared before `prepared`, so destroyed after it: a PreparedBatch dropped unfinished
  // (an engine destroyed while its job ran) removes its temporaries through DEST.
  std::shared_ptr<DestDir> dest{};
  PreparedBatch prepared{};         // after its prepare step (empty for the names alone)
  BatchOutcome outcome{};           // after its finish step
  std::shared_ptr<BatchJob> prior{};  // the batch whose names this one's syncfs makes durable
};

struct Peer {
  Peer(std::uint64_t i, std::unique_ptr<Connection> c, ReceiverConfig cfg)
      : id(i), conn(std::move(c)), session(std::move(cfg), Clock::now()) {}
  std::uint64_t id;
  // Null once its close was reported (on_closed); until then it counts as this
  // peer's, even when already closed (is_open() false).
  std::unique_ptr<Connection> conn;
  ReceiverSession session;
  // Shared with the pool job that commits it, so that the job never outlives it.
  std::shared_ptr<PartialFile> file;
  std::string busy_path;  // the on-disk key (on_disk_key) this peer holds in ReceiverEngine::busy_
  unsigned jobs = 0;      // pool jobs in flight that hold `file` (opens, writes, commits)
  unsigned writes = 0;    // of which block writes
  // A CloseFile that came while writes were in flight: done when the last one completes
  // (the path stays this peer's until then, so no other writer can open it).
  std::optional<receiver::CloseFile> close_after_writes;
  // Copies of WriteChunk blocks for the writes on the thread pool; created at the
  // first write with the file's block size, bounded (kWriteBudget).
  std::unique_ptr<BufferPool> write_buffers;
  std::shared_ptr<WritesInFlight> writes_in_flight = std::make_shared<WritesInFlight>();
  // Eager files verified and waiting to be committed together (lib/fs/file_batch).
  // Bounded by the session (protocol::kMaxEagerFiles, kMaxEagerBytes).
  std::vector<StagedFile> staged;
  std::vector<std::uint32_t> staged_ids;
  std::vector<std::string> staged_keys;  // their on-disk keys, held in busy_
  std::uint64_t staged_bytes = 0;
  // A batch in its prepare step on the pool, one prepared and waiting for its finish
  // step, and whether a finish step is on the pool: one of each at a time, so VERDICTs
  // keep their order (ReceiverEngine::pump_batches).
  bool preparing = false;
  std::shared_ptr<BatchJob> prepared;
  bool finishing = false;
  // The last batch, renamed but its names not yet durable (finish_batch):
  // its outcomes (VERDICTs) wait for the next batch's syncfs or a sync of the names.
  std::shared_ptr<BatchJob> names_pending;
  bool reported_end = false;  // END seen and acted upon
  std::uint64_t write_retries = 0;
  std::string admitted_as;   // its peer address in ReceiverEngine::admission_
  std::string waiting_path;  // the busy path its OpenFile waits for in ReceiverEngine::waiting_
  // Fires at the session's next_deadline(); data = this Peer, which calls on_deadline.
  UvOwner<uv_timer_t> deadline_timer;
  std::function<void()> on_deadline;
  // The staged files start a batch of any size (the input was drained, or the sender left).
  bool batch_due = false;

  // The sender is still there to talk to.
  bool connected() const { return conn && conn->is_open(); }
};

}  // namespace

// Serves senders into one destination: in listen / provided mode many at once, each
// on its own ReceiverSession and isolated from the others' errors; otherwise a single
// sender's transfer over connections it makes itself.
class ReceiverEngine final : public Engine {
 public:
  explicit ReceiverEngine(ReceiverOptions o)
      : Engine(std::move(o.on_event)),
        opts_(std::move(o)),
        admission_(AdmissionLimits{opts_.max_senders, opts_.max_per_address}) {
    if (opts_.software.empty()) opts_.software = "ferry-recv " FERRY_VERSION;
  }
  ~ReceiverEngine() override { shutdown(/*silent=*/true); }

  void begin() override {
    if (done_) return;  // stopped before the start
    if (failed_to_attach_) return finish(make_error(Errc::internal, "cannot create libuv handles"));
    if (!protocol::crypto_ready()) return finish(make_error(Errc::internal, "sodium_init: no random numbers"));
    keyed_ = opts_.key.has_value();
    auto dest = DestDir::open(opts_.dest, DestOptions{.no_fsync = opts_.no_fsync,
                                                      .stale_partial_age = opts_.stale_partial_age,
                                                      .read_only = opts_.inspect_only});
    if (!dest) return finish(dest.error());
    if (!opts_.inspect_only) {
      if (auto writable = check_dest_writable(opts_.dest); !writable) return finish(writable.error());
    }
    dest_ = std::move(*dest);
    if (dest_->stale_removed() > 0) {
      emit(Event{EventType::warning, {}, 0, 0,
                 "removed " + std::to_string(dest_->stale_removed()) + " stale partial or journal files from " +
                     opts_.dest,
                 {}, 0});
    }
    first_connection_wait_ = opts_.first_connection_wait;
    rate_limit_ = opts_.rate_limit;
    auto t = start_transport(
        opts_.transport, [this](std::unique_ptr<Connection> c) { add_peer(std::move(c)); },
        [this](const Error& e) { connection_failed(e); });
    if (!t) return finish(t.error());
    arm_idle();
  }

  void add_connection(BorrowedFd b) override {
    if (hold_until_begun(b)) return;
    if (done_ || (single_connection() && has_live_peer())) return release(b);
    auto c = adopt_lent(std::move(b));
    if (c) return add_peer(std::move(*c));
    if (single_connection()) connection_failed(c.error());
  }

  void end_now(int exit_code, const std::string& reason) override {
    // One sender's transfer stopped before it completed is no success (README: 0 is a
    // delivered transfer); a serving receiver told to stop is.
    if (exit_code == 0 && single_connection()) exit_code = static_cast<int>(Errc::connection);
    if (exit_code == 0) return finish(std::nullopt, 0);
    finish(make_error(Errc::connection, reason), exit_code);
  }

  void shutdown(bool silent) override {
    if (!loop_) return;
    if (silent) silence();
    if (!done_) end_now(0, "stopped");
    detach();
    close_everything();
    keep_partials();
    peers_.clear();
    loop_ = nullptr;
  }

 protected:
  bool attach_handles(uv_loop_t* loop) override {
    idle_timer_ = make_timer(loop, this);
    redial_timer_ = make_timer(loop, this);
    return idle_timer_ && redial_timer_;
  }

 private:
  // One sender's transfer over connections of our own making (or one stdio stream).
  bool single_connection() const {
    return opts_.transport.kind != TransportKind::listen && opts_.transport.kind != TransportKind::provided;
  }

  bool retries_left() const { return !opts_.retries || backoff_.attempts() < *opts_.retries; }

  void connection_failed(const Error& why, std::shared_ptr<CarrierStatus> carrier = nullptr) {
    if (done_) return;
    if (why.code == Errc::connection && opts_.transport.can_redial() && never_connected(carrier != nullptr)) {
      return explain_first_failure(why, std::move(carrier),
                                   [this](const Error& e) { finish(e, kExitNotConnected); });
    }
    if (why.code != Errc::connection || !opts_.transport.can_redial() || !retries_left()) {
      return finish(why, why.exit_code());
    }
    auto delay = backoff_.next();
    emit(Event{
        EventType::reconnect, {}, 0, 0, why.message() + "; retry in " + std::to_string(delay.count()) + " ms", {}, 0});
    uv_timer_start(
        redial_timer_.get(), [](uv_timer_t* t) { static_cast<ReceiverEngine*>(t->data)->dial_next(); },
        static_cast<std::uint64_t>(delay.count()), 0);
  }

  bool has_live_peer() const {
    for (const auto& [id, p] : peers_) {
      if (p->conn) return true;
    }
    return false;
  }

  void add_peer(std::unique_ptr<Connection> c) {
    // One sender's transfer takes one connection at a time (a dial that completes
    // after a lent descriptor was taken is not a second sender).
    const bool extra = single_connection() && has_live_peer();
    if (done_ || extra) {
      // Closed and freed here: it was never started, so it reports nothing.
      c->close(make_error(Errc::connection, done_ ? "receiver is shutting down" : "already connected"));
      return;
    }
    auto admitted = admission_.admit(c->peer_host(), Clock::now());
    if (admitted.log_line) emit(Event{EventType::warning, {}, 0, 0, *admitted.log_line, {}, 0});
    if (!admitted.admitted) return c->close(make_error(Errc::connection, "too many connections"));
    uv_timer_stop(idle_timer_.get());
    if (single_connection()) uv_timer_stop(redial_timer_.get());  // a lent one came first
    const std::uint64_t id = next_id_++;
    note_connected();
    auto peer = std::make_unique<Peer>(id, std::move(c), session_config());
    Peer* p = peer.get();
    peers_[id] = std::move(peer);
    p->admitted_as = p->conn->peer_host();
    p->conn->limit_write_queue(kReplyQueueHigh, kReplyQueueLow);
    p->deadline_timer = make_timer(loop_, p);
    p->on_deadline = [this, id] { deadline_passed(id); };
    Connection::Callbacks cb;
    cb.on_closed = [this, id](const Error& why) { on_closed(id, why); };
    // Reads land in the session's own buffer (no copy between them).
    cb.input_space = [this, id]() -> std::span<std::byte> {
      Peer* q = find(id);
      if (!q || done_) return {};
      return q->session.input_space(q->session.handshake_complete() ? kReadSize : kHandshakeReadSize);
    };
    cb.on_input = [this, id](std::size_t n) {
      Peer* q = find(id);
      if (!q || done_) return;
      q->session.on_input(n, Clock::now());
      drain(*q);
    };
    cb.on_input_drained = [this, id] {
      Peer* q = find(id);
      if (!q || done_) return;
      q->session.on_input_drained(Clock::now());
      drain(*q);
      q->batch_due = true;  // nothing more to read for now: commit what is staged
      pump_batches(*q);
    };
    p->conn->start(std::move(cb));
    arm_deadline(*p);  // the handshake deadline
  }

  ReceiverConfig session_config() const {
    ReceiverConfig cfg;
    cfg.window = opts_.window;
    cfg.software = opts_.software;
    cfg.handshake_timeout = opts_.handshake_timeout;
    cfg.peer_timeout = opts_.peer_timeout;
    cfg.busy_timeout = opts_.busy_timeout;
    cfg.links = opts_.no_links     ? receiver::LinkPolicy::none
                : opts_.safe_links ? receiver::LinkPolicy::safe
                                   : receiver::LinkPolicy::all;
    cfg.key = opts_.key;
    cfg.inspect_only = opts_.inspect_only;
    return cfg;
  }

  // Arms the peer's timer at its session's next deadline (stopped when it has none).
  void arm_deadline(Peer& p) {
    if (!p.deadline_timer) return;
    const auto deadline = p.session.next_deadline();
    if (!deadline || !p.connected()) {
      uv_timer_stop(p.deadline_timer.get());
      return;
    }
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
    uv_timer_start(
        p.deadline_timer.get(), [](uv_timer_t* t) { static_cast<Peer*>(t->data)->on_deadline(); },
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait.count())), 0);
  }

  void deadline_passed(std::uint64_t id) {
    Peer* q = find(id);
    if (!q || done_) return;
    q->session.on_timeout(Clock::now());
    drain(*q);  // arms the next deadline
  }

  // The session no longer waits for the busy path (refused after busy_timeout, or the
  // connection is gone): its place in the queue is given up.
  void forget_wait(Peer& p) {
    if (p.waiting_path.empty()) return;
    auto it = waiting_.find(std::exchange(p.waiting_path, {}));
    if (it == waiting_.end()) return;
    std::erase_if(it->second, [&](const auto& w) { return w.first == p.id; });
    if (it->second.empty()) waiting_.erase(it);
  }

  Peer* find(std::uint64_t id) {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
  }

  // Runs on a loop turn of its own (Connection's contract): the connection is freed
  // here, and the peer too once its pool jobs are done.
  void on_closed(std::uint64_t id, const Error& why) {
    Peer* p = find(id);
    if (!p) return;
    std::string peer_name;
    std::shared_ptr<CarrierStatus> carrier;
    if (p->conn) {
      peer_name = p->conn->peer();
      p->write_retries += p->conn->write_retries();
      carrier = p->conn->carrier();
      p->conn.reset();
    }
    p->session.on_disconnected(why, Clock::now());
    drain(*p);
    p->batch_due = true;
    pump_batches(*p);  // verified files are committed even though no VERDICT can be sent
    // Serving many: a peer that failed authentication is one warning line, and the
    // receiver goes on (a single transfer ends with that error instead, below).
    auto failure = p->session.failure();
    if (!single_connection() && !done_ && failure && failure->code == Errc::authentication) {
      emit(Event{EventType::warning, {}, 0, 0, "connection from " + peer_name + ": " + failure->message(), {}, 0});
    }
    if (single_connection() && !done_) {
      if (p->session.ended()) {
        finish_transfer(*p);
      } else {
        if (p->session.state() != ReceiverSession::State::awaiting_hello) backoff_.reset();
        auto f = p->session.failure();
        connection_failed(f ? *f : why, std::move(carrier));
      }
    }
    forget_if_idle(id);
  }

  // Carries out everything the peer's session asked for (steps that complete at once
  // feed it again; drive() goes on until it is quiet). Nothing re-enters this for the
  // same peer: closes and pool completions arrive on later loop turns.
  void drain(Peer& p) {
    // One pass's replies (VERDICTs of a batch, ACKs) leave in gathered writes; the
    // connection lives through drive() (it is freed only when its close is reported).
    Connection* corked = p.conn.get();
    if (corked) corked->cork();
    drive(
        p.session, [this, &p](receiver::Action& a) { perform(p, a); },
        [this, &p](const Event& e) {
          if (e.type == EventType::session_start) supersede_older(p);
          emit(e);
        });
    if (corked) corked->uncork();
    if (!p.waiting_path.empty() && !p.session.waiting_for_path()) forget_wait(p);
    if (p.session.ended() && !p.reported_end) {
      p.reported_end = true;
      if (opts_.once) finish_transfer(p);
    }
    arm_deadline(p);
  }

  void perform(Peer& p, receiver::Action& a) {
    const auto now = Clock::now();
    if (auto* f = std::get_if<SendFrame>(&a)) {
      if (p.conn) p.conn->write(std::move(*f));
    } else if (auto* c = std::get_if<CloseConnection>(&a)) {
      if (p.conn && c->flush)
        p.conn->close_after_flush(c->reason);
      else if (p.conn)
        p.conn->close(c->reason);
    } else if (auto* o = std::get_if<receiver::OpenFile>(&a)) {
      open_file(p, *o);
    } else if (auto* w = std::get_if<receiver::WriteChunk>(&a)) {
      write_chunk(p, *w, now);
    } else if (auto* cm = std::get_if<receiver::CommitFile>(&a)) {
      commit_file(p, cm->file_id);
    } else if (auto* sm = std::get_if<receiver::CommitSmallFile>(&a)) {
      stage_small_file(p, *sm);
    } else if (auto* d = std::get_if<receiver::DigestFinalFile>(&a)) {
      digest_final_file(p, *d);
    } else if (auto* pr = std::get_if<receiver::ProbeFile>(&a)) {
      probe_file(p, *pr);
    } else if (auto* cl = std::get_if<receiver::CloseFile>(&a)) {
      if (p.writes > 0) {
        p.close_after_writes = *cl;
        return;
      }
      close_file(p, *cl);
    }
  }

  // Destroyed mid-file: let the block writes in flight land, then save each partial's
  // journal now, so that whoever opens the partial next (another Receiver in this
  // process, at once) finds it whole and resumes after it.
  void keep_partials() {
    for (auto& [id, p] : peers_) {
      // An open or a commit still running on the pool owns the file until it ends.
      if (!p->file || p->jobs > p->writes) continue;
      if (p->writes_in_flight->wait_all(std::chrono::seconds(10))) p->file->close_keep();
    }
  }

  void close_file(Peer& p, const receiver::CloseFile& cl) {
    if (p.file && p.jobs == 0) {
      if (cl.discard)
        p.file->close_discard();
      else
        p.file->close_keep();
      p.file.reset();
    }
    release_path(p);
  }

  // A verified block: copied into a pooled buffer and written on the thread pool, so the
  // loop goes on receiving and verifying (writes are positional and may complete in any
  // order). With every buffer out (the disk is slower than the network) it is written
  // here on the loop instead, which also slows the reading of this sender's input.
  void write_chunk(Peer& p, const receiver::WriteChunk& w, Clock::time_point now) {
    if (!p.file) {
      p.session.on_chunk_written(w.file_id, w.offset, w.data.size(),
                                 make_error(Errc::internal, "write without an open file"), now);
      return;  // drive() carries on
    }
    if (!p.write_buffers) {
      const std::size_t block = std::max<std::size_t>(w.data.size(), protocol::kMinChunkSize);
      p.write_buffers = std::make_unique<BufferPool>(block, std::max<std::size_t>(2, kWriteBudget / block));
    }
    std::optional<ByteBuffer> buf;
    if (w.data.size() <= p.write_buffers->capacity()) buf = p.write_buffers->acquire();
    if (!buf) {
      p.session.on_chunk_written(w.file_id, w.offset, w.data.size(), p.file->write(w.offset, w.data, w.digest), now);
      return;
    }
    std::memcpy(buf->data(), w.data.data(), w.data.size());
    buf->resize(w.data.size());
    struct Job {
      ByteBuffer block;
      std::uint64_t offset, digest;
      std::uint32_t file_id;
      Result<void> result;
    };
    auto job = std::make_shared<Job>(Job{std::move(*buf), w.offset, w.digest, w.file_id, {}});
    std::shared_ptr<PartialFile> file = p.file;
    ++p.jobs;
    ++p.writes;
    const std::uint64_t id = p.id;
    auto landing = p.writes_in_flight;
    landing->started();
    run_on_pool(
        loop_,
        [file, job, landing] {
          job->result = file->write(job->offset, job->block.span(), job->digest);
          landing->finished();
        },
        guarded(this, [id, job](ReceiverEngine& self) { self.chunk_written(id, *job); }));
  }

  template <class Job>
  void chunk_written(std::uint64_t id, Job& job) {
    Peer* q = find(id);
    if (!q) return;
    --q->jobs;
    --q->writes;
    const std::size_t length = job.block.size();
    job.block = ByteBuffer{};  // back to the pool before the session asks for more
    q->session.on_chunk_written(job.file_id, job.offset, length, std::move(job.result), Clock::now());
    if (q->writes == 0 && q->close_after_writes) close_file(*q, *std::exchange(q->close_after_writes, std::nullopt));
    drain(*q);
    // A write completed outside an input batch: acknowledge what is written now (the
    // sender may be waiting for it, with no more input to come until it gets it); the
    // session sends an ACK only when the contiguous point moved.
    q->session.on_input_drained(Clock::now());
    drain(*q);
    forget_if_idle(id);
  }

  void release_path(Peer& p) {
    if (p.busy_path.empty()) return;
    release_key(std::exchange(p.busy_path, {}));
  }

  // Frees an on-disk key of busy_ and hands it to the first live peer waiting for it.
  void release_key(const std::string& path) {
    busy_.erase(path);
    // Hand the path to the first live peer waiting for it.
    auto it = waiting_.find(path);
    if (it == waiting_.end()) return;
    auto queue = std::move(it->second);
    waiting_.erase(it);
    for (std::size_t i = 0; i < queue.size(); ++i) {
      Peer* q = find(queue[i].first);
      if (!q || !q->connected() || !q->session.waiting_for_path()) continue;
      q->waiting_path.clear();
      q->session.on_path_free(queue[i].second.file_id);  // no busy deadline during the open
      open_file(*q, queue[i].second);
      for (std::size_t j = i + 1; j < queue.size(); ++j) waiting_[path].push_back(std::move(queue[j]));
      drain(*q);
      return;
    }
  }

  // A new connection of a session supersedes an older one still open (the sender
  // redialled after a stall the receiver could not see): close the old one now so
  // its partial is released for the resume.
  void supersede_older(Peer& p) {
    for (auto& [id, other] : peers_) {
      if (other.get() == &p || !other->connected() || other->session.session_id() != p.session.session_id()) {
        continue;
      }
      emit(Event{
          EventType::warning,
          {},
          0,
          0,
          "a new connection of session " + p.session.session_id() + " replaces the one from " + other->conn->peer(),
          {},
          0});
      other->conn->close(make_error(Errc::connection, "superseded by a new connection of the same session"));
    }
  }

  // A directory is made here on the loop (one mkdir); the ANSWER says whether it is new.
  void make_directory(Peer& p, const receiver::OpenFile& o) {
    auto r = dest_->make_directory(o.offer);
    receiver::OpenedFile made;
    if (r) made.created = *r;
    // A receiver killed in a batch left hidden temporaries here: a sender offers the
    // directory again (it was there already), so they are looked for once per offer.
    if (r && !made.created) remove_dead_batch_temps(*dest_, o.offer.path);
    p.session.on_file_opened(o.file_id, r ? Result<receiver::OpenedFile>(std::move(made)) : r.error(),
                             Clock::now());  // drive() carries on
  }

  // A symlink (version 4) is made here on the loop too (symlinkat, renameat, one fsync
  // of its directory). A path another connection is writing is refused, not waited for.
  void make_symlink(Peer& p, const receiver::OpenFile& o) {
    Result<receiver::OpenedFile> done{receiver::OpenedFile{}};
    if (busy_.count(on_disk_key(o.offer.path)) > 0) {
      done = make_error(Errc::local_io, "busy: another sender is writing " + o.offer.path);
    } else if (auto r = dest_->make_symlink(o.offer); !r) {
      done = r.error();
    }
    p.session.on_file_opened(o.file_id, std::move(done), Clock::now());  // drive() carries on
  }

  void open_file(Peer& p, const receiver::OpenFile& o) {
    const auto now = Clock::now();
    if (o.offer.kind == protocol::EntryKind::directory) return make_directory(p, o);
    if (o.offer.kind == protocol::EntryKind::symlink) return make_symlink(p, o);
    // One writer per file on disk: keyed by the name the file and its partial have
    // there, not by the sent path (two sent paths can share a partial's name).
    const std::string key = on_disk_key(o.offer.path);
    if (busy_.count(key)) {
      // Another connection is writing this file (or still closing it): wait for it,
      // at most busy_timeout (the session refuses the entry then).
      waiting_[key].emplace_back(p.id, o);
      p.waiting_path = key;
      p.session.on_path_busy(o.file_id, now);
      return;
    }
    busy_.insert(key);
    p.busy_path = key;
    ++p.jobs;
    struct Job {
      protocol::Offer offer;
      PartialState state;
      Result<std::unique_ptr<PartialFile>> file{std::unique_ptr<PartialFile>()};
    };
    auto job = std::make_shared<Job>();
    job->offer = o.offer;
    const std::uint64_t id = p.id;
    const std::uint32_t file_id = o.file_id;
    auto dest = dest_;
    run_on_pool(
        loop_, [job, dest] { job->file = dest->open_partial(job->offer, job->state); },
        guarded(this, [job, id, file_id](ReceiverEngine& self) {
          Peer* q = self.find(id);
          if (!q) return;  // the job's partial, if any, is closed with its journal kept
          --q->jobs;
          if (!job->file) {
            self.release_path(*q);
            q->session.on_file_opened(file_id, job->file.error(), Clock::now());
          } else {
            q->file = std::move(*job->file);
            if (!q->connected()) {  // the sender left while we were checking the partial
              q->file->close_keep();
              q->file.reset();
              self.release_path(*q);
              return self.forget_if_idle(id);
            }
            receiver::OpenedFile opened{job->state.offset, job->state.prefix, job->state.note, {}};
            for (const auto& b : job->state.held) opened.held.push_back({b.offset, b.length, b.digest});
            q->session.on_file_opened(file_id, std::move(opened), Clock::now());
          }
          self.drain(*q);
          self.forget_if_idle(id);  // a failed open of a peer already gone
        }));
  }

  // Check and dry-run sessions (protocol version 4): read-only looks into DEST on the
  // pool (lib/fs/dest_probe), one at a time per session (the session's bound). The job
  // counts in p.jobs, so a sender that leaves keeps its admission slot until it ends.
  template <class Job, class Done>
  void run_inspection(Peer& p, Job job, Done done) {
    ++p.jobs;
    auto result = std::make_shared<decltype(job())>(make_error(Errc::internal, "not run"));
    const std::uint64_t id = p.id;
    run_on_pool(
        loop_, [job = std::move(job), result] { *result = job(); },
        guarded(this, [id, result, done = std::move(done)](ReceiverEngine& self) {
          Peer* q = self.find(id);
          if (!q) return;
          --q->jobs;
          done(*q, std::move(*result));
          self.drain(*q);
          self.forget_if_idle(id);
        }));
  }

  void digest_final_file(Peer& p, const receiver::DigestFinalFile& d) {
    auto dest = dest_;
    run_inspection(
        p, [dest, offer = d.offer, names = d.list_names] { return inspect_final(*dest, offer, names); },
        [file_id = d.file_id](Peer& q, Result<FinalState> r) {
          if (!r) return q.session.on_final_digested(file_id, r.error(), Clock::now());
          receiver::FinalFile f;
          f.kind = static_cast<receiver::FinalFile::Kind>(r->kind);
          f.target = std::move(r->target);
          f.size = r->size;
          f.partial = r->partial;
          f.digest = r->digest;
          f.names = std::move(r->names);
          f.truncated = r->truncated;
          q.session.on_final_digested(file_id, std::move(f), Clock::now());
        });
  }

  void probe_file(Peer& p, const receiver::ProbeFile& pr) {
    auto dest = dest_;
    run_inspection(p, [dest, offer = pr.offer] { return plan_open(*dest, offer); },
                   [file_id = pr.file_id](Peer& q, Result<PlannedOpen> r) {
                     if (!r) return q.session.on_file_probed(file_id, r.error(), Clock::now());
                     receiver::OpenedFile o{r->state.offset, r->state.prefix, r->state.note, {}, r->created};
                     for (const auto& b : r->state.held) o.held.push_back({b.offset, b.length, b.digest});
                     q.session.on_file_probed(file_id, std::move(o), Clock::now());
                   });
  }

  void commit_file(Peer& p, std::uint32_t file_id) {
    if (!p.file) {
      p.session.on_file_committed(file_id, make_error(Errc::internal, "commit without an open file"),
                                  Clock::now());  // drive() carries on
      return;
    }
    // Version 6: the commit owns the file and its path from here on; the session takes
    // the sender's next OFFER (and may open another file) while it runs.
    ++p.jobs;
    auto result = std::make_shared<Result<void>>();
    std::shared_ptr<PartialFile> file = std::move(p.file);
    p.file.reset();
    std::string key = std::exchange(p.busy_path, {});
    const std::uint64_t id = p.id;
    run_on_pool(
        loop_, [file, result] { *result = file->commit(); },
        guarded(this, [id, file_id, result, key = std::move(key)](ReceiverEngine& self) {
          if (!key.empty()) self.release_key(key);
          Peer* q = self.find(id);
          if (!q) return;
          --q->jobs;
          q->session.on_file_committed(file_id, *result, Clock::now());
          self.drain(*q);
          self.forget_if_idle(id);
        }));
  }

  // An eager file verified in memory: staged for the next batch. A full batch starts at
  // once (when none is being prepared); otherwise batches start when the input is
  // drained or the previous batch finished.
  void stage_small_file(Peer& p, receiver::CommitSmallFile& sm) {
    // One writer per file on disk, as for open_file; a busy one fails (the sender sends
    // it again the ordinary way, and then waits for its turn). A directory (version 6)
    // is only made, which two senders may both do.
    const bool directory = sm.offer.kind == protocol::EntryKind::directory;
    std::string key = on_disk_key(sm.offer.path);
    if (!directory && busy_.count(key)) {
      p.session.on_file_committed(sm.file_id, make_error(Errc::local_io, "another sender is writing " + sm.offer.path),
                                  Clock::now());  // drive() carries on
      return;
    }
    if (!directory) {
      busy_.insert(key);
      p.staged_keys.push_back(std::move(key));
    }
    p.staged_bytes += sm.data.size();
    p.staged.push_back(
        StagedFile{std::move(sm.offer.path), sm.offer.mode, sm.offer.mtime_ns, std::move(sm.data), directory});
    p.staged_ids.push_back(sm.file_id);
    if (p.staged.size() >= kBatchFiles || p.staged_bytes >= kBatchBytes) pump_batches(p);
  }

  // Commits the staged files as batches, each in two steps on the pool (lib/fs/file_batch):
  // prepare (temporaries written) and finish (made durable together, then renamed). The
  // next batch is prepared while the previous one finishes (waits for its syncfs). A
  // batch's outcomes wait until its names are durable too: made so by the next batch's
  // syncfs (one sync per batch while files keep coming), or by a sync of the names alone
  // when nothing more is staged.
  void pump_batches(Peer& p) {
    start_finish(p);  // first: the prepared batch moves on, which makes room for the next
    start_prepare(p);
  }

  void start_prepare(Peer& p) {
    if (p.preparing || p.prepared || p.staged.empty()) return;
    if (!p.batch_due && p.staged.size() < kBatchFiles && p.staged_bytes < kBatchBytes) return;
    p.batch_due = false;
    p.preparing = true;
    ++p.jobs;
    auto job = std::make_shared<BatchJob>(BatchJob{std::exchange(p.staged, {}), std::exchange(p.staged_ids, {}),
                                                   std::exchange(p.staged_keys, {})});
    p.staged_bytes = 0;
    job->dest = dest_;
    // A batch finishing or with names pending before this one: this one will most likely
    // carry those names' syncfs, so its own data waits for that one call too.
    const bool syncfs_follows = p.finishing || p.names_pending;
    auto dest = dest_;
    const std::uint64_t id = p.id;
    run_on_pool(
        loop_,
        [job, dest, syncfs_follows] {
          job->prepared = prepare_batch(*dest, job->files, syncfs_follows);
          for (auto& f : job->files) std::vector<std::byte>().swap(f.data);  // the names alone are kept
        },
        guarded(this, [id, job](ReceiverEngine& self) { self.batch_prepared(id, job); }));
  }

  void batch_prepared(std::uint64_t id, const std::shared_ptr<BatchJob>& job) {
    Peer* q = find(id);
    if (!q) return;
    --q->jobs;
    q->preparing = false;
    q->prepared = job;
    pump_batches(*q);
    forget_if_idle(id);
  }

  // The prepared batch, or the pending names alone when nothing more is on its way.
  void start_finish(Peer& p) {
    if (p.finishing) return;
    std::shared_ptr<BatchJob> job;
    if (p.prepared) {
      job = std::exchange(p.prepared, {});
    } else if (p.names_pending && !p.preparing && p.staged.empty()) {
      job = std::make_shared<BatchJob>();
    } else {
      return;
    }
    job->prior = std::exchange(p.names_pending, {});
    p.finishing = true;
    ++p.jobs;
    auto dest = dest_;
    const std::uint64_t id = p.id;
    run_on_pool(
        loop_,
        [job, dest] {
          if (job->files.empty()) {
            if (job->prior) job->outcome.prior = sync_names(*dest);
          } else {
            job->outcome = finish_batch(job->prepared, job->prior != nullptr);
          }
        },
        guarded(this, [id, job](ReceiverEngine& self) { self.batch_done(id, job); }));
  }

  void batch_done(std::uint64_t id, const std::shared_ptr<BatchJob>& job) {
    for (const auto& key : job->keys) release_key(key);
    job->keys.clear();
    Peer* q = find(id);
    if (!q) return;
    --q->jobs;
    q->finishing = false;
    if (job->prior) report_batch(*q, *job->prior, job->outcome.prior);
    if (job->outcome.names_pending) {
      q->names_pending = job;
    } else {
      report_batch(*q, *job, {});
    }
    job->prior.reset();
    drain(*q);
    q->batch_due = true;  // as the input drains: what was staged meanwhile goes next
    pump_batches(*q);     // the batch prepared meanwhile, or the names it left pending
    forget_if_idle(id);
  }

  // The outcome of each file of `job`; a failed sync of its names (`names`) fails the
  // files that were renamed (in place, but not durably).
  void report_batch(Peer& p, BatchJob& job, const Result<void>& names) {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < job.ids.size(); ++i) {
      Result<void> r = job.outcome.results.at(i);
      if (r && !names) {
        const Error& e = names.error();
        r = make_error(e.code, e.what + " after renaming " + dest_->path() + "/" + job.files[i].wire_path, e.sys_errno);
      }
      p.session.on_file_committed(job.ids[i], r, now);
    }
  }

  // Frees peer `id` once its close was reported and its pool jobs are done (its
  // partial keeps its journal). Only from a callback of its own (on_closed, a pool
  // completion), never while the peer is on the stack.
  void forget_if_idle(std::uint64_t id) {
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    Peer& p = *it->second;
    if (p.conn || p.jobs > 0) return;
    if (p.file) p.file->close_keep();
    release_path(p);
    forget_wait(p);
    admission_.release(p.admitted_as);
    peers_.erase(it);
    arm_idle();
  }

  void arm_idle() {
    if (done_ || !peers_.empty() || opts_.idle_timeout.count() == 0 || single_connection()) return;
    uv_timer_start(
        idle_timer_.get(),
        [](uv_timer_t* t) {
          auto* self = static_cast<ReceiverEngine*>(t->data);
          const auto secs = std::chrono::duration_cast<std::chrono::seconds>(self->opts_.idle_timeout).count();
          auto e =
              make_error(Errc::connection, "no sender connected for " + std::to_string(secs) + " s (idle timeout)");
          self->finish(e, e.exit_code());
        },
        static_cast<std::uint64_t>(opts_.idle_timeout.count()), 0);
  }

  // A sender's whole transfer finished (END exchanged).
  void finish_transfer(Peer& p) {
    Totals t = p.session.totals();
    t.write_retries = p.write_retries + (p.conn ? p.conn->write_retries() : 0);
    if (t.files_failed > 0) {
      auto e = make_error(Errc::partial, std::to_string(t.files_failed) + " entries failed in the transfer");
      return finish(e, e.exit_code(), &t);
    }
    finish(std::nullopt, 0, &t);
  }

  void finish(std::optional<Error> err) {
    const int code = err ? err->exit_code() : 0;
    finish(std::move(err), code);
  }

  void finish(std::optional<Error> err, int code, const Totals* totals = nullptr) {
    if (done_) return;
    done_ = true;
    close_everything();
    report_end(totals ? *totals : Totals{}, std::move(err), code);
  }

  void close_everything() {
    stop_transport();
    idle_timer_.reset();
    redial_timer_.reset();
    for (auto& [id, p] : peers_) {
      // Let a final END or ERROR reach the sender; partials keep their journals.
      if (p->conn) p->conn->close_after_flush(make_error(Errc::connection, "receiver finished"));
    }
  }

  ReceiverOptions opts_;
  Admission admission_;  // connections served, per peer address; rate-limited refusal log
  std::shared_ptr<DestDir> dest_;
  UvOwner<uv_timer_t> idle_timer_, redial_timer_;
  std::map<std::uint64_t, std::unique_ptr<Peer>> peers_;
  std::set<std::string> busy_;  // on-disk keys (on_disk_key) of files with an open partial
  std::map<std::string, std::vector<std::pair<std::uint64_t, receiver::OpenFile>>>
      waiting_;  // OpenFile waiting for a busy path
  Backoff backoff_;
  std::uint64_t next_id_ = 1;
};

// ---------------------------------------------------------------------------

Receiver::Receiver(ReceiverOptions options)
    : host_(std::make_unique<EngineHost>(std::make_shared<ReceiverEngine>(std::move(options)))) {}
Receiver::~Receiver() = default;
void Receiver::start(uv_loop_t* loop) {
  host_->start(loop);
}
Result<void> Receiver::start_thread() {
  return host_->start_thread();
}
Outcome Receiver::run() {
  return host_->run();
}
Outcome Receiver::wait() {
  return host_->wait();
}
void Receiver::add_connection(BorrowedFd fd) {
  host_->add_connection(std::move(fd));
}
void Receiver::stop(int exit_code, std::string reason) {
  host_->end_now(exit_code, std::move(reason));
}
std::optional<Outcome> Receiver::outcome() const {
  return host_->outcome();
}

}  // namespace ferry
