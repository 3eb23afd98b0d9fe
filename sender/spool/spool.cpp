#include "sender/spool/spool.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "lib/engine/backoff.hpp"
#include "lib/engine/engine.hpp"
#include "lib/fs/file_source.hpp"
#include "lib/uv/own_loop.hpp"
#include "lib/uv/uv_owner.hpp"
#include "sender/sender.hpp"
#include "sender/spool/dir_watch.hpp"
#include "sender/spool/spool_queue.hpp"

namespace ferry::sender {
namespace {

constexpr auto kHintDebounce = std::chrono::milliseconds(20);  // coalesce a burst of inotify events
// Scans start at most this often (or every 2x the last scan's duration), so a file
// written without pause cannot turn its stream of change hints into back-to-back scans.
constexpr auto kMinScanGap = std::chrono::milliseconds(200);

void add_totals(Totals& sum, const Totals& t) {
  sum.files_verified += t.files_verified;
  sum.files_failed += t.files_failed;
  sum.bytes_payload += t.bytes_payload;
  sum.bytes_resent += t.bytes_resent;
  sum.bytes_verified += t.bytes_verified;
  sum.chunks_rejected += t.chunks_rejected;
  sum.reconnects += t.reconnects;
  sum.stall_timeouts += t.stall_timeouts;
  sum.write_retries += t.write_retries;
}

std::uint64_t ms_until(Clock::time_point t) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<std::uint64_t>(std::max<long long>(ms, 0));
}

}  // namespace

class Spool::Impl : public std::enable_shared_from_this<Impl> {
 public:
  explicit Impl(SpoolOptions o)
      : opts_(std::move(o)),
        queue_(SpoolConfig{opts_.settle}),
        batch_backoff_(std::chrono::seconds(1), std::chrono::seconds(60)) {}

  ~Impl() { close_handles(); }

  void start(uv_loop_t* loop) {
    loop_ = loop;
    scan_timer_ = make_timer(loop, this);
    batch_timer_ = make_timer(loop, this);
    end_timer_ = make_timer(loop, this);
    if (!scan_timer_ || !batch_timer_ || !end_timer_)
      return end(make_error(Errc::internal, "cannot create libuv timers"));
    auto ok = check_options();
    if (!ok) return end(ok.error());
    policy_ = opts_.on_sent ? *opts_.on_sent : default_on_sent(opts_.dir);
    excludes_ = on_sent_excludes(policy_);
    auto w = DirWatch::start(loop_, opts_.dir, [this](const DirWatchEvent& e) { on_hint(e); });
    if (w) {
      watch_ = std::move(*w);
    } else {
      warn("no change notifications (" + w.error().message() + "); rescanning every " +
           std::to_string(opts_.rescan_interval.count()) + " ms");
    }
    start_scan();
  }

  void stop(int exit_code, const std::string& reason) {
    if (ended_) return;
    // Destroying the transfer's Sender closes its connection; partials keep their journals.
    sender_.reset();
    if (!batch_.empty()) queue_.on_batch_ended(Clock::now());
    batch_.clear();
    if (exit_code == 0) return end(std::nullopt, 0);
    end(make_error(Errc::connection, reason), exit_code);
  }

  const std::optional<Outcome>& outcome() const { return outcome_; }

  void close_handles() {
    sender_.reset();
    watch_.reset();
    scan_timer_.reset();
    batch_timer_.reset();
    end_timer_.reset();
  }

 private:
  Result<void> check_options() const {
    struct stat st {};
    if (::stat(opts_.dir.c_str(), &st) != 0) return make_error(Errc::usage, "--watch " + opts_.dir, errno);
    if (!S_ISDIR(st.st_mode)) return make_error(Errc::usage, "--watch " + opts_.dir + ": not a directory");
    if (!opts_.transport.can_redial()) {
      return make_error(Errc::usage, "--watch needs --connect or -e (a connection for every batch of files)");
    }
    if (opts_.settle.count() < 0) return make_error(Errc::usage, "--settle must not be negative");
    return {};
  }

  template <class Fn>
  auto guarded(Fn fn) {
    return weak_guarded(this, std::move(fn));
  }

  // Nothing is reported after session_end (a disposal finishing after stop()).
  void emit(const Event& e) {
    if (!end_reported_) deliver_event(opts_.on_event, e);
  }
  void warn(const std::string& what, const std::string& path = {}) {
    emit(Event{EventType::warning, path, 0, 0, what, {}, 0});
  }

  // ---- scanning

  void on_hint(const DirWatchEvent& e) {
    const auto now = Clock::now();
    switch (e.kind) {
      case DirWatchKind::moved_in:
        queue_.on_moved_in(e.rel_path, now);
        break;
      case DirWatchKind::written:
      case DirWatchKind::changed:
        queue_.on_changed(e.rel_path, now);
        break;
      case DirWatchKind::removed:
      case DirWatchKind::overflow:
        break;
      case DirWatchKind::failed:
        if (!watch_failure_reported_) {
          watch_failure_reported_ = true;
          warn("change notifications incomplete (" + (e.error ? e.error->message() : std::string("?")) +
               "); relying on rescans");
        }
        break;
    }
    schedule_scan(kHintDebounce);
  }

