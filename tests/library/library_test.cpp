// The embeddable library (sender/sender.hpp, receiver/receiver.hpp) in one process: a
// ferry::Sender and a ferry::Receiver joined by socketpairs the test lends them as
// BorrowedFd, on one loop of the test's or on threads of their own.
//
// What is proved: transfers on the caller's loop; the caller's descriptors are never
// closed by ferry and on_released comes exactly once, after ferry closed its dup; a
// dial function's reconnect resumes the file; a descriptor closed underneath ferry
// (EBADF; docs/RELIABILITY.md, "What the transports do wrong" 4) or shut down by the
// peer (EPIPE/ECONNRESET) ends only that connection; answers from other threads;
// cancel and destruction at any moment; unusable descriptors are released and
// reported. Every run of a loop is bounded by a watchdog timer; the thread-mode waits
// are bounded by ctest's TIMEOUT.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/net/address.hpp"
#include "lib/uv/uv_owner.hpp"
#include "receiver/receiver.hpp"
#include "sender/sender.hpp"
#include "tests/e2e/process.hpp"

namespace ferry {
namespace {

using namespace std::chrono_literals;
using e2e::TempDir;

constexpr auto kWatchdog = 60s;  // generous: the suite also runs under ASan, two at a time

bool fd_is_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

// The test's side of one socketpair: both ends belong to the test, which lends one
// to each engine and closes each when (and only when) that engine released it, as a
// host application does with the connection object its descriptor came from.
struct Pair {
  int a = -1, b = -1;
  int held = -1;  // a dup the test itself keeps of one end (see BrokenPipe...)
  std::atomic<int> released_a{0}, released_b{0};
  bool a_open_at_release = false, b_open_at_release = false;
};

class Lender {
 public:
  ~Lender() {
    for (auto& p : pairs_) {
      if (p->a >= 0) ::close(p->a);
      if (p->b >= 0) ::close(p->b);
      if (p->held >= 0) ::close(p->held);
    }
  }
  Pair& make() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    auto p = std::make_unique<Pair>();
    p->a = sv[0];
    p->b = sv[1];
    pairs_.push_back(std::move(p));
    return *pairs_.back();
  }
  // The lent descriptor for one end; on_released records whether the caller's fd was
  // still open (ferry must never close it), counts the calls, then closes it.
  static BorrowedFd lend_a(Pair& p) { return lend(p.a, p.released_a, p.a_open_at_release, "pair-a"); }
  static BorrowedFd lend_b(Pair& p) { return lend(p.b, p.released_b, p.b_open_at_release, "pair-b"); }
  std::vector<std::unique_ptr<Pair>>& pairs() { return pairs_; }

 private:
  static BorrowedFd lend(int& fd, std::atomic<int>& count, bool& open_at_release, const char* name) {
    return BorrowedFd{fd, name, [&fd, &count, &open_at_release] {
                        open_at_release = fd >= 0 && fd_is_open(fd);
                        if (++count == 1 && fd >= 0) {
                          ::close(fd);
                          fd = -1;
                        }
                      }};
  }
  std::vector<std::unique_ptr<Pair>> pairs_;
};

// Records events (from any thread).
class EventLog {
 public:
  std::function<void(const Event&)> sink(std::function<void(const Event&)> also = {}) {
    return [this, also](const Event& e) {
      {
        std::lock_guard<std::mutex> l(mu_);
        events_.push_back(e);
        threads_.push_back(std::this_thread::get_id());
      }
      if (also) also(e);
    };
  }
  std::size_t count(EventType t) const {
    std::lock_guard<std::mutex> l(mu_);
    std::size_t n = 0;
    for (const auto& e : events_) n += e.type == t;
    return n;
  }
  std::vector<std::thread::id> threads() const {
    std::lock_guard<std::mutex> l(mu_);
    return threads_;
  }
  std::string dump() const {
    std::lock_guard<std::mutex> l(mu_);
    std::string out;
    for (const auto& e : events_) out += std::string(event_type_name(e.type)) + " " + e.path + " " + e.detail + "\n";
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Event> events_;
  std::vector<std::thread::id> threads_;
};

// A loop owned by the test, run until `done()` holds or the watchdog fires.
class TestLoop {
 public:
  TestLoop() { uv_loop_init(&loop_); }
  ~TestLoop() {
    // Whatever is left (closed handles of destroyed engines) is freed here.
    for (int i = 0; i < 100 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) {
    }
    uv_loop_close(&loop_);
  }
  uv_loop_t* get() { return &loop_; }
  // Runs until done() or the watchdog; true when done() held. A 20 ms ticker keeps
  // each turn short, so a loop waiting on nothing cannot block the test.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = kWatchdog) {
    UvOwner<uv_timer_t> tick(&loop_, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); });
    uv_timer_start(
        tick.get(), [](uv_timer_t*) {}, 20, 20);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    bool ok = true;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ok = false;
        break;
      }
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return ok;
  }

 private:
  uv_loop_t loop_{};
};

