#include "receiver/recv_app.hpp"

#include <uv.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include "lib/backoff.hpp"
#include "lib/connection.hpp"
#include "lib/events.hpp"
#include "lib/file_sink.hpp"
#include "lib/file_source.hpp"
#include "lib/uv_owner.hpp"
#include "receiver/receiver_session.hpp"

namespace ferry::receiver {
namespace {

// One connected sender.
struct Peer {
  Peer(std::uint64_t i, std::unique_ptr<Connection> c, ReceiverConfig cfg)
      : id(i), conn(std::move(c)), session(std::move(cfg), Clock::now()) {}
  std::uint64_t id;
  std::unique_ptr<Connection> conn;  // null once closed
  ReceiverSession session;
  std::unique_ptr<PartialFile> file;
  std::string busy_path;  // the wire path this peer holds in RecvApp::busy_
  unsigned jobs = 0;      // pool jobs in flight that hold `file`
  bool draining = false, again = false;
  bool reported_end = false;  // END seen and acted upon
  std::uint64_t write_retries = 0;
};

// Senders served at once; further connections are closed at once (bounded memory).
constexpr std::size_t kMaxPeers = 256;

class RecvApp {
 public:
  RecvApp(const RecvOptions& o, std::shared_ptr<DestDir> dest, std::unique_ptr<EventSink> sink)
      : opts_(o), dest_(std::move(dest)), sink_(std::move(sink)) {
    uv_loop_init(&loop_);
    auto init_timer = [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); };
    idle_timer_ = UvOwner<uv_timer_t>(&loop_, init_timer);
    reap_timer_ = UvOwner<uv_timer_t>(&loop_, init_timer);
    redial_timer_ = UvOwner<uv_timer_t>(&loop_, init_timer);
    idle_timer_.get()->data = reap_timer_.get()->data = redial_timer_.get()->data = this;
    for (int signum : {SIGINT, SIGTERM}) {
      auto s = UvOwner<uv_signal_t>(&loop_, [](uv_loop_t* l, uv_signal_t* h) { return uv_signal_init(l, h); });
      s.get()->data = this;
      uv_signal_start(s.get(), [](uv_signal_t* h, int sig) {
        auto* self = static_cast<RecvApp*>(h->data);
        self->finish(make_error(Errc::connection, std::string("interrupted by signal ") + strsignal(sig)), 128 + sig);
      }, signum);
      signals_.push_back(std::move(s));
    }
  }

  ~RecvApp() {
    close_everything();
    uv_run(&loop_, UV_RUN_DEFAULT);  // connections flush and close; reaps run
    reap_timer_.reset();
    graveyard_.clear();
    peers_.clear();
    uv_run(&loop_, UV_RUN_DEFAULT);  // the last close callbacks free their handles
    uv_loop_close(&loop_);
  }

  int run() {
    switch (opts_.common.mode) {
      case ConnectMode::listen: {
        auto l = Listener::open(&loop_, opts_.common.address,
                                [this](std::unique_ptr<Connection> c) { add_peer(std::move(c)); });
        if (!l) return fail_now(l.error());
        listener_ = std::move(*l);
        sink_->emit(Event{EventType::warning, {}, 0, 0, "listening on " + listener_->address().to_string(), {}, 0});
        arm_idle();
        break;
      }
      case ConnectMode::connect:
      case ConnectMode::command:
        open_connection();
        break;
      case ConnectMode::stdio: {
        auto c = open_stdio(&loop_);
        if (!c) return fail_now(c.error());
        add_peer(std::move(*c));
        break;
      }
    }
    if (!done_) uv_run(&loop_, UV_RUN_DEFAULT);
    return exit_code_;
  }

 private:
  int fail_now(const Error& e) {
    std::fprintf(stderr, "ferry-recv: error: %s\n", e.message().c_str());
    done_ = true;
    exit_code_ = e.exit_code();
    return exit_code_;
  }

  bool single_connection() const { return opts_.common.mode != ConnectMode::listen; }

  void open_connection() {
    if (done_) return;
    if (opts_.common.mode == ConnectMode::command) {
      auto c = spawn_command(&loop_, opts_.common.rsh);
      if (!c) return connection_failed(c.error());
      return add_peer(std::move(*c));
    }
    dial(&loop_, opts_.common.address, [this](Result<std::unique_ptr<Connection>> r) {
      if (done_) return;
      if (!r) return connection_failed(r.error());
      add_peer(std::move(*r));
    });
  }

  void connection_failed(const Error& why) {
    if (done_) return;
    if (opts_.common.mode == ConnectMode::stdio || backoff_.attempts() >= opts_.retries) {
      return finish(why, why.exit_code());
    }
    auto delay = backoff_.next();
    sink_->emit(Event{EventType::reconnect, {}, 0, 0, why.message() + "; retry in " + std::to_string(delay.count()) + " ms", {}, 0});
    uv_timer_start(redial_timer_.get(), [](uv_timer_t* t) { static_cast<RecvApp*>(t->data)->open_connection(); },
                   static_cast<std::uint64_t>(delay.count()), 0);
  }

