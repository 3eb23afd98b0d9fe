// The authentication handshake of protocol version 3 (PROTOCOL.md 5.3) between a real
// SenderSession and a real ReceiverSession, with injected nonces: the same key
// completes it and only then is a file offered; a wrong key, keys on one side only, a
// reflected AUTH and a replayed handshake fail with Errc::authentication, and no OFFER
// reaches a receiver that has not verified the sender (nor does the sender offer to a
// receiver that has not proved the key).
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "receiver/receiver_session.hpp"
#include "sender/sender_session.hpp"

namespace ferry {
namespace {

namespace P = protocol;
using receiver::ReceiverConfig;
using receiver::ReceiverSession;
using sender::SenderConfig;
using sender::SenderSession;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);
constexpr char kSession[] = "0123456789abcdef0123456789abcdef";

P::AuthKey key_of(std::uint8_t fill) {
  std::array<std::uint8_t, P::kKeySize> b{};
  b.fill(fill);
  return P::AuthKey(b);
}

P::Nonce nonce_of(std::uint8_t fill) {
  P::Nonce n{};
  n.fill(fill);
  return n;
}

// A nonce source returning the given nonces in turn (then repeating the last).
std::function<P::Nonce()> nonces(std::vector<P::Nonce> list) {
  auto q = std::make_shared<std::deque<P::Nonce>>(list.begin(), list.end());
  return [q] {
    P::Nonce n = q->front();
    if (q->size() > 1) q->pop_front();
    return n;
  };
}

SenderConfig sender_config(std::optional<P::AuthKey> key, P::Nonce nonce) {
  SenderConfig c;
  c.chunk_size = 4096;
  c.window = 16 * 4096;
  c.session_id = kSession;
  c.key = std::move(key);
  c.make_nonce = nonces({nonce});
  return c;
}

ReceiverConfig receiver_config(std::optional<P::AuthKey> key, P::Nonce nonce) {
  ReceiverConfig c;
  c.key = std::move(key);
  c.make_nonce = nonces({nonce});
  return c;
}

std::vector<SourceEntry> one_file() {
  SourceEntry e;
  e.wire_path = "a.bin";
  e.local_path = "/nonexistent/a.bin";
  e.size = 10;
  e.identity = source_identity(10, 0);
  return {e};
}

// The frames in `wire`, decoded (all must be whole and intact).
std::vector<P::FrameType> types_in(const std::vector<std::byte>& wire) {
  std::vector<P::FrameType> out;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    auto r = P::decode_frame(P::Bytes(wire).subspan(pos));
    auto* f = std::get_if<P::DecodedFrame>(&r);
    if (!f) {
      ADD_FAILURE() << "undecodable bytes at " << pos;
      break;
    }
    out.push_back(f->header.type);
    pos += f->consumed;
  }
  return out;
}

