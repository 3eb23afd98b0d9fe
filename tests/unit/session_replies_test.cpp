// Tests lib/core/session_replies: a PONG echoes the PING's nonce and a malformed PING
// gets none; an ERROR frame carries the error's code name and message (strerror too);
// the errors name the peer's role with the wording both sessions have always used.
#include "lib/core/session_replies.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace ferry {
namespace {

namespace P = protocol;

// Decodes `frame.head` as one whole, intact frame; its payload points into `frame`.
P::DecodedFrame decode_whole(const SendFrame& frame) {
  EXPECT_TRUE(frame.body.empty());
  auto r = P::decode_frame(frame.head);
  EXPECT_TRUE(std::holds_alternative<P::DecodedFrame>(r));
  auto f = std::get<P::DecodedFrame>(r);
  EXPECT_EQ(f.consumed, frame.head.size());
  EXPECT_TRUE(f.payload_ok);
  return f;
}

TEST(SessionReplies, PongEchoesThePingNonce) {
  const auto ping = P::encode_nonce(0x0102030405060708u);
  auto pong = pong_reply(P::Bytes(ping));
  ASSERT_TRUE(pong.has_value());
  auto f = decode_whole(*pong);
  EXPECT_EQ(f.header.type, P::FrameType::pong);
  std::uint64_t nonce = 0;
  ASSERT_TRUE(P::decode_nonce(f.payload, nonce));
  EXPECT_EQ(nonce, 0x0102030405060708u);
  EXPECT_EQ(pong->head, P::encode_frame(P::FrameType::pong, P::Bytes(ping)));
}

TEST(SessionReplies, MalformedPingGetsNoPong) {
  const std::vector<std::byte> short_body(7), long_body(9);
  EXPECT_FALSE(pong_reply(P::Bytes(short_body)).has_value());
  EXPECT_FALSE(pong_reply(P::Bytes(long_body)).has_value());
  EXPECT_FALSE(pong_reply(P::Bytes()).has_value());
}

TEST(SessionReplies, ErrorReplyCarriesCodeAndMessage) {
  const Error why = protocol_violation(P::Role::sender, "second HELLO");
  const SendFrame reply = error_reply(why);  // the decoded payload points into it
  auto f = decode_whole(reply);
  EXPECT_EQ(f.header.type, P::FrameType::error);
  auto body = P::parse_error(f.payload);
  ASSERT_TRUE(body);
  EXPECT_EQ(body->code, errc_name(Errc::protocol));
  EXPECT_EQ(body->message, "protocol violation by sender: second HELLO");
}

TEST(SessionReplies, ErrorReplyOfALocalFailureNamesTheOsError) {
  const Error why = make_error(Errc::local_io, "write(/dest/a.part)", ENOSPC);
  const SendFrame reply = error_reply(why);
  auto body = P::parse_error(decode_whole(reply).payload);
  ASSERT_TRUE(body);
  EXPECT_EQ(body->code, errc_name(Errc::local_io));
  EXPECT_EQ(body->message, why.message());
  EXPECT_NE(body->message, why.what);  // strerror appended
}

TEST(SessionReplies, ErrorsNameThePeer) {
  EXPECT_EQ(role_name(P::Role::sender), "sender");
  EXPECT_EQ(role_name(P::Role::receiver), "receiver");

  const Error v = protocol_violation(P::Role::receiver, "unexpected END");
  EXPECT_EQ(v.code, Errc::protocol);
  EXPECT_EQ(v.what, "protocol violation by receiver: unexpected END");

  const Error i = incompatible_frame(P::Role::sender, "unknown frame type 99");
  EXPECT_EQ(i.code, Errc::protocol);
  EXPECT_EQ(i.what, "incompatible frame from sender: unknown frame type 99");

  P::Hello theirs;
  theirs.min_version = 7;
  theirs.max_version = 9;
  const Error n = no_common_version(P::Role::receiver, theirs);
  EXPECT_EQ(n.code, Errc::protocol);
  EXPECT_EQ(n.what, "no common protocol version (receiver supports 7..9)");
}

}  // namespace
}  // namespace ferry