  void add_peer(std::unique_ptr<Connection> c) {
    if (done_ || peers_.size() >= kMaxPeers) {
      c->close(make_error(Errc::connection, done_ ? "receiver is shutting down" : "too many connections"));
      graveyard_.push_back(std::move(c));
      schedule_reap();
      return;
    }
    uv_timer_stop(idle_timer_.get());
    const std::uint64_t id = next_id_++;
    ReceiverConfig cfg;
    cfg.window = opts_.common.window;
    cfg.software = "ferry-recv " FERRY_VERSION;
    auto peer = std::make_unique<Peer>(id, std::move(c), cfg);
    Peer* p = peer.get();
    peers_[id] = std::move(peer);
    p->conn->start({[this, id](protocol::Bytes b) {
                      Peer* q = find(id);
                      if (!q) return;
                      q->session.on_bytes(b, Clock::now());
                      drain(*q);
                      q->session.on_input_drained(Clock::now());
                      drain(*q);
                    },
                    [this, id](const Error& why) { on_closed(id, why); }});
  }

  Peer* find(std::uint64_t id) {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
  }

  void on_closed(std::uint64_t id, const Error& why) {
    Peer* p = find(id);
    if (!p) return;
    if (p->conn) {
      p->write_retries += p->conn->write_retries();
      graveyard_.push_back(std::move(p->conn));
    }
    p->session.on_disconnected(why, Clock::now());
    drain(*p);
    schedule_reap();
    if (single_connection() && !done_) {
      if (p->session.ended()) return finish_transfer(*p);
      if (p->session.state() != ReceiverSession::State::awaiting_hello) backoff_.reset();
      auto f = p->session.failure();
      connection_failed(f ? *f : why);
    }
  }

  void drain(Peer& p) {
    if (p.draining) {
      p.again = true;
      return;
    }
    p.draining = true;
    do {
      p.again = false;
      for (auto& a : p.session.take_actions()) perform(p, a);
      for (auto& e : p.session.take_events()) {
        if (e.type == EventType::session_start) supersede_older(p);
        sink_->emit(e);
      }
    } while (p.again);
    p.draining = false;
    if (p.session.ended() && !p.reported_end) {
      p.reported_end = true;
      if (opts_.once) finish_transfer(p);
    }
  }

  void perform(Peer& p, Action& a) {
    const auto now = Clock::now();
    if (auto* f = std::get_if<SendFrame>(&a)) {
      if (p.conn) p.conn->write(std::move(*f));
    } else if (auto* c = std::get_if<CloseConnection>(&a)) {
      if (p.conn && c->flush) p.conn->close_after_flush(c->reason);
      else if (p.conn) p.conn->close(c->reason);
    } else if (auto* o = std::get_if<OpenFile>(&a)) {
      open_file(p, *o);
    } else if (auto* w = std::get_if<WriteChunk>(&a)) {
      Result<void> r = p.file ? p.file->write(w->offset, w->data)
                              : Result<void>(make_error(Errc::internal, "write without an open file"));
      p.session.on_chunk_written(w->file_id, w->offset + w->data.size(), std::move(r), now);
      p.again = true;
    } else if (auto* cm = std::get_if<CommitFile>(&a)) {
      commit_file(p, cm->file_id);
    } else if (auto* cl = std::get_if<CloseFile>(&a)) {
      if (p.file && p.jobs == 0) {
        if (cl->discard) p.file->close_discard();
        else p.file->close_keep();
        p.file.reset();
      }
      release_path(p);
    }
  }

  void release_path(Peer& p) {
    if (p.busy_path.empty()) return;
    const std::string path = std::exchange(p.busy_path, {});
    busy_.erase(path);
    // Hand the path to the first live peer waiting for it.
    auto it = waiting_.find(path);
    if (it == waiting_.end()) return;
    auto queue = std::move(it->second);
    waiting_.erase(it);
    for (std::size_t i = 0; i < queue.size(); ++i) {
      Peer* q = find(queue[i].first);
      if (!q || !q->conn) continue;
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
      if (other.get() == &p || !other->conn || other->session.session_id() != p.session.session_id()) continue;
      sink_->emit(Event{EventType::warning, {}, 0, 0, "a new connection of session " + p.session.session_id() +
                                                          " replaces the one from " + other->conn->peer(), {}, 0});
      other->conn->close(make_error(Errc::connection, "superseded by a new connection of the same session"));
    }
  }

  void open_file(Peer& p, const OpenFile& o) {
    const auto now = Clock::now();
    if (o.offer.kind == protocol::EntryKind::directory) {
      auto r = dest_->make_directory(o.offer);
      p.session.on_file_opened(o.file_id, r ? Result<OpenedFile>(OpenedFile{}) : Result<OpenedFile>(r.error()), now);
      p.again = true;
      return;
    }
    if (busy_.count(o.offer.path)) {
      // Another connection is writing this path (or still closing it): wait for it.
      waiting_[o.offer.path].emplace_back(p.id, o);
      return;
    }
    busy_.insert(o.offer.path);
    p.busy_path = o.offer.path;
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
    run_on_pool(&loop_, [job, dest] { job->file = dest->open_partial(job->offer, job->state); },
                [this, job, id, file_id] {
                  Peer* q = find(id);
                  if (!q) return;
                  --q->jobs;
                  if (!job->file) {
                    release_path(*q);
                    q->session.on_file_opened(file_id, job->file.error(), Clock::now());
                  } else {
                    q->file = std::move(*job->file);
                    if (!q->conn) {  // the sender left while we were checking the partial
                      q->file->close_keep();
                      q->file.reset();
                      release_path(*q);
                      schedule_reap();
                      return;
                    }
                    OpenedFile opened{job->state.offset, job->state.prefix, job->state.note};
                    q->session.on_file_opened(file_id, std::move(opened), Clock::now());
                  }
                  drain(*q);
                });
  }

