#include "sender/send_app.hpp"

#include <uv.h>

#include <cstdio>
#include <map>
#include <memory>

#include "lib/backoff.hpp"
#include "lib/connection.hpp"
#include "lib/events.hpp"
#include "lib/file_source.hpp"
#include "lib/source_tree.hpp"
#include "lib/uv_owner.hpp"
#include "sender/sender_session.hpp"

namespace ferry::sender {
namespace {

class SendApp {
 public:
  SendApp(const SendOptions& o, std::vector<SourceEntry> entries, std::unique_ptr<EventSink> sink)
      : opts_(o), entries_(entries), sink_(std::move(sink)),
        session_(make_config(o), std::move(entries), Clock::now()) {
    uv_loop_init(&loop_);
    timer_ = UvOwner<uv_timer_t>(&loop_, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); });
    timer_.get()->data = this;
    redial_timer_ = UvOwner<uv_timer_t>(&loop_, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); });
    redial_timer_.get()->data = this;
  }

  ~SendApp() {
    listener_.reset();
    conn_.reset();
    graveyard_.clear();
    timer_.reset();
    redial_timer_.reset();
    sources_.clear();
    uv_run(&loop_, UV_RUN_DEFAULT);  // let close callbacks and pool jobs finish
    uv_loop_close(&loop_);
  }

  int run(std::size_t skipped) {
    totals_skipped_ = skipped;
    if (opts_.common.mode == ConnectMode::listen) {
      auto l = Listener::open(&loop_, opts_.common.address, [this](std::unique_ptr<Connection> c) { adopt(std::move(c)); });
      if (!l) {
        finish_with(l.error());
        return exit_code_;
      }
      listener_ = std::move(*l);
      sink_->emit(Event{EventType::warning, {}, 0, 0, "listening on " + listener_->address().to_string(), {}, 0});
    } else {
      open_connection();
    }
    if (!done_) uv_run(&loop_, UV_RUN_DEFAULT);
    return exit_code_;
  }

 private:
  static SenderConfig make_config(const SendOptions& o) {
    SenderConfig c;
    c.chunk_size = o.common.chunk_size;
    c.window = o.common.window;
    c.stall_timeout = o.common.stall_timeout;
    c.session_id = random_session_id();
    c.software = "ferry-send " FERRY_VERSION;
    return c;
  }

  void open_connection() {
    graveyard_.clear();
    switch (opts_.common.mode) {
      case ConnectMode::connect:
        dial(&loop_, opts_.common.address, [this](Result<std::unique_ptr<Connection>> r) {
          if (done_) return;
          if (!r) return connection_failed(r.error());
          adopt(std::move(*r));
        });
        return;
      case ConnectMode::stdio: {
        auto r = open_stdio(&loop_);
        if (!r) return connection_failed(r.error());
        return adopt(std::move(*r));
      }
      case ConnectMode::command: {
        auto r = spawn_command(&loop_, opts_.common.rsh);
        if (!r) return connection_failed(r.error());
        return adopt(std::move(*r));
      }
      case ConnectMode::listen:
        return;  // the receiver dials us
    }
  }

  void adopt(std::unique_ptr<Connection> c) {
    if (done_ || conn_) {
      c->close(make_error(Errc::connection, "a transfer is already connected"));
      graveyard_.push_back(std::move(c));
      return;
    }
    conn_ = std::move(c);
    marker_at_connect_ = session_.progress_marker();
    conn_->start({[this](protocol::Bytes b) {
                    session_.on_bytes(b, Clock::now());
                    drain();
                  },
                  [this](const Error& why) { on_closed(why); }});
    session_.on_connected(Clock::now());
    drain();
  }

  void on_closed(const Error& why) {
    if (conn_) {
      write_retries_ += conn_->write_retries();
      graveyard_.push_back(std::move(conn_));
    }
    session_.on_disconnected(why, Clock::now());
    drain();
    if (done_ || session_.finished()) return;
    if (session_.progress_marker() > marker_at_connect_) backoff_.reset();
    connection_failed(why);
  }

  // A connection could not be made or was lost: redial, or give up.
  void connection_failed(const Error& why) {
    if (done_) return;
    const bool can_redial = opts_.common.mode == ConnectMode::connect || opts_.common.mode == ConnectMode::command;
    if (opts_.common.mode == ConnectMode::listen) {
      if (backoff_.attempts() >= opts_.retries) return finish_with(why);
      backoff_.next();  // count it; the receiver redials us
      ++reconnects_;
      sink_->emit(Event{EventType::reconnect, {}, 0, 0, "waiting for the receiver to connect again", {}, 0});
      return;
    }
    if (!can_redial || backoff_.attempts() >= opts_.retries) return finish_with(why);
    auto delay = backoff_.next();
    ++reconnects_;
    sink_->emit(Event{EventType::reconnect, {}, 0, 0,
                      why.message() + "; retry " + std::to_string(backoff_.attempts()) + " of " +
                          std::to_string(opts_.retries) + " in " + std::to_string(delay.count()) + " ms",
                      {}, 0});
    uv_timer_start(redial_timer_.get(), [](uv_timer_t* t) { static_cast<SendApp*>(t->data)->open_connection(); },
                   static_cast<std::uint64_t>(delay.count()), 0);
  }

  std::shared_ptr<FileSource> source(std::uint32_t entry, Result<void>& err) {
    auto it = sources_.find(entry);
    if (it != sources_.end()) return it->second;
    sources_.clear();  // one file at a time: release the previous one
    auto s = FileSource::open(entries_[entry]);
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
    Result<void> err;
    auto src = source(entry, err);
    if (src && src->check_unchanged()) return std::optional<SourceEntry>{};
    sources_.erase(entry);
    auto fresh = restat_source(entries_[entry]);
    if (!fresh) return fresh.error();
    entries_[entry] = *fresh;
    return std::optional<SourceEntry>(*fresh);
  }

  void drain() {
    if (draining_) {
      again_ = true;
      return;
    }
    draining_ = true;
    do {
      again_ = false;
      for (auto& a : session_.take_actions()) perform(a);
      for (auto& e : session_.take_events()) sink_->emit(e);
    } while (again_);
    draining_ = false;
    if (session_.finished()) return finish();
    auto deadline = session_.next_deadline();
    if (deadline) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
      uv_timer_start(timer_.get(), [](uv_timer_t* t) {
        auto* self = static_cast<SendApp*>(t->data);
        self->session_.on_timeout(Clock::now());
        self->drain();
      }, static_cast<std::uint64_t>(std::max<long long>(ms, 0)), 0);
    } else {
      uv_timer_stop(timer_.get());
    }
  }

  void perform(Action& a) {
    if (auto* f = std::get_if<SendFrame>(&a)) {
      if (conn_) conn_->write(std::move(*f));
    } else if (auto* r = std::get_if<ReadChunk>(&a)) {
      Result<void> err;
      auto src = source(r->entry, err);
      const auto token = r->token;
      if (!src) {
        session_.on_read_done(token, err.error(), Clock::now());
        again_ = true;
        return;
      }
      src->read(&loop_, r->offset, r->length, [this, token](Result<std::vector<std::byte>> data) {
        session_.on_read_done(token, std::move(data), Clock::now());
        drain();
      });
    } else if (auto* h = std::get_if<HashPrefix>(&a)) {
      Result<void> err;
      auto src = source(h->entry, err);
      const auto token = h->token;
      if (!src) {
        session_.on_prefix_hashed(token, err.error(), Clock::now());
        again_ = true;
        return;
      }
      src->hash_prefix(&loop_, h->length, [this, token](Result<protocol::Digest128> d) {
        session_.on_prefix_hashed(token, std::move(d), Clock::now());
        drain();
      });
    } else if (auto* k = std::get_if<CheckSource>(&a)) {
      session_.on_source_checked(k->token, check_source(k->entry), Clock::now());
      again_ = true;
    } else if (auto* c = std::get_if<CloseConnection>(&a)) {
      // on_closed decides: redial, or finish
      if (conn_ && c->flush) conn_->close_after_flush(c->reason);
      else if (conn_) conn_->close(c->reason);
    }
  }

  void finish() {
    auto out = session_.outcome();
    if (!out) return finish_with(out.error());
    finish_with(std::nullopt);
  }

  void finish_with(std::optional<Error> err) {
    if (done_) return;
    done_ = true;
    Event e;
    e.type = EventType::session_end;
    e.totals = session_.totals();
    e.totals.reconnects = reconnects_;
    e.totals.write_retries = write_retries_ + (conn_ ? conn_->write_retries() : 0);
    e.totals.files_skipped = totals_skipped_;
    if (!err && totals_skipped_ > 0) {
      err = make_error(Errc::partial, std::to_string(totals_skipped_) + " local entries were skipped (not sent)");
    }
    e.exit_code = err ? err->exit_code() : 0;
    e.detail = err ? "failed" : "done";
    sink_->emit(e);
    if (err) std::fprintf(stderr, "ferry-send: error: %s\n", err->message().c_str());
    exit_code_ = e.exit_code;
    uv_timer_stop(timer_.get());
    uv_timer_stop(redial_timer_.get());
    listener_.reset();
    if (conn_) conn_->close_after_flush(make_error(Errc::connection, "transfer ended"));
    // The loop ends by itself once the last write is flushed and the handles closed.
  }

  const SendOptions& opts_;
  std::vector<SourceEntry> entries_;
  std::unique_ptr<EventSink> sink_;
  uv_loop_t loop_{};
  SenderSession session_;
  UvOwner<uv_timer_t> timer_, redial_timer_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<Connection> conn_;
  std::vector<std::unique_ptr<Connection>> graveyard_;  // closed; freed outside their callbacks
  std::map<std::uint32_t, std::shared_ptr<FileSource>> sources_;
  Backoff backoff_;
  std::uint64_t marker_at_connect_ = 0;
  std::uint64_t reconnects_ = 0;
  std::uint64_t write_retries_ = 0;  // of connections already closed
  std::size_t totals_skipped_ = 0;
  bool draining_ = false, again_ = false, done_ = false;
  int exit_code_ = 0;
};

}  // namespace

int run_send(const SendOptions& o) {
  const bool json_to_stderr = o.common.mode == ConnectMode::stdio;
  std::unique_ptr<EventSink> sink = o.common.json ? make_json_sink(json_to_stderr ? stderr : stdout)
                                                  : make_human_sink(o.common.quiet, o.common.verbose, "send");
  auto tree = walk_sources(o.paths);
  if (!tree) {
    std::fprintf(stderr, "ferry-send: error: %s\n", tree.error().message().c_str());
    return tree.error().exit_code();
  }
  for (const auto& s : tree->skipped) sink->emit(Event{EventType::file_skipped, {}, 0, 0, s, {}, 0});
  SendApp app(o, std::move(tree->entries), std::move(sink));
  return app.run(tree->skipped.size());
}

}  // namespace ferry::sender
