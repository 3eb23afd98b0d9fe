// The consumer's own protocol/result.hpp: the path ferry's public headers include
// ferry::Result from. It defines a different Result, in the consumer's namespace.
#pragma once

namespace consumer {
struct Result {
  int code = 0;
};
inline const char* result_owner() {
  return "consumer protocol/result.hpp";
}
}  // namespace consumer