struct Files {
  TempDir t;
  std::string src = t / "src";
  std::string dest = t / "dest";
  std::string file(const std::string& name, std::uint64_t size, std::uint64_t seed) {
    const std::string p = src + "/" + name;
    e2e::write_random_file(p, size, seed);
    return p;
  }
};

SenderOptions sender_options(Transport t, std::vector<std::string> paths, EventLog& log,
                             std::function<void(const Event&)> also = {}) {
  SenderOptions o;
  o.transport = std::move(t);
  o.paths = std::move(paths);
  o.window = 256 * 1024;  // small: many ACKs, so cuts land mid-file
  o.chunk_size = 64 * 1024;
  o.stall_timeout = 5s;
  o.on_event = log.sink(std::move(also));
  return o;
}

ReceiverOptions receiver_options(const std::string& dest, EventLog& log) {
  ReceiverOptions o;
  o.transport = Transport::provided_by_caller();
  o.dest = dest;
  o.once = true;
  o.window = 256 * 1024;
  o.on_event = log.sink();
  return o;
}

// Lends the two ends of `p` to `r` and `s` and starts both on `loop`.
void lend_and_start(Pair& p, Receiver& r, Sender& s, TestLoop& loop) {
  r.add_connection(Lender::lend_b(p));  // before start: kept for it
  s.add_connection(Lender::lend_a(p));
  r.start(loop.get());
  s.start(loop.get());
}

// An on_event hook that sets `flag` once an ACK passed `offset`: a point mid-file.
std::function<void(const Event&)> raise_at_progress(bool& flag, std::uint64_t offset = 1024 * 1024) {
  return [&flag, offset](const Event& e) {
    if (e.type == EventType::progress && e.offset >= offset) flag = true;
  };
}

TEST(Library, OneLoopTwoLentDescriptors) {
  Files f;
  const auto a = f.file("a.bin", 3 * 1024 * 1024 + 5, 1);
  Lender lend;
  Pair& p = lend.make();
  EventLog slog, rlog;
  TestLoop loop;
  {
    Receiver r(receiver_options(f.dest, rlog));
    Sender s(sender_options(Transport::provided_by_caller(), {a}, slog));
    lend_and_start(p, r, s, loop);
    ASSERT_TRUE(loop.run_until([&] { return s.outcome() && r.outcome() && p.released_a && p.released_b; }))
        << slog.dump() << rlog.dump();
    EXPECT_EQ(s.outcome()->exit_code, 0) << s.outcome()->error->message();
    EXPECT_EQ(r.outcome()->exit_code, 0);
    EXPECT_EQ(s.outcome()->totals.files_verified, 1u);
  }
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/a.bin"), "");
  EXPECT_TRUE(e2e::ferry_leftovers(f.dest).empty());
  EXPECT_EQ(p.released_a.load(), 1);
  EXPECT_EQ(p.released_b.load(), 1);
  // ferry closed only its dups: the caller's descriptors were open when released.
  EXPECT_TRUE(p.a_open_at_release);
  EXPECT_TRUE(p.b_open_at_release);
  EXPECT_EQ(slog.count(EventType::session_end), 1u);
  EXPECT_EQ(slog.count(EventType::file_verified), 1u);
  EXPECT_EQ(rlog.count(EventType::file_verified), 1u);
}

