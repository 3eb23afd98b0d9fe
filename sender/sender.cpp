#include "sender/sender.hpp"

#include <map>
#include <set>

#include "lib/core/limits.hpp"
#include "lib/core/session_driver.hpp"
#include "lib/engine/backoff.hpp"
#include "lib/engine/engine.hpp"
#include "lib/fs/file_source.hpp"
#include "lib/fs/source_tree.hpp"
#include "lib/fs/source_walk.hpp"
#include "lib/net/connection.hpp"
#include "lib/uv/uv_owner.hpp"
#include "sender/sender_session.hpp"

namespace ferry {

using sender::SenderConfig;
using sender::SenderSession;

namespace {
// Source files kept open at once (the current one, and the small files read ahead).
constexpr std::size_t kOpenSources = 16;
// Blocks up to this size are read on the loop thread: a thread-pool round trip costs
// more than such a read (measured: 5,000 files of 4 KiB took twice as long through the
// pool, four reads in flight, each waiting for a worker and a loop wake-up).
constexpr std::size_t kReadOnLoop = 64 * 1024;

Result<sender::ReadBlock> to_read_block(Result<ReadBlockResult> got) {
  if (!got) return got.error();
  return sender::ReadBlock{std::move(got->data), got->digest};
}
}  // namespace

// The driver of one SenderSession: connections (dialled, accepted or lent), file
// reads on the thread pool, the session's timer, redials with backoff.
class SenderEngine final : public Engine {
 public:
  explicit SenderEngine(SenderOptions o) : Engine(std::move(o.on_event)), opts_(std::move(o)) {
    if (opts_.software.empty()) opts_.software = "ferry-send " FERRY_VERSION;
  }
  ~SenderEngine() override { shutdown(/*silent=*/true); }

  // Lists the sources and makes the first connection (or starts listening).
  void begin() override {
    if (done_) return;  // cancelled before the start
    connect_timeout_ = opts_.stall_timeout;
    first_connection_wait_ = opts_.first_connection_wait;
    rate_limit_ = opts_.rate_limit;
    if (failed_to_attach_) return finish_with(make_error(Errc::internal, "cannot create libuv handles"));
    if (!protocol::crypto_ready()) return finish_with(make_error(Errc::internal, "sodium_init: no random numbers"));
    keyed_ = opts_.key.has_value();
    auto limits = check_transfer_limits(opts_.chunk_size, opts_.window, opts_.stall_timeout);
    if (!limits) return finish_with(limits.error());
    auto entries = list_entries();
    if (!entries) return finish_with(entries.error());
    auto config = make_config();
    blocks_ = std::make_unique<BufferPool>(config.chunk_size,
                                           config.window / config.chunk_size + config.max_reads_in_flight + 2);
    session_.emplace(std::move(config), std::move(*entries), Clock::now());
    auto t = start_transport(
        opts_.transport, [this](std::unique_ptr<Connection> c) { adopt(std::move(c)); },
        [this](const Error& e) { connection_failed(e); });
    if (!t) return finish_with(t.error());
  }

  void add_connection(BorrowedFd b) override {
    if (hold_until_begun(b)) return;
    if (done_ || conn_) return release(b);  // busy or over: give it back
    auto c = adopt_lent(std::move(b));
    if (c) return adopt(std::move(*c));
    // Unusable (reported). Where ferry makes connections itself it makes the next one
    // (a lent first descriptor that fails must not leave it waiting for nothing);
    // with listen or provided it keeps waiting for the next one to come.
    if (opts_.transport.can_redial()) connection_failed(c.error());
  }

  void end_now(int, const std::string& reason) override { finish_with(make_error(Errc::connection, reason)); }

  void shutdown(bool silent) override {
    if (!loop_) return;
    if (silent) silence();
    if (session_ && !done_) end_now(0, "cancelled");
    detach();
    stop_transport();
    conn_.reset();
    sources_.clear();
    timer_.reset();
    redial_timer_.reset();
    read_retry_timer_.reset();
    loop_ = nullptr;
  }

 protected:
  bool attach_handles(uv_loop_t* loop) override {
    timer_ = make_timer(loop, this);
    redial_timer_ = make_timer(loop, this);
    read_retry_timer_ = make_timer(loop, this);
    return timer_ && redial_timer_ && read_retry_timer_;
  }

