// ferry-fault-proxy: a seeded, deterministic TCP / unix-socket proxy that forwards each
// accepted connection to a target and injects transport faults on the way: black holes,
// early close and reset, bit flips (anywhere, in a ferry frame header, or in a DATA
// payload), stalls, trickle and rate limits, per connection and per direction.
//
//   ferry-fault-proxy --listen 127.0.0.1:0 --target tcp:127.0.0.1:5000
//       --faulty all --up blackhole-after=1M --hold 2 --seed 7 --log /tmp/p.jsonl
//
// Prints "listening on ADDR" (with the real port) on stdout, then serves until SIGINT
// or SIGTERM, after which it ends every connection, writes their log lines and exits 0.
// Plain C++ over poll(2); single-threaded; every buffer is bounded; a peer that
// disappears ends its connection, never the proxy. See --help (kHelp below) and
// docs/RELIABILITY.md.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "protocol/frame.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace P = ferry::protocol;

constexpr const char* kHelp = R"(ferry-fault-proxy: forward connections and inject transport faults (for tests and
for reproducing a bad transport by hand).

Usage:
  ferry-fault-proxy --listen ADDR --target ADDR [options] [--up FAULT]... [--down FAULT]...

Addresses: tcp:HOST:PORT | HOST:PORT | [IPV6]:PORT | unix:PATH. Listening on port 0
picks a free port; the proxy prints "listening on ADDR" with the real port on stdout.

Directions: --up FAULT applies to bytes from the client (the side that connected to
the proxy) to the server (--target); --down FAULT to bytes from server to client.
Several faults may be given per direction. N is a byte offset in that direction's
stream, counted from the start of the connection: a number with an optional K, M or G
suffix (powers of 1024), or a range LO..HI from which each faulty connection draws its
own value from the seed.

Faults:
  blackhole-after=N  forward the first N bytes, then read and discard everything else,
                     end of stream included: the other side waits forever, or until
                     --hold SECONDS have passed, when the proxy closes both sides.
  close-after=N      forward N bytes, then close both sides cleanly (FIN, after draining
                     what is unread so that no reset is sent).
  reset-after=N      forward N bytes, then reset both sides (SO_LINGER 0, close).
  flip-at=N          flip one bit (chosen from the seed) of byte N.
  flip-header=N      flip one bit of one byte of the first ferry frame header (24 bytes,
                     protocol/frame.hpp) that starts at or after byte N.
  flip-payload=N     flip one bit of one file byte of the first ferry DATA frame that
                     carries file bytes at or after byte N (a byte at or after N).
  stall-after=N      forward N bytes, then neither read nor write in this direction
                     (back-pressure reaches the writer) for --for SECONDS, or forever
                     when --for is not given (until the writer hangs up).
  trickle            forward 1..7 bytes per write, with a random pause of up to
                     --trickle-delay microseconds between writes.
  rate=BYTES_PER_S   forward at most this many bytes per second (K/M/G suffixes).

Options:
  --listen ADDR         where to accept connections (required)
  --target ADDR         where to forward each connection (required)
  --faulty K|all        apply the faults to the first K connections only (default all);
                        later connections are forwarded untouched
  --seed S              seed for ranges, flipped bits and trickle sizes (default 1); a
                        connection's choices depend only on the seed and its number
  --hold SECONDS        with blackhole-after: close both sides this long after the black
                        hole began (default: never)
  --for SECONDS         with stall-after: how long the stall lasts (default: forever)
  --trickle-delay US    longest pause between trickled writes (default 100)
  --log FILE            append one JSON line per connection when it ends (flushed):
                        {"conn":1,"faulty":true,"up":{"in":..,"out":..,"discarded":..},
                         "down":{...},"faults":[..],"fired":[..],"end":"..","seconds":..}
                        in = bytes read from the source, out = bytes written to the
                        destination, discarded = bytes black-holed or dropped
  --max-connections N   connections served at once; more are refused (default 128)
  -h, --help            this text

Examples:
  # every connection loses everything after 1 MiB, and is closed 2 s later
  ferry-fault-proxy --listen :0 --target tcp:127.0.0.1:5000 --up blackhole-after=1M --hold 2
  # the first 3 connections are cut at a random offset between 10 KiB and 3 MiB
  ferry-fault-proxy --listen :0 --target unix:/tmp/r.sock --faulty 3 --up close-after=10K..3M --seed 42
)";

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "ferry-fault-proxy: error: %s\n", msg.c_str());
  std::exit(2);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Addresses

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  bool tcp = true;
  std::string text;
};

