// Tests sender/spool_queue with synthetic listings and time: the settle rule (a file
// is ready only after a listing taken at least `settle` after it was last seen changing
// still shows its signature), a slow writer, moved-in files ready at once and the
// cancelling on_changed, the keep policy (sent files are not resent until they
// change), per-file retry backoff doubling up to its cap, batches (one at a time, at
// most max_batch_files, in wire-path order, files returned when the transfer ends),
// forgetting vanished files, bounded hints, and next_deadline.
#include "sender/spool/spool_queue.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace ferry::sender {
namespace {

using namespace std::chrono_literals;

const Clock::time_point t0 = Clock::time_point{} + 1000h;

SourceEntry file(const std::string& rel, std::uint64_t size = 10, std::int64_t mtime = 1, std::uint64_t inode = 7) {
  SourceEntry e;
  e.wire_path = rel;
  e.local_path = "/spool/" + rel;
  e.size = size;
  e.mtime_ns = mtime;
  e.ctime_ns = mtime;
  e.inode = inode;
  e.identity = source_identity(size, mtime);
  return e;
}

std::vector<std::string> rels(const std::vector<SourceEntry>& batch) {
  std::vector<std::string> out;
  for (const auto& e : batch) out.push_back(e.wire_path);
  return out;
}

SpoolFileState state(const SpoolQueue& q, const std::string& rel, Clock::time_point now) {
  auto info = q.file_info(rel, now);
  if (!info) throw std::runtime_error("unknown file " + rel);
  return info->state;
}

TEST(SpoolQueue, SettleNeedsAConfirmingListingAfterTheSettleTime) {
  SpoolQueue q(SpoolConfig{});
  q.on_listing({file("f")}, t0);
  EXPECT_EQ(state(q, "f", t0), SpoolFileState::settling);
  EXPECT_EQ(q.next_deadline(t0), t0 + 1s);
  q.on_listing({file("f")}, t0 + 500ms);
  EXPECT_TRUE(q.take_batch(t0 + 999ms).empty());
  // Time alone is not enough: no listing has shown the file after t0 + 1 s.
  EXPECT_TRUE(q.take_batch(t0 + 5s).empty());
  EXPECT_EQ(q.next_deadline(t0 + 5s), t0 + 1s);  // in the past: rescan at once
  q.on_listing({file("f")}, t0 + 999ms);
  EXPECT_TRUE(q.take_batch(t0 + 5s).empty());
  q.on_listing({file("f")}, t0 + 1s);
  EXPECT_EQ(state(q, "f", t0 + 1s), SpoolFileState::ready);
  EXPECT_EQ(q.next_deadline(t0 + 1s), std::nullopt);
  EXPECT_EQ(rels(q.take_batch(t0 + 1s)), (std::vector<std::string>{"f"}));
  EXPECT_EQ(state(q, "f", t0 + 1s), SpoolFileState::in_flight);
}

TEST(SpoolQueue, EachSignatureFieldRestartsTheSettleClock) {
  const std::vector<SourceEntry> versions = {file("f", 10, 1, 7), file("f", 11, 1, 7), file("f", 11, 2, 7),
                                             file("f", 11, 2, 8)};
  SourceEntry ctime_only = versions.back();
  ctime_only.ctime_ns += 1;
  SpoolQueue q(SpoolConfig{});
  auto now = t0;
  q.on_listing({versions[0]}, now);
  for (const auto& v : {versions[1], versions[2], versions[3], ctime_only}) {
    now += 2s;
    q.on_listing({v}, now);
    EXPECT_EQ(state(q, "f", now), SpoolFileState::settling);
    EXPECT_EQ(q.next_deadline(now), now + 1s);
  }
  q.on_listing({ctime_only}, now + 1s);
  EXPECT_EQ(rels(q.take_batch(now + 1s)), (std::vector<std::string>{"f"}));
}

TEST(SpoolQueue, SlowWriterIsNeverReadyUntilItStops) {
  SpoolConfig cfg;
  cfg.settle = 1000ms;
  SpoolQueue q(cfg);
  auto now = t0;
  for (std::uint64_t size = 1; size <= 40; ++size) {  // grows every 300 ms for 12 s
    q.on_listing({file("slow", size * 4096, static_cast<std::int64_t>(size))}, now);
    q.on_changed("slow", now);  // IN_MODIFY as it writes
    EXPECT_TRUE(q.take_batch(now).empty()) << "size " << size;
    now += 300ms;
  }
  const auto last = file("slow", std::uint64_t{40} * 4096, 40);
  const auto stopped = now - 300ms;
  q.on_listing({last}, stopped + 999ms);
  EXPECT_TRUE(q.take_batch(stopped + 999ms).empty());
  q.on_listing({last}, stopped + 1000ms);
  auto batch = q.take_batch(stopped + 1000ms);
  ASSERT_EQ(rels(batch), (std::vector<std::string>{"slow"}));
  EXPECT_EQ(batch[0].size, 40u * 4096);
}

TEST(SpoolQueue, OnChangedRestartsTheSettleClock) {
  SpoolQueue q(SpoolConfig{});
  q.on_listing({file("f")}, t0);
  q.on_changed("f", t0 + 800ms);
  EXPECT_EQ(q.next_deadline(t0 + 800ms), t0 + 1800ms);
  q.on_listing({file("f")}, t0 + 1s);
  EXPECT_TRUE(q.take_batch(t0 + 1s).empty());
  q.on_listing({file("f")}, t0 + 1800ms);
  EXPECT_EQ(rels(q.take_batch(t0 + 1800ms)), (std::vector<std::string>{"f"}));
}

TEST(SpoolQueue, MovedInIsReadyAtTheFirstListingAfterTheRename) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("new", t0);
  EXPECT_EQ(q.next_deadline(t0), t0);  // a rescan now
  // A scan that started before the rename does not count (and does not drop the hint).
  q.on_listing({file("new")}, t0 - 1ms);
  EXPECT_EQ(state(q, "new", t0), SpoolFileState::settling);
  EXPECT_EQ(q.next_deadline(t0), t0);
  q.on_listing({file("new")}, t0 + 1ms);
  EXPECT_EQ(state(q, "new", t0 + 1ms), SpoolFileState::ready);
  EXPECT_EQ(rels(q.take_batch(t0 + 1ms)), (std::vector<std::string>{"new"}));
}

