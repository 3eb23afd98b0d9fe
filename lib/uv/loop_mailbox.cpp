#include "lib/uv/loop_mailbox.hpp"

#include <deque>
#include <mutex>
#include <utility>

namespace ferry {

struct MailboxState : std::enable_shared_from_this<MailboxState> {
  std::mutex mu;
  bool closed = false;
  uv_async_t* async = nullptr;  // valid while !closed
  std::deque<MailboxPoster::Fn> queue;
};

namespace {
// Runs every function in `q`, in order.
void run_all(std::deque<MailboxPoster::Fn>& q, bool live) {
  for (auto& fn : q) fn(live);
  q.clear();
}
}  // namespace

void MailboxPoster::post(Fn fn) const {
  if (state_) {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->closed) {
      state_->queue.push_back(std::move(fn));
      // Under the lock: the closing thread sets `closed` under it before closing the
      // handle, so the handle is alive here.
      uv_async_send(state_->async);
      return;
    }
  }
  fn(false);
}

Result<std::unique_ptr<LoopMailbox>> LoopMailbox::open(uv_loop_t* loop) {
  std::unique_ptr<LoopMailbox> box(new LoopMailbox());
  box->state_ = std::make_shared<MailboxState>();
  auto* h = new uv_async_t{};
  int rc = uv_async_init(loop, h, &LoopMailbox::on_async);
  if (rc != 0) {
    delete h;
    return make_error(Errc::internal, std::string("uv_async_init: ") + uv_strerror(rc));
  }
  h->data = box->state_.get();
  uv_unref(reinterpret_cast<uv_handle_t*>(h));
  box->state_->async = h;
  return box;
}

void LoopMailbox::on_async(uv_async_t* h) {
  auto* raw = static_cast<MailboxState*>(h->data);
  if (!raw) return;
  // A function may close the mailbox (its owner ends): keep the state, and take one
  // function at a time so that what is left then runs with live == false instead.
  auto st = raw->shared_from_this();
  for (;;) {
    MailboxPoster::Fn fn;
    {
      std::lock_guard<std::mutex> lock(st->mu);
      if (st->closed || st->queue.empty()) return;
      fn = std::move(st->queue.front());
      st->queue.pop_front();
    }
    fn(true);
  }
}

void LoopMailbox::keep_alive(bool on) {
  auto* h = reinterpret_cast<uv_handle_t*>(state_->async);
  if (on)
    uv_ref(h);
  else
    uv_unref(h);
}

LoopMailbox::~LoopMailbox() {
  std::deque<MailboxPoster::Fn> left;
  uv_async_t* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->closed = true;
    left.swap(state_->queue);
    h = std::exchange(state_->async, nullptr);
  }
  h->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_async_t*>(x); });
  run_all(left, false);
}

}  // namespace ferry
