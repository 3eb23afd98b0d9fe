#include "lib/engine/engine.hpp"

#include <utility>

#include "lib/uv/own_loop.hpp"
#include "lib/uv/uv_owner.hpp"

namespace ferry {

Engine::~Engine() {
  for (auto& b : held_) release(b);
  for (auto& p : before_start_) {
    if (p.dropped) p.dropped();
  }
}

void Engine::attach(uv_loop_t* loop) {
  loop_ = loop;
  auto box = LoopMailbox::open(loop);
  MailboxPoster poster;
  if (!box || !attach_handles(loop)) {
    failed_to_attach_ = true;
  } else {
    mailbox_ = std::move(*box);
    // Work may come from other threads (a dial's answer, add_connection) until the end.
    mailbox_->keep_alive(true);
    poster = mailbox_->poster();
  }
  std::lock_guard<std::mutex> lock(post_mu_);
  poster_ = poster;
  attached_ = true;  // from here on, post() goes through the mailbox
}

void Engine::start_work() {
  std::vector<Posted> early;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    early.swap(before_start_);
  }
  for (auto& p : early) p.fn(*this);
  begin();
}

void Engine::post(std::function<void(Engine&)> fn, std::function<void()> dropped) {
  MailboxPoster poster;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    if (!attached_) {
      before_start_.push_back(Posted{std::move(fn), std::move(dropped)});
      return;
    }
    poster = poster_;
  }
  poster.post([weak = weak_from_this(), fn = std::move(fn), dropped = std::move(dropped)](bool live) {
    auto self = live ? weak.lock() : nullptr;
    if (self) return fn(*self);
    if (dropped) dropped();
  });
}

namespace {
// Carrier lines kept before the first handshake (ssh banners and warnings fit).
constexpr std::size_t kMaxEarlyCarrierLines = 32;
}  // namespace

void Engine::emit(const Event& e) {
  if (ended_) return;
  // Before any handshake, a lost connection is a failed first connection: its reason
  // is in the redial note or the one error line, not a line of its own.
  if (e.type == EventType::connection_lost && !handshaken_ && first_connection_wait_) return;
  if (e.type == EventType::session_start && !handshaken_) {
    handshaken_ = true;
    for (auto& line : std::exchange(early_carrier_lines_, {})) {
      deliver_event(on_event_, Event{EventType::carrier_message, {}, 0, 0, line, {}, 0});
    }
  }
  deliver_event(on_event_, e);
}

void Engine::carrier_line(const std::string& line) {
  if (handshaken_) return emit(Event{EventType::carrier_message, {}, 0, 0, line, {}, 0});
  if (early_carrier_lines_.size() >= kMaxEarlyCarrierLines) early_carrier_lines_.erase(early_carrier_lines_.begin());
  early_carrier_lines_.push_back(line);
}

bool Engine::waiting_for_first_connection() const {
  return first_connection_wait_ && !handshaken_ && Clock::now() - began_at_ < *first_connection_wait_;
}

bool Engine::first_connection_given_up() const {
  return first_connection_wait_ && !handshaken_ && Clock::now() - began_at_ >= *first_connection_wait_;
}

bool Engine::never_connected(bool carrier) const {
  // A carrier's pipes are there at once, so its ending before the handshake counts too;
  // a socket that connected and then closed (a refusal at the peer's limits or --allow,
  // a handshake lost to a damaged byte) is retried as any lost connection.
  return first_connection_given_up() && (carrier || !connected_once_);
}

void Engine::explain_first_failure(const Error& why, std::shared_ptr<CarrierStatus> carrier,
                                   std::function<void(const Error&)> then) {
  if (!carrier || transport_.kind != TransportKind::command) return then(why);
  auto report = [why, carrier, then, cmd = transport_.command] {
    std::string what = "command '" + cmd + "' " + carrier->exit_text() + " before the handshake";
    if (!carrier->last_stderr_line.empty()) what += ": " + carrier->last_stderr_line;
    then(make_error(Errc::connection, what));
  };
  if (carrier->settled()) return report();
  carrier->on_settled = weak_guarded(this, [report](Engine& self) {
    if (!self.done_) report();
  });
}

void Engine::report_end(const Totals& totals, std::optional<Error> err, int exit_code) {
  Event e;
  e.type = EventType::session_end;
  e.totals = totals;
  e.exit_code = exit_code;
  e.detail = exit_code == 0 ? "done" : "failed";
  if (err && exit_code != 0) e.error = err->message();
  outcome_ = Outcome{exit_code, std::move(err), totals};
  if (mailbox_) mailbox_->keep_alive(false);
  emit(e);
  ended_ = true;
}

void Engine::detach() {
  mailbox_.reset();
}

Result<void> Engine::start_transport(const Transport& t, OnConnection on_connection, OnFailed on_failed) {
  transport_ = t;
  on_connection_ = std::move(on_connection);
  on_failed_ = std::move(on_failed);
  begun_ = true;
  began_at_ = Clock::now();
  switch (t.kind) {
    case TransportKind::listen: {
      auto l = start_listening(t);
      if (!l) return l.error();
      break;
    }
    case TransportKind::provided:
      break;
    case TransportKind::connect:
    case TransportKind::stdio:
    case TransportKind::command:
    case TransportKind::dial:
      // A descriptor lent before start is the first connection; the transport makes
      // the later ones.
      if (held_.empty()) dial_next();
      break;
  }
  for (auto& b : std::exchange(held_, {})) add_connection(std::move(b));
  return {};
}