bool contains(const std::vector<P::FrameType>& v, P::FrameType t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

// The bytes of every SendFrame in `actions` (control frames only at this stage).
template <class Action>
std::vector<std::byte> frames_of(std::vector<Action> actions, bool* closed = nullptr, bool* opened = nullptr) {
  std::vector<std::byte> out;
  for (auto& a : actions) {
    if (auto* f = std::get_if<SendFrame>(&a)) out.insert(out.end(), f->head.begin(), f->head.end());
    if (closed && std::holds_alternative<CloseConnection>(a)) *closed = true;
    if constexpr (std::is_same_v<Action, receiver::Action>) {
      if (opened && std::holds_alternative<receiver::OpenFile>(a)) *opened = true;
    }
  }
  return out;
}

// A sender and a receiver joined back to back; every byte each one wrote is kept.
struct Pair {
  SenderSession s;
  ReceiverSession r;
  std::vector<std::byte> s_wrote, r_wrote;
  bool r_opened = false, s_closed = false, r_closed = false;

  Pair(SenderConfig sc, ReceiverConfig rc) : s(std::move(sc), one_file(), kT0), r(std::move(rc), kT0) {}

  // Connects and exchanges frames until neither side has anything more to say.
  void run() {
    s.on_connected(kT0);
    for (int round = 0; round < 20; ++round) {
      auto from_s = frames_of(s.take_actions(), &s_closed);
      auto from_r = frames_of(r.take_actions(), &r_closed, &r_opened);
      if (from_s.empty() && from_r.empty()) return;
      s_wrote.insert(s_wrote.end(), from_s.begin(), from_s.end());
      r_wrote.insert(r_wrote.end(), from_r.begin(), from_r.end());
      if (!from_s.empty() && !r_closed) r.on_bytes(from_s, kT0);
      if (!from_r.empty() && !s_closed) s.on_bytes(from_r, kT0);
    }
    ADD_FAILURE() << "the handshake did not settle in 20 rounds";
  }
};

void expect_auth_failure(const Pair& p, const std::string& what) {
  ASSERT_TRUE(p.s.finished());
  auto out = p.s.outcome();
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::authentication) << out.error().message();
  EXPECT_EQ(out.error().message(), what);
  ASSERT_TRUE(p.r.failed());
  ASSERT_TRUE(p.r.failure());
  EXPECT_EQ(p.r.failure()->code, Errc::authentication) << p.r.failure()->message();
  EXPECT_EQ(p.r.failure()->message(), what);
  EXPECT_FALSE(contains(types_in(p.s_wrote), P::FrameType::offer)) << "an OFFER before authentication";
  EXPECT_FALSE(p.r_opened) << "the receiver opened a file before authentication";
}

TEST(AuthHandshake, SameKeyCompletesAndOnlyThenOffers) {
  Pair p(sender_config(key_of(7), nonce_of(1)), receiver_config(key_of(7), nonce_of(2)));
  p.run();
  const auto s_types = types_in(p.s_wrote);
  const std::vector<P::FrameType> s_want{P::FrameType::hello, P::FrameType::auth, P::FrameType::offer};
  EXPECT_EQ(s_types, s_want);
  const auto r_types = types_in(p.r_wrote);
  const std::vector<P::FrameType> r_want{P::FrameType::hello, P::FrameType::auth};
  EXPECT_EQ(r_types, r_want);
  EXPECT_TRUE(p.r_opened);
  EXPECT_EQ(p.s.state(), SenderSession::State::awaiting_answer);
  EXPECT_EQ(p.r.state(), ReceiverSession::State::opening);
}

TEST(AuthHandshake, NoKeysNoAuthFrames) {
  Pair p(sender_config(std::nullopt, nonce_of(1)), receiver_config(std::nullopt, nonce_of(2)));
  p.run();
  EXPECT_FALSE(contains(types_in(p.s_wrote), P::FrameType::auth));
  EXPECT_FALSE(contains(types_in(p.r_wrote), P::FrameType::auth));
  EXPECT_TRUE(p.r_opened);
}

TEST(AuthHandshake, WrongKeyFailsBothSides) {
  Pair p(sender_config(key_of(7), nonce_of(1)), receiver_config(key_of(8), nonce_of(2)));
  p.run();
  expect_auth_failure(p, "authentication failed: the sender's key differs from the receiver's");
  EXPECT_FALSE(contains(types_in(p.r_wrote), P::FrameType::auth)) << "the receiver proved its key to a stranger";
}

TEST(AuthHandshake, KeyOnTheReceiverOnly) {
  Pair p(sender_config(std::nullopt, nonce_of(1)), receiver_config(key_of(7), nonce_of(2)));
  p.run();
  expect_auth_failure(p, "authentication: the receiver requires a key");
}

TEST(AuthHandshake, KeyOnTheSenderOnly) {
  Pair p(sender_config(key_of(7), nonce_of(1)), receiver_config(std::nullopt, nonce_of(2)));
  p.run();
  expect_auth_failure(p, "authentication: the sender offers a key the receiver does not use");
}

