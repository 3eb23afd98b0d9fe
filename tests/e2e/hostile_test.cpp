// End-to-end: hostile senders against a real ferry-recv --listen. A raw TCP client
// speaks the protocol by hand (protocol/codec.hpp, protocol/messages.hpp) and offers
// paths that escape DEST ("../x", an absolute path, "a/../../x", "", a NUL, a path
// through a symlink planted in DEST that points outside, or through a symlink it sent
// itself: version 4), sends frames whose length
// field is over the limit (with a valid header check), unknown types and versions,
// garbage, and well-formed frames that break the protocol. The receiver must refuse
// each offer with ANSWER refuse, close the connection on malformed framing, answer
// violations with ERROR, create nothing outside DEST, and go on serving: after each
// test a normal ferry-send to the same receiver succeeds.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

namespace P = protocol;

constexpr Millis kReplyLimit = 10s;

// A frame read back from the receiver (payload copied).
struct RawFrame {
  P::FrameType type;
  std::string payload;
};

// A hand-driven TCP client.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!fd_ || ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
  }

  // False once the peer has closed (EPIPE, ECONNRESET).
  bool send_bytes(P::Bytes b) {
    std::size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_.get(), b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool send_frame(P::FrameType type, const std::string& json) { return send_bytes(P::frame_of(type, json)); }

  // The next frame within `limit`; nullopt on EOF, error, timeout or a malformed frame
  // (why_ says which).
  std::optional<RawFrame> read_frame(Millis limit = kReplyLimit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto r = P::decode_frame(P::Bytes(buf_));
      if (auto* f = std::get_if<P::DecodedFrame>(&r)) {
        if (!f->payload_ok) {
          why_ = "payload checksum mismatch";
          return std::nullopt;
        }
        RawFrame out{f->header.type, std::string(reinterpret_cast<const char*>(f->payload.data()), f->payload.size())};
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(f->consumed));
        return out;
      }
      if (auto* m = std::get_if<P::Malformed>(&r)) {
        why_ = "malformed: " + m->reason;
        return std::nullopt;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  // True when the receiver closes the connection within `limit` (frames it sends
  // before, such as an ERROR, are read and dropped).
  bool closed_by_peer(Millis limit = kReplyLimit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (fill(deadline)) buf_.clear();
    return why_ == "eof" || why_ == "reset";
  }

  const std::string& why() const { return why_; }

 private:
  // Reads more into buf_; false on EOF/error/timeout.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      why_ = "timeout";
      return false;
    }
    pollfd p{fd_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc == 0) {
      why_ = "timeout";
      return false;
    }
    std::byte tmp[65536];
    ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
    if (n == 0) {
      why_ = "eof";
      return false;
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) return true;
      why_ = errno == ECONNRESET ? "reset" : std::string("recv: ") + std::strerror(errno);
      return false;
    }
    buf_.insert(buf_.end(), tmp, tmp + n);
    return true;
  }

  Fd fd_;
  std::vector<std::byte> buf_;
  std::string why_;
};

// The text of the symlink at `path`, or "" when there is none.
std::string read_link(const std::string& path) {
  char buf[8192];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<std::size_t>(n));
}

std::string session_id() {
  return "0123456789abcdef0123456789abcdef";
}

// HELLO as a sender; expects the receiver's HELLO.
void handshake(RawClient& c) {
  P::Hello h;
  h.role = P::Role::sender;
  h.session = session_id();
  h.software = "ferry-e2e hostile sender";
  h.nonce = std::string(64, '7');  // version 3: every HELLO carries a nonce
  ASSERT_TRUE(c.send_frame(P::FrameType::hello, P::to_json(h)));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value()) << "no HELLO from the receiver: " << c.why();
  ASSERT_EQ(f->type, P::FrameType::hello);
  auto reply = P::parse_hello(P::as_bytes(f->payload));
  ASSERT_TRUE(reply.ok()) << f->payload;
  EXPECT_EQ(reply->role, P::Role::receiver);
}

