#include "lib/core/events.hpp"

namespace ferry {

const char* event_type_name(EventType t) {
  switch (t) {
    case EventType::session_start: return "session_start";
    case EventType::file_start: return "file_start";
    case EventType::resume: return "resume";
    case EventType::progress: return "progress";
    case EventType::file_verified: return "file_verified";
    case EventType::file_failed: return "file_failed";
    case EventType::file_skipped: return "file_skipped";
    case EventType::connection_lost: return "connection_lost";
    case EventType::reconnect: return "reconnect";
    case EventType::warning: return "warning";
    case EventType::session_end: return "session_end";
    case EventType::file_sent: return "file_sent";
    case EventType::transfer_end: return "transfer_end";
    case EventType::listening: return "listening";
    case EventType::carrier_message: return "carrier_message";
    case EventType::entry_checked: return "entry_checked";
    case EventType::entry_planned: return "entry_planned";
  }
  return "unknown";
}

bool carries_transfer(EventType t) {
  switch (t) {
    case EventType::file_start:
    case EventType::resume:
    case EventType::progress:
    case EventType::file_verified:
    case EventType::file_failed:
    case EventType::entry_checked:
    case EventType::entry_planned: return true;
    case EventType::session_start:
    case EventType::file_skipped:
    case EventType::connection_lost:
    case EventType::reconnect:
    case EventType::warning:
    case EventType::session_end:
    case EventType::file_sent:
    case EventType::transfer_end:
    case EventType::listening:
    case EventType::carrier_message: return false;
  }
  return false;
}

void deliver_event(const std::function<void(const Event&)>& cb, const Event& e) {
  if (!cb) return;
  try {
    cb(e);
  } catch (...) {
    // see the header
  }
}

}  // namespace ferry
