#include "lib/net/admission.hpp"

#include <iterator>

namespace ferry {

namespace {
// The key that stands for every address once the table of refused addresses is full.
constexpr char kOtherAddresses[] = "*";
}  // namespace

std::size_t Admission::connections_from(const std::string& address) const {
  auto it = per_address_.find(address);
  return it == per_address_.end() ? 0 : it->second;
}

Admission::Verdict Admission::admit(const std::string& address, Clock::time_point now) {
  const std::string who = address.empty() ? "a local peer" : address;
  if (total_ >= limits_.max_connections) {
    return {false, log_refusal(address, "refused a connection from " + who + ": " + std::to_string(total_) +
                                            " connections served already (--max-connections)",
                               now)};
  }
  if (!address.empty() && limits_.max_per_address > 0 && connections_from(address) >= limits_.max_per_address) {
    return {false, log_refusal(address, "refused a connection from " + who + ": " +
                                            std::to_string(connections_from(address)) +
                                            " connections from that address already (--max-per-address)",
                               now)};
  }
  ++total_;
  if (!address.empty()) ++per_address_[address];
  return {true, std::nullopt};
}

void Admission::release(const std::string& address) {
  if (total_ > 0) --total_;
  if (address.empty()) return;
  auto it = per_address_.find(address);
  if (it == per_address_.end()) return;
  if (--it->second == 0) per_address_.erase(it);
}

// One line per address per log_interval; the refusals suppressed in between are
// counted in the next line. Entries older than the interval are dropped when the table
// is full; if it is still full, the address shares the line of all the others.
std::optional<std::string> Admission::log_refusal(const std::string& address, const std::string& why,
                                                  Clock::time_point now) {
  std::string key = address;
  if (refusals_.count(key) == 0 && refusals_.size() >= kMaxLoggedAddresses) {
    for (auto it = refusals_.begin(); it != refusals_.end();) {
      it = now - it->second.last_line >= limits_.log_interval ? refusals_.erase(it) : std::next(it);
    }
    if (refusals_.size() >= kMaxLoggedAddresses) key = kOtherAddresses;
  }
  auto [it, fresh] = refusals_.try_emplace(key, RefusalLog{now, 0});
  RefusalLog& log = it->second;
  if (!fresh && now - log.last_line < limits_.log_interval) {
    ++log.suppressed;
    return std::nullopt;
  }
  std::string line = why;
  if (log.suppressed > 0) {
    line += "; " + std::to_string(log.suppressed) + " more refused from " +
            (key == kOtherAddresses ? std::string("other addresses") : "there") + " since the last report";
  }
  log = RefusalLog{now, 0};
  return line;
}

}  // namespace ferry
