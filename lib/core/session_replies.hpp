// Session replies: what both sessions answer on their own account, written once.
//
// Two replies are the same for a sender and a receiver: the PONG that answers a PING,
// and the ERROR frame that tells the peer why this side closes the connection (a
// protocol violation, a frame or version it cannot speak, a local failure). This module
// builds those frames and the wording of the errors behind them; closing is left to
// each session, since what it tears down (reads in flight, an open partial file)
// differs. Sans-I/O like the sessions: it only builds values.
//
//   if (auto pong = pong_reply(frame.payload)) {
//     actions.push_back(std::move(*pong));
//   } else {
//     Error why = protocol_violation(protocol::Role::sender, "malformed PING");
//     actions.push_back(error_reply(why));  // tell the peer why, then
//     close_connection(why);                // the session's own teardown
//   }
#pragma once

#include <optional>
#include <string_view>

#include "lib/core/session_actions.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry {

// "sender" or "receiver": how messages name a peer.
std::string_view role_name(protocol::Role role);

// Errc::protocol, "protocol violation by <peer>: <what>". Fatal for the connection:
// send error_reply() of it, then close.
Error protocol_violation(protocol::Role peer, std::string_view what);

// Errc::protocol, "incompatible frame from <peer>: <reason>", for a Malformed decode
// result with incompatible set (a framing version or frame type this build does not
// know). No reconnect can help: send error_reply() of it, then close.
Error incompatible_frame(protocol::Role peer, std::string_view reason);

// Errc::protocol, "no common protocol version (<peer> supports MIN..MAX)", from the
// peer's HELLO, when negotiate_version() found none. Send error_reply() of it, then close.
Error no_common_version(protocol::Role peer, const protocol::Hello& theirs);

// Errc::authentication, worded the same for both sides (the sender shows the
// receiver's ERROR message as it is), PROTOCOL.md 5.3. Fatal and final: no reconnect
// can help. Send error_reply() of it, then close.
// The sender has a key, the receiver none:
//   "authentication: the sender offers a key the receiver does not use".
Error auth_key_unused();
// The receiver has a key, the sender none: "authentication: the receiver requires a key".
Error auth_key_required();
// `prover`'s AUTH did not verify under this side's key:
//   "authentication failed: the sender's key differs from the receiver's" (or the reverse).
Error auth_wrong_key(protocol::Role prover);

// The ERROR frame that tells the peer why this side closes:
// {"code": errc_name(why.code), "message": why.message()}.
SendFrame error_reply(const Error& why);

// The PONG that answers a PING with payload `ping_payload` (it echoes the nonce), or
// nullopt when the payload is not an 8-byte nonce: a protocol violation ("malformed PING").
std::optional<SendFrame> pong_reply(protocol::Bytes ping_payload);

}  // namespace ferry