 private:
  // The entries to send as a source the session pulls from (issue #10: never the whole
  // list in memory). First a counting pass over the PATHs (counters only), which also
  // finds an explicit file whose name the tree already has; then the walk itself, whose
  // notes become file_skipped events as it meets them.
  Result<std::unique_ptr<EntrySource>> list_entries() {
    if (opts_.paths.empty() && opts_.files.empty()) return make_error(Errc::usage, "nothing to send");
    std::vector<SourceEntry> files;
    std::set<std::string> file_names;  // the explicit files' (the caller's list, bounded by it)
    EntryCounts counts;
    for (const auto& f : opts_.files) {
      auto e = source_file_entry(f.local_path, f.wire_path);
      if (!e) return e.error();
      if (!file_names.insert(e->wire_path).second) return same_name(e->wire_path);
      counts.bytes += e->size;
      files.push_back(std::move(*e));
    }
    counts.files = files.size();
    if (opts_.paths.empty()) {
      auto walk = SourceWalk::open({}, false, false);
      if (!walk) return walk.error();
      return std::unique_ptr<EntrySource>(std::make_unique<WalkEntrySource>(std::move(*walk), std::move(files), counts));
    }
    std::optional<std::string> clash;
    auto tree = count_sources(opts_.paths, opts_.copy_links, opts_.links, [&](const SourceEntry& e) {
      if (!clash && file_names.count(e.wire_path) > 0) clash = e.wire_path;
    });
    if (!tree) return tree.error();
    if (clash) return same_name(*clash);
    counts.files += tree->files;
    counts.bytes += tree->bytes;
    auto walk = SourceWalk::open(opts_.paths, opts_.copy_links, opts_.links, [this](WalkNote kind, std::string why) {
      ++(kind == WalkNote::skipped ? skipped_ : ignored_);
      emit(Event{EventType::file_skipped, {}, 0, 0, std::move(why), {}, 0});
    });
    if (!walk) return walk.error();
    return std::unique_ptr<EntrySource>(std::make_unique<WalkEntrySource>(std::move(*walk), std::move(files), counts));
  }

  static Error same_name(const std::string& wire_path) {
    return make_error(Errc::usage, "two entries would be sent as '" + wire_path + "'");
  }

  SenderConfig make_config() const {
    SenderConfig c;
    c.chunk_size = opts_.chunk_size;
    c.window = opts_.window;
    c.stall_timeout = opts_.stall_timeout;
    c.session_id = random_session_id();
    c.software = opts_.software;
    c.key = opts_.key;
    c.purpose = opts_.mode == SenderOptions::Mode::check     ? protocol::Purpose::check
                : opts_.mode == SenderOptions::Mode::dry_run ? protocol::Purpose::dry_run
                                                             : protocol::Purpose::transfer;
    c.list_extra = opts_.check_extra;
    return c;
  }

  void redial() { dial_next(); }

  // Takes `c` as the transfer's connection, or turns it away (closed and freed here:
  // it was never started, so it reports nothing). conn_ counts until its close has
  // been reported, so a connection still closing is never replaced under its report.
  void adopt(std::unique_ptr<Connection> c) {
    if (done_ || conn_) {
      c->close(make_error(Errc::connection, "a transfer is already connected"));
      return;
    }
    conn_ = std::move(c);
    note_connected();
    uv_timer_stop(redial_timer_.get());  // a lent connection came while a redial was due
    marker_at_connect_ = session_->progress_marker();
    conn_->start({[this](protocol::Bytes b) {
                    if (done_) return;
                    session_->on_bytes(b, Clock::now());
                    drain();
                  },
                  [this](const Error& why) { on_closed(why); }});
    session_->on_connected(Clock::now());
    drain();
  }

  // Runs on a loop turn of its own (Connection's contract), so the connection is
  // freed right here.
  void on_closed(const Error& why) {
    if (conn_) {
      write_retries_ += conn_->write_retries();
      last_carrier_ = conn_->carrier();
      conn_.reset();
    }
    if (done_) return;  // our own close after the end: nothing more to report
    session_->on_disconnected(why, Clock::now());
    drain();
    if (done_ || session_->finished()) return;
    if (session_->progress_marker() > marker_at_connect_) backoff_.reset();
    connection_failed(why);
  }

  bool retries_left() const { return !opts_.retries || backoff_.attempts() < *opts_.retries; }

