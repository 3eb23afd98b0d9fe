// Making connections: dial() an address, open_stdio(), spawn_command(), adopt a lent
// descriptor, and open_connection(), the one way an engine gets the connection a
// Transport asks for.
//
//   auto cancel = open_connection(loop, Transport::connect_to(addr), poster,
//                                 [](Result<std::unique_ptr<Connection>> c) { ... });
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lib/net/address.hpp"
#include "lib/net/connection.hpp"
#include "lib/net/transport.hpp"
#include "lib/uv/loop_mailbox.hpp"

namespace ferry {

using ConnectionDone = std::function<void(Result<std::unique_ptr<Connection>>)>;
// Ends a dial still in progress; its `done` then gets Errc::connection "cancelled".
// Empty when there is nothing to cancel. Loop thread.
using DialCancel = std::function<void()>;

inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{10'000};

// Dials `addr` (name resolution included); `done` is called once, on the loop thread
// (at once for errors found before anything is sent). Errc::connection on failure;
// no answer within `timeout` (tcp, unix; vsock is bounded by the kernel) is
// ETIMEDOUT. The returned function cancels the attempt: an engine that ends calls it,
// so a connect to a host that drops SYNs cannot hold its loop for minutes.
DialCancel dial(uv_loop_t* loop, const Address& addr, ConnectionDone done,
                std::chrono::milliseconds timeout = kDefaultConnectTimeout);

// The protocol over this process's stdin/stdout (both dup()ed; the originals stay
// open). They must be pipes, sockets or terminals.
Result<std::unique_ptr<Connection>> open_stdio(uv_loop_t* loop);

// Each line a carrier command writes to its stderr (lib/net/child_process.hpp).
using CarrierLines = std::function<void(const std::string&)>;

// Runs `/bin/sh -c command` and speaks over its stdin/stdout. Its stderr is read line
// by line: each line goes to `on_line` (empty: to our stderr, as it came), and the
// connection's carrier() keeps its exit status and last line.
Result<std::unique_ptr<Connection>> spawn_command(uv_loop_t* loop, const std::string& command,
                                                  CarrierLines on_line = {});

// A descriptor lent by the caller (lib/net/transport.hpp): dup()s it and adopts the dup;
// b.on_released runs once the dup is closed, or before this returns when it fails
// (Errc::connection: a negative or dead descriptor, or one libuv cannot poll).
Result<std::unique_ptr<Connection>> adopt_borrowed(uv_loop_t* loop, BorrowedFd b);

// Makes one connection the way `t` says: connect, stdio, command or dial (listen and
// provided connections arrive by themselves: Errc::internal). `done` runs once on the
// loop thread, possibly before this returns; for `dial`, not at all if the mailbox
// behind `poster` closed first (its owner is gone; the descriptor is released). The
// caller guards `done` against having been destroyed meanwhile (connect and dial
// answer later). `timeout` bounds a connect (see dial()); the result cancels it.
// `on_carrier_line`: a command's stderr lines (see spawn_command()).
DialCancel open_connection(uv_loop_t* loop, const Transport& t, const MailboxPoster& poster, ConnectionDone done,
                           std::chrono::milliseconds timeout = kDefaultConnectTimeout,
                           CarrierLines on_carrier_line = {});

}  // namespace ferry