TEST(SpoolQueue, MovedInReplacingAKnownFile) {
  SpoolQueue q(SpoolConfig{});
  q.on_listing({file("f", 10, 1, 7)}, t0);
  q.on_moved_in("f", t0 + 100ms);  // a new version renamed over it
  q.on_listing({file("f", 20, 2, 9)}, t0 + 150ms);
  auto batch = q.take_batch(t0 + 150ms);
  ASSERT_EQ(rels(batch), (std::vector<std::string>{"f"}));
  EXPECT_EQ(batch[0].size, 20u);
}

TEST(SpoolQueue, OnChangedAfterMovedInCancelsIt) {
  {
    SpoolQueue q(SpoolConfig{});  // before the listing
    q.on_moved_in("f", t0);
    q.on_changed("f", t0 + 10ms);
    q.on_listing({file("f")}, t0 + 20ms);
    EXPECT_TRUE(q.take_batch(t0 + 20ms).empty());
    EXPECT_EQ(q.next_deadline(t0 + 20ms), t0 + 1020ms);  // a new file settles from its first listing
    q.on_listing({file("f")}, t0 + 1020ms);
    EXPECT_EQ(rels(q.take_batch(t0 + 1020ms)), (std::vector<std::string>{"f"}));
  }
  {
    SpoolQueue q(SpoolConfig{});  // after the listing made it ready
    q.on_moved_in("f", t0);
    q.on_listing({file("f")}, t0 + 5ms);
    EXPECT_EQ(state(q, "f", t0 + 5ms), SpoolFileState::ready);
    q.on_changed("f", t0 + 10ms);
    EXPECT_EQ(state(q, "f", t0 + 10ms), SpoolFileState::settling);
    q.on_listing({file("f")}, t0 + 20ms);
    EXPECT_TRUE(q.take_batch(t0 + 20ms).empty());
  }
  {
    SpoolQueue q(SpoolConfig{});  // known file: moved-in hint pending, then a change
    q.on_listing({file("f")}, t0);
    q.on_moved_in("f", t0 + 100ms);
    q.on_changed("f", t0 + 110ms);
    q.on_listing({file("f", 11)}, t0 + 120ms);
    EXPECT_TRUE(q.take_batch(t0 + 120ms).empty());
  }
}

