// End-to-end: files the receiver can trust (issue #11), against the real executables.
// Two concurrent senders whose names once shared a partial (a long name and
// "ferry-<its hash>") each get their own bytes verified; a partial planted by another
// user (as `nobody` when the tests run as root) or hard-linked from elsewhere is not
// adopted; a FIFO at the journal's or the partial's name neither hangs the transfer nor
// SIGTERM; a failed VERDICT carries no digest of the receiver's file; the receiver's
// umask applies to offered modes; a second receiver refuses a live unix socket; stale
// partials are removed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "tests/e2e/process.hpp"
#include "tests/e2e/relay.hpp"

namespace ferry::e2e {
namespace {

namespace P = protocol;

constexpr std::uint64_t kMiB = 1ull << 20;

struct stat stat_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("lstat(" + path + "): " + std::strerror(errno));
  return st;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// ferry-send FILE to `address`; must exit 0.
void send_ok(const TempDir& t, const std::string& address, const std::string& file, const std::string& name) {
  auto send = Process::start({kSendBin, "--connect", address, file}, t.path(), name);
  EXPECT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
}

// Runs `argv` as the unprivileged user nobody (setpriv): for planting files that
// belong to another local user. Returns its exit status.
int run_as_nobody(const std::vector<std::string>& argv, const TempDir& t) {
  std::vector<std::string> cmd{"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  auto p = Process::start(cmd, t.path(), "as-nobody");
  auto st = p->wait(10s);
  return st.how == ExitStatus::How::exited ? st.value : -1;
}

// The collision of issue #11: a leaf over 200 bytes once had the partial
// ".ferry-<xxh3 hex>.ferry-part", which the short name "ferry-<same hex>" maps to as
// well. Two senders at once, slowed by a relay so that their files overlap in time:
// each final file holds its own sender's bytes.
TEST(Files, LongAndHashedShortNameNeverShareAPartial) {
  TempDir t;
  const std::string long_leaf(240, 'L');
  const auto hash = P::xxh3_64(std::as_bytes(std::span(long_leaf.data(), long_leaf.size())));
  const std::string short_leaf = "ferry-" + P::hex64(hash);
  write_random_file(t / ("a/" + long_leaf), 8 * kMiB, 1);
  write_random_file(t / ("b/" + short_leaf), 8 * kMiB, 2);
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {t / "dest"});
  {
    Relay relay(r.port, 4 * kMiB);  // both together take about 4 s
    auto a = Process::start({kSendBin, "--connect", relay.address(), t / ("a/" + long_leaf)}, t.path(), "send-a");
    auto b = Process::start({kSendBin, "--connect", relay.address(), t / ("b/" + short_leaf)}, t.path(), "send-b");
    EXPECT_EQ(a->wait(), ExitStatus::exited_with(0)) << a->describe();
    EXPECT_EQ(b->wait(), ExitStatus::exited_with(0)) << b->describe();
  }
  EXPECT_EQ(compare_files(t / ("a/" + long_leaf), t / ("dest/" + long_leaf)), "");
  EXPECT_EQ(compare_files(t / ("b/" + short_leaf), t / ("dest/" + short_leaf)), "");
  EXPECT_EQ(ferry_leftovers(t / "dest"), std::vector<std::string>{});
  r.proc->signal(SIGTERM);
  r.proc->wait(20s);
}

// A partial planted in DEST by another local user is set aside, not adopted: the
// verified file belongs to the receiver's user. As root the planting runs as nobody;
// a hard link to a file outside DEST is tried in every case (a write through it would
// change that file).
TEST(Files, PlantedPartialIsNotAdopted) {
  TempDir t;
  make_dirs(t / "dest");
  write_random_file(t / "src/f.bin", 3 * kMiB, 3);
  write_random_file(t / "src/g.bin", 3 * kMiB, 4);
  ASSERT_EQ(::chmod((t / "dest").c_str(), 01777), 0);
  ASSERT_EQ(::chmod(t.path().c_str(), 0755), 0);
  const bool as_root = ::geteuid() == 0;
  if (as_root) {
    ASSERT_EQ(run_as_nobody({"/usr/bin/touch", t / "dest/.f.bin.ferry-part"}, t), 0);
    ASSERT_EQ(stat_of(t / "dest/.f.bin.ferry-part").st_uid, 65534u);
  }
  write_text_file(t / "outside.txt", "precious");
  ASSERT_EQ(::link((t / "outside.txt").c_str(), (t / "dest/.g.bin.ferry-part").c_str()), 0);

  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {t / "dest"});
  send_ok(t, r.address, t / "src/f.bin", "send-f");
  send_ok(t, r.address, t / "src/g.bin", "send-g");
  EXPECT_EQ(compare_files(t / "src/f.bin", t / "dest/f.bin"), "");
  EXPECT_EQ(compare_files(t / "src/g.bin", t / "dest/g.bin"), "");
  EXPECT_EQ(stat_of(t / "dest/f.bin").st_uid, ::geteuid());
  EXPECT_EQ(stat_of(t / "dest/g.bin").st_nlink, 1u);
  EXPECT_EQ(read_all(t / "outside.txt"), "precious");
  r.proc->signal(SIGTERM);
  r.proc->wait(20s);
}

// A FIFO at the journal's name, and one at the partial's name: the transfers complete
// (the FIFOs are removed, never opened) within a bounded time, and SIGTERM still ends
// the receiver.
TEST(Files, FifoAtJournalOrPartialNameDoesNotHang) {
  TempDir t;
  make_dirs(t / "dest");
  write_random_file(t / "src/j.bin", 2 * kMiB, 5);
  write_random_file(t / "src/p.bin", 2 * kMiB, 6);
  ASSERT_EQ(::mkfifo((t / "dest/.j.bin.ferry-journal").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((t / "dest/.p.bin.ferry-part").c_str(), 0600), 0);
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {t / "dest"});
  for (const char* leaf : {"j.bin", "p.bin"}) {
    auto send = Process::start({kSendBin, "--connect", r.address, t / "src" + "/" + leaf}, t.path(),
                               std::string("send-") + leaf);
    EXPECT_EQ(send->wait(30s), ExitStatus::exited_with(0)) << send->describe();
    EXPECT_EQ(compare_files(t / "src" + "/" + leaf, t / "dest" + "/" + leaf), "");
  }
  EXPECT_EQ(ferry_leftovers(t / "dest"), std::vector<std::string>{});
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(20s), ExitStatus::exited_with(128 + SIGTERM)) << r.proc->describe();
}