std::optional<std::uint64_t> parse_number(const std::string& t) {
  if (t.empty()) return std::nullopt;
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
    if (v > (UINT64_MAX - 9) / 10) return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(t[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string suf = t.substr(i);
  unsigned shift = 0;
  if (suf.empty() || suf == "B") shift = 0;
  else if (suf == "K" || suf == "k" || suf == "KiB") shift = 10;
  else if (suf == "M" || suf == "MiB") shift = 20;
  else if (suf == "G" || suf == "GiB") shift = 30;
  else return std::nullopt;
  if (shift && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::optional<double> parse_seconds(const std::string& t) {
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0' || !(v >= 0) || v > 86400 * 365) return std::nullopt;
  return v;
}

Addr parse_addr(const std::string& text, bool listening) {
  Addr a;
  a.text = text;
  if (text.rfind("unix:", 0) == 0) {
    a.tcp = false;
    std::string path = text.substr(5);
    sockaddr_un un{};
    if (path.empty() || path.size() >= sizeof un.sun_path) die("bad unix socket path in '" + text + "'");
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
    std::memcpy(&a.ss, &un, sizeof un);
    a.len = sizeof un;
    return a;
  }
  std::string rest = text.rfind("tcp:", 0) == 0 ? text.substr(4) : text;
  std::string host, port;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') die("bad address '" + text + "'");
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) {
      if (!listening) die("address '" + text + "' has no port");
      port = rest;
    } else {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    }
  }
  if (host.empty()) {
    if (!listening) die("address '" + text + "' has no host");
    host = "127.0.0.1";
  }
  auto p = parse_number(port);
  if (!p || *p > 65535 || (*p == 0 && !listening)) die("bad port in address '" + text + "'");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) die("cannot resolve '" + host + "': " + gai_strerror(rc));
  std::memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  ::freeaddrinfo(res);
  if (a.ss.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.ss)->sin6_port = htons(static_cast<std::uint16_t>(*p));
  else reinterpret_cast<sockaddr_in*>(&a.ss)->sin_port = htons(static_cast<std::uint16_t>(*p));
  return a;
}

std::string addr_to_string(const sockaddr_storage& ss, bool tcp, const std::string& unix_text) {
  if (!tcp) return unix_text;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET6) {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    return std::string("tcp:[") + ip + "]:" + std::to_string(ntohs(s6->sin6_port));
  }
  auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
  ::inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
  return std::string("tcp:") + ip + ":" + std::to_string(ntohs(s4->sin_port));
}

// ---------------------------------------------------------------------------
// Fault specifications

enum class FaultKind { blackhole_after, close_after, reset_after, flip_at, flip_header, flip_payload, stall_after, trickle, rate };

struct FaultSpec {
  FaultKind kind;
  std::string text;
  std::uint64_t lo = 0, hi = 0;
};

FaultSpec parse_fault(const std::string& text) {
  struct Name {
    const char* name;
    FaultKind kind;
    bool takes_value;
  };
  static const Name names[] = {
      {"blackhole-after", FaultKind::blackhole_after, true}, {"close-after", FaultKind::close_after, true},
      {"reset-after", FaultKind::reset_after, true},         {"flip-at", FaultKind::flip_at, true},
      {"flip-header", FaultKind::flip_header, true},         {"flip-payload", FaultKind::flip_payload, true},
      {"stall-after", FaultKind::stall_after, true},         {"trickle", FaultKind::trickle, false},
      {"rate", FaultKind::rate, true},
  };
  const auto eq = text.find('=');
  const std::string name = text.substr(0, eq);
  const std::string value = eq == std::string::npos ? "" : text.substr(eq + 1);
  for (const auto& n : names) {
    if (name != n.name) continue;
    FaultSpec f{n.kind, text, 0, 0};
    if (!n.takes_value) {
      if (eq != std::string::npos) die("fault '" + name + "' takes no value");
      return f;
    }
    if (value.empty()) die("fault '" + name + "' needs a value: " + name + "=N (see --help)");
    const auto dots = value.find("..");
    auto lo = parse_number(value.substr(0, dots));
    auto hi = dots == std::string::npos ? lo : parse_number(value.substr(dots + 2));
    if (!lo || !hi || *hi < *lo) die("bad value in fault '" + text + "' (want N or LO..HI, K/M/G suffixes)");
    if (n.kind == FaultKind::rate && *lo == 0) die("rate must be at least 1 byte per second");
    f.lo = *lo;
    f.hi = *hi;
    return f;
  }
  die("unknown fault '" + text + "' (see --help)");
}