// The dial function makes a socketpair per call, lends one end to the receiver and
// answers with the other. Inside on_event, at the first progress of the first
// connection, `cut` breaks that connection; the sender must dial again and resume.
void run_with_cut(const std::function<void(Pair&)>& cut, std::uint64_t size, std::uint64_t seed,
                  const std::string& expected_reason) {
  Files f;
  const auto a = f.file("big.bin", size, seed);
  Lender lend;
  EventLog slog, rlog;
  TestLoop loop;
  Receiver r(receiver_options(f.dest, rlog));
  int dials = 0;
  bool cut_done = false;
  auto dial = [&](DialDone done) {
    Pair& p = lend.make();
    ++dials;
    r.add_connection(Lender::lend_b(p));
    done(Lender::lend_a(p));
  };
  auto on_progress = [&](const Event& e) {
    if (e.type == EventType::progress && !cut_done && e.offset >= 512 * 1024 && e.offset < e.size) {
      cut_done = true;
      cut(*lend.pairs().front());
    }
  };
  Sender s(sender_options(Transport::dial_with(dial), {a}, slog, on_progress));
  r.start(loop.get());
  s.start(loop.get());
  ASSERT_TRUE(loop.run_until([&] { return s.outcome() && r.outcome(); })) << slog.dump() << rlog.dump();
  ASSERT_TRUE(cut_done) << "the file went through before the cut; " << slog.dump();
  EXPECT_EQ(s.outcome()->exit_code, 0) << (s.outcome()->error ? s.outcome()->error->message() : "") << slog.dump();
  EXPECT_EQ(r.outcome()->exit_code, 0) << rlog.dump();
  EXPECT_GE(dials, 2);
  EXPECT_GE(s.outcome()->totals.reconnects, 1u);
  EXPECT_NE(slog.dump().find(expected_reason), std::string::npos) << "the connection ended for another reason:\n"
                                                                  << slog.dump();
  EXPECT_GE(slog.count(EventType::resume), 1u) << slog.dump();
  // Resumed, not started over: less than the whole file was sent twice.
  EXPECT_LT(s.outcome()->totals.bytes_resent, size);
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/big.bin"), "");
  EXPECT_TRUE(e2e::ferry_leftovers(f.dest).empty());
  ASSERT_TRUE(loop.run_until(
      [&] {
        for (auto& p : lend.pairs()) {
          if (p->released_a != 1 || p->released_b != 1) return false;
        }
        return true;
      },
      10s));
}

TEST(Library, DialFunctionReconnectsAndResumesAfterAShutdown) {
  // The peer end goes away: ferry sees EOF / EPIPE / ECONNRESET on its dup.
  run_with_cut([](Pair& p) { ::shutdown(p.b, SHUT_RDWR); }, 8 * 1024 * 1024, 2, "pair-a");
}

TEST(Library, BrokenPipeEndsOnlyThatConnection) {
  // Writing is shut down under the sender (on the socket its dup shares): its next
  // write fails with EPIPE (no SIGPIPE). The test keeps the receiver's end open, so the
  // sender cannot see an EOF first.
  run_with_cut(
      [](Pair& p) {
        p.held = ::dup(p.b);
        ::shutdown(p.a, SHUT_WR);
      },
      8 * 1024 * 1024, 11, "Broken pipe");
}

// ferry's dups of `fd` (other descriptors of this process on the same socket).
std::vector<int> dups_of(int fd) {
  struct stat mine {};
  std::vector<int> out;
  if (::fstat(fd, &mine) != 0) return out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  std::vector<int> fds;
  while (dirent* de = ::readdir(d)) {
    if (de->d_name[0] != '.') fds.push_back(std::atoi(de->d_name));
  }
  ::closedir(d);
  for (int other : fds) {
    struct stat st {};
    if (other != fd && ::fstat(other, &st) == 0 && st.st_ino == mine.st_ino && st.st_dev == mine.st_dev) {
      out.push_back(other);
    }
  }
  return out;
}