// The receiver's umask applies to offered modes: an offered 0777 lands 0750 under 027.
TEST(Files, OfferedModeGoesThroughTheReceiversUmask) {
  TempDir t;
  write_random_file(t / "src/x.sh", 1000, 7);
  ASSERT_EQ(::chmod((t / "src/x.sh").c_str(), 0777), 0);
  const mode_t old = ::umask(027);
  std::optional<Receiver> r;
  try {
    r = start_receiver(t.path(), "recv", "127.0.0.1:0", {t / "dest"});
  } catch (...) {
    ::umask(old);
    throw;
  }
  ::umask(old);
  send_ok(t, r->address, t / "src/x.sh", "send");
  EXPECT_EQ(stat_of(t / "dest/x.sh").st_mode & 07777, 0750u);
  r->proc->signal(SIGTERM);
  r->proc->wait(20s);
}

// A second ferry-recv on the unix socket a live one serves exits non-zero with one
// error line; the first keeps serving (and its socket file stays: the second must not
// remove it on its way out either).
TEST(Files, SecondReceiverRefusesALiveUnixSocket) {
  TempDir t;
  const std::string sock = t / "recv.sock";
  write_random_file(t / "src/u.bin", 100000, 8);
  Receiver first = start_receiver(t.path(), "recv1", "unix:" + sock, {t / "dest1"});
  auto second = Process::start({kRecvBin, "--listen", "unix:" + sock, t / "dest2"}, t.path(), "recv2");
  const ExitStatus st = second->wait(20s);
  EXPECT_EQ(st.how, ExitStatus::How::exited) << second->describe();
  EXPECT_NE(st.value, 0) << second->describe();
  const std::string err = second->stderr_text();
  // One error line (the summary line every ending prints may precede it).
  std::size_t error_lines = 0;
  for (std::size_t at = err.find("error:"); at != std::string::npos; at = err.find("error:", at + 1)) ++error_lines;
  EXPECT_EQ(error_lines, 1u) << err;
  EXPECT_NE(err.find("another process is serving this socket"), std::string::npos) << err;
  ASSERT_TRUE(first.proc->running()) << first.proc->describe();
  send_ok(t, "unix:" + sock, t / "src/u.bin", "send");
  EXPECT_EQ(compare_files(t / "src/u.bin", t / "dest1/u.bin"), "");
  first.proc->signal(SIGTERM);
  first.proc->wait(20s);
}

// A hand-driven TCP client speaking the protocol (as in hostile_test.cpp).
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!fd_ || ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
  }
  bool send_frame(P::FrameType type, const std::string& json) {
    const auto bytes = P::frame_of(type, json);
    return ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // The next frame's type and payload within 10 s, or nullopt.
  std::optional<std::pair<P::FrameType, std::string>> read_frame() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int rounds = 0; rounds < 10000; ++rounds) {
      auto r = P::decode_frame(P::Bytes(buf_));
      if (auto* f = std::get_if<P::DecodedFrame>(&r)) {
        std::pair<P::FrameType, std::string> out{
            f->header.type, std::string(reinterpret_cast<const char*>(f->payload.data()), f->payload.size())};
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(f->consumed));
        return out;
      }
      if (std::holds_alternative<P::Malformed>(r)) return std::nullopt;
      const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count();
      pollfd p{fd_.get(), POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
      std::byte tmp[65536];
      const ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
      if (n <= 0) return std::nullopt;
      buf_.insert(buf_.end(), tmp, tmp + n);
    }
    return std::nullopt;
  }

 private:
  Fd fd_;
  std::vector<std::byte> buf_;
};

