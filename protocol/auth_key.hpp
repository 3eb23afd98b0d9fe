// AuthKey: the shared secret key of ferry's authentication (protocol/auth.hpp), in a
// header of its own so that the public headers (sender/sender.hpp,
// receiver/receiver.hpp) can carry one without the wire format.
//
//   ferry::SenderOptions o;
//   o.key = ferry::protocol::AuthKey(bytes);   // 32 bytes, e.g. from load_key_file()
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ferry::protocol {

inline constexpr std::size_t kKeySize = 32;  // bytes of a key (a key file: 64 hex digits)

// A shared secret key. Its bytes are wiped (sodium_memzero) when it is destroyed or
// overwritten; copies are wiped in turn.
class AuthKey {
 public:
  AuthKey() = default;
  explicit AuthKey(const std::array<std::uint8_t, kKeySize>& bytes) : bytes_(bytes) {}
  AuthKey(const AuthKey&) = default;
  AuthKey& operator=(const AuthKey& other);
  ~AuthKey();
  const std::array<std::uint8_t, kKeySize>& bytes() const { return bytes_; }

 private:
  std::array<std::uint8_t, kKeySize> bytes_{};
};

}  // namespace ferry::protocol
