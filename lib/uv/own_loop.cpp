#include "lib/uv/own_loop.hpp"

#include <csignal>
#include <cstring>

namespace ferry {

OwnLoop::OwnLoop() {
  int rc = uv_loop_init(&loop_);
  ok_ = rc == 0;
  if (!ok_) error_ = uv_error(Errc::internal, "uv_loop_init", rc);
}

OwnLoop::~OwnLoop() {
  if (!ok_) return;
  signals_.clear();
  uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks of the work's handles free them
  uv_loop_close(&loop_);
}

void OwnLoop::on_signals(std::function<void(int, const std::string&)> on_signal) {
  if (!ok_) return;
  on_signal_ = std::move(on_signal);
  for (int signum : {SIGINT, SIGTERM}) {
    auto s = UvOwner<uv_signal_t>(&loop_, [](uv_loop_t* l, uv_signal_t* h) { return uv_signal_init(l, h); });
    if (!s) continue;
    s.get()->data = this;
    uv_signal_start(
        s.get(),
        [](uv_signal_t* h, int sig) {
          auto* self = static_cast<OwnLoop*>(h->data);
          if (self && self->on_signal_)
            self->on_signal_(128 + sig, std::string("interrupted by signal ") + strsignal(sig));
        },
        signum);
    signals_.push_back(std::move(s));
  }
}

void OwnLoop::run() {
  if (ok_) uv_run(&loop_, UV_RUN_DEFAULT);
  signals_.clear();
}

Outcome ended_outcome(const std::optional<Outcome>& o) {
  if (o) return *o;
  return Outcome{
      static_cast<int>(Errc::internal), make_error(Errc::internal, "the loop ended before the work did"), {}};
}

}  // namespace ferry
