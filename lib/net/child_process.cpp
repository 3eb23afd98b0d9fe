#include "lib/net/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace ferry {

// ---------------------------------------------------------------------------
// ChildProcess

struct ChildProcess::State {
  uv_process_t proc{};
  uv_timer_t grace{};  // SIGTERM/SIGKILL after abandonment; after the exit, the stderr drain limit
  uv_pipe_t err_pipe{};
  int open_handles = 0;
  bool exited = false, abandoned = false, closing = false;
  bool err_open = false;  // err_pipe initialised and not closed yet
  int signals_sent = 0;
  std::shared_ptr<CarrierStatus> status;
  std::string partial_line;  // stderr bytes after the last newline
  char readbuf[1024];
};

std::string CarrierStatus::exit_text() const {
  if (term_signal != 0) return "was killed by signal " + std::to_string(term_signal);
  return "exited with status " + std::to_string(exit_status);
}

namespace {
constexpr std::uint64_t kChildGraceMs = 2000;
// After the child exited, how long its stderr may stay open (a grandchild holding it)
// before ferry stops waiting for the last line.
constexpr std::uint64_t kStderrDrainMs = 500;

void on_child_handle_closed(uv_handle_t* h) {
  auto* s = static_cast<ChildProcess::State*>(h->data);
  if (--s->open_handles == 0) delete s;
}

void maybe_settled(ChildProcess::State* s) {
  if (!s->status || !s->status->settled()) return;
  if (auto cb = std::exchange(s->status->on_settled, nullptr)) cb();
}

// Frees the handles once the child exited, nobody holds it and its stderr is done.
void maybe_finish(ChildProcess::State* s) {
  if (!s->exited || !s->abandoned || s->err_open || s->closing) return;
  s->closing = true;
  uv_timer_stop(&s->grace);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->grace), on_child_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->proc), on_child_handle_closed);
}

void stderr_line(ChildProcess::State* s, std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return;
  s->status->last_stderr_line = line;
  if (s->status->on_stderr_line) s->status->on_stderr_line(line);
}

void close_stderr(ChildProcess::State* s) {
  if (!s->err_open) return;
  s->err_open = false;
  if (!s->partial_line.empty()) stderr_line(s, std::exchange(s->partial_line, {}));
  uv_close(reinterpret_cast<uv_handle_t*>(&s->err_pipe), on_child_handle_closed);
  s->status->stderr_closed = true;
  maybe_settled(s);
  maybe_finish(s);
}

void on_stderr_read(uv_stream_t* st, ssize_t n, const uv_buf_t*) {
  auto* s = static_cast<ChildProcess::State*>(st->data);
  if (n < 0) return close_stderr(s);
  for (ssize_t i = 0; i < n; ++i) {
    const char c = s->readbuf[i];
    if (c == '\n') {
      stderr_line(s, std::exchange(s->partial_line, {}));
    } else {
      s->partial_line += c;
      if (s->partial_line.size() >= kMaxCarrierLine) stderr_line(s, std::exchange(s->partial_line, {}));
    }
  }
}

void on_exit(uv_process_t* p, int64_t exit_status, int term_signal) {
  auto* s = static_cast<ChildProcess::State*>(p->data);
  s->exited = true;
  if (s->status) {
    s->status->exited = true;
    s->status->exit_status = exit_status;
    s->status->term_signal = term_signal;
  }
  if (s->err_open) {
    uv_timer_start(
        &s->grace, [](uv_timer_t* t) { close_stderr(static_cast<ChildProcess::State*>(t->data)); }, kStderrDrainMs,
        0);
  }
  maybe_settled(s);
  maybe_finish(s);
}

// Makes the child's stderr a pipe of ours (before uv_spawn).
bool tap_stderr(uv_loop_t* loop, ChildProcess::State* s, uv_process_options_t& opts) {
  if (!s->status || opts.stdio_count < 3) return true;
  if (uv_pipe_init(loop, &s->err_pipe, 0) != 0) return false;
  s->err_pipe.data = s;
  ++s->open_handles;
  s->err_open = true;
  opts.stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  opts.stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&s->err_pipe);
  return true;
}
}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(uv_loop_t* loop, uv_process_options_t opts,
                                                          const std::string& what,
                                                          std::shared_ptr<CarrierStatus> status) {
  auto* s = new State();
  s->proc.data = s->grace.data = s;
  s->status = std::move(status);
  uv_timer_init(loop, &s->grace);  // cannot fail on Unix
  ++s->open_handles;
  if (!tap_stderr(loop, s, opts)) s->status.reset();
  opts.exit_cb = on_exit;
  const int rc = uv_spawn(loop, &s->proc, &opts);
  ++s->open_handles;  // a failed uv_spawn still registers the handle: it must be closed
  if (rc != 0) {
    s->exited = s->abandoned = true;
    if (s->status) s->status->on_settled = nullptr;
    close_stderr(s);  // finishes too
    maybe_finish(s);
    return uv_error(Errc::connection, what, rc);
  }
  if (s->err_open) {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&s->err_pipe),
        [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
          auto* st = static_cast<State*>(h->data);
          *buf = uv_buf_init(st->readbuf, sizeof st->readbuf);
        },
        on_stderr_read);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(s));
}

std::shared_ptr<CarrierStatus> ChildProcess::status() const {
  return s_->status;
}

ChildProcess::~ChildProcess() {
  s_->abandoned = true;
  if (s_->exited) {
    maybe_finish(s_);
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
