// embed-receiver: a ferry::Receiver embedded in a program of its own, on the program's
// own libuv loop, getting every connection from the program's own dial function.
//
//   embed-receiver DEST ADDR      ADDR: HOST:PORT | tcp:HOST:PORT | [IPV6]:PORT | unix:PATH
//
// Receives one transfer from `ferry-send --listen ADDR FILE...` into DEST and exits with
// the status ferry-recv would (0: every file delivered and verified; README "Exit
// codes"). Build it against an installed ferry: docs/examples/README.md.
//
// This is what a host application does when its connections come from somewhere ferry
// cannot reach by itself. A macOS host talking to a virtual machine, for instance, gets
// each connection from Virtualization.framework's VZVirtioSocketDevice.connect(toPort:),
// as a descriptor owned by a VZVirtioSocketConnection. Here plain sockets stand in for
// that: the dial function opens a TCP or unix connection itself and lends the
// descriptor to ferry. The rest is as it would be in such a host:
//   - the program owns its loop and runs the receiver on it with Receiver::start(loop),
//     next to handles of its own (here: SIGINT and SIGTERM);
//   - ferry calls the dial function for the first connection and again after every
//     lost one (with backoff, up to ReceiverOptions::retries in a row without
//     progress), and the transfer resumes on the new connection;
//   - ferry dup()s a lent descriptor at once, works on its dup only and never closes
//     the program's descriptor. It calls `on_released` exactly once, after it closed its
//     dup; only from then on may the program close its descriptor, or the object it
//     came from (closing a VZVirtioSocketConnection closes every descriptor it vended,
//     dups included, so the connection object must live until then);
//   - events arrive through a callback, on the loop thread: the same events
//     `ferry-recv --json` prints (docs/EVENTS.md); here one short line each.
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include <ferry/receiver/receiver.hpp>

namespace {

// Peer text (paths, reasons) may hold anything: print control characters as '?'.
std::string printable(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

// One connected stream socket to `a`, by a blocking connect(). The loop stands still
// meanwhile, which is fine for loopback, a unix socket or a VM's socket; a program
// whose connect takes long (or is asynchronous, as VZVirtioSocketDevice.connect is)
// answers the DialDone later, from whichever thread its completion runs on.
// Errors: Errc::connection when the peer is not (yet) there, which ferry retries;
// Errc::usage for what no retry can fix, which ends the transfer.
ferry::Result<int> open_socket(const ferry::Address& a) {
  using ferry::Errc;
  using ferry::make_error;
  const std::string where = a.to_string();
  switch (a.kind) {
    case ferry::AddressKind::unix_socket: {
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      if (a.path.size() >= sizeof sa.sun_path) return make_error(Errc::usage, "unix socket path too long: " + where);
      std::memcpy(sa.sun_path, a.path.c_str(), a.path.size() + 1);
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) return make_error(Errc::connection, "socket(" + where + ")", errno);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
        const int e = errno;
        ::close(fd);
        return make_error(Errc::connection, "connect(" + where + ")", e);
      }
      return fd;
    }
    case ferry::AddressKind::tcp: {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      const int rc = ::getaddrinfo(a.host.c_str(), std::to_string(a.port).c_str(), &hints, &found);
      if (rc != 0) return make_error(Errc::connection, "getaddrinfo(" + a.host + "): " + ::gai_strerror(rc));
      int last_errno = ECONNREFUSED;
      for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
          last_errno = errno;
          continue;
        }
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
          ::freeaddrinfo(found);
          return fd;
        }
        last_errno = errno;
        ::close(fd);
      }
      ::freeaddrinfo(found);
      return make_error(Errc::connection, "connect(" + where + ")", last_errno);
    }
    case ferry::AddressKind::vsock:
      // Not that it could not be done: ferry::Transport::connect_to(address) speaks vsock.
      return make_error(Errc::usage, "this example dials tcp and unix addresses only, not " + where);
  }
  return make_error(Errc::usage, "unknown address kind: " + where);
}

