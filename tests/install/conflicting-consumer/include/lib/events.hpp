// The consumer's own lib/events.hpp (issue #12's example): a name ferry's generic
// lib/ folder would clash with if it were on the consumer's include path.
#pragma once

namespace consumer {
inline const char* events_owner() {
  return "consumer lib/events.hpp";
}
}  // namespace consumer
