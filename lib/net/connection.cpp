#include "lib/net/connection.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>


namespace ferry {
namespace {

constexpr std::size_t kReadBufferSize = 512 * 1024;
constexpr int kReadsPerEvent = 16;  // then yield to the loop: fairness between peers
constexpr std::size_t kMaxIov = 64;

// Shortens `iov` (count entries) to `limit` bytes in all; the new count.
std::size_t trim_iov(iovec* iov, std::size_t count, std::size_t limit) {
  for (std::size_t i = 0; i < count; ++i) {
    if (limit == 0) return i;
    iov[i].iov_len = std::min(iov[i].iov_len, limit);
    limit -= iov[i].iov_len;
  }
  return count;
}
constexpr unsigned kRetryDelaysMs[] = {0, 1, 2, 4, 8, 10};

bool is_transient_write_error(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS;
}

}  // namespace

// Takes the descriptor out of a libuv stream: dup()s it (ours from then on) and
// closes the handle with the original.
Result<int> take_fd(UvOwner<AnyStream>& s, const std::string& what) {
  uv_os_fd_t fd = -1;
  int rc = uv_fileno(s.handle(), &fd);
  if (rc != 0) return uv_error(Errc::connection, "fileno(" + what + ")", rc);
  int mine = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (mine < 0) return make_error(Errc::connection, "dup(" + what + ")", errno);
  s.reset();
  return mine;
}

Result<std::unique_ptr<Connection>> adopt_stream(uv_loop_t* loop, std::string peer, UvOwner<AnyStream>& s) {
  auto fd = take_fd(s, peer);
  if (!fd) return fd.error();
  return Connection::adopt(loop, std::move(peer), *fd, *fd);
}

Result<std::unique_ptr<Connection>> Connection::adopt(uv_loop_t* loop, std::string peer, int in_fd, int out_fd,
                                                      std::unique_ptr<ChildProcess> child) {
  std::unique_ptr<Connection> c(new Connection());
  c->loop_ = loop;
  c->peer_ = std::move(peer);
  c->in_fd_ = in_fd;
  c->out_fd_ = out_fd;
  c->same_fd_ = in_fd == out_fd;
  if (child) c->carrier_ = child->status();
  c->child_ = std::move(child);
  for (int fd : {in_fd, out_fd}) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
      return make_error(Errc::connection, "fcntl(O_NONBLOCK, " + c->peer_ + ")", errno);
    }
  }
  struct stat st {};
  c->out_is_socket_ = ::fstat(out_fd, &st) == 0 && S_ISSOCK(st.st_mode);
  auto init_poll = [](int fd) { return [fd](uv_loop_t* l, uv_poll_t* h) { return uv_poll_init(l, h, fd); }; };
  c->in_poll_ = UvOwner<uv_poll_t>(loop, init_poll(in_fd));
  if (!c->in_poll_) {
    return uv_error(Errc::connection, "poll(" + c->peer_ + ") (it must be a pipe, socket or terminal)",
                    c->in_poll_.status());
  }
  c->in_poll_.get()->data = c.get();
  if (!c->same_fd_) {
    c->out_poll_ = UvOwner<uv_poll_t>(loop, init_poll(out_fd));
    if (!c->out_poll_) {
      return uv_error(Errc::connection, "poll(" + c->peer_ + ") (it must be a pipe, socket or terminal)",
                      c->out_poll_.status());
    }
    c->out_poll_.get()->data = c.get();
  }
  c->retry_timer_ = make_timer(loop, c.get());
  c->flush_timer_ = make_timer(loop, c.get());
  c->closed_timer_ = make_timer(loop, c.get());
  if (!c->retry_timer_ || !c->flush_timer_ || !c->closed_timer_) return make_error(Errc::connection, "timer_init");
  return c;
}

Connection::~Connection() {
  // Stop the polls before the descriptors go (uv_close unregisters them at once).
  in_poll_.reset();
  out_poll_.reset();
  retry_timer_.reset();
  flush_timer_.reset();
  pace_timer_.reset();
  closed_timer_.reset();  // a close not reported yet never will be
  close_descriptors();
}

