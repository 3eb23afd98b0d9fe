// Listener: accepts connections on a TCP, unix or vsock address.
//
//   auto l = Listener::open(loop, addr, [](std::unique_ptr<Connection> c) { ... });
//   l->address();   // the address bound, with the real port when 0 was asked
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lib/net/access.hpp"
#include "lib/net/address.hpp"
#include "lib/net/connection.hpp"
#include "lib/uv/uv_owner.hpp"

namespace ferry {

// Who may connect (--allow): a peer the list does not permit is closed at accept, and
// `on_refused` (if set) gets a line naming it.
struct ListenFilter {
  AllowList allow{};
  std::function<void(const std::string& why)> on_refused{};
};

// Accepts connections on a TCP, unix or vsock address.
class Listener {
 public:
  using OnAccept = std::function<void(std::unique_ptr<Connection>)>;
  using Filter = ListenFilter;
  // Binds and listens. Errc::connection on failure (naming bind/listen and the address).
  static Result<std::unique_ptr<Listener>> open(uv_loop_t* loop, const Address& addr, OnAccept on_accept,
                                                Filter filter = {});
  ~Listener();
  // The address actually bound (with the real port when 0 was asked).
  const Address& address() const { return bound_; }

 private:
  Listener() = default;
  static void on_connection(uv_stream_t* server, int status);
  static void on_vsock_ready(uv_poll_t* h, int status, int events);
  // A peer --allow does not permit was closed: tell filter_.on_refused.
  void refuse(const std::string& peer);
  UvOwner<AnyStream> server_;
  int vsock_fd_ = -1;  // vsock listens through a poll on our own socket
  UvOwner<uv_poll_t> vsock_poll_;
  Address bound_;
  bool owns_path_ = false;  // the unix socket file is ours to remove (we bound it)
  OnAccept on_accept_;
  Filter filter_;
  uv_loop_t* loop_ = nullptr;
};

}  // namespace ferry
