// The rate-limited TCP relay of the end-to-end tests: one poll() loop in a thread.
#include "tests/e2e/relay.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <stdexcept>
#include <vector>

namespace ferry::e2e {
namespace {

constexpr std::size_t kBufferSize = 64 * 1024;  // per direction and connection

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// One direction of a relayed connection.
struct Flow {
  int from = -1, to = -1;
  std::vector<char> buf;
  std::size_t sent = 0;  // bytes of buf already written
  bool eof = false;      // `from` reached EOF
  bool shut = false;     // `to` half-closed after eof
  bool pending() const { return sent < buf.size(); }
};

struct Link {
  int client = -1, target = -1;
  Flow up, down;  // up: client -> target; down: target -> client
  bool dead = false;
  ~Link() {
    if (client >= 0) ::close(client);
    if (target >= 0) ::close(target);
  }
};

// Token bucket for one direction.
struct Bucket {
  std::uint64_t rate = 0;  // bytes/s; 0 = unlimited
  double tokens = 0;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  void refill() {
    auto now = std::chrono::steady_clock::now();
    if (rate == 0) return;
    const double burst = std::max<double>(16 * 1024, static_cast<double>(rate) / 50);  // 20 ms worth
    tokens = std::min(burst, tokens + std::chrono::duration<double>(now - last).count() * static_cast<double>(rate));
    last = now;
  }
  std::size_t allowance(std::size_t want) const {
    if (rate == 0) return want;
    return static_cast<std::size_t>(std::min<double>(static_cast<double>(want), std::max(0.0, tokens)));
  }
  void take(std::size_t n) {
    if (rate != 0) tokens -= static_cast<double>(n);
  }
};

}  // namespace

Relay::Relay(std::uint16_t target_port, std::uint64_t bytes_per_second)
    : target_port_(target_port), rate_(bytes_per_second) {
  start();
}

Relay::Relay(std::uint32_t target_cid, std::uint32_t target_port, std::uint64_t bytes_per_second)
    : vsock_(true), target_cid_(target_cid), target_port_(target_port), rate_(bytes_per_second) {
  start();
}

void Relay::start() {
  listen_fd_ = ::socket(vsock_ ? AF_VSOCK : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("relay socket: ") + std::strerror(errno));
  sockaddr_in a = loopback(0);
  sockaddr_vm v{};
  v.svm_family = AF_VSOCK;
  v.svm_cid = VMADDR_CID_ANY;
  v.svm_port = VMADDR_PORT_ANY;
  auto* addr = vsock_ ? reinterpret_cast<sockaddr*>(&v) : reinterpret_cast<sockaddr*>(&a);
  socklen_t len = vsock_ ? sizeof v : sizeof a;
  if (::bind(listen_fd_, addr, len) != 0 || ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, addr, &len) != 0) {
    int e = errno;
    ::close(listen_fd_);
    throw std::runtime_error(std::string("relay listen: ") + std::strerror(e));
  }
  port_ = vsock_ ? v.svm_port : ntohs(a.sin_port);
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string("relay pipe: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { run(); });
}

Relay::~Relay() {
  stop();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void Relay::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  char c = 1;
  (void)!::write(wake_[1], &c, 1);
  thread_.join();
}

int Relay::connect_target() const {
  int t = ::socket(vsock_ ? AF_VSOCK : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (t < 0) return -1;
  sockaddr_in a = loopback(static_cast<std::uint16_t>(target_port_));
  sockaddr_vm v{};
  v.svm_family = AF_VSOCK;
  v.svm_cid = target_cid_;
  v.svm_port = target_port_;
  const int rc = vsock_ ? ::connect(t, reinterpret_cast<sockaddr*>(&v), sizeof v)
                        : ::connect(t, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0) {
    ::close(t);
    return -1;
  }
  return t;
}

void Relay::run() {
  std::list<Link> links;
  Bucket up_bucket{rate_}, down_bucket{rate_};
  std::vector<pollfd> fds;
  while (!stopping_) {
    up_bucket.refill();
    down_bucket.refill();
    bool throttled = false;
    fds.clear();
    fds.push_back({wake_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    auto wants = [&](const Flow& f, Bucket& b, short& from_ev, short& to_ev) {
      if (f.pending()) to_ev |= POLLOUT;
      if (!f.eof && !f.pending()) {
        if (b.allowance(1) > 0)
          from_ev |= POLLIN;
        else
          throttled = true;
      }
    };
    for (auto& l : links) {
      short cev = 0, tev = 0;
      wants(l.up, up_bucket, cev, tev);
      wants(l.down, down_bucket, tev, cev);
      fds.push_back({l.client, cev, 0});
      fds.push_back({l.target, tev, 0});
    }
    if (::poll(fds.data(), fds.size(), throttled ? 2 : 100) < 0 && errno != EINTR) break;
    if (stopping_) break;

    std::size_t i = 2;
    for (auto& l : links) {
      const short cre = fds[i].revents, tre = fds[i + 1].revents;
      i += 2;
      auto step = [&](Flow& f, Bucket& b, short from_re, short to_re, std::atomic<std::uint64_t>& counter) {
        if (l.dead) return;
        if (!f.eof && !f.pending() && (from_re & (POLLIN | POLLHUP | POLLERR))) {
          const std::size_t n_allowed = b.allowance(kBufferSize);
          if (n_allowed > 0) {
            f.buf.resize(n_allowed);
            f.sent = 0;
            ssize_t n = ::recv(f.from, f.buf.data(), n_allowed, 0);
            if (n > 0) {
              f.buf.resize(static_cast<std::size_t>(n));
              b.take(static_cast<std::size_t>(n));
            } else {
              f.buf.clear();
              if (n == 0)
                f.eof = true;
              else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                l.dead = true;
            }
          }
        }
        if (f.pending() && (to_re & (POLLOUT | POLLERR | POLLHUP))) {
          ssize_t n = ::send(f.to, f.buf.data() + f.sent, f.buf.size() - f.sent, MSG_NOSIGNAL);
          if (n > 0) {
            f.sent += static_cast<std::size_t>(n);
            counter += static_cast<std::uint64_t>(n);
          } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            l.dead = true;
          }
        }
        if (f.eof && !f.pending() && !f.shut) {
          ::shutdown(f.to, SHUT_WR);
          f.shut = true;
        }
      };
      step(l.up, up_bucket, cre, tre, to_target_);
      step(l.down, down_bucket, tre, cre, to_client_);
      // A side that hung up after its EOF was relayed can take nothing more: the
      // connection is over (this also keeps poll() from spinning on POLLHUP).
      if (((cre & (POLLHUP | POLLERR)) && l.up.shut) || ((tre & (POLLHUP | POLLERR)) && l.down.shut)) {
        l.dead = true;
      }
    }
    // Accepted after the loop above: a new link has no entry in fds until the next turn.
    if (fds[1].revents & POLLIN) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        ++accepted_;
        int t = connect_target();
        if (t >= 0) {
          set_nonblocking(t);
          int one = 1;
          if (!vsock_) {
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ::setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          }
          Link& l = links.emplace_back();
          l.client = c;
          l.target = t;
          l.up.from = c;
          l.up.to = t;
          l.down.from = t;
          l.down.to = c;
        } else {
          if (t >= 0) ::close(t);
          ::close(c);  // the target is gone: the client sees the connection end
        }
      }
    }

    links.remove_if([](const Link& l) { return l.dead || (l.up.shut && l.down.shut); });
  }
  links.clear();
}

}  // namespace ferry::e2e