class HostileSender : public ::testing::Test {
 protected:
  void SetUp() override {
    // root/dest is DEST; root/outside is where a planted symlink points; nothing may
    // appear in root or outside.
    make_dirs(root_);
    make_dirs(outside_);
    make_dirs(dest_);
    ASSERT_EQ(::symlink(outside_.c_str(), (dest_ + "/link").c_str()), 0);
    recv_ = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--json", dest_});
  }

  void TearDown() override {
    // Nothing escaped DEST.
    EXPECT_EQ(list_dir(outside_), std::vector<std::string>{}) << "written through the symlink";
    EXPECT_EQ(list_dir(root_), (std::vector<std::string>{"dest", "outside"})) << "written next to DEST";
    if (!recv_.proc) return;
    // The receiver survived all of it and still serves a real sender.
    ASSERT_TRUE(recv_.proc->running()) << recv_.proc->describe();
    write_random_file(t_ / "src/after.bin", 300000, 5);
    auto send = Process::start({kSendBin, "--connect", recv_.address, t_ / "src/after.bin"}, t_.path(), "send");
    EXPECT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe() << recv_.proc->describe();
    EXPECT_EQ(compare_files(t_ / "src/after.bin", dest_ + "/after.bin"), "");
    EXPECT_EQ(ferry_leftovers(dest_), std::vector<std::string>{});
    // DEST holds the planted symlink, the file just sent, and nothing else.
    EXPECT_EQ(list_dir(dest_), (std::vector<std::string>{"after.bin", "link"}));
    // A long-running receiver ends on SIGTERM with 128 + 15.
    recv_.proc->signal(SIGTERM);
    EXPECT_EQ(recv_.proc->wait(), ExitStatus::exited_with(128 + SIGTERM)) << recv_.proc->describe();
  }

  TempDir t_;
  std::string root_ = t_ / "root", dest_ = root_ + "/dest", outside_ = root_ + "/outside";
  Receiver recv_;
};

struct BadOffer {
  std::string path;
  P::EntryKind kind;
};

TEST_F(HostileSender, UnsafePathsAreRefused) {
  std::vector<BadOffer> offers = {
      {"../x", P::EntryKind::file},
      {outside_ + "/x", P::EntryKind::file},  // absolute, into a directory the test watches
      {"a/../../x", P::EntryKind::file},
      {"", P::EntryKind::file},
      {"./x", P::EntryKind::file},
      {"a//x", P::EntryKind::file},
      {std::string("a\0x", 3), P::EntryKind::file},
      {"link/x", P::EntryKind::file},  // through the planted symlink
      {"link/sub/x", P::EntryKind::file},
      {"link/evil-dir", P::EntryKind::directory},
      {"link", P::EntryKind::directory},  // the symlink itself as a directory
      {"../evil-dir", P::EntryKind::directory},
      {".x.ferry-part", P::EntryKind::file},  // ferry's own temporary names
  };
  RawClient c(recv_.port);
  handshake(c);
  if (HasFatalFailure()) return;
  std::uint32_t id = 0;
  for (const auto& bad : offers) {
    SCOPED_TRACE("offer path '" + bad.path + "'");
    P::Offer o;
    o.file_id = id++;
    o.path = bad.path;
    o.kind = bad.kind;
    o.size = bad.kind == P::EntryKind::file ? 5 : 0;
    o.mtime_ns = 1'700'000'000'000'000'000;
    o.mode = 0644;
    o.identity = "hostile-" + std::to_string(o.file_id);
    o.block_size = bad.kind == P::EntryKind::file ? 4096 : 0;
    ASSERT_TRUE(c.send_frame(P::FrameType::offer, P::to_json(o))) << "the receiver hung up";
    auto f = c.read_frame();
    ASSERT_TRUE(f.has_value()) << "no reply: " << c.why() << "\n" << recv_.proc->describe();
    ASSERT_EQ(f->type, P::FrameType::answer) << f->payload;
    auto a = P::parse_answer(P::as_bytes(f->payload));
    ASSERT_TRUE(a.ok()) << f->payload;
    EXPECT_EQ(a->file_id, o.file_id);
    EXPECT_EQ(a->status, P::AnswerStatus::refuse) << "accepted: " << f->payload;
    EXPECT_FALSE(a->note.empty()) << "a refusal must say why";
    if (a->status == P::AnswerStatus::accept && bad.kind == P::EntryKind::file) {
      return;  // the session now expects DATA; TearDown still checks the damage
    }
  }
  // The connection is still usable after the refusals: END is answered with END.
  ASSERT_TRUE(c.send_frame(P::FrameType::end, P::to_json(P::End{0, 0})));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value()) << c.why();
  EXPECT_EQ(f->type, P::FrameType::end);
  EXPECT_EQ(list_dir(dest_), std::vector<std::string>{"link"});
}

