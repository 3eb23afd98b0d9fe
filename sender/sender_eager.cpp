// SenderSession, protocol version 3's eager files (see sender_session.hpp): files of at
// most one block in a directory the receiver created on this connection go out as
// OFFER (`eager`) + DATA + COMMIT with no round trip, several in flight at once; since
// version 6 directories there go as an eager OFFER alone, answered later by ANSWER.
#include <algorithm>

#include "sender/sender_session.hpp"

namespace ferry::sender {

using protocol::FrameType;
namespace P = protocol;

namespace {
// The directory part of a wire path ("" for an entry at the top of the destination).
std::string parent_of(const std::string& wire_path) {
  const auto slash = wire_path.rfind('/');
  return slash == std::string::npos ? std::string() : wire_path.substr(0, slash);
}
}  // namespace

// Eager only where the receiver certainly holds nothing (a directory it created on this
// connection) and only on the first attempt: a retried file goes the ordinary way and
// is answered with what the receiver holds.
//
// Version 6: a directory inside such a directory is eager too, and counts as created
// from then on (the receiver makes it in order, before the files that follow it).
bool SenderSession::eager_eligible(std::uint32_t index) const {
  const auto& ent = entry(index);
  if (inspecting()) return false;  // a check or dry run never sends DATA
  if (ent.kind == P::EntryKind::symlink) return false;
  if (ent.kind == P::EntryKind::file && ent.size > cfg_.chunk_size) return false;
  if (retry_attempts_.count(index) > 0) return false;
  const std::string dir = parent_of(ent.wire_path);
  return !dir.empty() && created_dirs_.count(dir) > 0;
}

bool SenderSession::eager_room(std::uint64_t size) const {
  const std::uint64_t byte_bound = std::min<std::uint64_t>(cfg_.window, P::kMaxEagerBytes);
  return eager_.size() < P::kMaxEagerFiles && eager_bytes_ + size <= byte_bound;
}

void SenderSession::start_eager(std::uint32_t index, Clock::time_point now) {
  if (eager_.empty() && next_send_ <= acked_) last_ack_progress_ = now;  // the stall clock starts here
  const auto& ent = entry(index);
  const bool directory = ent.kind == P::EntryKind::directory;
  eager_.push_back(EagerFile{index, ent.size, false, std::nullopt, directory, false});
  eager_bytes_ += ent.size;
  if (directory) {
    created_dirs_.insert(ent.wire_path);  // nothing can be below it but what we send
  } else if (ent.size == 0) {
    check_eager(index);  // nothing to read: only the check
  }
  pump_eager(now);
  emit_eager(now);
}

// Files are read in eager_ order, so the ones still to read are those from eager_pumped_
// on (a file once past it never needs a read again: a failed read drops it).
void SenderSession::pump_eager(Clock::time_point) {
  for (; eager_pumped_ < eager_.size(); ++eager_pumped_) {
    if (reads_in_flight_ >= cfg_.max_reads_in_flight || blocks_held() >= max_blocks()) return;
    auto& f = eager_[eager_pumped_];
    if (f.reading || f.block || f.checked || f.size == 0) continue;
    const std::uint64_t token = next_token_++;
    eager_tokens_[token] = f.entry;
    actions_.push_back(ReadChunk{f.entry, 0, static_cast<std::size_t>(f.size), token, true});
    ++reads_in_flight_;
    f.reading = true;
  }
}

// eager_ is in entry order: its entries are new ones, taken in increasing order (an entry
// offered again is never eager).
std::deque<SenderSession::EagerFile>::iterator SenderSession::find_eager(std::uint32_t entry) {
  auto it = std::lower_bound(eager_.begin(), eager_.end(), entry,
                             [](const EagerFile& f, std::uint32_t e) { return f.entry < e; });
  return it != eager_.end() && it->entry == entry ? it : eager_.end();
}

void SenderSession::drop_eager(std::deque<EagerFile>::iterator it) {
  const auto at = static_cast<std::size_t>(it - eager_.begin());
  if (at < eager_pumped_) --eager_pumped_;
  if (it->sent) --eager_sent_;
  eager_bytes_ -= it->size;
  if (it->block) --eager_blocks_;
  eager_.erase(it);
}

void SenderSession::clear_eager() {
  eager_.clear();
  eager_bytes_ = 0;
  eager_blocks_ = 0;
  eager_sent_ = 0;
  eager_pumped_ = 0;
}

void SenderSession::retry_entry(std::uint32_t entry, bool attempt, const std::string& why) {
  unsigned& attempts = retry_attempts_[entry];
  if (attempt) ++attempts;
  if (attempts >= cfg_.max_file_attempts) {
    retry_attempts_.erase(entry);
    if (why.find("verification") != std::string::npos) ++files_failed_verification_;
    return finish_entry(entry, false, why);
  }
  retry_.push_back(entry);
  if (attempt) event_for(entry, EventType::warning, 0, why + "; sending the file again");
}

// A completed read of an eager file: the source is checked next (size, mtime, identity
// unchanged after the read), so that old and new bytes can never be mixed. A read error
// fails the file; a short read sends it again the ordinary way.
void SenderSession::on_eager_read(std::uint32_t entry, Result<ReadBlock> block, Clock::time_point now) {
  auto it = find_eager(entry);
  if (it == eager_.end() || !it->reading) return pump_eager(now);  // stale: its buffer goes back
  it->reading = false;
  if (!block) {
    drop_eager(it);
    finish_entry(entry, false, block.error().message());
  } else if (block->data.size() != it->size) {
    drop_eager(it);
    retry_entry(entry, true, "source file changed during the transfer");
  } else {
    it->block = std::move(*block);
    ++eager_blocks_;
    check_eager(entry);
  }
  pump_eager(now);
  emit_eager(now);
  if (state_ == State::pipelining) advance(now);
}

void SenderSession::on_eager_checked(std::uint32_t entry, Result<std::optional<SourceEntry>> now_entry,
                                     Clock::time_point now) {
  auto it = find_eager(entry);
  if (it == eager_.end() || it->checked || it->sent) return;
  if (!now_entry) {
    drop_eager(it);
    finish_entry(entry, false, now_entry.error().message());
  } else if (now_entry->has_value()) {
    drop_eager(it);
    replace_entry(entry, std::move(**now_entry));
    retry_entry(entry, true, "source file changed during the transfer");
  } else {
    it->checked = true;
  }
  pump_eager(now);
  emit_eager(now);
  if (state_ == State::pipelining) advance(now);
}

void SenderSession::check_eager(std::uint32_t entry) {
  const std::uint64_t token = next_token_++;
  eager_tokens_[token] = entry;
  actions_.push_back(CheckSource{entry, token});
}

bool SenderSession::eager_unsent() const { return eager_sent_ < eager_.size(); }

// Sends the checked files at the head of the unsent ones, in entry order. Sending hands
// their blocks to the connection, which frees room under the blocks bound: the files not
// read yet are pumped again here, since no later read or new entry may come to do it.
void SenderSession::emit_eager(Clock::time_point now) {
  if (!connected_) return;
  const bool was_outstanding = has_outstanding();
  bool sent_any = false;
  // The sent ones are the first eager_sent_ (sent in order, appended unsent).
  while (eager_sent_ < eager_.size() && eager_[eager_sent_].checked) {  // entry order: the ones behind wait
    send_eager(eager_[eager_sent_]);
    sent_any = true;
  }
  if (!was_outstanding && has_outstanding()) last_ack_progress_ = now;
  if (sent_any) pump_eager(now);
}

void SenderSession::send_eager(EagerFile& f) {
  const auto& ent = entry(f.entry);
  const bool directory = ent.kind == P::EntryKind::directory;
  P::Offer o{f.entry, ent.wire_path, ent.kind, ent.size, ent.mtime_ns, ent.mode, ent.identity,
             directory ? 0 : static_cast<std::uint32_t>(cfg_.chunk_size), true};
  send_control(FrameType::offer, P::to_json(o));
  event_for(f.entry, EventType::file_start, 0);
  f.sent = true;
  ++eager_sent_;
  if (directory) return;  // its OFFER is all (version 6)
  P::FileDigest digest;
  if (f.block) {
    digest.add_block(f.block->digest);
    totals_.bytes_payload += f.block->data.size();
    auto head = P::encode_data_head(f.entry, 0, f.block->digest, f.block->data.size());
    actions_.push_back(SendFrame{std::vector<std::byte>(head.begin(), head.end()), std::move(f.block->data)});
    f.block.reset();
    --eager_blocks_;
  }
  send_control(FrameType::commit, P::to_json(P::Commit{f.entry, ent.size, digest.hex()}));
  sent_eagerly_.insert(f.entry);
}

// ERROR for: an ANSWER that accepts an eager file (only a refusal is allowed), or
// accepts an eager directory with an offset or held ranges. A refused directory is no
// longer taken as created: what follows it goes the ordinary way (its files sent
// eagerly already fail and are offered again).
bool SenderSession::on_eager_answer(const P::Answer& a, Clock::time_point now) {
  auto it = find_eager(a.file_id);
  if (it == eager_.end() || !it->sent) return false;
  const auto& ent = entry(a.file_id);
  const bool directory = ent.kind == P::EntryKind::directory;
  if (a.status != P::AnswerStatus::refuse && (!directory || a.offset != 0 || !a.held.empty())) {
    violation(directory ? "ANSWER for an eager directory with an offset or held ranges"
                        : "ANSWER accepting an eager file");
    return true;
  }
  drop_eager(it);
  sent_eagerly_.erase(a.file_id);
  if (a.status == P::AnswerStatus::accept) {
    last_ack_progress_ = now;
    finish_entry(a.file_id, true, {});
  } else {
    if (directory) created_dirs_.erase(ent.wire_path);
    finish_entry(a.file_id, false, refusal_reason(a));
  }
  if (state_ == State::pipelining) advance(now);
  return true;
}

// ERROR for: a VERDICT for an eager directory (its ANSWER is all it gets).
bool SenderSession::on_eager_verdict(const P::Verdict& v, Clock::time_point now) {
  auto it = find_eager(v.file_id);
  if (it == eager_.end() || !it->sent) return false;
  if (entry(v.file_id).kind == P::EntryKind::directory) {
    violation("VERDICT for an eager directory");
    return true;
  }
  drop_eager(it);
  last_ack_progress_ = now;
  if (v.status == P::VerdictStatus::verified) {
    sent_eagerly_.erase(v.file_id);
    finish_entry(v.file_id, true, {});
  } else {
    ++totals_.chunks_rejected;  // its one block, as an RPOS would name it
    retry_entry(v.file_id, true, "verification failed (" + v.reason + ")");
  }
  if (state_ == State::pipelining) advance(now);
  return true;
}

void SenderSession::requeue_eager() {
  std::deque<std::uint32_t> again;
  for (const auto& f : eager_) {
    again.push_back(f.entry);
    retry_attempts_.emplace(f.entry, 0);  // not eager again: the receiver may hold it now
  }
  // Version 6: files committing without their VERDICT too (the receiver answers the
  // offer with offset = size when the commit went through), in entry order.
  for (const auto& [entry, attempts] : committing_) {
    again.insert(std::lower_bound(again.begin(), again.end(), entry), entry);
    retry_attempts_[entry] = attempts;
    recounted_[entry] = this->entry(entry).size;  // still counted in committing_bytes_
  }
  committing_.clear();
  clear_eager();  // their reads still in flight come back stale (eager_tokens_ keeps them)
  created_dirs_.clear();  // a new connection may meet another receiver state
  retry_.insert(retry_.begin(), again.begin(), again.end());
}

}  // namespace ferry::sender