struct Options {
  std::string listen, target, log_path;
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> faulty;  // nullopt: all
  std::vector<FaultSpec> up, down;
  std::optional<double> hold_s, for_s;
  std::uint64_t trickle_delay_us = 100;
  std::size_t max_connections = 128;
};

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (a == "--listen") {
      o.listen = value();
    } else if (a == "--target") {
      o.target = value();
    } else if (a == "--log") {
      o.log_path = value();
    } else if (a == "--seed") {
      auto v = parse_number(value());
      if (!v) die("bad --seed");
      o.seed = *v;
    } else if (a == "--faulty") {
      auto v = value();
      if (v == "all") {
        o.faulty.reset();
      } else {
        auto n = parse_number(v);
        if (!n) die("bad --faulty '" + v + "' (want a count or all)");
        o.faulty = *n;
      }
    } else if (a == "--up") {
      o.up.push_back(parse_fault(value()));
    } else if (a == "--down") {
      o.down.push_back(parse_fault(value()));
    } else if (a == "--hold") {
      o.hold_s = parse_seconds(value());
      if (!o.hold_s) die("bad --hold (seconds)");
    } else if (a == "--for") {
      o.for_s = parse_seconds(value());
      if (!o.for_s) die("bad --for (seconds)");
    } else if (a == "--trickle-delay") {
      auto v = parse_number(value());
      if (!v || *v > 1'000'000) die("bad --trickle-delay (microseconds, at most 1000000)");
      o.trickle_delay_us = *v;
    } else if (a == "--max-connections") {
      auto v = parse_number(value());
      if (!v || *v == 0 || *v > 4096) die("bad --max-connections (1..4096)");
      o.max_connections = static_cast<std::size_t>(*v);
    } else {
      die("unknown argument '" + a + "' (see --help)");
    }
  }
  if (o.listen.empty() || o.target.empty()) die("--listen and --target are required (see --help)");
  return o;
}

// ---------------------------------------------------------------------------
// Frame boundaries in one direction, for flip-header / flip-payload.

class FrameScanner {
 public:
  // Called with each frame's start offset, type and payload length, before any byte
  // of its payload has been scanned.
  template <class OnHeader>
  void feed(std::uint64_t off, const unsigned char* p, std::size_t n, OnHeader&& on_header) {
    std::size_t i = 0;
    while (!lost_ && i < n) {
      const std::uint64_t pos = off + i;
      if (pos < next_header_) {  // inside a payload: skip it
        i += static_cast<std::size_t>(std::min<std::uint64_t>(next_header_ - pos, n - i));
        continue;
      }
      hdr_[fill_++] = p[i++];
      if (fill_ < P::kHeaderSize) continue;
      fill_ = 0;
      const std::uint32_t len = (std::uint32_t{hdr_[8]} << 24) | (std::uint32_t{hdr_[9]} << 16) |
                                (std::uint32_t{hdr_[10]} << 8) | std::uint32_t{hdr_[11]};
      if (hdr_[0] != P::kMagic0 || hdr_[1] != P::kMagic1 || len > P::kMaxPayload) {
        lost_ = true;  // not a ferry stream (or already corrupted): stop following it
        return;
      }
      const std::uint64_t start = next_header_;
      next_header_ = start + P::kHeaderSize + len;
      on_header(start, hdr_[3], len);
    }
  }
  // Where the next header starts (known once the previous header was scanned).
  std::uint64_t next_header() const { return next_header_; }
  bool lost() const { return lost_; }

 private:
  std::uint64_t next_header_ = 0;
  unsigned char hdr_[P::kHeaderSize]{};
  std::size_t fill_ = 0;
  bool lost_ = false;
};

// ---------------------------------------------------------------------------
// Connections

constexpr std::size_t kBufferCap = 128 * 1024;
constexpr auto kLingerLimit = std::chrono::seconds(2);
constexpr Clock::time_point kNever = Clock::time_point::max();

struct Direction {
  const char* name = "up";
  int src = 0, dst = 1;  // index into Pair::fd
  std::vector<unsigned char> buf;
  std::size_t head = 0;  // bytes [head, buf.size()) wait to be written
  std::uint64_t in = 0, out = 0, discarded = 0;
  bool src_eof = false, shut = false, dst_dead = false;
  // Concrete faults for this connection.
  std::optional<std::uint64_t> blackhole_at, close_at, reset_at, stall_at, flip_at;
  std::optional<std::uint64_t> flip_header_from, flip_payload_from;
  bool trickle = false;
  std::optional<std::uint64_t> rate;
  // Fault state.
  std::optional<std::uint64_t> flip_target;
  unsigned flip_bit = 0;
  bool flipped = false, blackholing = false, stalled = false, stall_done = false;
  Clock::time_point stall_until = kNever;
  Clock::time_point next_write{};
  double tokens = 0;
  Clock::time_point last_refill{};
  FrameScanner scan;
  std::mt19937_64 rng;