// Version 4 (--links): a link is stored verbatim, even one pointing outside DEST, but
// nothing is ever written through it: a later OFFER whose path goes through the link
// (a file, a directory, another link) is refused, and an OFFER of a file at the link's
// own name replaces the link, never its target.
TEST_F(HostileSender, NothingIsWrittenThroughAReceivedSymlink) {
  RawClient c(recv_.port);
  handshake(c);
  if (HasFatalFailure()) return;
  auto offer_and_answer = [&](P::Offer o) -> std::optional<P::Answer> {
    o.mtime_ns = 1'700'000'000'000'000'000;
    o.identity = o.kind == P::EntryKind::symlink ? "symlink" : "hostile-" + std::to_string(o.file_id);
    if (!c.send_frame(P::FrameType::offer, P::to_json(o))) return std::nullopt;
    auto f = c.read_frame();
    if (!f || f->type != P::FrameType::answer) return std::nullopt;
    auto a = P::parse_answer(P::as_bytes(f->payload));
    return a ? std::optional<P::Answer>(*a) : std::nullopt;
  };
  P::Offer link;
  link.file_id = 0;
  link.path = "a";
  link.kind = P::EntryKind::symlink;
  link.mode = 0777;
  link.target = outside_;  // absolute, into the directory the test watches
  auto a = offer_and_answer(link);
  ASSERT_TRUE(a) << c.why() << recv_.proc->describe();
  ASSERT_EQ(a->status, P::AnswerStatus::accept) << a->note;
  EXPECT_EQ(read_link(dest_ + "/a"), outside_) << "the target is stored verbatim";
  struct Through {
    std::string path;
    P::EntryKind kind;
  };
  std::uint32_t id = 1;
  for (const Through& t : {Through{"a/x", P::EntryKind::file}, Through{"a/sub/x", P::EntryKind::file},
                           Through{"a/d", P::EntryKind::directory}, Through{"a/l", P::EntryKind::symlink}}) {
    SCOPED_TRACE(t.path);
    P::Offer o;
    o.file_id = id++;
    o.path = t.path;
    o.kind = t.kind;
    o.size = t.kind == P::EntryKind::file ? 5 : 0;
    o.block_size = t.kind == P::EntryKind::file ? 4096 : 0;
    o.target = "x";
    auto r = offer_and_answer(o);
    ASSERT_TRUE(r) << c.why();
    EXPECT_EQ(r->status, P::AnswerStatus::refuse) << "went through the link";
    EXPECT_FALSE(r->note.empty());
  }
  // The link itself as a directory: refused (a symlink in the way), never followed.
  P::Offer dir;
  dir.file_id = id++;
  dir.path = "a";
  dir.kind = P::EntryKind::directory;
  auto r = offer_and_answer(dir);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, P::AnswerStatus::refuse);
  ASSERT_TRUE(c.send_frame(P::FrameType::end, P::to_json(P::End{0, 0})));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value()) << c.why();
  EXPECT_EQ(f->type, P::FrameType::end);
  EXPECT_EQ(list_dir(dest_), (std::vector<std::string>{"a", "link"}));
  ASSERT_EQ(::unlink((dest_ + "/a").c_str()), 0);  // TearDown expects DEST as it was
}