// One line per event. Progress comes often: at most one line a second of it.
class EventPrinter {
 public:
  void operator()(const ferry::Event& e) {
    using ferry::EventType;
    if (e.type == EventType::progress) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_progress_ < std::chrono::seconds(1) && e.offset != e.size) return;
      last_progress_ = now;
    }
    std::string line = ferry::event_type_name(e.type);
    if (!e.path.empty()) {
      line += " " + printable(e.path) + " (" + std::to_string(e.offset) + "/" + std::to_string(e.size) + " bytes)";
    }
    if (!e.detail.empty()) line += ": " + printable(e.detail);
    if (e.type == EventType::session_end) {
      line += " [exit " + std::to_string(e.exit_code) + ", " + std::to_string(e.totals.files_verified) + " verified, " +
              std::to_string(e.totals.bytes_verified) + " bytes]";
    }
    std::printf("%s\n", line.c_str());
  }

 private:
  std::chrono::steady_clock::time_point last_progress_{};
};

// SIGINT / SIGTERM: ends the receiver as ferry-recv does, with 128 + the signal's
// number. stop() is thread-safe and fine from a callback on the loop; partial files
// keep their journals for a later resume.
void on_signal(uv_signal_t* h, int signum) {
  static_cast<ferry::Receiver*>(h->data)->stop(128 + signum, "interrupted by signal " + std::to_string(signum));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: embed-receiver DEST ADDR   (ADDR: HOST:PORT, tcp:HOST:PORT, unix:PATH)\n");
    return static_cast<int>(ferry::Errc::usage);
  }
  auto address = ferry::parse_address(argv[2], ferry::AddressUse::connect);
  if (!address) {
    std::fprintf(stderr, "embed-receiver: %s\n", address.error().message().c_str());
    return address.error().exit_code();
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, also into a pipe or file

  uv_loop_t loop;
  if (int rc = uv_loop_init(&loop); rc != 0) {
    std::fprintf(stderr, "embed-receiver: uv_loop_init: %s\n", uv_strerror(rc));
    return static_cast<int>(ferry::Errc::internal);
  }

  ferry::ReceiverOptions options;
  options.dest = argv[1];
  // With a dial function the receiver serves one sender's transfer and then ends;
  // `once` makes it end as soon as END arrives rather than when the connection closes.
  options.once = true;
  // Called on the loop thread for the first connection and after every lost one.
  options.transport = ferry::Transport::dial_with([a = *address, dials = 0u](ferry::DialDone done) mutable {
    const unsigned n = ++dials;
    auto fd = open_socket(a);
    if (!fd) {
      std::printf("dial %u: %s\n", n, fd.error().message().c_str());
      return done(fd.error());
    }
    std::printf("dial %u: connected to %s, fd %d\n", n, a.to_string().c_str(), *fd);
    // The program keeps its descriptor open until ferry releases it; then it closes it
    // (a VM host would close its VZVirtioSocketConnection here).
    done(ferry::BorrowedFd{*fd, a.to_string(), [fd = *fd, n] {
                             std::printf("dial %u: released, fd %d closed\n", n, fd);
                             ::close(fd);
                           }});
  });
  options.on_event = EventPrinter{};

  std::optional<ferry::Outcome> outcome;
  {
    ferry::Receiver receiver(std::move(options));

    // The program's own handles share the loop. Unreferenced, they do not keep it
    // running: uv_run returns once the receiver has ended.
    uv_signal_t signals[2];
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; ++i) {
      uv_signal_init(&loop, &signals[i]);
      signals[i].data = &receiver;
      uv_signal_start(&signals[i], on_signal, signums[i]);
      uv_unref(reinterpret_cast<uv_handle_t*>(&signals[i]));
    }

    receiver.start(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);  // until the receiver has ended
    outcome = receiver.outcome();
    for (auto& s : signals) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
  }
  // ~Receiver, on the loop thread, closed what was left of its handles; this last turn
  // of the loop frees them.
  uv_run(&loop, UV_RUN_DEFAULT);
  if (int rc = uv_loop_close(&loop); rc != 0) {
    std::fprintf(stderr, "embed-receiver: uv_loop_close: %s\n", uv_strerror(rc));
  }

  if (!outcome) {
    std::fprintf(stderr, "embed-receiver: the loop ended before the receiver did\n");
    return static_cast<int>(ferry::Errc::internal);
  }
  if (outcome->error) std::fprintf(stderr, "embed-receiver: error: %s\n", outcome->error->message().c_str());
  return outcome->exit_code;
}