  // A connection could not be made or was lost: redial, wait for one, or give up.
  void connection_failed(const Error& why) {
    if (done_) return;
    if (why.code != Errc::connection) return finish_with(why);  // e.g. a dial function's own verdict
    auto carrier = std::exchange(last_carrier_, nullptr);
    if (opts_.transport.can_redial() && never_connected(carrier != nullptr)) {
      return explain_first_failure(why, std::move(carrier),
                                   [this](const Error& e) { finish_with(e, kExitNotConnected); });
    }
    if (waiting_for_first_connection() && opts_.transport.can_redial()) {
      return redial_later(why, " (waiting for the receiver)");
    }
    if (!retries_left()) return finish_with(why);
    if (!opts_.transport.can_redial()) {
      if (opts_.transport.kind == TransportKind::stdio) return finish_with(why);
      backoff_.next();  // listen / provided: count it; the peer or the caller brings the next one
      ++reconnects_;
      const char* who = opts_.transport.kind == TransportKind::listen ? "the receiver to connect again"
                                                                      : "the caller to provide a connection";
      emit(Event{EventType::reconnect, {}, 0, 0, why.message() + "; waiting for " + who, {}, 0});
      return;
    }
    const std::string of = opts_.retries ? " of " + std::to_string(*opts_.retries) : "";
    redial_later(why, of);
  }

  // Emits the reconnect event and arms the redial after the next backoff delay.
  void redial_later(const Error& why, const std::string& note) {
    auto delay = backoff_.next();
    if (!waiting_for_first_connection()) ++reconnects_;
    emit(Event{EventType::reconnect,
               {},
               0,
               0,
               why.message() + "; retry " + std::to_string(backoff_.attempts()) + note + " in " +
                   std::to_string(delay.count()) + " ms",
               {},
               0});
    uv_timer_start(
        redial_timer_.get(), [](uv_timer_t* t) { static_cast<SenderEngine*>(t->data)->redial(); },
        static_cast<std::uint64_t>(delay.count()), 0);
  }

  std::shared_ptr<FileSource> source(std::uint32_t entry, Result<void>& err) {
    forget_whole_read(entry);  // read through a FileSource now: its check is that one's
    auto it = sources_.find(entry);
    if (it != sources_.end()) return it->second;
    // Several small files are read at once (eager files): keep a few open, not all.
    if (sources_.size() >= kOpenSources) sources_.erase(sources_.begin());
    const SourceEntry* held = session_->held_entry(entry);
    if (!held) {  // finished meanwhile (e.g. a read that waited for a buffer): ignored
      err = make_error(Errc::internal, "entry " + std::to_string(entry) + " is no longer held");
      return nullptr;
    }
    auto s = FileSource::open(*held);
    if (!s) {
      err = s.error();
      return nullptr;
    }
    sources_[entry] = *s;
    return *s;
  }

  // nullopt when the entry's file still has its listed size and mtime; else the
  // entry as it is now (the open FileSource is dropped so it is reopened).
  Result<std::optional<SourceEntry>> check_source(std::uint32_t entry) {
    const std::optional<bool> checked = take_whole_read(entry);
    if (checked && *checked) return std::optional<SourceEntry>{};
    Result<void> err;
    auto src = checked ? nullptr : source(entry, err);
    if (src && src->check_unchanged()) return std::optional<SourceEntry>{};
    sources_.erase(entry);
    const SourceEntry* held = session_->held_entry(entry);
    if (!held) return make_error(Errc::internal, "entry " + std::to_string(entry) + " is no longer held");
    auto fresh = restat_source(*held);
    if (!fresh) return fresh.error();
    return std::optional<SourceEntry>(std::move(*fresh));  // the session takes it
  }

  // Carries out everything the session asked for (steps that complete at once feed
  // it again; drive() goes on until it is quiet), then finishes or arms its timer.
  // Nothing re-enters this: completions and closes arrive on later loop turns.
  void drain() {
    // One pass's frames leave in gathered writes (the connection lives through drive()).
    Connection* corked = conn_.get();
    if (corked) corked->cork();
    drive(*session_, [this](sender::Action& a) { perform(a); }, [this](const Event& e) { emit(e); });
    if (corked) corked->uncork();
    if (done_) return;
    if (session_->finished()) return finish();
    auto deadline = session_->next_deadline();
    if (deadline) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
      uv_timer_start(
          timer_.get(),
          [](uv_timer_t* t) {
            auto* self = static_cast<SenderEngine*>(t->data);
            self->session_->on_timeout(Clock::now());
            self->drain();
          },
          static_cast<std::uint64_t>(std::max<long long>(ms, 0)), 0);
    } else {
      uv_timer_stop(timer_.get());
    }
  }