  void commit_file(Peer& p, std::uint32_t file_id) {
    if (!p.file) {
      p.session.on_file_committed(file_id, make_error(Errc::internal, "commit without an open file"), Clock::now());
      p.again = true;
      return;
    }
    ++p.jobs;
    auto result = std::make_shared<Result<void>>();
    PartialFile* file = p.file.get();
    const std::uint64_t id = p.id;
    run_on_pool(&loop_, [file, result] { *result = file->commit(); },
                [this, id, file_id, result] {
                  Peer* q = find(id);
                  if (!q) return;
                  --q->jobs;
                  q->file.reset();
                  release_path(*q);
                  q->session.on_file_committed(file_id, *result, Clock::now());
                  drain(*q);
                  schedule_reap();
                });
  }

  void schedule_reap() {
    if (!reap_timer_) return;  // shutting down: the destructor frees what is left
    uv_timer_start(reap_timer_.get(), [](uv_timer_t* t) { static_cast<RecvApp*>(t->data)->reap(); }, 0, 0);
  }

  // Frees peers whose connection closed and whose pool jobs are done.
  void reap() {
    graveyard_.clear();
    for (auto it = peers_.begin(); it != peers_.end();) {
      Peer& p = *it->second;
      if (!p.conn && p.jobs == 0) {
        if (p.file) p.file->close_keep();
        release_path(p);
        it = peers_.erase(it);
      } else {
        ++it;
      }
    }
    arm_idle();
  }

  void arm_idle() {
    if (done_ || !peers_.empty() || opts_.idle_timeout.count() == 0 || !listener_) return;
    uv_timer_start(idle_timer_.get(), [](uv_timer_t* t) {
      auto* self = static_cast<RecvApp*>(t->data);
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(self->opts_.idle_timeout).count();
      auto e = make_error(Errc::connection, "no sender connected for " + std::to_string(secs) + " s (--idle-timeout)");
      self->finish(e, e.exit_code());
    }, static_cast<std::uint64_t>(opts_.idle_timeout.count()), 0);
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

  void finish(std::optional<Error> err, int code, const Totals* totals = nullptr) {
    if (done_) return;
    done_ = true;
    exit_code_ = code;
    Event e;
    e.type = EventType::session_end;
    if (totals) e.totals = *totals;
    e.exit_code = code;
    e.detail = err ? "failed" : "done";
    sink_->emit(e);
    if (err) std::fprintf(stderr, "ferry-recv: error: %s\n", err->message().c_str());
    close_everything();
  }

  void close_everything() {
    listener_.reset();
    idle_timer_.reset();
    redial_timer_.reset();
    signals_.clear();
    for (auto& [id, p] : peers_) {
      // Let a final END or ERROR reach the sender; partials keep their journals.
      if (p->conn) p->conn->close_after_flush(make_error(Errc::connection, "receiver finished"));
    }
    schedule_reap();
  }

  const RecvOptions& opts_;
  std::shared_ptr<DestDir> dest_;
  std::unique_ptr<EventSink> sink_;
  uv_loop_t loop_{};
  UvOwner<uv_timer_t> idle_timer_, reap_timer_, redial_timer_;
  std::vector<UvOwner<uv_signal_t>> signals_;
  std::unique_ptr<Listener> listener_;
  std::map<std::uint64_t, std::unique_ptr<Peer>> peers_;
  std::vector<std::unique_ptr<Connection>> graveyard_;
  std::set<std::string> busy_;                                   // paths with an open partial
  std::map<std::string, std::vector<std::pair<std::uint64_t, OpenFile>>> waiting_;  // OpenFile waiting for a busy path
  Backoff backoff_;
  std::uint64_t next_id_ = 1;
  bool done_ = false;
  int exit_code_ = 0;
};

}  // namespace

int run_recv(const RecvOptions& o) {
  const bool json_to_stderr = o.common.mode == ConnectMode::stdio;
  std::unique_ptr<EventSink> sink = o.common.json ? make_json_sink(json_to_stderr ? stderr : stdout)
                                                  : make_human_sink(o.common.quiet, o.common.verbose, "recv");
  auto dest = DestDir::open(o.dest);
  if (!dest) {
    std::fprintf(stderr, "ferry-recv: error: %s\n", dest.error().message().c_str());
    return dest.error().exit_code();
  }
  RecvApp app(o, std::move(*dest), std::move(sink));
  return app.run();
}

}  // namespace ferry::receiver