// The keep policy: a verified file stays in the spool. It is not sent again while
// its signature is the same, and is once it changes (and has settled).
TEST(SpoolQueue, SentFileIsNotResentUntilItChanges) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("k", t0);
  q.on_listing({file("k", 10, 1)}, t0);
  ASSERT_EQ(rels(q.take_batch(t0)), (std::vector<std::string>{"k"}));
  q.on_file_done("k", true, t0 + 1s);
  q.on_batch_ended(t0 + 1s);
  for (int i = 1; i <= 5; ++i) {
    const auto now = t0 + std::chrono::seconds(10 * i);
    q.on_listing({file("k", 10, 1)}, now);
    q.on_moved_in("k", now);  // renamed away and back: still the same file
    q.on_listing({file("k", 10, 1)}, now);
    EXPECT_EQ(state(q, "k", now), SpoolFileState::sent);
    EXPECT_TRUE(q.take_batch(now).empty());
    EXPECT_EQ(q.next_deadline(now), std::nullopt);
    EXPECT_EQ(q.pending_count(now), 0u);
  }
  // Rewritten: a change hint asks for a rescan at once, which sees the new version.
  const auto t1 = t0 + 100s;
  q.on_changed("k", t1);
  EXPECT_EQ(q.next_deadline(t1), t1);
  q.on_listing({file("k", 12, 2)}, t1 + 1ms);
  EXPECT_EQ(state(q, "k", t1 + 1ms), SpoolFileState::settling);
  EXPECT_EQ(q.next_deadline(t1 + 1ms), t1 + 1001ms);
  q.on_listing({file("k", 12, 2)}, t1 + 1001ms);
  auto batch = q.take_batch(t1 + 1001ms);
  ASSERT_EQ(rels(batch), (std::vector<std::string>{"k"}));
  EXPECT_EQ(batch[0].size, 12u);
}

TEST(SpoolQueue, FileChangedWhileInFlightIsSentAgain) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("f", t0);
  q.on_listing({file("f", 10, 1)}, t0);
  ASSERT_EQ(q.take_batch(t0).size(), 1u);
  q.on_listing({file("f", 20, 2)}, t0 + 100ms);  // rewritten during the transfer
  EXPECT_EQ(state(q, "f", t0 + 100ms), SpoolFileState::in_flight);
  q.on_file_done("f", true, t0 + 200ms);  // the old version was verified
  q.on_batch_ended(t0 + 200ms);
  EXPECT_EQ(state(q, "f", t0 + 200ms), SpoolFileState::settling);
  q.on_listing({file("f", 20, 2)}, t0 + 1100ms);
  auto batch = q.take_batch(t0 + 1100ms);
  ASSERT_EQ(rels(batch), (std::vector<std::string>{"f"}));
  EXPECT_EQ(batch[0].size, 20u);
}

