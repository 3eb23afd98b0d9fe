// Transport: where a ferry sender or receiver gets its connections.
//
// The executables build one from --listen, --connect, --stdio or -e. A program that
// embeds ferry (sender/sender.hpp, receiver/receiver.hpp) may instead lend it
// descriptors it opened itself: pushed with add_connection(), or returned by its own
// DialFunction, which ferry calls for the first connection and for every reconnect,
// so reconnect and resume work over any transport the caller can open.
//
// Lent descriptors (BorrowedFd): ferry dup()s the descriptor at once, uses only its
// dup, and never closes the caller's. The dup shares the open file's status flags, so
// ferry making it non-blocking (O_NONBLOCK) makes the caller's descriptor
// non-blocking too. It must be a connected stream socket (writes use MSG_NOSIGNAL: a
// closed peer is EPIPE, never SIGPIPE). A descriptor may depend on an object the caller
// owns (Virtualization.framework closes every fd it vended, dup()s included, when the
// VZVirtioSocketConnection is closed; a dup used after that fails with EBADF): the
// caller keeps that object alive until ferry calls `on_released`, which it does exactly
// once, after it closed its dup (the connection ended, or the descriptor could not be
// used).
//
//   Transport t = Transport::dial_with([](DialDone done) {
//     int fd = my_connect_to_guest(5004);                       // a connected stream socket
//     if (fd < 0) return done(make_error(Errc::connection, "connect(guest:5004)", errno));
//     done(BorrowedFd{fd, "guest:5004", [fd] { ::close(fd); }});  // any thread, once
//   });
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

// Relative includes (not rooted at the repository top like the rest of ferry): this is a
// public header, installed as <ferry/lib/net/transport.hpp>, and must find its neighbours there
// without ferry's own folders on the includer's path (cmake/package.cmake).
#include "../../protocol/result.hpp"
#include "address.hpp"

namespace ferry {

// A connected stream socket lent by the caller (see the overview).
struct BorrowedFd {
  int fd = -1;
  std::string peer;  // names the connection in messages; "fd N" if empty
  // May be empty; must not throw. Runs on the loop thread, except for a descriptor ferry
  // could never take (lent after the end, a second answer to one dial, an engine
  // destroyed before it started): then on the thread that lent it or destroyed it.
  std::function<void()> on_released;
};

// The answer to one dial: a connected descriptor, or why there is none. An Error with
// Errc::connection is retried with backoff (up to the retry limit); any other code
// ends the transfer with that error. Callable from any thread, exactly once.
using DialDone = std::function<void(Result<BorrowedFd>)>;
// Called on the loop thread whenever a new connection is needed; must not throw, and
// must not block the loop for long (answer later through `done` from any thread if it
// has to wait). ferry sets no deadline on the answer: a dial function that never
// calls `done` leaves the transfer waiting until it is cancelled or stopped.
using DialFunction = std::function<void(DialDone done)>;

enum class TransportKind {
  listen,    // accept connections on `address`
  connect,   // dial `address` (tcp, unix, vsock), again after a loss
  stdio,     // this process's stdin/stdout, once (at the end fd 1 is pointed at /dev/null
             // so the peer sees EOF)
  command,   // spawn `/bin/sh -c command` and speak over its stdin/stdout, again after a loss
  dial,      // call `dial` for every connection
  provided,  // only what the caller passes to add_connection()
};

struct Transport {
  TransportKind kind = TransportKind::provided;
  Address address;      // listen, connect
  std::string command;  // command
  DialFunction dial;    // dial
  // listen: who may connect (--allow): IP prefixes ("10.0.0.0/8", "fd00::/8") for tcp,
  // "vsock:CID" for vsock; a peer outside is closed at accept, with a warning event.
  // Empty: anyone who can reach the address.
  std::vector<std::string> allow{};
  // listen: serve without a key on an address strangers can reach (anything but TCP
  // loopback and unix sockets; vsock too), with a warning event at the start
  // (--no-auth-i-know-this-is-insecure). Without it such a listener needs a key.
  bool insecure_no_key = false;

  static Transport listen_on(Address a) { return {TransportKind::listen, std::move(a), {}, {}}; }
  static Transport connect_to(Address a) { return {TransportKind::connect, std::move(a), {}, {}}; }
  static Transport stdio() { return {TransportKind::stdio, {}, {}, {}}; }
  static Transport run_command(std::string cmd) { return {TransportKind::command, {}, std::move(cmd), {}}; }
  static Transport dial_with(DialFunction f) { return {TransportKind::dial, {}, {}, std::move(f)}; }
  static Transport provided_by_caller() { return {}; }

  // True when ferry itself can make another connection after one is lost.
  bool can_redial() const {
    return kind == TransportKind::connect || kind == TransportKind::command || kind == TransportKind::dial;
  }
  // "tcp:127.0.0.1:5000", "stdio", "command 'ssh h ferry-recv --stdio d'", ...
  std::string describe() const;
};

// Calls b.on_released once (if set) and clears it. For lent descriptors ferry could
// not use, on whichever thread finds that out.
void release(BorrowedFd& b);

}  // namespace ferry