Result<void> Engine::start_listening(const Transport& t) {
  auto warning = check_listen_policy(t.address, keyed_, t.insecure_no_key);
  if (!warning) return warning.error();
  auto allow = AllowList::parse(t.allow, t.address.kind);
  if (!allow) return allow.error();
  Listener::Filter filter{std::move(*allow), [this](const std::string& why) { report_refusal(why); }};
  auto l = Listener::open(
      loop_, t.address,
      [this](std::unique_ptr<Connection> c) {
        c->limit_rate(rate_limit_);
        on_connection_(std::move(c));
      },
      std::move(filter));
  if (!l) return l.error();
  listener_ = std::move(*l);
  if (*warning) emit(Event{EventType::warning, {}, 0, 0, **warning, {}, 0});
  emit(Event{EventType::listening, {}, 0, 0, listener_->address().to_string(), {}, 0});
  return {};
}

void Engine::report_refusal(const std::string& why) {
  const std::uint64_t now = uv_now(loop_);
  if (last_refusal_ms_ != 0 && now - last_refusal_ms_ < 1000) {
    ++refusals_unreported_;
    return;
  }
  last_refusal_ms_ = now == 0 ? 1 : now;
  std::string line = why;
  if (refusals_unreported_ > 0) line += " (and " + std::to_string(refusals_unreported_) + " more not shown)";
  refusals_unreported_ = 0;
  emit(Event{EventType::warning, {}, 0, 0, line, {}, 0});
}

void Engine::dial_next() {
  if (done_) return;
  dial_cancel_ = open_connection(loop_, transport_, poster_,
                                 guarded(this,
                                         [](Engine& self, Result<std::unique_ptr<Connection>> r) {
                                           self.dial_cancel_ = nullptr;
                                           if (self.done_) return;
                                           if (!r) return self.on_failed_(r.error());
                                           (*r)->limit_rate(self.rate_limit_);
                                           self.on_connection_(std::move(*r));
                                         }),
                                 connect_timeout_,
                                 guarded(this, [](Engine& self, const std::string& line) { self.carrier_line(line); }));
}

bool Engine::hold_until_begun(BorrowedFd& b) {
  if (begun_ || done_) return false;
  held_.push_back(std::move(b));
  return true;
}

Result<std::unique_ptr<Connection>> Engine::adopt_lent(BorrowedFd b) {
  auto c = adopt_borrowed(loop_, std::move(b));
  if (c) (*c)->limit_rate(rate_limit_);
  if (!c) emit(Event{EventType::warning, {}, 0, 0, "a lent connection is unusable: " + c.error().message(), {}, 0});
  return c;
}

void Engine::stop_transport() {
  // A connect still in progress must not hold the loop (a host that drops SYNs keeps
  // one pending for minutes).
  if (auto cancel = std::exchange(dial_cancel_, nullptr)) cancel();
  listener_.reset();
  for (auto& b : held_) release(b);
  held_.clear();
}

// ---------------------------------------------------------------------------

namespace {
Outcome not_ended(const char* why) {
  return Outcome{static_cast<int>(Errc::internal), make_error(Errc::internal, why), {}};
}
}  // namespace

EngineHost::~EngineHost() {
  if (thread_.joinable()) {
    end_now(static_cast<int>(Errc::connection), "cancelled");
    thread_.join();
  } else if (engine_->attached()) {
    engine_->shutdown(/*silent=*/true);
  }
}

void EngineHost::start(uv_loop_t* loop) {
  engine_->attach(loop);
  engine_->start_work();
}

Result<void> EngineHost::start_thread() {
  if (engine_->attached()) return make_error(Errc::internal, "already started");
  int rc = uv_loop_init(&thread_loop_);
  if (rc != 0) return uv_error(Errc::internal, "uv_loop_init", rc);
  // The mailbox exists before the thread does, so calls from other threads work from
  // the first moment.
  engine_->attach(&thread_loop_);
  thread_ = std::thread([engine = engine_, loop = &thread_loop_] {
    engine->start_work();
    uv_run(loop, UV_RUN_DEFAULT);
    engine->shutdown(/*silent=*/false);
    uv_run(loop, UV_RUN_DEFAULT);  // close callbacks free the handles
    uv_loop_close(loop);
  });
  return {};
}

Outcome EngineHost::run() {
  if (engine_->attached()) return not_ended("already started");
  OwnLoop loop;
  if (loop.error()) return Outcome{loop.error()->exit_code(), loop.error(), {}};
  start(loop.get());
  loop.run();
  engine_->shutdown(/*silent=*/false);
  return ended_outcome(engine_->outcome());  // ~OwnLoop gives the closed handles their last turn
}

Outcome EngineHost::wait() {
  if (thread_.joinable()) thread_.join();
  return engine_->outcome().value_or(not_ended("not ended yet"));
}

void EngineHost::add_connection(BorrowedFd fd) {
  auto box = std::make_shared<BorrowedFd>(std::move(fd));
  engine_->post([box](Engine& e) { e.add_connection(std::move(*box)); }, [box] { release(*box); });
}

void EngineHost::end_now(int exit_code, std::string reason) {
  engine_->post([exit_code, reason = std::move(reason)](Engine& e) { e.end_now(exit_code, reason); });
}

}  // namespace ferry