TEST(Library, DescriptorClosedUnderneathEndsOnlyThatConnection) {
  // docs/RELIABILITY.md, "What the transports do wrong" 4: Virtualization.framework
  // closes every fd it vended, dup()s included. Close the sender's dup behind its
  // back: EBADF must end that connection cleanly (no abort), and the dial function
  // brings the next one.
  run_with_cut(
      [](Pair& p) {
        auto dups = dups_of(p.a);
        ASSERT_EQ(dups.size(), 1u) << "expected exactly ferry's one dup of the lent descriptor";
        ::close(dups[0]);
      },
      8 * 1024 * 1024, 3, "Bad file descriptor");
}

// A connected TCP socket whose peer was closed with a reset (SO_LINGER 0): the first
// read or write on it fails with ECONNRESET (or EPIPE after it).
int reset_tcp_socket() {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0 ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("listen");
  }
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect");
  int peer = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(l);
  linger lg{1, 0};
  ::setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(peer);  // sends RST
  return c;
}

TEST(Library, ConnectionResetIsRetriedThroughTheDialFunction) {
  Files f;
  const auto a = f.file("a.bin", 1024 * 1024, 12);
  Lender lend;
  EventLog slog, rlog;
  TestLoop loop;
  Receiver r(receiver_options(f.dest, rlog));
  int dials = 0, reset_fd = -1, reset_released = 0;
  auto dial = [&](DialDone done) {
    if (++dials == 1) {
      reset_fd = reset_tcp_socket();
      return done(BorrowedFd{reset_fd, "reset-tcp", [&] { ++reset_released; }});
    }
    Pair& p = lend.make();
    r.add_connection(Lender::lend_b(p));
    done(Lender::lend_a(p));
  };
  Sender s(sender_options(Transport::dial_with(dial), {a}, slog));
  r.start(loop.get());
  s.start(loop.get());
  ASSERT_TRUE(loop.run_until([&] { return s.outcome() && r.outcome(); })) << slog.dump();
  EXPECT_EQ(s.outcome()->exit_code, 0) << slog.dump();
  EXPECT_EQ(dials, 2);
  const std::string log = slog.dump();
  EXPECT_TRUE(log.find("Connection reset by peer") != std::string::npos || log.find("Broken pipe") != std::string::npos)
      << log;
  EXPECT_EQ(reset_released, 1);
  EXPECT_TRUE(fd_is_open(reset_fd));  // ferry closed its dup only
  ::close(reset_fd);
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/a.bin"), "");
}

TEST(Library, DialAnsweredFromAnotherThread) {
  Files f;
  const auto a = f.file("a.bin", 1024 * 1024, 4);
  Lender lend;
  EventLog slog, rlog;
  TestLoop loop;
  Receiver r(receiver_options(f.dest, rlog));
  std::vector<std::thread> answerers;
  auto dial = [&](DialDone done) {
    Pair& p = lend.make();
    r.add_connection(Lender::lend_b(p));
    answerers.emplace_back([done, &p] {
      std::this_thread::sleep_for(20ms);
      done(Lender::lend_a(p));
    });
  };
  Sender s(sender_options(Transport::dial_with(dial), {a}, slog));
  r.start(loop.get());
  s.start(loop.get());
  const bool ended = loop.run_until([&] { return s.outcome() && r.outcome(); });
  for (auto& t : answerers) t.join();
  ASSERT_TRUE(ended) << slog.dump();
  EXPECT_EQ(s.outcome()->exit_code, 0);
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/a.bin"), "");
}

TEST(Library, DialErrorsAreRetriedOrFinal) {
  Files f;
  const auto a = f.file("a.bin", 1000, 5);
  EventLog slog;
  TestLoop loop;
  int calls = 0;
  // Connection errors are retried (with backoff) up to `retries`; the last one ends it.
  auto dial = [&](DialDone done) {
    ++calls;
    done(make_error(Errc::connection, "connect(guest:5004)", ECONNREFUSED));
  };
  auto o = sender_options(Transport::dial_with(dial), {a}, slog);
  o.retries = 2;
  Sender s(std::move(o));
  s.start(loop.get());
  ASSERT_TRUE(loop.run_until([&] { return s.outcome().has_value(); }));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(s.outcome()->exit_code, 3);
  EXPECT_NE(s.outcome()->error->message().find("connect(guest:5004): Connection refused"), std::string::npos);
  EXPECT_EQ(slog.count(EventType::reconnect), 2u);

  // Any other code is the dial function's final word.
  EventLog log2;
  auto final_dial = [](DialDone done) { done(make_error(Errc::usage, "no such VM")); };
  Sender s2(sender_options(Transport::dial_with(final_dial), {a}, log2));
  s2.start(loop.get());
  ASSERT_TRUE(loop.run_until([&] { return s2.outcome().has_value(); }));
  EXPECT_EQ(s2.outcome()->exit_code, 2);
  EXPECT_EQ(s2.outcome()->error->message(), "no such VM");
}

