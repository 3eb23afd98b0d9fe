// LoopMailbox: hands work from any thread to one libuv loop's thread.
//
// libuv handles may only be touched on their loop's thread, yet an embedding program
// calls Sender::cancel() or Receiver::add_connection() from wherever it likes, and a
// caller's dial function may answer from a hypervisor's callback queue. They post a
// function here; it runs on the loop thread, in posting order.
//
// Contract:
// - post() is thread-safe and never blocks on the loop. Every posted function runs
//   exactly once: fn(true) on the loop thread while the mailbox is open (its owner is
//   alive), or fn(false) once it is closed: at once on the posting thread, or, for
//   functions still queued when it closes, on the closing thread. fn(false) must only
//   release what it carries (e.g. a lent descriptor), never touch the owner or libuv.
// - A MailboxPoster may outlive the mailbox (it holds the shared state, not the handle).
// - keep_alive(true) makes the mailbox hold the loop open (uv_ref) while its owner
//   waits for work from other threads; keep_alive(false) lets uv_run return.
//
//   auto box = LoopMailbox::open(loop);                 // on the loop thread
//   MailboxPoster p = (*box)->poster();
//   std::thread([p] { p.post([](bool live) { if (live) { /* on the loop */ } }); }).detach();
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "protocol/result.hpp"

namespace ferry {

struct MailboxState;

class MailboxPoster {
 public:
  MailboxPoster() = default;
  using Fn = std::function<void(bool live)>;
  // See the contract above. A default-constructed poster runs fn(false) at once.
  void post(Fn fn) const;

 private:
  friend class LoopMailbox;
  explicit MailboxPoster(std::shared_ptr<MailboxState> s) : state_(std::move(s)) {}
  std::shared_ptr<MailboxState> state_;
};

class LoopMailbox {
 public:
  // On the loop thread (or before the loop runs). Errc::internal when libuv cannot
  // create the async handle. The mailbox starts without keeping the loop alive.
  static Result<std::unique_ptr<LoopMailbox>> open(uv_loop_t* loop);
  // Closes (see the contract); on the loop thread.
  ~LoopMailbox();
  LoopMailbox(const LoopMailbox&) = delete;
  LoopMailbox& operator=(const LoopMailbox&) = delete;

  MailboxPoster poster() const { return MailboxPoster(state_); }
  void keep_alive(bool on);

 private:
  LoopMailbox() = default;
  static void on_async(uv_async_t* h);
  std::shared_ptr<MailboxState> state_;
};

}  // namespace ferry
