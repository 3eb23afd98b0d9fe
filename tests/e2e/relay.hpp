// A TCP relay for the end-to-end tests: listens on 127.0.0.1:0 and forwards every
// connection it accepts to 127.0.0.1:TARGET, in a background thread, with an optional
// rate limit per direction and counters of the bytes forwarded each way. The same over
// vsock (listening on vsock:any, reached at vsock:1:PORT) where vsock_loopback exists.
//
// The rate limit stretches a transfer over a few seconds so a test can kill a process
// mid-file at a chosen point; the counters tell how far it got.
//
//   Relay relay(recv.port, 16 << 20);        // 16 MiB/s each way
//   auto send = Process::start({kSendBin, "--connect", relay.address(), file}, ...);
//   wait_until([&] { return relay.to_target() >= (8u << 20); }, 20s);
//   send->kill_now();
//
// When either side of a relayed connection ends, the relay delivers what it already
// read, then half-closes the other side (EOF); on an error (reset) it closes both.
// A connection whose target cannot be reached is closed at once. stop() (also run by
// the destructor) closes everything and joins the thread within about 100 ms.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace ferry::e2e {

class Relay {
 public:
  // bytes_per_second: limit for each direction, summed over connections; 0 = none.
  // Throws std::runtime_error when it cannot listen.
  Relay(std::uint16_t target_port, std::uint64_t bytes_per_second);
  // Over vsock: listens on vsock:any with a port the kernel picks and forwards to
  // vsock:TARGET_CID:TARGET_PORT. Clients reach it at address(), vsock:1:PORT, which
  // needs the vsock_loopback module. Throws std::runtime_error when it cannot listen.
  Relay(std::uint32_t target_cid, std::uint32_t target_port, std::uint64_t bytes_per_second);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  std::uint32_t port() const { return port_; }
  // "127.0.0.1:PORT" (or "vsock:1:PORT"), for --connect.
  std::string address() const { return (vsock_ ? "vsock:1:" : "127.0.0.1:") + std::to_string(port_); }
  // Bytes written to the target (client -> target) and to the clients, all connections.
  std::uint64_t to_target() const { return to_target_.load(); }
  std::uint64_t to_client() const { return to_client_.load(); }
  // Connections accepted so far.
  std::uint64_t accepted() const { return accepted_.load(); }
  // Closes every connection and the listener; joins the thread. Idempotent.
  void stop();

 private:
  void run();
  void start();                // listens (sets port_), starts the thread
  int connect_target() const;  // a blocking socket connected to the target, or -1

  bool vsock_ = false;
  std::uint32_t target_cid_ = 0;
  std::uint32_t target_port_;
  std::uint64_t rate_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::uint32_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> to_target_{0}, to_client_{0}, accepted_{0};
  std::thread thread_;
};

}  // namespace ferry::e2e