TEST(Library, UnusableLentDescriptorsAreReleasedAndReported) {
  Files f;
  const auto a = f.file("a.bin", 1000, 6);
  EventLog slog;
  TestLoop loop;
  int released = 0;
  const int regular = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);  // libuv cannot poll a regular file
  ASSERT_GE(regular, 0);
  Sender s(sender_options(Transport::provided_by_caller(), {a}, slog));
  s.start(loop.get());
  s.add_connection(BorrowedFd{-1, "nothing", [&] { ++released; }});
  s.add_connection(BorrowedFd{regular, "a regular file", [&] { ++released; }});
  ASSERT_TRUE(loop.run_until([&] { return released == 2; }, 10s));
  EXPECT_TRUE(fd_is_open(regular));
  EXPECT_GE(slog.count(EventType::warning), 2u) << slog.dump();
  EXPECT_FALSE(s.outcome().has_value());  // still waiting for a usable connection
  s.cancel();
  ASSERT_TRUE(loop.run_until([&] { return s.outcome().has_value(); }, 10s));
  EXPECT_EQ(s.outcome()->exit_code, 3);
  EXPECT_EQ(s.outcome()->error->message(), "cancelled");
  ::close(regular);
}

TEST(Library, ThreadsOfTheirOwnAndCancel) {
  Files f;
  const auto a = f.file("a.bin", 2 * 1024 * 1024, 7);
  Lender lend;
  Pair& p = lend.make();
  EventLog slog, rlog;
  {
    Receiver r(receiver_options(f.dest, rlog));
    Sender s(sender_options(Transport::provided_by_caller(), {a}, slog));
    ASSERT_TRUE(r.start_thread());
    ASSERT_TRUE(s.start_thread());
    r.add_connection(Lender::lend_b(p));  // from this thread, into theirs
    s.add_connection(Lender::lend_a(p));
    Outcome so = s.wait();
    Outcome ro = r.wait();
    EXPECT_EQ(so.exit_code, 0) << slog.dump();
    EXPECT_EQ(ro.exit_code, 0) << rlog.dump();
  }
  for (auto id : slog.threads()) EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/a.bin"), "");
  EXPECT_EQ(p.released_a.load(), 1);
  EXPECT_EQ(p.released_b.load(), 1);

  // A sender waiting for a connection that never comes: cancel from here ends it.
  EventLog log2;
  Sender waiting(sender_options(Transport::provided_by_caller(), {a}, log2));
  ASSERT_TRUE(waiting.start_thread());
  waiting.cancel();
  Outcome o = waiting.wait();
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_EQ(log2.count(EventType::session_end), 1u);
}