  std::size_t pending() const { return buf.size() - head; }
  // The offset at which forwarding must pause or end, if any fault is still due.
  std::optional<std::uint64_t> cut() const {
    std::optional<std::uint64_t> c;
    auto take = [&](const std::optional<std::uint64_t>& v) {
      if (v && (!c || *v < *c)) c = v;
    };
    take(close_at);
    take(reset_at);
    if (!stall_done && !stalled) take(stall_at);
    return c;
  }
};

enum class PairState { connecting, active, lingering, done };

struct Pair {
  std::uint64_t id = 0;
  bool faulty = false;
  int fd[2] = {-1, -1};  // 0: client, 1: server
  PairState state = PairState::connecting;
  Direction up, down;
  Clock::time_point started{};
  Clock::time_point hold_until = kNever;
  Clock::time_point linger_until = kNever;
  bool linger_eof[2] = {false, false};
  std::vector<std::string> faults, fired;
  std::string client, end;
};

class Proxy {
 public:
  explicit Proxy(Options o) : opts_(std::move(o)) {
    listen_ = parse_addr(opts_.listen, true);
    target_ = parse_addr(opts_.target, false);
    if (!opts_.log_path.empty()) {
      log_ = std::fopen(opts_.log_path.c_str(), "a");
      if (!log_) die("cannot open log " + opts_.log_path + ": " + std::strerror(errno));
    }
  }
  ~Proxy() {
    if (log_) std::fclose(log_);
  }

