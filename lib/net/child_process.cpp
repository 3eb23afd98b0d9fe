#include "lib/net/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace ferry {

// ---------------------------------------------------------------------------
// ChildProcess

struct ChildProcess::State {
  uv_process_t proc{};
  uv_timer_t grace{};
  int open_handles = 0;
  bool exited = false, abandoned = false;
  int signals_sent = 0;
};

namespace {
constexpr std::uint64_t kChildGraceMs = 2000;

void on_child_handle_closed(uv_handle_t* h) {
  auto* s = static_cast<ChildProcess::State*>(h->data);
  if (--s->open_handles == 0) delete s;
}

void finish_child(ChildProcess::State* s) {
  uv_timer_stop(&s->grace);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->grace), on_child_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->proc), on_child_handle_closed);
}
}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(uv_loop_t* loop, uv_process_options_t opts,
                                                          const std::string& what) {
  auto* s = new State();
  s->proc.data = s->grace.data = s;
  uv_timer_init(loop, &s->grace);  // cannot fail on Unix
  ++s->open_handles;
  opts.exit_cb = [](uv_process_t* p, int64_t, int) {
    auto* st = static_cast<State*>(p->data);
    st->exited = true;
    if (st->abandoned) finish_child(st);
  };
  const int rc = uv_spawn(loop, &s->proc, &opts);
  ++s->open_handles;  // a failed uv_spawn still registers the handle: it must be closed
  if (rc != 0) {
    s->exited = true;
    finish_child(s);
    return uv_error(Errc::connection, what, rc);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(s));
}

ChildProcess::~ChildProcess() {
  s_->abandoned = true;
  if (s_->exited) {
    finish_child(s_);
    return;
  }
  // Its pipes are closed now; a carrier that does not exit at EOF is told to.
  uv_timer_start(
      &s_->grace,
      [](uv_timer_t* t) {
        auto* st = static_cast<State*>(t->data);
        uv_process_kill(&st->proc, st->signals_sent++ == 0 ? SIGTERM : SIGKILL);
        if (st->signals_sent < 2) uv_timer_again(t);
      },
      kChildGraceMs, kChildGraceMs);
}

}  // namespace ferry