void Connection::forget_dead(int fd) {
  if (in_fd_ == fd) in_fd_ = -1;
  if (out_fd_ == fd) out_fd_ = -1;
}

void Connection::close_descriptors() {
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_fd_ >= 0 && out_fd_ != in_fd_) ::close(out_fd_);
  in_fd_ = out_fd_ = -1;
  if (auto hook = std::exchange(fds_closed_hook_, nullptr)) hook();
}

void Connection::start(Callbacks cb) {
  cb_ = std::move(cb);
  reading_ = true;
  update_polls();
}

void Connection::update_polls() {
  if (!open_) return;
  // A descriptor closed underneath us (a hypervisor closing every fd it vended:
  // docs/RELIABILITY.md, "What the transports do wrong" 4) would make libuv abort when
  // it re-arms epoll: end the connection instead.
  for (int fd : {in_fd_, out_fd_}) {
    if (fd >= 0 && ::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      forget_dead(fd);
      return close(make_error(Errc::connection, "poll(" + peer_ + ")", EBADF));
    }
  }
  int in_events = reading_ && !read_paused_ && !paced_ ? UV_READABLE : 0;
  int out_events = want_write_ && !paced_ ? UV_WRITABLE : 0;
  if (same_fd_) in_events |= out_events;
  int rc = in_events ? uv_poll_start(in_poll_.get(), in_events, &Connection::on_poll) : uv_poll_stop(in_poll_.get());
  if (rc == 0 && !same_fd_ && out_poll_) {
    rc = out_events ? uv_poll_start(out_poll_.get(), out_events, &Connection::on_poll) : uv_poll_stop(out_poll_.get());
  }
  if (rc != 0) close(uv_error(Errc::connection, "poll(" + peer_ + ")", rc));
}

void Connection::on_poll(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<Connection*>(h->data);
  if (!self || !self->open_) return;
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF; a socket's real reason (ECONNRESET, ...)
    // is in SO_ERROR. A true EBADF means the descriptor died underneath
    // (docs/RELIABILITY.md, "What the transports do wrong" 4).
    int err = 0;
    socklen_t len = sizeof err;
    const int fd = h == self->in_poll_.get() ? self->in_fd_ : self->out_fd_;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    return self->close(make_error(Errc::connection, "poll(" + self->peer_ + ")", err));
  }
  if (events & UV_WRITABLE) {
    self->flush();
    if (!self->open_) return;
  }
  if ((events & UV_READABLE) && h == self->in_poll_.get()) self->read_some();
}