// A peer that speaks protocol version 3 only (before symlinks) fails at once with the
// version error: the receiver sends ERROR "no common protocol version" and closes.
TEST_F(HostileSender, AVersion3SenderFailsTheVersionNegotiation) {
  RawClient c(recv_.port);
  P::Hello h;
  h.min_version = h.max_version = 3;
  h.role = P::Role::sender;
  h.session = session_id();
  h.nonce = std::string(64, '7');
  ASSERT_TRUE(c.send_frame(P::FrameType::hello, P::to_json(h)));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value()) << c.why();
  ASSERT_EQ(f->type, P::FrameType::error) << f->payload;
  auto e = P::parse_error(P::as_bytes(f->payload));
  ASSERT_TRUE(e.ok()) << f->payload;
  EXPECT_NE(e->message.find("protocol version"), std::string::npos) << e->message;
  EXPECT_TRUE(c.closed_by_peer()) << c.why();
}

// A header with a valid header check (bytes 20..23 recomputed after any change).
std::vector<std::byte> header(std::uint8_t version, std::uint8_t type, std::uint32_t length) {
  auto h = P::encode_header(P::FrameType::hello, length, 0);
  h[2] = std::byte{version};
  h[3] = std::byte{type};
  P::put_u32(&h[20], static_cast<std::uint32_t>(P::xxh3_64(P::Bytes(h.data(), 20))));
  return {h.begin(), h.end()};
}

constexpr auto kType = [](P::FrameType t) { return static_cast<std::uint8_t>(t); };

struct MalformedCase {
  std::string name;
  bool after_hello;
  std::vector<std::byte> bytes;
  bool error_first = false;  // an intact header naming an unknown version or type
};

// Malformed framing (docs/PROTOCOL.md section 2): the receiver closes the connection
// (without acting on anything), whether or not HELLO came first. A header that checks
// out but names an unknown framing version or frame type is rejected with a clear
// ERROR frame (code "protocol") before the close.
TEST_F(HostileSender, MalformedFramingClosesTheConnection) {
  const auto v = P::kFrameVersion;
  std::mt19937_64 rng(99);
  std::vector<std::byte> junk(4096);
  for (auto& b : junk) b = static_cast<std::byte>(rng());
  std::vector<std::byte> magic_then_noise = junk;
  magic_then_noise[0] = std::byte{P::kMagic0};
  magic_then_noise[1] = std::byte{P::kMagic1};
  magic_then_noise[2] = std::byte{P::kFrameVersion};
  magic_then_noise[3] = std::byte{kType(P::FrameType::offer)};
  P::Offer victim;
  victim.path = "victim";
  victim.size = 5;
  victim.identity = "x";
  auto corrupt_offer = P::frame_of(P::FrameType::offer, P::to_json(victim));
  corrupt_offer.back() ^= std::byte{0x01};  // payload checksum no longer matches

  const std::uint32_t over = static_cast<std::uint32_t>(P::kMaxPayload + 1);  // 16 MiB + 13
  std::vector<MalformedCase> cases = {
      {"oversized length as the first frame", false, header(v, kType(P::FrameType::hello), over)},
      {"oversized DATA length after HELLO", true, header(v, kType(P::FrameType::data), over)},
      {"huge DATA length after HELLO", true, header(v, kType(P::FrameType::data), 0xFFFFFFF0u)},
      {"control frame over 64 KiB", true,
       header(v, kType(P::FrameType::offer), static_cast<std::uint32_t>(P::kMaxControlPayload + 1))},
      {"unknown frame type", true, header(v, 200, 0), true},
      {"unknown frame type as the first frame", false, header(v, 15, 0), true},  // 14: CHECK (version 4)
      {"framing version 2", false, header(2, kType(P::FrameType::hello), 10), true},
      {"random bytes", false, junk},
      {"random bytes after HELLO", true, junk},
      {"magic then noise", true, magic_then_noise},
      {"OFFER with a corrupt payload", true, corrupt_offer},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RawClient client(recv_.port);
    if (c.after_hello) {
      handshake(client);
      if (HasFatalFailure()) return;
    }
    (void)client.send_bytes(P::Bytes(c.bytes));  // may fail once the receiver hung up
    if (c.error_first) {
      auto f = client.read_frame();
      ASSERT_TRUE(f.has_value()) << "no ERROR frame: " << client.why();
      EXPECT_EQ(f->type, P::FrameType::error) << f->payload;
      auto e = P::parse_error(P::as_bytes(f->payload));
      ASSERT_TRUE(e.ok()) << f->payload;
      EXPECT_EQ(e->code, "protocol") << f->payload;
      EXPECT_FALSE(e->message.empty());
    }
    EXPECT_TRUE(client.closed_by_peer()) << "the receiver kept the connection: " << client.why();
  }
  EXPECT_FALSE(exists_nofollow(dest_ + "/victim"));
  EXPECT_EQ(list_dir(dest_), std::vector<std::string>{"link"});
}

