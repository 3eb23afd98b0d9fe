// EntrySource: where a SenderSession takes its entries from, one at a time, so that it
// holds a bounded window of them rather than the whole list (issue #10: a tree of a
// million files must not cost the sender a gigabyte).
//
// Sans-I/O as seen from the session: the interface is plain C++. An implementation may
// do I/O behind it (lib/fs/source_walk.hpp walks the file system as it is asked); the
// session calls next() only from its own calls, on the driver's thread.
//
//   VectorEntrySource all(std::move(entries));   // tests, the simulator, the spool
//   while (auto e = all.next()) offer(*e);
//   EntryCounts guess = all.expected();           // exact for a vector
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lib/core/source_entry.hpp"

namespace ferry {

// How many entries, and how many bytes in their sizes, a source expects to yield.
struct EntryCounts {
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;
};

class EntrySource {
 public:
  virtual ~EntrySource() = default;
  // The next entry in sending order; nullopt once there is none (and from then on).
  // Never fails: what cannot be listed is the implementation's to report.
  virtual std::optional<SourceEntry> next() = 0;
  // The figures known before the first next() (a count made ahead of the walk). They
  // may differ from what next() yields if the source changes meanwhile; the session
  // corrects its totals as it meets the entries, and they are exact once next() ended.
  virtual EntryCounts expected() const = 0;
};

// A source over a list held in memory (the list is moved out entry by entry).
class VectorEntrySource final : public EntrySource {
 public:
  explicit VectorEntrySource(std::vector<SourceEntry> entries);
  std::optional<SourceEntry> next() override;
  EntryCounts expected() const override { return counts_; }

 private:
  std::vector<SourceEntry> entries_;
  std::size_t next_ = 0;
  EntryCounts counts_;
};

}  // namespace ferry
