#include "lib/core/entry_source.hpp"

#include <utility>

namespace ferry {

VectorEntrySource::VectorEntrySource(std::vector<SourceEntry> entries) : entries_(std::move(entries)) {
  counts_.files = entries_.size();
  for (const auto& e : entries_) counts_.bytes += e.size;
}

std::optional<SourceEntry> VectorEntrySource::next() {
  if (next_ >= entries_.size()) return std::nullopt;
  return std::move(entries_[next_++]);
}

}  // namespace ferry
