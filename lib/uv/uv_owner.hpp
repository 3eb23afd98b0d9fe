// RAII owners of libuv handles and the one place libuv's int codes become Errors.
//
// A handle lives in its own heap block and is freed only in its close callback, so a
// callback libuv still owes (a write's UV_ECANCELED, a close) never touches freed
// memory. Dropping the owner starts the close; the owner's user pointer (data) is
// cleared first, so callbacks can tell that nobody listens any more.
//
//   UvOwner<uv_timer_t> t(loop, [](uv_loop_t* l, uv_timer_t* h) { return uv_timer_init(l, h); });
//   uv_timer_start(t.get(), cb, 100, 0);
#pragma once

#include <uv.h>

#include <string>
#include <utility>

#include "protocol/result.hpp"

namespace ferry {

// An Error from a libuv status (negative errno on Unix). `what` names the call and
// its subject, e.g. "connect(127.0.0.1:5000)".
inline Error uv_error(Errc code, std::string what, int uv_status) {
  return Error{code, std::move(what) + ": " + uv_strerror(uv_status), 0};
}

template <class Handle>
class UvOwner {
 public:
  UvOwner() = default;
  // Allocates the handle and runs init(loop, handle); on failure get() is null and
  // status() holds the libuv code.
  template <class Init>
  UvOwner(uv_loop_t* loop, Init init) : h_(new Handle{}) {
    status_ = init(loop, h_);
    if (status_ != 0) {
      delete h_;
      h_ = nullptr;
    }
  }
  // Takes an initialised handle allocated with new.
  static UvOwner adopt(Handle* h) {
    UvOwner o;
    o.h_ = h;
    return o;
  }
  UvOwner(const UvOwner&) = delete;
  UvOwner& operator=(const UvOwner&) = delete;
  UvOwner(UvOwner&& o) noexcept : h_(std::exchange(o.h_, nullptr)), status_(o.status_) {}
  UvOwner& operator=(UvOwner&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
      status_ = o.status_;
    }
    return *this;
  }
  ~UvOwner() { reset(); }

  Handle* get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }
  int status() const { return status_; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(h_); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(h_); }

  // Starts closing the handle; it is freed in the close callback.
  void reset() {
    if (!h_) return;
    auto* raw = reinterpret_cast<uv_handle_t*>(std::exchange(h_, nullptr));
    raw->data = nullptr;
    if (!uv_is_closing(raw)) {
      uv_close(raw, [](uv_handle_t* x) { delete reinterpret_cast<Handle*>(x); });
    }
  }

 private:
  Handle* h_ = nullptr;
  int status_ = 0;
};

// A timer whose callbacks find `data` in t->data (cleared when the owner resets it).
// Empty on failure (status() says why).
inline UvOwner<uv_timer_t> make_timer(uv_loop_t* loop, void* data) {
  UvOwner<uv_timer_t> t(loop, [](uv_loop_t* l, uv_timer_t* h) { return uv_timer_init(l, h); });
  if (t) t.get()->data = data;
  return t;
}

}  // namespace ferry
