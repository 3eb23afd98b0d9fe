// The consumer's own protocol/auth_key.hpp, another path ferry's public headers use.
#pragma once

namespace consumer {
inline const char* auth_key_owner() {
  return "consumer protocol/auth_key.hpp";
}
}  // namespace consumer
