#include "lib/core/session_replies.hpp"

#include <cstdint>
#include <string>

namespace ferry {

namespace P = protocol;

std::string_view role_name(P::Role role) {
  switch (role) {
    case P::Role::sender:
      return "sender";
    case P::Role::receiver:
      return "receiver";
  }
  return "peer";  // not reached: every Role is named above
}

Error protocol_violation(P::Role peer, std::string_view what) {
  return make_error(Errc::protocol, "protocol violation by " + std::string(role_name(peer)) + ": " + std::string(what));
}

Error incompatible_frame(P::Role peer, std::string_view reason) {
  return make_error(Errc::protocol,
                    "incompatible frame from " + std::string(role_name(peer)) + ": " + std::string(reason));
}

Error no_common_version(P::Role peer, const P::Hello& theirs) {
  return make_error(Errc::protocol, "no common protocol version (" + std::string(role_name(peer)) + " supports " +
                                        std::to_string(theirs.min_version) + ".." + std::to_string(theirs.max_version) +
                                        ")");
}

Error auth_key_unused() {
  return make_error(Errc::authentication, "authentication: the sender offers a key the receiver does not use");
}

Error auth_key_required() {
  return make_error(Errc::authentication, "authentication: the receiver requires a key");
}

Error auth_wrong_key(P::Role prover) {
  const P::Role other = prover == P::Role::sender ? P::Role::receiver : P::Role::sender;
  return make_error(Errc::authentication, "authentication failed: the " + std::string(role_name(prover)) +
                                              "'s key differs from the " + std::string(role_name(other)) + "'s");
}

SendFrame error_reply(const Error& why) {
  const P::ErrorBody body{errc_name(why.code), why.message()};
  return SendFrame{P::encode_frame(P::FrameType::error, P::to_json(body)), {}};
}

std::optional<SendFrame> pong_reply(P::Bytes ping_payload) {
  std::uint64_t nonce = 0;
  if (!P::decode_nonce(ping_payload, nonce)) return std::nullopt;
  const auto body = P::encode_nonce(nonce);
  return SendFrame{P::encode_frame(P::FrameType::pong, P::Bytes(body)), {}};
}

}  // namespace ferry