TEST(Library, DestroyedMidTransferKeepsThePartialAndReleasesEverything) {
  Files f;
  const auto a = f.file("big.bin", 16 * 1024 * 1024, 8);
  Lender lend;
  Pair& p = lend.make();
  EventLog slog, rlog;
  TestLoop loop;
  {
    bool stop = false;
    Receiver r(receiver_options(f.dest, rlog));
    Sender s(sender_options(Transport::provided_by_caller(), {a}, slog, raise_at_progress(stop)));
    lend_and_start(p, r, s, loop);
    ASSERT_TRUE(loop.run_until([&] { return stop; })) << slog.dump();
    // Both destroyed here, on the loop thread, mid-file, with reads and writes in flight.
  }
  ASSERT_TRUE(loop.run_until([&] { return p.released_a == 1 && p.released_b == 1; }, 10s));
  // The partial is kept for a resume; nothing appeared under the final name.
  EXPECT_FALSE(e2e::exists_nofollow(f.dest + "/big.bin"));
  EXPECT_TRUE(e2e::exists_nofollow(f.dest + "/.big.bin.ferry-part"));
  EXPECT_TRUE(e2e::exists_nofollow(f.dest + "/.big.bin.ferry-journal"));
  EXPECT_EQ(slog.count(EventType::session_end), 0u);  // destruction is silent

  // A new pair of engines resumes it.
  Pair& q = lend.make();
  EventLog slog2, rlog2;
  Receiver r(receiver_options(f.dest, rlog2));
  Sender s(sender_options(Transport::provided_by_caller(), {a}, slog2));
  lend_and_start(q, r, s, loop);
  ASSERT_TRUE(loop.run_until([&] { return s.outcome() && r.outcome(); })) << slog2.dump();
  EXPECT_EQ(s.outcome()->exit_code, 0);
  EXPECT_GE(slog2.count(EventType::resume), 1u) << slog2.dump();
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/big.bin"), "");
  EXPECT_TRUE(e2e::ferry_leftovers(f.dest).empty());
}

TEST(Library, LentButNeverStartedIsReleasedAndCancelBeforeStartEnds) {
  Files f;
  const auto a = f.file("a.bin", 1000, 13);
  Lender lend;
  Pair& p = lend.make();
  EventLog slog, log2;
  {
    Sender s(sender_options(Transport::provided_by_caller(), {a}, slog));
    s.add_connection(Lender::lend_a(p));
  }  // never started: the descriptor must still come back
  EXPECT_EQ(p.released_a.load(), 1);
  // A cancel before run() is not lost: run() ends at once.
  Sender s2(sender_options(Transport::provided_by_caller(), {a}, log2));
  s2.cancel();
  const auto t0 = std::chrono::steady_clock::now();
  Outcome o = s2.run();
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

// An explicit file sent under a name the walk of `paths` also yields (found by the
// counting pass, before anything is sent), or two explicit files with one name: a usage
// error naming it, before any connection.
TEST(Library, AFileNamedLikeAnEntryOfTheTreeIsAUsageError) {
  Files f;
  f.file("tree/sub/a.bin", 10, 14);
  const auto other = f.file("other.bin", 10, 15);
  for (const std::string wire : {"tree/sub/a.bin", "x.bin"}) {
    SCOPED_TRACE(wire);
    EventLog log;
    SenderOptions o = sender_options(Transport::provided_by_caller(), {f.src + "/tree"}, log);
    o.files = {FileToSend{other, wire}};
    if (wire == "x.bin") o.files.push_back(FileToSend{other, "x.bin"});
    Sender s(std::move(o));
    const Outcome out = s.run();
    EXPECT_EQ(out.exit_code, static_cast<int>(Errc::usage));
    ASSERT_TRUE(out.error.has_value());
    EXPECT_NE(out.error->message().find("two entries would be sent as '" + wire + "'"), std::string::npos)
        << out.error->message();
  }
}

// A listener whose accept queue is full: the kernel drops further SYNs, so a connect
// to it neither succeeds nor fails for minutes.
struct BlackholeListener {
  int listener = -1;
  std::vector<int> fillers;
  std::uint16_t port = 0;
  BlackholeListener() {
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener, 0) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("listen");
    }
    port = ntohs(a.sin_port);
    for (int i = 0; i < 8; ++i) {  // fill the accept queue (and the SYN backlog)
      int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
      fillers.push_back(c);
    }
  }
  ~BlackholeListener() {
    for (int c : fillers) ::close(c);
    ::close(listener);
  }
};