// Protocol violations in well-formed frames are answered with ERROR, then the
// connection closes (docs/PROTOCOL.md section 6.8).
TEST_F(HostileSender, ViolationsAreAnsweredWithErrorAndClose) {
  auto expect_error_then_close = [&](RawClient& c) {
    auto f = c.read_frame();
    ASSERT_TRUE(f.has_value()) << "no reply: " << c.why();
    EXPECT_EQ(f->type, P::FrameType::error) << f->payload;
    auto e = P::parse_error(P::as_bytes(f->payload));
    EXPECT_TRUE(e.ok()) << f->payload;
    if (e.ok()) {
      EXPECT_EQ(e->code, "protocol") << f->payload;
    }
    EXPECT_TRUE(c.closed_by_peer()) << c.why();
  };
  {
    SCOPED_TRACE("OFFER before HELLO");
    RawClient c(recv_.port);
    P::Offer o;
    o.path = "early";
    o.size = 1;
    o.identity = "x";
    ASSERT_TRUE(c.send_frame(P::FrameType::offer, P::to_json(o)));
    expect_error_then_close(c);
  }
  {
    SCOPED_TRACE("HELLO with no common version");
    RawClient c(recv_.port);
    P::Hello h;
    h.min_version = h.max_version = 99;
    h.session = session_id();
    ASSERT_TRUE(c.send_frame(P::FrameType::hello, P::to_json(h)));
    expect_error_then_close(c);
  }
  {
    SCOPED_TRACE("OFFER body that is not a valid offer");
    RawClient c(recv_.port);
    handshake(c);
    if (HasFatalFailure()) return;
    ASSERT_TRUE(c.send_frame(P::FrameType::offer, R"({"file":0,"path":"x","kind":"file","size":-5})"));
    expect_error_then_close(c);
  }
  {
    SCOPED_TRACE("DATA for a file never offered");
    RawClient c(recv_.port);
    handshake(c);
    if (HasFatalFailure()) return;
    // A well-formed DATA frame (file id 7, offset 0, 100 bytes) for a file never offered.
    std::vector<std::byte> data(100, std::byte{0x61});
    auto head = P::encode_data_head(7, 0, P::block_digest(data, 0), data.size());
    std::vector<std::byte> frame(head.size() + data.size());
    std::copy(head.begin(), head.end(), frame.begin());
    std::copy(data.begin(), data.end(), frame.begin() + static_cast<std::ptrdiff_t>(head.size()));
    ASSERT_TRUE(c.send_bytes(P::Bytes(frame)));
    expect_error_then_close(c);
  }
  EXPECT_EQ(list_dir(dest_), std::vector<std::string>{"link"});
}

}  // namespace
}  // namespace ferry::e2e