// A failed VERDICT says nothing of the receiver's file: a hostile sender offers the
// size and mtime of a secret file already in DEST (the receiver re-verifies it as
// already complete) and commits a wrong digest; the reason carries no hex digest.
TEST(Files, FailedVerdictCarriesNoDigest) {
  TempDir t;
  make_dirs(t / "dest");
  write_text_file(t / "dest/secret.txt", "hunter2");
  const struct stat st = stat_of(t / "dest/secret.txt");
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {t / "dest"});
  RawClient c(r.port);
  P::Hello h;
  h.role = P::Role::sender;
  h.session = "0123456789abcdef0123456789abcdef";
  h.nonce = std::string(64, 'a');  // version 3: a HELLO carries a nonce (no key here)
  ASSERT_TRUE(c.send_frame(P::FrameType::hello, P::to_json(h)));
  ASSERT_TRUE(c.read_frame().has_value());
  const std::int64_t mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  P::Offer o{1, "secret.txt", P::EntryKind::file, 7, mtime, 0600, "size=7", 1024};
  ASSERT_TRUE(c.send_frame(P::FrameType::offer, P::to_json(o)));
  auto answer = c.read_frame();
  ASSERT_TRUE(answer && answer->first == P::FrameType::answer);
  ASSERT_EQ(P::parse_answer(P::as_bytes(answer->second))->offset, 7u) << answer->second;
  ASSERT_TRUE(c.send_frame(P::FrameType::commit, P::to_json(P::Commit{1, 7, std::string(32, '0')})));
  auto verdict = c.read_frame();
  ASSERT_TRUE(verdict && verdict->first == P::FrameType::verdict);
  auto v = P::parse_verdict(P::as_bytes(verdict->second));
  ASSERT_TRUE(v.ok()) << verdict->second;
  EXPECT_EQ(v->status, P::VerdictStatus::failed);
  EXPECT_FALSE(std::regex_search(v->reason, std::regex("[0-9a-fA-F]{16}"))) << v->reason;
  P::FileDigest mine;
  const std::string secret = "hunter2";
  P::add_blocks(mine, std::as_bytes(std::span(secret.data(), secret.size())), 0, 1024);
  EXPECT_EQ(verdict->second.find(mine.hex()), std::string::npos) << verdict->second;
  r.proc->signal(SIGTERM);
  r.proc->wait(20s);
}

// Sets a file's mtime `age_s` seconds into the past.
void age_file(const std::string& path, long age_s) {
  timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= age_s;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// Stale partials: those in DEST's top level older than the age are removed at the
// start (a fresh one stays); one in a subdirectory when its file is offered again.
TEST(Files, StalePartialsAreRemoved) {
  TempDir t;
  make_dirs(t / "dest/sub");
  for (const char* name : {".old.bin.ferry-part", ".old.bin.ferry-journal", ".new.bin.ferry-part"}) {
    write_text_file(t / "dest" + "/" + name, "leftover");
  }
  write_text_file(t / "dest/sub/.s.bin.ferry-part", "leftover from a disk-full failure");
  age_file(t / "dest/.old.bin.ferry-part", 3 * 3600);
  age_file(t / "dest/.old.bin.ferry-journal", 3 * 3600);
  age_file(t / "dest/sub/.s.bin.ferry-part", 3 * 3600);
  write_random_file(t / "sub/s.bin", 5000, 9);

  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--json", "--stale-partial-age", "1h", t / "dest"});
  EXPECT_FALSE(exists_nofollow(t / "dest/.old.bin.ferry-part"));
  EXPECT_FALSE(exists_nofollow(t / "dest/.old.bin.ferry-journal"));
  EXPECT_TRUE(exists_nofollow(t / "dest/.new.bin.ferry-part"));
  EXPECT_TRUE(exists_nofollow(t / "dest/sub/.s.bin.ferry-part"));  // not met yet
  auto send = Process::start({kSendBin, "--connect", r.address, t / "sub"}, t.path(), "send");
  EXPECT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
  EXPECT_EQ(compare_files(t / "sub/s.bin", t / "dest/sub/s.bin"), "");
  bool noted = false;
  for (const auto& e : r.proc->json_events()) {
    noted = noted || (e.value("event", "") == "warning" && e.dump().find("stale") != std::string::npos);
  }
  EXPECT_TRUE(noted) << r.proc->describe();
  r.proc->signal(SIGTERM);
  r.proc->wait(20s);
}

TEST(Files, StalePartialAgeIsValidated) {
  TempDir t;
  auto recv = Process::start({kRecvBin, "--listen", "127.0.0.1:0", "--stale-partial-age", "soon", t / "dest"},
                             t.path(), "recv");
  EXPECT_EQ(recv->wait(20s), ExitStatus::exited_with(2)) << recv->describe();
  EXPECT_NE(recv->stderr_text().find("--stale-partial-age: not a duration: soon"), std::string::npos)
      << recv->describe();
}

}  // namespace
}  // namespace ferry::e2e