  void perform(sender::Action& a) {
    if (auto* f = std::get_if<SendFrame>(&a)) {
      if (conn_) conn_->write(std::move(*f));
    } else if (auto* r = std::get_if<sender::ReadChunk>(&a)) {
      read_chunk(*r);
    } else if (auto* h = std::get_if<sender::HashPrefix>(&a)) {
      Result<void> err;
      auto src = source(h->entry, err);
      const auto token = h->token;
      if (!src) {
        session_->on_prefix_hashed(token, err.error(), Clock::now());  // drive() carries on
        return;
      }
      src->hash_prefix(loop_, h->length, h->block_size,
                       guarded(this, [token](SenderEngine& self, Result<protocol::FileDigest> d) {
                         if (self.done_) return;
                         self.session_->on_prefix_hashed(token, std::move(d), Clock::now());
                         self.drain();
                       }));
    } else if (auto* k = std::get_if<sender::CheckSource>(&a)) {
      session_->on_source_checked(k->token, check_source(k->entry), Clock::now());  // drive() carries on
    } else if (auto* c = std::get_if<CloseConnection>(&a)) {
      // on_closed decides: redial, or finish
      if (conn_ && c->flush)
        conn_->close_after_flush(c->reason);
      else if (conn_)
        conn_->close(c->reason);
    }
  }

  // An eager file read whole on the loop (read_whole): the entry as held, else nullptr
  // (not such a read, or an entry no longer held: the ordinary way then).
  const SourceEntry* whole_read_entry(const sender::ReadChunk& r) const {
    if (!r.eager || r.offset != 0 || r.length > kReadOnLoop) return nullptr;
    const SourceEntry* held = session_->held_entry(r.entry);
    return held && held->size == r.length ? held : nullptr;
  }

  // Open, read, fstat, close in one step, no FileSource kept; the fstat after the read
  // answers the CheckSource that follows.
  void read_whole(const sender::ReadChunk& r, const SourceEntry& held, ByteBuffer buffer) {
    auto got = FileSource::read_whole_now(held, r.length, std::move(buffer), &source_dirs_);
    if (!got) {
      session_->on_read_done(r.token, got.error(), Clock::now());  // drive() carries on
      return;
    }
    if (got->block.data.size() == r.length) remember_whole_read(r.entry, got->unchanged);
    session_->on_read_done(r.token, to_read_block(std::move(got->block)), Clock::now());
  }

  void remember_whole_read(std::uint32_t entry, bool unchanged) {
    forget_whole_read(entry);
    if (whole_reads_.size() >= kOpenSources) whole_reads_.erase(whole_reads_.begin());  // never asked for
    whole_reads_.push_back({entry, unchanged});
  }
  void forget_whole_read(std::uint32_t entry) { take_whole_read(entry); }
  // The check made after the whole read of `entry` (true: unchanged), once; nullopt: none.
  std::optional<bool> take_whole_read(std::uint32_t entry) {
    for (auto it = whole_reads_.begin(); it != whole_reads_.end(); ++it) {
      if (it->first != entry) continue;
      const bool unchanged = it->second;
      whole_reads_.erase(it);
      return unchanged;
    }
    return std::nullopt;
  }

  // One block into a buffer of the pool, hashed next to its read (FileSource). With
  // every buffer out (the network is slower than the disk), the read waits for one to
  // come back: checked again at every drain and on a short timer.
  void read_chunk(const sender::ReadChunk& r) {
    if (const SourceEntry* held = whole_read_entry(r)) {
      auto buf = blocks_->acquire();
      if (!buf) return wait_for_buffer(r);
      return read_whole(r, *held, std::move(*buf));
    }
    Result<void> err;
    auto src = source(r.entry, err);
    if (!src) {
      session_->on_read_done(r.token, err.error(), Clock::now());  // drive() carries on
      return;
    }
    const auto token = r.token;
    if (r.length <= kReadOnLoop) {
      if (auto buf = blocks_->acquire()) {
        auto got = src->read_now(r.offset, r.length, std::move(*buf));
        session_->on_read_done(token, to_read_block(std::move(got)), Clock::now());  // drive() carries on
        return;
      }
    }
    const bool started = src->try_read(loop_, *blocks_, r.offset, r.length,
                                       guarded(this, [token](SenderEngine& self, Result<ReadBlockResult> got) {
                                         if (self.done_) return;
                                         self.session_->on_read_done(token, to_read_block(std::move(got)),
                                                                     Clock::now());
                                         self.drain();
                                       }));
    if (!started) wait_for_buffer(r);
  }

  void wait_for_buffer(const sender::ReadChunk& r) {
    waiting_reads_.push_back(r);
    uv_timer_start(
        read_retry_timer_.get(), [](uv_timer_t* t) { static_cast<SenderEngine*>(t->data)->retry_reads(); }, 1, 0);
  }