void Connection::read_some() {
  for (int i = 0; i < kReadsPerEvent && open_ && !read_paused_; ++i) {
    std::span<std::byte> into = read_target();
    if (into.empty()) return;  // the reader takes nothing now
    if (rate_) {
      into = into.first(allowance(into.size()));
      if (into.empty()) return;  // paced: polling resumes after pace_timer_
    }
    ssize_t n = ::read(in_fd_, into.data(), into.size());
    if (n > 0 && rate_) rate_->spend(static_cast<std::size_t>(n));
    if (n > 0) {
      if (flushing_) continue;  // lingering close: input is drained and dropped
      deliver(into.first(static_cast<std::size_t>(n)));
      continue;
    }
    if (n == 0) {
      if (flushing_) return close(*flush_reason_);
      return close(make_error(Errc::connection, "connection closed by peer (" + peer_ + ")"));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // a readiness event is a hint
    const int e = errno;
    if (e == EBADF) forget_dead(in_fd_);
    return close(make_error(Errc::connection, "read(" + peer_ + ")", e));
  }
}

std::span<std::byte> Connection::read_target() {
  if (cb_.input_space && !flushing_) return cb_.input_space();
  if (readbuf_.empty()) readbuf_.resize(kReadBufferSize);
  return {reinterpret_cast<std::byte*>(readbuf_.data()), readbuf_.size()};
}

void Connection::deliver(std::span<std::byte> got) {
  if (cb_.input_space) {
    cb_.on_input(got.size());
  } else {
    cb_.on_bytes(protocol::Bytes(got.data(), got.size()));
  }
  if (cb_.on_input_drained && open_) cb_.on_input_drained();
}

void Connection::write(SendFrame frame) {
  if (!open_ || flushing_) return;
  queued_bytes_ += frame.head.size() + frame.body.size();
  queue_.push_back(std::move(frame));
  if (!want_write_ && corks_ == 0) flush();  // nothing pending: try at once
  apply_queue_bound();
}

void Connection::uncork() {
  if (corks_ == 0 || --corks_ > 0) return;
  if (open_ && !want_write_ && !queue_.empty()) flush();
}

void Connection::apply_queue_bound() {
  if (!open_ || queue_high_ == 0) return;
  const bool pause = read_paused_ ? queued_bytes_ > queue_low_ : queued_bytes_ > queue_high_;
  if (pause == read_paused_) return;
  read_paused_ = pause;
  update_polls();
}

// Writes what is queued until the kernel takes no more, the queue is empty, or the
// connection failed (then closed; reported later).
void Connection::flush() {
  while (open_ && !queue_.empty() && !paced_) {
    iovec iov[kMaxIov];
    std::size_t count = gather(iov);
    if (rate_) count = trim_iov(iov, count, allowance(queued_bytes_ - front_done_));
    if (count == 0) return;  // paced: the pace timer flushes again
    const ssize_t n = write_iov(iov, count);
    if (n > 0 && rate_) rate_->spend(static_cast<std::size_t>(n));
    if (n >= 0) {
      consume(static_cast<std::size_t>(n));
    } else if (const int e = errno; e != EINTR) {
      write_failed(e);
      return apply_queue_bound();  // what the kernel took before may resume reading
    }
  }
  if (open_) on_queue_drained();
  apply_queue_bound();
}

// Points up to kMaxIov entries at the unwritten parts of the queued frames (heads and
// bodies, the front frame from front_done_ on); returns how many.
void Connection::limit_rate(std::uint64_t bytes_per_second) {
  if (bytes_per_second == 0) return;
  rate_ = std::make_unique<RateLimit>(bytes_per_second, RateLimit::Clock::now());
  if (!pace_timer_) pace_timer_ = make_timer(loop_, this);
}

std::size_t Connection::allowance(std::size_t want) {
  const auto now = RateLimit::Clock::now();
  const std::size_t n = rate_->allowance(want, now);
  if (n > 0 || want == 0 || !pace_timer_) return n;
  paced_ = true;
  update_polls();
  uv_timer_start(
      pace_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Connection*>(t->data);
        if (!self || !self->open_) return;
        self->paced_ = false;
        self->update_polls();
        if (!self->queue_.empty()) self->flush();
      },
      static_cast<std::uint64_t>(rate_->wait(now).count()), 0);
  return 0;
}

std::size_t Connection::gather(iovec* iov) {
  std::size_t cnt = 0;
  std::size_t skip = front_done_;
  for (auto it = queue_.begin(); it != queue_.end() && cnt + 2 <= kMaxIov; ++it) {
    const std::span<std::byte> parts[] = {{it->head.data(), it->head.size()}, {it->body.data(), it->body.size()}};
    for (auto part : parts) {
      if (part.empty()) continue;
      if (skip >= part.size()) {
        skip -= part.size();
        continue;
      }
      iov[cnt].iov_base = part.data() + skip;
      iov[cnt].iov_len = part.size() - skip;
      skip = 0;
      ++cnt;
    }
  }
  return cnt;
}

ssize_t Connection::write_iov(iovec* iov, std::size_t count) {
  if (out_is_socket_) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    return ::sendmsg(out_fd_, &msg, MSG_NOSIGNAL);
  }
  return ::writev(out_fd_, iov, static_cast<int>(count));
}

// Drops the `written` bytes the kernel took from the front of the queue.
void Connection::consume(std::size_t written) {
  queued_bytes_ -= written;
  while (written > 0) {
    SendFrame& f = queue_.front();
    const std::size_t total = f.head.size() + f.body.size();
    const std::size_t take = std::min(written, total - front_done_);
    front_done_ += take;
    written -= take;
    if (front_done_ == total) {
      queue_.pop_front();
      front_done_ = 0;
    }
  }
}