// A fake receiver that copies the sender's nonce into its HELLO and echoes the
// sender's own AUTH: without the role in the MAC, the two would be the same.
TEST(AuthHandshake, SenderRejectsItsOwnAuthReflected) {
  SenderSession s(sender_config(key_of(7), nonce_of(1)), one_file(), kT0);
  s.on_connected(kT0);
  frames_of(s.take_actions());
  P::Hello h;
  h.role = P::Role::receiver;
  h.session = kSession;
  h.nonce = P::nonce_hex(nonce_of(1));
  h.keyed = true;
  s.on_bytes(P::encode_frame(P::FrameType::hello, P::to_json(h)), kT0);
  const auto sent = frames_of(s.take_actions());
  ASSERT_EQ(types_in(sent), std::vector<P::FrameType>{P::FrameType::auth});
  s.on_bytes(sent, kT0);  // the reflection
  bool closed = false;
  const auto after = frames_of(s.take_actions(), &closed);
  EXPECT_TRUE(closed);
  EXPECT_FALSE(contains(types_in(after), P::FrameType::offer));
  ASSERT_TRUE(s.finished());
  auto out = s.outcome();
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::authentication);
}

// A receiver's AUTH (observed on an honest connection) sent to another receiver as a
// sender's, with the nonces arranged so that only the role differs.
TEST(AuthHandshake, ReceiverRejectsAReceiversAuthReflected) {
  Pair honest(sender_config(key_of(7), nonce_of(1)), receiver_config(key_of(7), nonce_of(2)));
  honest.run();
  ASSERT_TRUE(honest.r_opened);
  // The receiver's AUTH: the frame after its HELLO.
  auto r = P::decode_frame(P::Bytes(honest.r_wrote));
  const std::size_t hello_len = std::get<P::DecodedFrame>(r).consumed;
  auto auth = P::decode_frame(P::Bytes(honest.r_wrote).subspan(hello_len));
  const auto& af = std::get<P::DecodedFrame>(auth);
  ASSERT_EQ(af.header.type, P::FrameType::auth);
  const std::vector<std::byte> receivers_auth(
      honest.r_wrote.begin() + static_cast<std::ptrdiff_t>(hello_len),
      honest.r_wrote.begin() + static_cast<std::ptrdiff_t>(hello_len + af.consumed));
  // Victim: nonce 1 (the honest sender's); attacker: nonce 2 (the honest receiver's).
  ReceiverSession victim(receiver_config(key_of(7), nonce_of(1)), kT0);
  P::Hello h;
  h.role = P::Role::sender;
  h.session = kSession;
  h.nonce = P::nonce_hex(nonce_of(2));
  h.keyed = true;
  victim.on_bytes(P::encode_frame(P::FrameType::hello, P::to_json(h)), kT0);
  frames_of(victim.take_actions());
  victim.on_bytes(receivers_auth, kT0);
  bool closed = false, opened = false;
  const auto after = frames_of(victim.take_actions(), &closed, &opened);
  EXPECT_TRUE(closed);
  EXPECT_FALSE(contains(types_in(after), P::FrameType::auth));
  ASSERT_TRUE(victim.failure());
  EXPECT_EQ(victim.failure()->code, Errc::authentication);
  EXPECT_TRUE(victim.take_events().empty()) << "no session_start for an unauthenticated sender";
}

// A recorded sender handshake (HELLO + AUTH, then the OFFER) played to a new receiver
// session: its nonce differs, so the recorded AUTH proves nothing.
TEST(AuthHandshake, ReplayedSenderHandshakeFailsAgainstANewReceiver) {
  Pair honest(sender_config(key_of(7), nonce_of(1)), receiver_config(key_of(7), nonce_of(2)));
  honest.run();
  ASSERT_TRUE(honest.r_opened);
  ReceiverSession fresh(receiver_config(key_of(7), nonce_of(3)), kT0);
  fresh.on_bytes(honest.s_wrote, kT0);
  bool closed = false, opened = false;
  const auto wrote = frames_of(fresh.take_actions(), &closed, &opened);
  EXPECT_TRUE(closed);
  EXPECT_FALSE(opened) << "a replayed OFFER was acted upon";
  EXPECT_FALSE(contains(types_in(wrote), P::FrameType::auth));
  ASSERT_TRUE(fresh.failure());
  EXPECT_EQ(fresh.failure()->code, Errc::authentication);
  EXPECT_EQ(fresh.failure()->message(), "authentication failed: the sender's key differs from the receiver's");
}

