// Connection::cork()/uncork(): frames written under a cork stay queued (no write call)
// until the last uncork, then leave together; close() still writes what a cork held.
// A real socketpair and a real libuv loop; the peer end is read without blocking.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <memory>
#include <string>

#include "lib/net/connection.hpp"

namespace ferry {
namespace {

struct Pair {
  uv_loop_t loop{};
  int peer = -1;
  std::unique_ptr<Connection> conn;

  Pair() {
    EXPECT_EQ(uv_loop_init(&loop), 0);
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    peer = sv[1];
    auto c = Connection::adopt(&loop, "test", sv[0], sv[0]);
    EXPECT_TRUE(c.ok());
    if (c) conn = std::move(*c);
    conn->start({[](protocol::Bytes) {}, [](const Error&) {}});
  }
  ~Pair() {
    conn.reset();
    uv_run(&loop, UV_RUN_NOWAIT);  // let the handles' closes complete
    uv_run(&loop, UV_RUN_NOWAIT);
    EXPECT_EQ(uv_loop_close(&loop), 0) << "handles left open";
    ::close(peer);
  }
  // Everything the peer can read now, without waiting.
  std::string available() const {
    std::string out;
    char buf[4096];
    for (int guard = 0; guard < 1000; ++guard) {
      const ssize_t n = ::recv(peer, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
};

SendFrame frame(const std::string& text) {
  SendFrame f;
  for (char ch : text) f.head.push_back(static_cast<std::byte>(ch));
  return f;
}

TEST(ConnectionCork, WritesAtOnceWithoutACork) {
  Pair p;
  p.conn->write(frame("abc"));
  EXPECT_EQ(p.available(), "abc");
}

TEST(ConnectionCork, HoldsFramesUntilTheLastUncork) {
  Pair p;
  p.conn->cork();
  p.conn->cork();  // nested
  p.conn->write(frame("one,"));
  p.conn->write(frame("two,"));
  EXPECT_EQ(p.available(), "") << "a corked frame reached the peer";
  EXPECT_EQ(p.conn->write_queue_bytes(), 8u);
  p.conn->uncork();
  p.conn->write(frame("three"));
  EXPECT_EQ(p.available(), "") << "still corked once";
  p.conn->uncork();
  EXPECT_EQ(p.available(), "one,two,three");
  EXPECT_EQ(p.conn->write_queue_bytes(), 0u);
  p.conn->uncork();  // unbalanced: no effect
  p.conn->write(frame("!"));
  EXPECT_EQ(p.available(), "!");
}

TEST(ConnectionCork, CloseWritesWhatACorkHeld) {
  Pair p;
  p.conn->cork();
  p.conn->write(frame("last words"));
  p.conn->close(make_error(Errc::connection, "done"));
  EXPECT_EQ(p.available(), "last words");
}

TEST(ConnectionCork, CloseAfterFlushWritesWhatACorkHeld) {
  Pair p;
  p.conn->cork();
  p.conn->write(frame("END"));
  p.conn->close_after_flush(make_error(Errc::connection, "done"));
  EXPECT_EQ(p.available(), "END");
}

}  // namespace
}  // namespace ferry