// A write failed with `err`: wait and retry when it is transient, else close.
void Connection::write_failed(int err) {
  if (is_transient_write_error(err)) {
    ++write_retries_;
    return arm_retry();
  }
  if (err == EBADF) forget_dead(out_fd_);
  close(make_error(Errc::connection, "write(" + peer_ + ")", err));
}

// Everything queued reached the kernel: no writability wait, no retry timer; a
// lingering close goes on to its half-close.
void Connection::on_queue_drained() {
  retry_step_ = 0;
  uv_timer_stop(retry_timer_.get());
  if (want_write_) {
    want_write_ = false;
    update_polls();
  }
  if (flushing_) finish_flush();
}

// A write could not proceed: wait for writability, and retry on a timer too, since
// after ENOBUFS the writability event may never come.
void Connection::arm_retry() {
  if (!want_write_) {
    want_write_ = true;
    update_polls();
  }
  if (!open_) return;
  const unsigned delay = kRetryDelaysMs[std::min<std::size_t>(retry_step_, std::size(kRetryDelaysMs) - 1)];
  ++retry_step_;
  uv_timer_start(
      retry_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Connection*>(t->data);
        if (self && self->open_) self->flush();
      },
      delay, 0);
}

void Connection::close_after_flush(const Error& reason, std::chrono::milliseconds limit) {
  if (!open_ || flushing_) return;
  corks_ = 0;  // what is queued goes now
  if (!want_write_ && !queue_.empty()) flush();
  if (!open_) return;  // the write failed: closed (reported later)
  flushing_ = true;
  flush_reason_ = reason;
  uv_timer_start(
      flush_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Connection*>(t->data);
        if (self && self->open_) self->close(*self->flush_reason_);
      },
      static_cast<std::uint64_t>(limit.count()), 0);
  if (queue_.empty()) finish_flush();
}

// Everything queued was written: half-close, then wait for the peer's EOF so that
// closing with unread input does not turn into a reset that destroys our last frame.
void Connection::finish_flush() {
  if (write_shut_) return;
  write_shut_ = true;
  if (out_is_socket_) {
    ::shutdown(out_fd_, SHUT_WR);
  } else if (!same_fd_) {
    out_poll_.reset();
    ::close(out_fd_);
    out_fd_ = -1;
    release_process_fd();
  } else {
    return close(*flush_reason_);
  }
}

void Connection::release_process_fd() {
  if (release_fd_ < 0) return;
  int nul = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (nul >= 0) {
    ::dup2(nul, release_fd_);
    ::close(nul);
  }
  release_fd_ = -1;
}

void Connection::close(const Error& reason) {
  if (!open_) return;
  // Frames queued under a cork were, without it, written as they came: try them once.
  if (corks_ > 0 && !want_write_ && !queue_.empty() && !flushing_) {
    corks_ = 0;
    flush();
    if (!open_) return;  // that write failed and closed the connection already
  }
  open_ = false;
  in_poll_.reset();
  out_poll_.reset();
  retry_timer_.reset();
  flush_timer_.reset();
  pace_timer_.reset();
  queue_.clear();
  queued_bytes_ = 0;
  // The owner frees the Connection when the close is reported; give back the read
  // buffer now. Safe here: on_bytes consumers never keep the span.
  std::vector<char>().swap(readbuf_);
  close_descriptors();
  release_process_fd();
  child_.reset();
  // cb_.on_bytes stays: close() may be called from inside it.
  if (!cb_.on_closed) return;  // never started: nobody to tell
  // Reported from a callback of its own (see the contract in connection.hpp): the
  // caller of close() or write(), still on the stack, is never re-entered.
  closed_reason_ = reason;
  uv_timer_start(closed_timer_.get(), &Connection::report_closed, 0, 0);
}

void Connection::report_closed(uv_timer_t* t) {
  auto* self = static_cast<Connection*>(t->data);
  if (!self) return;
  // Moved to the stack first: on_closed may destroy the Connection.
  auto cb = std::exchange(self->cb_.on_closed, nullptr);
  const Error reason = std::move(*self->closed_reason_);
  cb(reason);
}

}  // namespace ferry