  void open_listener() {
    lfd_ = ::socket(listen_.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd_ < 0) die(std::string("socket: ") + std::strerror(errno));
    if (listen_.tcp) {
      int one = 1;
      ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    } else {
      // A socket file left by an earlier run would make bind fail: remove only a socket.
      const char* path = reinterpret_cast<sockaddr_un*>(&listen_.ss)->sun_path;
      struct stat st{};
      if (::lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path);
    }
    if (::bind(lfd_, reinterpret_cast<sockaddr*>(&listen_.ss), listen_.len) != 0) {
      die("bind(" + opts_.listen + "): " + std::strerror(errno));
    }
    if (::listen(lfd_, 64) != 0) die("listen(" + opts_.listen + "): " + std::strerror(errno));
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&ss), &len);
    std::printf("listening on %s\n", addr_to_string(ss, listen_.tcp, opts_.listen).c_str());
    std::fflush(stdout);
  }

  // Serves until *stop becomes true (set from a signal handler).
  void run(volatile sig_atomic_t* stop, const sigset_t* unblocked) {
    std::vector<pollfd> pfds;
    std::vector<std::pair<Pair*, int>> owners;  // pfds[i] -> (pair, fd index); pair null = listener
    while (!*stop) {
      pfds.clear();
      owners.clear();
      const bool can_accept = pairs_.size() < opts_.max_connections;
      pfds.push_back({can_accept ? lfd_ : -1, POLLIN, 0});
      owners.emplace_back(nullptr, 0);
      auto now = Clock::now();
      Clock::time_point wake = kNever;
      for (auto& p : pairs_) {
        for (int i = 0; i < 2; ++i) {
          short ev = events_for(p, i, now, wake);
          pfds.push_back({ev ? p.fd[i] : -1, ev, 0});
          owners.emplace_back(&p, i);
        }
        if (p.hold_until < wake) wake = p.hold_until;
        if (p.linger_until < wake) wake = p.linger_until;
      }
      timespec ts{};
      timespec* tsp = nullptr;
      if (wake != kNever) {
        auto d = std::max(Clock::duration::zero(), wake - now);
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        tsp = &ts;
      }
      int n = ::ppoll(pfds.data(), pfds.size(), tsp, unblocked);
      if (n < 0 && errno != EINTR) die(std::string("poll: ") + std::strerror(errno));
      now = Clock::now();
      if (n > 0) {
        if (pfds[0].revents & POLLIN) accept_all(now);
        for (std::size_t i = 1; i < pfds.size(); ++i) {
          if (pfds[i].revents == 0) continue;
          on_ready(*owners[i].first, owners[i].second, pfds[i].revents, now);
        }
      }
      for (auto& p : pairs_) on_time(p, Clock::now());
      for (auto it = pairs_.begin(); it != pairs_.end();) {
        if (it->state == PairState::done) it = pairs_.erase(it);
        else ++it;
      }
    }
    for (auto& p : pairs_) finish(p, "proxy stopped");
    pairs_.clear();
    if (!listen_.tcp) ::unlink(reinterpret_cast<sockaddr_un*>(&listen_.ss)->sun_path);
  }

 private:
  // ---- setup

  void accept_all(Clock::time_point now) {
    for (;;) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      int c = ::accept4(lfd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;  // EAGAIN, or a connection that died before we took it
      if (pairs_.size() >= opts_.max_connections) {
        ::close(c);
        continue;
      }
      pairs_.emplace_back();
      Pair& p = pairs_.back();
      p.id = ++accepted_;
      p.started = now;
      p.fd[0] = c;
      p.client = addr_to_string(ss, listen_.tcp, "unix");
      p.faulty = !opts_.faulty || p.id <= *opts_.faulty;
      if (listen_.tcp) set_nodelay(c);
      setup_faults(p, now);
      int s = ::socket(target_.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (s < 0) {
        finish(p, std::string("socket: ") + std::strerror(errno));
        continue;
      }
      p.fd[1] = s;
      if (target_.tcp) set_nodelay(s);
      if (::connect(s, reinterpret_cast<sockaddr*>(&target_.ss), target_.len) == 0) {
        activate(p, now);
      } else if (errno != EINPROGRESS) {
        finish(p, "connect(" + opts_.target + "): " + std::strerror(errno));
      }
    }
  }

  static void set_nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }

  void setup_faults(Pair& p, Clock::time_point now) {
    p.up.name = "up";
    p.up.src = 0;
    p.up.dst = 1;
    p.down.name = "down";
    p.down.src = 1;
    p.down.dst = 0;
    // A connection's choices depend only on the seed and its number.
    std::seed_seq seq{static_cast<std::uint32_t>(opts_.seed), static_cast<std::uint32_t>(opts_.seed >> 32),
                      static_cast<std::uint32_t>(p.id)};
    std::mt19937_64 rng(seq);
    for (Direction* d : {&p.up, &p.down}) {
      d->rng.seed(rng());
      d->last_refill = now;
      if (!p.faulty) continue;
      for (const auto& f : d == &p.up ? opts_.up : opts_.down) {
        const std::uint64_t v = f.lo == f.hi ? f.lo : f.lo + rng() % (f.hi - f.lo + 1);
        std::string concrete = std::string(d->name) + " " + f.text;
        if (f.lo != f.hi) concrete += " (drew " + std::to_string(v) + ")";
        p.faults.push_back(concrete);
        switch (f.kind) {
          case FaultKind::blackhole_after: d->blackhole_at = v; break;
          case FaultKind::close_after: d->close_at = v; break;
          case FaultKind::reset_after: d->reset_at = v; break;
          case FaultKind::flip_at: d->flip_at = v; break;
          case FaultKind::flip_header: d->flip_header_from = v; break;
          case FaultKind::flip_payload: d->flip_payload_from = v; break;
          case FaultKind::stall_after: d->stall_at = v; break;
          case FaultKind::trickle: d->trickle = true; break;
          case FaultKind::rate: d->rate = v; break;
        }
      }
      d->flip_bit = static_cast<unsigned>(rng() % 8);
      if (d->flip_at) d->flip_target = d->flip_at;
      if (d->rate) d->tokens = 0;
    }
  }

  void activate(Pair& p, Clock::time_point now) {
    p.state = PairState::active;
    for (Direction* d : {&p.up, &p.down}) {
      d->last_refill = now;
      d->next_write = now;
      check_cuts(p, *d, now);
      if (p.state != PairState::active) return;
    }
  }

  // ---- poll interest

  short events_for(Pair& p, int i, Clock::time_point now, Clock::time_point& wake) {
    switch (p.state) {
      case PairState::connecting: return i == 1 ? POLLOUT : 0;
      case PairState::lingering: return p.linger_eof[i] ? 0 : POLLIN;
      case PairState::done: return 0;
      case PairState::active: break;
    }
    short ev = 0;
    for (Direction* d : {&p.up, &p.down}) {
      if (d->stalled) {
        if (d->stall_until < wake) wake = d->stall_until;
        // A writer that gives up during an endless stall ends this direction.
        if (d->src == i && d->stall_until == kNever && !d->src_eof) ev |= POLLRDHUP;
        continue;
      }
      if (d->src == i && wants_read(*d)) ev |= POLLIN;
      if (d->dst == i && d->pending() > 0 && !d->dst_dead) {
        if (d->next_write > now) {
          if (d->next_write < wake) wake = d->next_write;
        } else {
          ev |= POLLOUT;
        }
      }
    }
    return ev;
  }

  static std::size_t read_room(const Direction& d) {
    if (d.src_eof) return 0;
    std::size_t room = kBufferCap - d.pending();
    if (d.blackholing || d.dst_dead) return kBufferCap;  // everything read is dropped
    if (auto c = d.cut()) {
      room = static_cast<std::size_t>(std::min<std::uint64_t>(room, *c > d.in ? *c - d.in : 0));
    }
    return room;
  }
  static bool wants_read(const Direction& d) { return read_room(d) > 0; }

  // ---- events

  void on_ready(Pair& p, int i, short revents, Clock::time_point now) {
    switch (p.state) {
      case PairState::connecting: {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(p.fd[1], SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return finish(p, "connect(" + opts_.target + "): " + std::strerror(err));
        return activate(p, now);
      }
      case PairState::lingering: return linger_read(p, i, now);
      case PairState::done: return;
      case PairState::active: break;
    }
    for (Direction* d : {&p.up, &p.down}) {
      if (p.state != PairState::active) return;
      if (d->src == i && d->stalled && d->stall_until == kNever && (revents & (POLLRDHUP | POLLHUP | POLLERR))) {
        // The writer hung up during an endless stall: what it sent is dropped.
        d->stalled = false;
        d->stall_done = true;
        d->discarded += d->pending();
        d->buf.clear();
        d->head = 0;
        d->src_eof = true;
        p.fired.push_back(std::string(d->name) + " writer hung up during the stall");
        end_direction(p, *d);
        continue;
      }
      if (d->src == i && !d->stalled && (revents & (POLLIN | POLLHUP | POLLERR))) read_into(p, *d, now);
      if (p.state != PairState::active) return;
      if (d->dst == i && !d->stalled && (revents & (POLLOUT | POLLHUP | POLLERR))) write_from(p, *d, now);
    }
    maybe_done(p);
  }

  void read_into(Pair& p, Direction& d, Clock::time_point now) {
    std::size_t room = read_room(d);
    if (room == 0) return;
    unsigned char tmp[64 * 1024];
    room = std::min(room, sizeof tmp);
    ssize_t n = ::recv(p.fd[d.src], tmp, room, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      p.fired.push_back(std::string(d.name) + " source error: " + std::strerror(errno));
      n = 0;  // ECONNRESET and friends: the source is gone, like EOF
    }
    if (n == 0) {
      d.src_eof = true;
      end_direction(p, d);
      return;
    }
    const std::uint64_t off = d.in;
    const auto len = static_cast<std::size_t>(n);
    d.in += len;
    scan_and_flip(p, d, off, tmp, len);
    // Black hole: keep what precedes the threshold, drop the rest.
    std::size_t keep = len;
    if (d.blackhole_at && off + len > *d.blackhole_at) {
      keep = static_cast<std::size_t>(off >= *d.blackhole_at ? 0 : *d.blackhole_at - off);
      if (!d.blackholing) {
        d.blackholing = true;
        p.fired.push_back(std::string(d.name) + " black hole from byte " + std::to_string(*d.blackhole_at) + " at " +
                          seconds_since(p.started, now) + " s");
        if (opts_.hold_s) {
          p.hold_until = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*opts_.hold_s));
        }
      }
    }
    if (d.dst_dead) keep = 0;
    d.discarded += len - keep;
    if (keep > 0) {
      if (d.head > 0 && d.head == d.buf.size()) {
        d.buf.clear();
        d.head = 0;
      } else if (d.head > kBufferCap / 2) {
        d.buf.erase(d.buf.begin(), d.buf.begin() + static_cast<std::ptrdiff_t>(d.head));
        d.head = 0;
      }
      d.buf.insert(d.buf.end(), tmp, tmp + keep);
    }
  }

  void scan_and_flip(Pair& p, Direction& d, std::uint64_t off, unsigned char* data, std::size_t len) {
    if (d.flipped) return;
    const bool want_frames = (d.flip_header_from || d.flip_payload_from) && !d.flip_target;
    if (want_frames) {
      // A header that starts at or after N: the first one is at offset 0.
      if (d.flip_header_from && d.scan.next_header() >= *d.flip_header_from && off <= d.scan.next_header()) {
        d.flip_target = d.scan.next_header() + d.rng() % P::kHeaderSize;
      }
      d.scan.feed(off, data, len, [&](std::uint64_t start, std::uint8_t type, std::uint32_t plen) {
        if (d.flip_target) return;
        const std::uint64_t next = start + P::kHeaderSize + plen;
        if (d.flip_header_from && next >= *d.flip_header_from) {
          d.flip_target = next + d.rng() % P::kHeaderSize;  // the following frame's header
        }
        if (d.flip_payload_from && type == static_cast<std::uint8_t>(P::FrameType::data) &&
            plen > P::kDataPrefixSize) {
          const std::uint64_t first = start + P::kHeaderSize + P::kDataPrefixSize;
          if (next > *d.flip_payload_from) {
            const std::uint64_t lo = std::max(first, *d.flip_payload_from);
            d.flip_target = lo + d.rng() % (next - lo);
          }
        }
      });
    }
    if (d.flip_target && *d.flip_target >= off && *d.flip_target < off + len) {
      data[*d.flip_target - off] ^= static_cast<unsigned char>(1u << d.flip_bit);
      d.flipped = true;
      p.fired.push_back(std::string(d.name) + " flipped bit " + std::to_string(d.flip_bit) + " of byte " +
                        std::to_string(*d.flip_target));
    }
  }

  void write_from(Pair& p, Direction& d, Clock::time_point now) {
    if (d.dst_dead) return;
    while (d.pending() > 0 && p.state == PairState::active && !d.stalled) {
      if (d.next_write > now) return;
      std::size_t len = d.pending();
      if (auto c = d.cut()) len = static_cast<std::size_t>(std::min<std::uint64_t>(len, *c - d.out));
      if (d.trickle) len = std::min<std::size_t>(len, 1 + d.rng() % 7);
      if (d.rate) {
        refill(d, now);
        const auto whole = static_cast<std::size_t>(d.tokens);
        if (whole == 0) {
          const double need = std::min<double>(static_cast<double>(len), std::max(1.0, static_cast<double>(*d.rate) / 100));
          d.next_write = now + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>((need - d.tokens) / static_cast<double>(*d.rate)));
          return;
        }
        len = std::min(len, whole);
      }
      if (len == 0) return;
      ssize_t n = ::send(p.fd[d.dst], d.buf.data() + d.head, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        // The destination is gone: drop what this direction still carries.
        p.fired.push_back(std::string(d.name) + " destination error: " + std::strerror(errno));
        d.dst_dead = true;
        d.discarded += d.pending();
        d.buf.clear();
        d.head = 0;
        return;
      }
      d.head += static_cast<std::size_t>(n);
      d.out += static_cast<std::uint64_t>(n);
      if (d.rate) d.tokens -= static_cast<double>(n);
      if (d.head == d.buf.size()) {
        d.buf.clear();
        d.head = 0;
      }
      check_cuts(p, d, now);
      if (d.trickle && opts_.trickle_delay_us > 0) {
        const auto us = d.rng() % (opts_.trickle_delay_us + 1);
        if (us > 0) {
          d.next_write = now + std::chrono::microseconds(us);
          break;
        }
      }
    }
    if (p.state == PairState::active && d.pending() == 0 && d.src_eof) end_direction(p, d);
  }

  void refill(Direction& d, Clock::time_point now) {
    const double dt = std::chrono::duration<double>(now - d.last_refill).count();
    d.last_refill = now;
    const double cap = std::max(1.0, static_cast<double>(*d.rate) / 20);  // bursts of 50 ms at most
    d.tokens = std::min(cap, d.tokens + dt * static_cast<double>(*d.rate));
  }

  // Faults that fire at an offset of the forwarded stream.
  void check_cuts(Pair& p, Direction& d, Clock::time_point now) {
    if (d.reset_at && d.out >= *d.reset_at) {
      p.fired.push_back(std::string(d.name) + " reset after " + std::to_string(d.out) + " bytes at " +
                        seconds_since(p.started, now) + " s");
      return reset_pair(p, std::string(d.name) + " reset-after fired");
    }
    if (d.close_at && d.out >= *d.close_at) {
      p.fired.push_back(std::string(d.name) + " close after " + std::to_string(d.out) + " bytes at " +
                        seconds_since(p.started, now) + " s");
      return start_linger(p, now, std::string(d.name) + " close-after fired");
    }
    if (d.stall_at && !d.stalled && !d.stall_done && d.out >= *d.stall_at) {
      d.stalled = true;
      d.stall_until = opts_.for_s ? now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*opts_.for_s))
                                  : kNever;
      p.fired.push_back(std::string(d.name) + " stall after " + std::to_string(d.out) + " bytes at " +
                        seconds_since(p.started, now) + " s" + (opts_.for_s ? "" : " (forever)"));
    }
  }

  // The source ended (and what it sent was flushed): pass the end of stream on.
  void end_direction(Pair& p, Direction& d) {
    if (d.pending() > 0 && !d.dst_dead) return;  // written first
    if (!d.blackholing && !d.dst_dead && !d.shut) {
      d.shut = true;
      ::shutdown(p.fd[d.dst], SHUT_WR);
    }
    maybe_done(p);
  }

  static bool direction_over(const Direction& d) {
    return d.src_eof && (d.pending() == 0 || d.dst_dead);
  }

  void maybe_done(Pair& p) {
    if (p.state != PairState::active) return;
    if (direction_over(p.up) && direction_over(p.down)) finish(p, "both sides closed");
  }

  void on_time(Pair& p, Clock::time_point now) {
    if (p.state == PairState::lingering) {
      if (now >= p.linger_until) finish(p, p.end);
      return;
    }
    if (p.state != PairState::active) return;
    if (now >= p.hold_until) {
      p.fired.push_back("hold of the black hole over: closing both sides at " + seconds_since(p.started, now) + " s");
      return start_linger(p, now, "closed after --hold");
    }
    for (Direction* d : {&p.up, &p.down}) {
      if (d->stalled && now >= d->stall_until) {
        d->stalled = false;
        d->stall_done = true;
        p.fired.push_back(std::string(d->name) + " stall over at " + seconds_since(p.started, now) + " s");
      }
      if (!d->stalled && d->pending() > 0 && d->next_write <= now) write_from(p, *d, now);
      if (p.state != PairState::active) return;
    }
  }

  // ---- endings

  void reset_pair(Pair& p, const std::string& why) {
    for (int& fd : p.fd) {
      if (fd < 0) continue;
      linger lg{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    finish(p, why);
  }

  // Clean close: FIN both ways, then drain unread input until EOF (closing a TCP socket
  // with unread input would send a reset instead), at most kLingerLimit.
  void start_linger(Pair& p, Clock::time_point now, const std::string& why) {
    p.state = PairState::lingering;
    p.end = why;
    p.linger_until = now + kLingerLimit;
    for (int i = 0; i < 2; ++i) {
      if (p.fd[i] >= 0) ::shutdown(p.fd[i], SHUT_WR);
    }
    p.up.discarded += p.up.pending();
    p.down.discarded += p.down.pending();
    p.up.buf.clear();
    p.down.buf.clear();
    p.up.head = p.down.head = 0;
  }

  void linger_read(Pair& p, int i, Clock::time_point) {
    unsigned char tmp[16 * 1024];
    for (int k = 0; k < 16; ++k) {
      ssize_t n = ::recv(p.fd[i], tmp, sizeof tmp, 0);
      if (n > 0) {
        (i == 0 ? p.up : p.down).discarded += static_cast<std::uint64_t>(n);
        (i == 0 ? p.up : p.down).in += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      p.linger_eof[i] = true;
      break;
    }
    if (p.linger_eof[0] && p.linger_eof[1]) finish(p, p.end);
  }

  void finish(Pair& p, const std::string& why) {
    if (p.state == PairState::done) return;
    p.state = PairState::done;
    p.end = why;
    for (int& fd : p.fd) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    write_log(p);
  }

  static std::string seconds_since(Clock::time_point t0, Clock::time_point now) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3f", std::chrono::duration<double>(now - t0).count());
    return b;
  }

  void write_log(const Pair& p) {
    if (!log_) return;
    auto dir = [](const Direction& d) {
      char b[160];
      std::snprintf(b, sizeof b, "{\"in\":%" PRIu64 ",\"out\":%" PRIu64 ",\"discarded\":%" PRIu64 "}", d.in, d.out,
                    d.discarded);
      return std::string(b);
    };
    auto list = [](const std::vector<std::string>& v) {
      std::string s = "[";
      for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ",\"" : "\"") + json_escape(v[i]) + "\"";
      return s + "]";
    };
    std::string line = "{\"conn\":" + std::to_string(p.id) + ",\"faulty\":" + (p.faulty ? "true" : "false") +
                       ",\"client\":\"" + json_escape(p.client) + "\",\"up\":" + dir(p.up) +
                       ",\"down\":" + dir(p.down) + ",\"faults\":" + list(p.faults) + ",\"fired\":" + list(p.fired) +
                       ",\"end\":\"" + json_escape(p.end) + "\",\"seconds\":" +
                       seconds_since(p.started, Clock::now()) + "}\n";
    std::fputs(line.c_str(), log_);
    std::fflush(log_);
  }

  Options opts_;
  Addr listen_, target_;
  int lfd_ = -1;
  std::FILE* log_ = nullptr;
  std::list<Pair> pairs_;  // stable addresses while polling
  std::uint64_t accepted_ = 0;
};

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  // SIGINT/SIGTERM are blocked except inside ppoll, so a stop is never missed.
  sigset_t block, unblocked;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &unblocked);
  sigdelset(&unblocked, SIGINT);
  sigdelset(&unblocked, SIGTERM);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  Proxy proxy(std::move(o));
  proxy.open_listener();
  proxy.run(&g_stop, &unblocked);
  return 0;
}