  void retry_reads() {
    if (done_ || !session_) return;
    auto waiting = std::exchange(waiting_reads_, {});
    for (const auto& r : waiting) read_chunk(r);
    drain();
  }

  void finish() {
    auto out = session_->outcome();
    if (!out) return finish_with(out.error());
    const Totals& t = session_->totals();
    const std::uint64_t not_identical = t.check_different + t.check_missing + t.check_partial + t.check_extra;
    if (t.checked && not_identical > 0) {
      return finish_with(make_error(Errc::partial, std::to_string(not_identical) + " of " +
                                                       std::to_string(t.check_identical + not_identical) +
                                                       " entries are not identical on the receiver"),
                         kExitDifferent);
    }
    finish_with(std::nullopt);
  }

  void finish_with(std::optional<Error> err, std::optional<int> exit_code = std::nullopt) {
    if (done_) return;
    done_ = true;
    Totals t;
    if (session_) t = session_->totals();
    t.reconnects = reconnects_;
    t.write_retries = write_retries_ + (conn_ ? conn_->write_retries() : 0);
    t.files_skipped = skipped_ + ignored_;
    if (!err && skipped_ > 0) {
      err = make_error(Errc::partial, std::to_string(skipped_) + " local entries were skipped (not sent)");
    }
    if (timer_) uv_timer_stop(timer_.get());
    if (redial_timer_) uv_timer_stop(redial_timer_.get());
    if (read_retry_timer_) uv_timer_stop(read_retry_timer_.get());
    waiting_reads_.clear();
    stop_transport();
    std::shared_ptr<CarrierStatus> carrier = last_carrier_;
    if (conn_) {
      carrier = conn_->carrier();
      conn_->close_after_flush(make_error(Errc::connection, "transfer ended"));
    }
    const int code = err ? exit_code.value_or(err->exit_code()) : 0;
    // A carrier (ssh) still running may have the remote's last words on its stderr
    // (its summary, its error): they come before ours. Its exit is bounded (ChildProcess
    // signals a carrier that outlives its closed pipes).
    if (carrier && !carrier->settled()) {
      carrier->on_settled = guarded(this, [t, err, code](SenderEngine& self) { self.report_end(t, err, code); });
      return;
    }
    report_end(t, std::move(err), code);
  }

  SenderOptions opts_;
  std::optional<SenderSession> session_;
  UvOwner<uv_timer_t> timer_, redial_timer_;
  std::unique_ptr<Connection> conn_;  // until its close is reported (on_closed)
  std::map<std::uint32_t, std::shared_ptr<FileSource>> sources_;
  // Eager files read whole (read_whole): the entry and whether it was unchanged after the
  // read, until its CheckSource asks (at most kOpenSources; a few at a time in practice).
  std::vector<std::pair<std::uint32_t, bool>> whole_reads_;
  SourceDirCache source_dirs_;  // read_whole's: the last directory read from
  // Block buffers: read into, sent from, back here once written. Bounded by what the
  // session keeps in flight (the window and the reads ahead), plus two.
  std::unique_ptr<BufferPool> blocks_;
  std::vector<sender::ReadChunk> waiting_reads_;  // for a buffer of blocks_
  UvOwner<uv_timer_t> read_retry_timer_;
  Backoff backoff_;
  std::uint64_t marker_at_connect_ = 0;
  std::uint64_t reconnects_ = 0;
  std::uint64_t write_retries_ = 0;  // of connections already closed
  std::size_t skipped_ = 0;  // could not be sent (unreadable): the transfer is partial
  std::size_t ignored_ = 0;  // symlinks and special files left out by rule: no error
  std::shared_ptr<CarrierStatus> last_carrier_;  // of the connection that just closed
};

// ---------------------------------------------------------------------------

Sender::Sender(SenderOptions options)
    : host_(std::make_unique<EngineHost>(std::make_shared<SenderEngine>(std::move(options)))) {}
Sender::~Sender() = default;
void Sender::start(uv_loop_t* loop) {
  host_->start(loop);
}
Result<void> Sender::start_thread() {
  return host_->start_thread();
}
Outcome Sender::run() {
  return host_->run();
}
Outcome Sender::wait() {
  return host_->wait();
}
void Sender::add_connection(BorrowedFd fd) {
  host_->add_connection(std::move(fd));
}
void Sender::cancel() {
  host_->end_now(static_cast<int>(Errc::connection), "cancelled");
}
std::optional<Outcome> Sender::outcome() const {
  return host_->outcome();
}

}  // namespace ferry