TEST(Library, AConnectThatHangsTimesOutAndCancelAbandonsIt) {
  Files f;
  const auto a = f.file("a.bin", 1000, 14);
  BlackholeListener hole;
  auto addr = parse_address("127.0.0.1:" + std::to_string(hole.port), AddressUse::connect);
  ASSERT_TRUE(addr);
  // The stall timeout bounds each connect: with no retries the transfer ends with
  // ETIMEDOUT named, long before the kernel would give up (about 2 minutes).
  EventLog slog;
  auto o = sender_options(Transport::connect_to(*addr), {a}, slog);
  o.stall_timeout = 1s;
  o.retries = 0;
  Sender s(std::move(o));
  const auto t0 = std::chrono::steady_clock::now();
  Outcome out = s.run();
  EXPECT_EQ(out.exit_code, 3);
  ASSERT_TRUE(out.error);
  EXPECT_NE(out.error->message().find("no answer in 1 s"), std::string::npos) << out.error->message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
  // cancel() while a connect is pending ends the thread at once, not after it.
  EventLog log2;
  auto o2 = sender_options(Transport::connect_to(*addr), {a}, log2);
  o2.stall_timeout = 60s;
  Sender s2(std::move(o2));
  ASSERT_TRUE(s2.start_thread());
  std::this_thread::sleep_for(200ms);
  const auto t1 = std::chrono::steady_clock::now();
  s2.cancel();
  Outcome out2 = s2.wait();
  EXPECT_EQ(out2.exit_code, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 10s);
}

TEST(Library, SessionEndIsTheLastEventWhenStoppedMidTransfer) {
  Files f;
  const auto a = f.file("big.bin", 16 * 1024 * 1024, 15);
  Lender lend;
  Pair& p = lend.make();
  EventLog slog, rlog;
  TestLoop loop;
  bool stop = false;
  auto ro = receiver_options(f.dest, rlog);
  ro.once = false;
  Receiver r(std::move(ro));
  Sender s(sender_options(Transport::provided_by_caller(), {a}, slog, raise_at_progress(stop)));
  lend_and_start(p, r, s, loop);
  ASSERT_TRUE(loop.run_until([&] { return stop; }));
  r.stop();
  ASSERT_TRUE(loop.run_until([&] { return r.outcome().has_value() && p.released_b == 1; }, 10s));
  // The sender, whose connections come from us, now waits for another: end it.
  s.cancel();
  ASSERT_TRUE(loop.run_until([&] { return s.outcome().has_value(); }, 10s));
  const std::string events = rlog.dump();
  const auto last = events.rfind("session_end");
  ASSERT_NE(last, std::string::npos) << events;
  EXPECT_EQ(events.find('\n', last), events.size() - 1) << "events after session_end:\n" << events;
  EXPECT_EQ(r.outcome()->exit_code, 0);  // a serving receiver told to stop
  EXPECT_NE(s.outcome()->exit_code, 0);  // its sender lost the receiver mid-file
}

TEST(Library, ReceiverServesSeveralLentConnectionsAtOnce) {
  Files f;
  const auto a = f.file("a.bin", 2 * 1024 * 1024, 9);
  const auto b = f.file("b.bin", 3 * 1024 * 1024, 10);
  Lender lend;
  Pair& p1 = lend.make();
  Pair& p2 = lend.make();
  EventLog s1log, s2log, rlog;
  TestLoop loop;
  auto ro = receiver_options(f.dest, rlog);
  ro.once = false;
  Receiver r(std::move(ro));
  Sender s1(sender_options(Transport::provided_by_caller(), {a}, s1log));
  Sender s2(sender_options(Transport::provided_by_caller(), {b}, s2log));
  r.start(loop.get());
  r.add_connection(Lender::lend_b(p1));
  r.add_connection(Lender::lend_b(p2));
  s1.add_connection(Lender::lend_a(p1));
  s2.add_connection(Lender::lend_a(p2));
  s1.start(loop.get());
  s2.start(loop.get());
  ASSERT_TRUE(loop.run_until([&] { return s1.outcome() && s2.outcome(); })) << rlog.dump();
  EXPECT_EQ(s1.outcome()->exit_code, 0);
  EXPECT_EQ(s2.outcome()->exit_code, 0);
  EXPECT_FALSE(r.outcome().has_value());  // serves on until stopped
  r.stop();
  ASSERT_TRUE(loop.run_until([&] { return r.outcome().has_value(); }, 10s));
  EXPECT_EQ(r.outcome()->exit_code, 0);
  EXPECT_EQ(e2e::compare_files(a, f.dest + "/a.bin"), "");
  EXPECT_EQ(e2e::compare_files(b, f.dest + "/b.bin"), "");
}

}  // namespace
}  // namespace ferry
