#include "sender/spool/spool_queue.hpp"

#include <algorithm>

namespace ferry::sender {
namespace {

void earliest(std::optional<Clock::time_point>& best, Clock::time_point t) {
  if (!best || t < *best) best = t;
}

}  // namespace

const char* spool_file_state_name(SpoolFileState s) {
  switch (s) {
    case SpoolFileState::settling:
      return "settling";
    case SpoolFileState::ready:
      return "ready";
    case SpoolFileState::in_flight:
      return "in_flight";
    case SpoolFileState::retry_wait:
      return "retry_wait";
    case SpoolFileState::sent:
      return "sent";
  }
  return "unknown";
}

SpoolQueue::SpoolQueue(SpoolConfig config) : config_(config) {
  config_.max_batch_files = std::max<std::size_t>(config_.max_batch_files, 1);
  config_.retry_first = std::max(config_.retry_first, std::chrono::milliseconds(1));
  config_.retry_cap = std::max(config_.retry_cap, config_.retry_first);
}

bool SpoolQueue::settled(const File& f) const {
  return f.instant || f.confirmed_at >= f.stable_since + config_.settle;
}

SpoolFileState SpoolQueue::state_of(const File& f, Clock::time_point now) const {
  if (f.flight) return SpoolFileState::in_flight;
  if (f.sent && same_version(*f.sent, f.entry)) return SpoolFileState::sent;
  if (f.retry_at && now < *f.retry_at) return SpoolFileState::retry_wait;
  if (!f.listed || !settled(f)) return SpoolFileState::settling;
  return SpoolFileState::ready;
}

Clock::duration SpoolQueue::retry_delay(unsigned failures) const {
  Clock::duration d = config_.retry_first;
  for (unsigned i = 1; i < failures && d < config_.retry_cap; ++i) d *= 2;
  return std::min<Clock::duration>(d, config_.retry_cap);
}

// A hint that came before the file's first listing (or before this one).
void SpoolQueue::apply_hint(File& f, const Hint& h, Clock::time_point scanned_at) {
  if (h.changed_at && *h.changed_at > f.stable_since) {
    f.stable_since = *h.changed_at;
    f.instant = false;
  }
  if (h.moved_in_at) {
    if (*h.moved_in_at <= scanned_at) {
      f.instant = true;
    } else {
      f.moved_in_at = h.moved_in_at;  // this listing may predate the rename
    }
  }
}

void SpoolQueue::on_listing(const std::vector<SourceEntry>& files, Clock::time_point scanned_at) {
  for (auto& [rel, f] : files_) f.listed = false;
  for (const auto& e : files) {
    auto [it, is_new] = files_.try_emplace(e.wire_path);
    File& f = it->second;
    if (is_new) {
      f.entry = e;
      f.stable_since = scanned_at;
      f.confirmed_at = scanned_at;
    } else if (!same_version(f.entry, e)) {
      // Another version: it settles from now, and earlier failures were of the old one.
      f.entry = e;
      f.stable_since = std::max(f.stable_since, scanned_at);
      f.confirmed_at = scanned_at;
      f.instant = false;
      f.failures = 0;
      f.retry_at.reset();
    } else {
      f.entry = e;  // same signature; the path or mode may differ
      f.confirmed_at = std::max(f.confirmed_at, scanned_at);
    }
    f.listed = true;
    if (f.change_unlisted && *f.change_unlisted <= scanned_at) f.change_unlisted.reset();
    if (f.moved_in_at && *f.moved_in_at <= scanned_at) {
      f.instant = true;
      f.moved_in_at.reset();
    }
    if (auto h = hints_.find(e.wire_path); h != hints_.end()) {
      apply_hint(f, h->second, scanned_at);
      hints_.erase(h);
    }
  }
  for (auto it = files_.begin(); it != files_.end();) {
    if (!it->second.listed && !it->second.in_batch) {
      it = files_.erase(it);
    } else {
      ++it;
    }
  }
  // A hint this listing should have seen, about a file it does not show: the file
  // is gone again. Later hints wait for a later listing.
  for (auto it = hints_.begin(); it != hints_.end();) {
    const Hint& h = it->second;
    const bool later = (h.moved_in_at && *h.moved_in_at > scanned_at) || (h.changed_at && *h.changed_at > scanned_at);
    if (later) {
      ++it;
    } else {
      it = hints_.erase(it);
    }
  }
}

void SpoolQueue::on_moved_in(const std::string& rel, Clock::time_point now) {
  if (auto it = files_.find(rel); it != files_.end()) {
    it->second.moved_in_at = now;
    return;
  }
  auto h = hints_.find(rel);
  if (h == hints_.end()) {
    if (hints_.size() >= config_.max_hints) return;  // it will settle instead
    h = hints_.emplace(rel, Hint{}).first;
  }
  h->second.moved_in_at = now;
}

void SpoolQueue::on_changed(const std::string& rel, Clock::time_point now) {
  if (auto it = files_.find(rel); it != files_.end()) {
    File& f = it->second;
    f.stable_since = std::max(f.stable_since, now);
    f.instant = false;
    f.moved_in_at.reset();
    if (!f.change_unlisted) f.change_unlisted = now;
    return;
  }
  auto h = hints_.find(rel);
  if (h == hints_.end()) {
    if (hints_.size() >= config_.max_hints) return;  // the next listing starts its clock anyway
    h = hints_.emplace(rel, Hint{}).first;
  }
  h->second.changed_at = now;
  h->second.moved_in_at.reset();
}

std::vector<SourceEntry> SpoolQueue::take_batch(Clock::time_point now) {
  std::vector<SourceEntry> batch;
  if (batch_open_) return batch;
  for (auto& [rel, f] : files_) {  // std::map: in wire path order
    if (batch.size() >= config_.max_batch_files) break;
    if (state_of(f, now) != SpoolFileState::ready) continue;
    f.flight = f.entry;
    f.in_batch = true;
    batch.push_back(f.entry);
  }
  batch_open_ = !batch.empty();
  return batch;
}

void SpoolQueue::on_file_done(const std::string& rel, bool verified, Clock::time_point now) {
  auto it = files_.find(rel);
  if (!batch_open_ || it == files_.end() || !it->second.flight) return;
  File& f = it->second;
  if (verified) {
    f.sent = f.flight;
    f.failures = 0;
    f.retry_at.reset();
  } else if (same_version(*f.flight, f.entry)) {
    ++f.failures;
    f.retry_at = now + retry_delay(f.failures);
  } else {
    // It changed while in flight: the failure was the old version's; the new one
    // settles and is tried without a penalty.
    f.failures = 0;
    f.retry_at.reset();
  }
  f.flight.reset();
}

void SpoolQueue::on_batch_ended(Clock::time_point /*now*/) {
  if (!batch_open_) return;
  batch_open_ = false;
  for (auto it = files_.begin(); it != files_.end();) {
    File& f = it->second;
    if (f.in_batch) {
      f.in_batch = false;
      f.flight.reset();  // not done: ready again, no penalty
      if (!f.listed) {
        it = files_.erase(it);
        continue;
      }
    }
    ++it;
  }
}

std::optional<Clock::time_point> SpoolQueue::next_deadline(Clock::time_point now) const {
  std::optional<Clock::time_point> best;
  for (const auto& [rel, h] : hints_) {
    if (h.moved_in_at) earliest(best, *h.moved_in_at);
    if (h.changed_at) earliest(best, *h.changed_at);
  }
  for (const auto& [rel, f] : files_) {
    if (f.moved_in_at) earliest(best, *f.moved_in_at);
    switch (state_of(f, now)) {
      case SpoolFileState::in_flight:
      case SpoolFileState::ready:
        break;
      case SpoolFileState::sent:
        // Changed since it was sent, perhaps: a listing tells. (Only for this state: a
        // settling file being written would otherwise ask for a rescan per write.)
        if (f.change_unlisted) earliest(best, *f.change_unlisted);
        break;
      case SpoolFileState::retry_wait:
      case SpoolFileState::settling:
        if (!f.listed) break;  // forgotten when the batch ends
        if (!settled(f)) {
          // A rescan then confirms it; no earlier than its retry time.
          earliest(best, std::max(f.stable_since + config_.settle, f.retry_at.value_or(Clock::time_point::min())));
        } else if (f.retry_at) {
          earliest(best, *f.retry_at);
        }
        break;
    }
  }
  return best;
}

std::size_t SpoolQueue::pending_count(Clock::time_point now) const {
  std::size_t n = 0;
  for (const auto& [rel, f] : files_) {
    switch (state_of(f, now)) {
      case SpoolFileState::settling:
      case SpoolFileState::ready:
      case SpoolFileState::retry_wait:
        ++n;
        break;
      case SpoolFileState::in_flight:
      case SpoolFileState::sent:
        break;
    }
  }
  return n;
}

std::size_t SpoolQueue::in_flight_count() const {
  return static_cast<std::size_t>(
      std::count_if(files_.begin(), files_.end(), [](const auto& kv) { return kv.second.flight.has_value(); }));
}

std::size_t SpoolQueue::ready_count(Clock::time_point now) const {
  return static_cast<std::size_t>(std::count_if(
      files_.begin(), files_.end(), [&](const auto& kv) { return state_of(kv.second, now) == SpoolFileState::ready; }));
}

std::optional<SpoolFileInfo> SpoolQueue::file_info(const std::string& rel, Clock::time_point now) const {
  auto it = files_.find(rel);
  if (it == files_.end()) return std::nullopt;
  return SpoolFileInfo{state_of(it->second, now), it->second.failures, it->second.retry_at};
}

}  // namespace ferry::sender