  void schedule_scan(Clock::duration delay) {
    if (ended_) return;
    const auto at = std::max(Clock::now() + delay,
                             last_scan_start_ + std::max<Clock::duration>(kMinScanGap, 2 * last_scan_duration_));
    if (scan_armed_ && at >= scan_at_) return;
    scan_armed_ = true;
    scan_at_ = at;
    uv_timer_start(
        scan_timer_.get(),
        [](uv_timer_t* t) {
          auto* self = static_cast<Impl*>(t->data);
          self->scan_armed_ = false;
          self->start_scan();
        },
        ms_until(at), 0);
  }

  void start_scan() {
    if (ended_) return;
    if (scanning_) {
      scan_again_ = true;
      return;
    }
    scanning_ = true;
    const auto started = Clock::now();
    last_scan_start_ = started;
    auto listing = std::make_shared<Result<SpoolListing>>(SpoolListing{});
    run_on_pool(
        loop_, [listing, dir = opts_.dir, ex = excludes_] { *listing = scan_spool(dir, ex); },
        guarded([listing, started](Impl& self) { self.on_scanned(*listing, started); }));
  }

  void on_scanned(const Result<SpoolListing>& listing, Clock::time_point started) {
    scanning_ = false;
    last_scan_duration_ = Clock::now() - started;
    if (ended_) return;
    if (!listing) {
      // The spool directory itself is unreadable now (removed, permissions): say so
      // once per distinct reason and keep trying; files may come back.
      if (listing.error().message() != last_scan_error_) warn("cannot scan the spool: " + listing.error().message());
      last_scan_error_ = listing.error().message();
    } else {
      last_scan_error_.clear();
      queue_.on_listing(listing->files, started);
      for (const auto& s : listing->skipped) {
        if (reported_skipped_.insert(s).second) emit(Event{EventType::file_skipped, {}, 0, 0, s, {}, 0});
      }
      if (reported_skipped_.size() > 10000) reported_skipped_.clear();  // bounded; some lines may repeat
      try_batch();
    }
    if (scan_again_) {
      scan_again_ = false;
      schedule_scan(Clock::duration::zero());
    }
    arm_next_scan();
  }

  void arm_next_scan() {
    const auto now = Clock::now();
    auto periodic = std::max<Clock::duration>(opts_.rescan_interval, 10 * last_scan_duration_);
    auto at = now + periodic;
    if (auto d = queue_.next_deadline(now)) at = std::min(at, *d);
    schedule_scan(std::max(at - now, Clock::duration::zero()));
  }

  // ---- batches

  void try_batch() {
    if (ended_ || sender_ || batch_waiting_) return;
    auto files = queue_.take_batch(Clock::now());
    if (files.empty()) return;
    SenderOptions so;
    so.transport = opts_.transport;
    so.chunk_size = opts_.chunk_size;
    so.window = opts_.window;
    so.stall_timeout = opts_.stall_timeout;
    so.rate_limit = opts_.rate_limit;
    so.retries = opts_.retries;
    so.key = opts_.key;
    for (auto& f : files) {
      so.files.push_back(FileToSend{f.local_path, f.wire_path});
      batch_[f.wire_path] = std::move(f);
    }
    batch_progress_ = false;
    so.on_event = guarded([](Impl& self, const Event& e) { self.on_transfer_event(e); });
    sender_ = std::make_unique<Sender>(std::move(so));
    sender_->start(loop_);
  }

  void on_transfer_event(const Event& e) {
    switch (e.type) {
      case EventType::file_verified: {
        emit(e);
        auto it = batch_.find(e.path);
        if (it != batch_.end()) dispose(it->second);
        return;
      }
      case EventType::file_failed:
        emit(e);
        if (batch_.count(e.path)) queue_.on_file_done(e.path, false, Clock::now());
        return;
      case EventType::session_end: {
        // The batch's transfer ended; its Sender is destroyed outside its own callback.
        Event t = e;
        t.type = EventType::transfer_end;
        batch_end_ = t;
        uv_timer_start(
            end_timer_.get(), [](uv_timer_t* h) { static_cast<Impl*>(h->data)->finish_batch(); }, 0, 0);
        return;
      }
      case EventType::session_start:
      case EventType::file_start:
      case EventType::resume:
      case EventType::progress:
      case EventType::file_skipped:
      case EventType::connection_lost:
      case EventType::reconnect:
      case EventType::warning:
      case EventType::file_sent:
      case EventType::transfer_end:
      case EventType::listening:
      case EventType::carrier_message:
      case EventType::entry_checked:  // a spool's transfers are never checks or dry runs
      case EventType::entry_planned:
        return emit(e);
    }
  }

