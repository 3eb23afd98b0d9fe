// The consumer's own lib/core/events.hpp: the very path ferry's public headers include
// their events from. Had ferry's outcome.hpp or sender.hpp found this one instead of
// their own, ferry::Event and ferry::Totals would be missing and nothing would compile.
#pragma once

namespace consumer {
inline const char* core_events_owner() {
  return "consumer lib/core/events.hpp";
}
}  // namespace consumer