TEST(SpoolQueue, FailureBackoffDoublesAndCaps) {
  SpoolConfig cfg;
  cfg.retry_first = 1000ms;
  cfg.retry_cap = 5000ms;
  SpoolQueue q(cfg);
  q.on_moved_in("bad", t0);
  q.on_listing({file("bad")}, t0);
  auto now = t0;
  const std::vector<std::chrono::milliseconds> waits = {1000ms, 2000ms, 4000ms, 5000ms, 5000ms};
  for (std::size_t i = 0; i < waits.size(); ++i) {
    ASSERT_EQ(rels(q.take_batch(now)), (std::vector<std::string>{"bad"})) << i;
    q.on_file_done("bad", false, now);
    q.on_batch_ended(now);
    auto info = q.file_info("bad", now);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->state, SpoolFileState::retry_wait);
    EXPECT_EQ(info->failures, i + 1);
    EXPECT_EQ(info->retry_at, now + waits[i]);
    EXPECT_EQ(q.next_deadline(now), now + waits[i]);
    EXPECT_EQ(q.pending_count(now), 1u);
    EXPECT_TRUE(q.take_batch(now + waits[i] - 1ms).empty());
    now += waits[i];
  }
  // Verified at last: the failure count is cleared.
  ASSERT_EQ(q.take_batch(now).size(), 1u);
  q.on_file_done("bad", true, now);
  q.on_batch_ended(now);
  EXPECT_EQ(q.file_info("bad", now)->failures, 0u);
  EXPECT_EQ(state(q, "bad", now), SpoolFileState::sent);
}

TEST(SpoolQueue, ANewVersionClearsTheBackoff) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("f", t0);
  q.on_listing({file("f", 10)}, t0);
  for (int i = 0; i < 3; ++i) {
    auto now = t0 + std::chrono::minutes(i);
    q.on_listing({file("f", 10)}, now);
    ASSERT_EQ(q.take_batch(now).size(), 1u);
    q.on_file_done("f", false, now);
    q.on_batch_ended(now);
  }
  const auto now = t0 + 3min;
  EXPECT_EQ(q.file_info("f", now)->failures, 3u);
  q.on_moved_in("f", now);
  q.on_listing({file("f", 11)}, now);
  auto info = q.file_info("f", now);
  EXPECT_EQ(info->state, SpoolFileState::ready);
  EXPECT_EQ(info->failures, 0u);
  EXPECT_EQ(info->retry_at, std::nullopt);
}

TEST(SpoolQueue, FailureOfAVersionThatChangedMeanwhileIsNotPenalised) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("f", t0);
  q.on_listing({file("f", 10)}, t0);
  ASSERT_EQ(q.take_batch(t0).size(), 1u);
  q.on_listing({file("f", 11)}, t0 + 10ms);
  q.on_file_done("f", false, t0 + 20ms);  // e.g. "the source changed"
  q.on_batch_ended(t0 + 20ms);
  auto info = q.file_info("f", t0 + 20ms);
  EXPECT_EQ(info->failures, 0u);
  EXPECT_EQ(info->state, SpoolFileState::settling);
  q.on_listing({file("f", 11)}, t0 + 1010ms);
  EXPECT_EQ(q.take_batch(t0 + 1010ms).size(), 1u);
}

