// Engine and EngineHost: what ferry::Sender and ferry::Receiver share.
//
// An Engine is the libuv driver of one role (sender/sender.cpp, receiver/receiver.cpp).
// It lives in a shared_ptr; callbacks that can outlive it (dials, thread-pool jobs,
// mailbox posts) hold a weak_ptr (see guarded()). An EngineHost runs it in one of
// three ways — on the caller's loop, on a thread and loop of its own, or on a loop of
// its own in the calling thread — and carries calls from other threads to the loop
// through a LoopMailbox.
//
//   class Impl final : public Engine { ... };
//   EngineHost host(std::make_shared<Impl>(options));
//   Outcome o = host.run();
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "lib/core/events.hpp"
#include "lib/core/outcome.hpp"
#include "lib/net/connection.hpp"
#include "lib/net/dial.hpp"
#include "lib/net/listener.hpp"
#include "lib/net/transport.hpp"
#include "lib/uv/loop_mailbox.hpp"

namespace ferry {

// Wraps `fn(Self&, args...)` for a callback that may come after `self` (owned by a
// shared_ptr) is gone: it runs only if `self` still exists then.
template <class Self, class Fn>
auto weak_guarded(Self* self, Fn fn) {
  return [weak = self->weak_from_this(), fn = std::move(fn)](auto&&... args) mutable {
    if (auto alive = weak.lock()) fn(static_cast<Self&>(*alive), std::forward<decltype(args)>(args)...);
  };
}

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  explicit Engine(std::function<void(const Event&)> on_event) : on_event_(std::move(on_event)) {}
  // Releases descriptors lent but never used, and drops calls posted before a start
  // that never came (calling their `dropped`).
  virtual ~Engine();

  // Creates the loop handles (the mailbox here, the rest in attach_handles()); no
  // callback runs before the loop does. On the loop thread or before the loop runs.
  void attach(uv_loop_t* loop);
  // Starts the work: first what was posted before attach() (in order), then begin().
  // Loop thread.
  void start_work();

  // Thread-safe. Runs fn(engine) on the loop thread: before the start, at the start
  // (start_work); after it, through the mailbox. If the engine is gone or its mailbox
  // closed by then, `dropped` runs instead (it must only release what fn carries).
  void post(std::function<void(Engine&)> fn, std::function<void()> dropped = {});

  // Serves or uses a lent descriptor, or releases it. Loop thread.
  virtual void add_connection(BorrowedFd b) = 0;
  // Ends the work now, as the owner asked (Sender: cancelled; Receiver: stopped).
  // Loop thread; also before begin() (which then does nothing).
  virtual void end_now(int exit_code, const std::string& reason) = 0;
  // Closes every handle; work still running ends as by end_now(); silent: no more
  // events (for destructors). Loop thread; idempotent.
  virtual void shutdown(bool silent) = 0;
  // Set once the work ended (session_end was emitted). Loop thread, or after the loop.
  const std::optional<Outcome>& outcome() const { return outcome_; }

  bool attached() const { return attached_; }

 protected:
  // Starts the work (lists sources, connects, listens); returns at once if end_now()
  // came first. Loop thread.
  virtual void begin() = 0;
  // The derived engine's own handles; false when libuv cannot make them.
  virtual bool attach_handles(uv_loop_t* loop) = 0;

  // Hands `e` to the caller's callback (exceptions are swallowed: none may cross libuv).
  // Nothing is handed on after session_end: it is the last event.
  void emit(const Event& e);
  // Records the outcome, emits session_end, and lets the loop end once the engine's
  // own handles are idle (the mailbox stops holding it).
  void report_end(const Totals& totals, std::optional<Error> err, int exit_code);
  // Closes the mailbox (what is queued runs with live == false). Part of shutdown().
  void detach();
  void silence() { on_event_ = nullptr; }

  // Where the derived engine's connections come from. start_transport():
  // listen: checks the listening policy (lib/net/access.hpp: a key, loopback or a unix
  // socket, or the transport's insecure_no_key, warned about) and --allow, then opens
  // the listener (its address announced as a warning event);
  // connect/stdio/command/dial: makes the first connection, unless a descriptor was
  // lent before begin(); provided: nothing. Then every descriptor lent before begin()
  // goes to add_connection(). An Error when the listener cannot be opened.
  using OnConnection = std::function<void(std::unique_ptr<Connection>)>;
  using OnFailed = std::function<void(const Error&)>;
  Result<void> start_transport(const Transport& t, OnConnection on_connection, OnFailed on_failed);
  // The next connection of an active transport (a redial): on_connection or on_failed
  // later, unless the engine ended or is gone by then.
  void dial_next();
  // The listen case of start_transport().
  Result<void> start_listening(const Transport& t);
  // A peer --allow refused: a warning event, rate-limited.
  void report_refusal(const std::string& why);
  // Before begin(): keeps `b` for it and returns true.
  bool hold_until_begun(BorrowedFd& b);
  // Adopts a lent descriptor; when it is unusable, a warning event and the Error.
  Result<std::unique_ptr<Connection>> adopt_lent(BorrowedFd b);
  // Closes the listener and releases descriptors still held. Idempotent.
  void stop_transport();