// The same recording against a receiver that happens to draw the same nonce again
// succeeds: the test above fails for the nonce, not for something else in the bytes.
TEST(AuthHandshake, ReplayIsOnlyStoppedByTheFreshNonce) {
  Pair honest(sender_config(key_of(7), nonce_of(1)), receiver_config(key_of(7), nonce_of(2)));
  honest.run();
  ReceiverSession same(receiver_config(key_of(7), nonce_of(2)), kT0);
  same.on_bytes(honest.s_wrote, kT0);
  bool closed = false, opened = false;
  frames_of(same.take_actions(), &closed, &opened);
  EXPECT_FALSE(closed);
  EXPECT_TRUE(opened);
}

// A receiver that skips its AUTH and answers with something else is a violation; the
// sender never offers.
TEST(AuthHandshake, SenderWaitsForTheReceiversAuth) {
  SenderSession s(sender_config(key_of(7), nonce_of(1)), one_file(), kT0);
  s.on_connected(kT0);
  frames_of(s.take_actions());
  P::Hello h;
  h.role = P::Role::receiver;
  h.session = kSession;
  h.nonce = P::nonce_hex(nonce_of(9));
  h.keyed = true;
  s.on_bytes(P::encode_frame(P::FrameType::hello, P::to_json(h)), kT0);
  EXPECT_EQ(s.state(), SenderSession::State::awaiting_auth);
  s.on_bytes(P::encode_frame(P::FrameType::answer, P::to_json(P::Answer{0, P::AnswerStatus::accept, 0, {}})), kT0);
  bool closed = false;
  const auto after = frames_of(s.take_actions(), &closed);
  EXPECT_TRUE(closed);
  EXPECT_FALSE(contains(types_in(after), P::FrameType::offer));
  auto out = s.outcome();
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::protocol);
}

// The sender session spans reconnects: every connection's HELLO has a fresh nonce.
TEST(AuthHandshake, EachConnectionGetsAFreshNonce) {
  SenderConfig c = sender_config(key_of(7), nonce_of(1));
  c.make_nonce = nonces({nonce_of(1), nonce_of(2)});
  SenderSession s(std::move(c), one_file(), kT0);
  std::vector<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    s.on_connected(kT0);
    auto wire = frames_of(s.take_actions());
    auto f = std::get<P::DecodedFrame>(P::decode_frame(P::Bytes(wire)));
    auto hello = P::parse_hello(f.payload);
    ASSERT_TRUE(hello);
    EXPECT_TRUE(hello->keyed);
    seen.push_back(hello->nonce);
    s.on_disconnected(make_error(Errc::connection, "cut"), kT0);
    s.take_events();
  }
  EXPECT_EQ(seen[0], P::nonce_hex(nonce_of(1)));
  EXPECT_EQ(seen[1], P::nonce_hex(nonce_of(2)));
}

// A HELLO without a nonce is refused once version 3 is agreed.
TEST(AuthHandshake, HelloWithoutANonceIsAViolation) {
  ReceiverSession r(receiver_config(std::nullopt, nonce_of(1)), kT0);
  P::Hello h;
  h.role = P::Role::sender;
  h.session = kSession;
  r.on_bytes(P::encode_frame(P::FrameType::hello, P::to_json(h)), kT0);
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.failure()->code, Errc::protocol);
  EXPECT_NE(r.failure()->message().find("HELLO without a nonce"), std::string::npos);
}

}  // namespace
}  // namespace ferry