TEST(SpoolQueue, BatchEndedReturnsUnfinishedFilesWithoutPenalty) {
  SpoolQueue q(SpoolConfig{});
  for (const char* r : {"a", "b", "c"}) q.on_moved_in(r, t0);
  q.on_listing({file("c"), file("a"), file("b")}, t0);  // any order
  ASSERT_EQ(rels(q.take_batch(t0)), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(q.batch_open());
  EXPECT_EQ(q.in_flight_count(), 3u);
  EXPECT_TRUE(q.take_batch(t0).empty()) << "one batch at a time";
  q.on_file_done("a", true, t0 + 1s);
  q.on_file_done("b", false, t0 + 1s);
  EXPECT_EQ(q.in_flight_count(), 1u);
  q.on_batch_ended(t0 + 1500ms);  // the connection was lost before c
  EXPECT_FALSE(q.batch_open());
  EXPECT_EQ(q.in_flight_count(), 0u);
  EXPECT_EQ(state(q, "a", t0 + 1500ms), SpoolFileState::sent);
  EXPECT_EQ(state(q, "b", t0 + 1500ms), SpoolFileState::retry_wait);
  EXPECT_EQ(state(q, "c", t0 + 1500ms), SpoolFileState::ready);
  EXPECT_EQ(q.file_info("c", t0 + 1500ms)->failures, 0u);
  EXPECT_EQ(rels(q.take_batch(t0 + 1500ms)), (std::vector<std::string>{"c"}));
}

TEST(SpoolQueue, OutcomesOutsideTheBatchAreIgnored) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("a", t0);
  q.on_listing({file("a"), file("b")}, t0);
  q.on_file_done("a", true, t0);  // no batch open
  q.on_batch_ended(t0);
  EXPECT_EQ(state(q, "a", t0), SpoolFileState::ready);
  ASSERT_EQ(rels(q.take_batch(t0)), (std::vector<std::string>{"a"}));
  q.on_file_done("b", false, t0);        // not in the batch
  q.on_file_done("unknown", false, t0);  // not known at all
  q.on_file_done("a", true, t0);
  q.on_file_done("a", false, t0);  // a second outcome
  EXPECT_EQ(q.file_info("b", t0)->failures, 0u);
  EXPECT_EQ(state(q, "a", t0), SpoolFileState::sent);
}

TEST(SpoolQueue, FilesMissingFromAListingAreForgotten) {
  SpoolQueue q(SpoolConfig{});
  q.on_moved_in("gone", t0);
  q.on_listing({file("gone"), file("stays")}, t0);
  EXPECT_EQ(q.known_count(), 2u);
  q.on_listing({file("stays")}, t0 + 1s);
  EXPECT_EQ(q.known_count(), 1u);
  EXPECT_EQ(q.file_info("gone", t0 + 1s), std::nullopt);
  // Back with the same signature: a new file to the queue, it settles.
  q.on_listing({file("gone"), file("stays")}, t0 + 2s);
  EXPECT_EQ(state(q, "gone", t0 + 2s), SpoolFileState::settling);
}

TEST(SpoolQueue, InFlightFilesAreForgottenOnlyWhenTheBatchEnds) {
  SpoolQueue q(SpoolConfig{});
  for (const char* r : {"a", "b", "c"}) q.on_moved_in(r, t0);
  q.on_listing({file("a"), file("b"), file("c")}, t0);
  ASSERT_EQ(q.take_batch(t0).size(), 3u);
  q.on_file_done("a", true, t0 + 1s);
  q.on_listing({}, t0 + 2s);  // a moved to .sent; b and c vanished mid-transfer
  EXPECT_EQ(q.known_count(), 3u);
  q.on_listing({file("c")}, t0 + 3s);  // c is back
  q.on_batch_ended(t0 + 4s);
  EXPECT_EQ(q.known_count(), 1u);
  EXPECT_EQ(state(q, "c", t0 + 4s), SpoolFileState::ready);
}

TEST(SpoolQueue, MaxBatchFilesInWirePathOrder) {
  SpoolConfig cfg;
  cfg.max_batch_files = 2;
  SpoolQueue q(cfg);
  std::vector<SourceEntry> listing;
  for (const char* r : {"e", "d/x", "c", "a.txt", "a/b"}) {
    q.on_moved_in(r, t0);
    listing.push_back(file(r));
  }
  q.on_listing(listing, t0);
  EXPECT_EQ(q.ready_count(t0), 5u);
  std::vector<std::vector<std::string>> batches;
  for (auto b = q.take_batch(t0); !b.empty(); b = q.take_batch(t0)) {
    batches.push_back(rels(b));
    for (const auto& e : b) q.on_file_done(e.wire_path, true, t0);
    q.on_batch_ended(t0);
  }
  EXPECT_EQ(batches, (std::vector<std::vector<std::string>>{{"a.txt", "a/b"}, {"c", "d/x"}, {"e"}}));
}