  template <class Self, class Fn>
  static auto guarded(Self* self, Fn fn) {
    return weak_guarded(self, std::move(fn));
  }

  // The first connection. A handshake has completed on some connection (a
  // session_start went out): from then on failures are redialled as the retries say.
  bool handshaken() const { return handshaken_; }
  // True while no handshake has completed and the first connection is being waited
  // for (`first_connection_wait_` set and not yet over).
  bool waiting_for_first_connection() const;
  // True when a failure before any handshake ends the work now (the wait is over).
  bool first_connection_given_up() const;
  // first_connection_given_up(), and no connection was ever made (`carrier`: the one
  // that ended was a command's, which ends the work the same way): the work ends now
  // with kExitNotConnected.
  bool never_connected(bool carrier) const;
  // The engine adopted a connection (a socket connected, a command started, a
  // descriptor was lent).
  void note_connected() { connected_once_ = true; }
  // Calls `then` (later, on the loop thread, unless the engine is gone) with the
  // one-line reason the first connection failed: `why`, or for a carrier command that
  // ended, "command 'CMD' exited with status N before the handshake: LAST STDERR LINE"
  // once it exited and its stderr is read (ChildProcess bounds that wait).
  void explain_first_failure(const Error& why, std::shared_ptr<CarrierStatus> carrier,
                             std::function<void(const Error&)> then);
  // --bwlimit: bytes per second for every connection (both directions together); 0:
  // none. Set by the derived engine before start_transport().
  std::uint64_t rate_limit_ = 0;
  // Set by the derived engine from its options before start_transport(): nullopt: the
  // first connection is retried like any other; else for at most this long.
  std::optional<std::chrono::milliseconds> first_connection_wait_;

  uv_loop_t* loop_ = nullptr;
  bool failed_to_attach_ = false;
  std::chrono::milliseconds connect_timeout_ = kDefaultConnectTimeout;  // per dial
  bool begun_ = false;                                                  // begin() ran
  bool keyed_ = false;  // the derived engine has a key: start_transport() may listen anywhere
  bool done_ = false;                                                   // the work ended (set first thing when ending)

 private:
  std::function<void(const Event&)> on_event_;
  std::unique_ptr<LoopMailbox> mailbox_;
  // Calls from other threads: queued here until attach(), then through the mailbox.
  struct Posted {
    std::function<void(Engine&)> fn;
    std::function<void()> dropped;
  };
  std::mutex post_mu_;
  std::vector<Posted> before_start_;  // guarded by post_mu_
  MailboxPoster poster_;              // set under post_mu_ by attach()
  std::atomic<bool> attached_{false};
  bool ended_ = false;  // session_end emitted
  std::optional<Outcome> outcome_;
  Transport transport_;
  OnConnection on_connection_;
  OnFailed on_failed_;
  std::unique_ptr<Listener> listener_;
  // Refusals by --allow: at most one warning a second, the rest counted into the next.
  std::uint64_t last_refusal_ms_ = 0;
  std::uint64_t refusals_unreported_ = 0;
  DialCancel dial_cancel_;        // the dial in progress, if any
  bool handshaken_ = false;       // a session_start was emitted
  bool connected_once_ = false;   // note_connected() was called
  Clock::time_point began_at_{};  // start_transport()
  // A carrier's stderr lines before the first handshake: shown once it completes (a
  // carrier that fails before it is summed up in one line instead). Bounded.
  std::vector<std::string> early_carrier_lines_;
  void carrier_line(const std::string& line);
  std::vector<BorrowedFd> held_;  // lent before begin()
};

class EngineHost {
 public:
  explicit EngineHost(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}
  // Thread mode: end_now() and join; caller's loop: shutdown(silent).
  ~EngineHost();
  EngineHost(const EngineHost&) = delete;
  EngineHost& operator=(const EngineHost&) = delete;

  void start(uv_loop_t* loop);
  Result<void> start_thread();
  Outcome run();
  Outcome wait();
  // Thread-safe, also before the start (the descriptor is kept for it).
  void add_connection(BorrowedFd fd);
  // Thread-safe, also before the start (which then ends at once).
  void end_now(int exit_code, std::string reason);
  std::optional<Outcome> outcome() const { return engine_->outcome(); }

 private:
  std::shared_ptr<Engine> engine_;
  uv_loop_t thread_loop_{};
  std::thread thread_;
};

}  // namespace ferry