  // The receiver verified `sent`: apply --on-sent (on the pool: renames, copies).
  void dispose(const SourceEntry& sent) {
    ++disposals_;
    batch_progress_ = true;
    auto report = std::make_shared<Result<OnSentReport>>(OnSentReport{});
    run_on_pool(
        loop_, [report, policy = policy_, dir = opts_.dir, sent] { *report = apply_on_sent(policy, dir, sent); },
        guarded([report, sent](Impl& self) {
          --self.disposals_;
          if (*report) {
            self.emit(Event{EventType::file_sent, sent.wire_path, sent.size, sent.size, (*report)->description, {}, 0});
          } else {
            self.warn(
                "verified, but " + report->error().message() + "; left in the spool, not sent again unless it changes",
                sent.wire_path);
          }
          // Verified either way: a file left in place is not sent again until it changes.
          self.queue_.on_file_done(sent.wire_path, true, Clock::now());
          if (self.batch_end_ && self.disposals_ == 0) self.finish_batch();
        }));
  }

  void finish_batch() {
    if (!batch_end_ || disposals_ > 0) return;  // the last disposal finishes it
    Event t = *std::exchange(batch_end_, std::nullopt);
    auto out = sender_ ? sender_->outcome() : std::nullopt;
    sender_.reset();
    queue_.on_batch_ended(Clock::now());
    batch_.clear();
    add_totals(totals_, t.totals);
    emit(t);
    if (ended_) return;
    const int code = out ? out->exit_code : t.exit_code;
    if (code == static_cast<int>(Errc::protocol) || code == static_cast<int>(Errc::authentication) ||
        (code == static_cast<int>(Errc::connection) && opts_.retries)) {
      // The receiver speaks no common protocol, the keys differ, or the retries ran out:
      // give up.
      return end(out && out->error ? *out->error : make_error(static_cast<Errc>(code), t.detail), code);
    }
    if (code == 0 || batch_progress_) {
      batch_backoff_.reset();
    } else {
      // Nothing got through (e.g. the receiver reports a local I/O error for every
      // file): wait before the next batch instead of trying again at once.
      auto delay = batch_backoff_.next();
      batch_waiting_ = true;
      warn("transfer failed (" + (out && out->error ? out->error->message() : t.detail) + "); next try in " +
           std::to_string(delay.count()) + " ms");
      uv_timer_start(
          batch_timer_.get(),
          [](uv_timer_t* h) {
            auto* self = static_cast<Impl*>(h->data);
            self->batch_waiting_ = false;
            self->try_batch();
            self->arm_next_scan();
          },
          static_cast<std::uint64_t>(delay.count()), 0);
    }
    try_batch();
    arm_next_scan();
  }

  void end(std::optional<Error> err) {
    const int code = err ? err->exit_code() : 0;
    end(std::move(err), code);
  }

  void end(std::optional<Error> err, int code) {
    if (ended_) return;
    ended_ = true;
    watch_.reset();
    if (scan_timer_) uv_timer_stop(scan_timer_.get());
    if (batch_timer_) uv_timer_stop(batch_timer_.get());
    outcome_ = Outcome{code, err, totals_};
    Event e;
    e.type = EventType::session_end;
    e.totals = totals_;
    e.exit_code = code;
    e.detail = code == 0 ? "done" : "failed";
    emit(e);
    end_reported_ = true;
  }

  SpoolOptions opts_;
  uv_loop_t* loop_ = nullptr;
  SpoolQueue queue_;
  OnSentPolicy policy_;
  std::vector<std::string> excludes_;
  std::unique_ptr<DirWatch> watch_;
  UvOwner<uv_timer_t> scan_timer_, batch_timer_, end_timer_;
  bool scan_armed_ = false, scanning_ = false, scan_again_ = false;
  Clock::time_point scan_at_{}, last_scan_start_{};
  Clock::duration last_scan_duration_{};
  std::string last_scan_error_;
  bool watch_failure_reported_ = false;
  std::set<std::string> reported_skipped_;
  std::unique_ptr<Sender> sender_;            // the batch in flight
  std::map<std::string, SourceEntry> batch_;  // its files, by wire path
  std::optional<Event> batch_end_;            // its session_end, until finished
  unsigned disposals_ = 0;                    // on-sent actions running on the pool
  bool batch_progress_ = false, batch_waiting_ = false;
  Backoff batch_backoff_;
  Totals totals_;
  bool ended_ = false, end_reported_ = false;
  std::optional<Outcome> outcome_;
};

Spool::Spool(SpoolOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}
Spool::~Spool() = default;
void Spool::start(uv_loop_t* loop) {
  impl_->start(loop);
}
void Spool::stop(int exit_code, const std::string& reason) {
  impl_->stop(exit_code, reason);
}
std::optional<Outcome> Spool::outcome() const {
  return impl_->outcome();
}

Outcome run_spool(SpoolOptions options) {
  OwnLoop loop;
  if (loop.error()) return Outcome{loop.error()->exit_code(), loop.error(), {}};
  options.on_event = [on_event = std::move(options.on_event), &loop](const Event& e) {
    if (on_event) on_event(e);
    if (e.type == EventType::session_end) loop.drop_signals();  // let the loop end
  };
  Spool spool(std::move(options));
  loop.on_signals([&spool](int code, const std::string& why) { spool.stop(code, why); });
  spool.start(loop.get());
  loop.run();
  return ended_outcome(spool.outcome());
}

}  // namespace ferry::sender