TEST(SpoolQueue, NextDeadlineIsTheEarliestWait) {
  SpoolConfig cfg;
  cfg.settle = 2s;
  cfg.retry_first = 10s;
  SpoolQueue q(cfg);
  EXPECT_EQ(q.next_deadline(t0), std::nullopt);
  q.on_listing({file("settling")}, t0);
  EXPECT_EQ(q.next_deadline(t0), t0 + 2s);
  q.on_changed("settling", t0 + 1s);
  EXPECT_EQ(q.next_deadline(t0 + 1s), t0 + 3s);
  // A hint about a file no listing showed yet: rescan at once.
  q.on_changed("brand-new", t0 + 1500ms);
  EXPECT_EQ(q.next_deadline(t0 + 1500ms), t0 + 1500ms);
  q.on_listing({file("settling"), file("brand-new")}, t0 + 1600ms);
  EXPECT_EQ(q.next_deadline(t0 + 1600ms), t0 + 3s);
  // A failed file waits for its retry; a ready or in-flight one does not count.
  q.on_moved_in("failing", t0 + 1700ms);
  q.on_moved_in("ready", t0 + 1700ms);
  q.on_listing({file("settling"), file("brand-new"), file("failing"), file("ready")}, t0 + 1700ms);
  EXPECT_EQ(q.next_deadline(t0 + 1700ms), t0 + 3s);
  auto batch = q.take_batch(t0 + 1700ms);
  ASSERT_EQ(rels(batch), (std::vector<std::string>{"failing", "ready"}));
  q.on_file_done("failing", false, t0 + 1800ms);
  EXPECT_EQ(q.next_deadline(t0 + 1800ms), t0 + 3s);
  q.on_listing({file("settling"), file("brand-new"), file("failing"), file("ready")}, t0 + 3600ms);
  // settling and brand-new are ready now; failing waits until 1800 ms + 10 s.
  EXPECT_EQ(q.next_deadline(t0 + 3600ms), t0 + 11800ms);
  q.on_batch_ended(t0 + 3600ms);
  EXPECT_EQ(q.next_deadline(t0 + 3600ms), t0 + 11800ms);
  EXPECT_EQ(q.ready_count(t0 + 3600ms), 3u);  // settling, brand-new, ready
  // A failed file that must also settle again: the later of the two.
  q.on_changed("failing", t0 + 11s);
  EXPECT_EQ(q.next_deadline(t0 + 11s), t0 + 13s);
}

TEST(SpoolQueue, HintsAboutUnlistedFilesAreDroppedByTheNextListingAndBounded) {
  SpoolConfig cfg;
  cfg.max_hints = 2;
  SpoolQueue q(cfg);
  q.on_moved_in("a", t0);
  q.on_moved_in("b", t0);
  q.on_moved_in("c", t0);  // over the bound: dropped, c will settle
  q.on_listing({file("a"), file("b"), file("c")}, t0 + 1ms);
  EXPECT_EQ(state(q, "a", t0 + 1ms), SpoolFileState::ready);
  EXPECT_EQ(state(q, "b", t0 + 1ms), SpoolFileState::ready);
  EXPECT_EQ(state(q, "c", t0 + 1ms), SpoolFileState::settling);
  // A hint about a file the next listing does not show (it went away again) is dropped.
  q.on_moved_in("ghost", t0 + 2ms);
  q.on_listing({file("a"), file("b"), file("c")}, t0 + 3ms);
  EXPECT_EQ(q.file_info("ghost", t0 + 3ms), std::nullopt);
  EXPECT_EQ(q.next_deadline(t0 + 3ms), t0 + 1001ms);
}

}  // namespace
}  // namespace ferry::sender
