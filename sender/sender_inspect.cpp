// SenderSession, protocol version 4's check and dry-run sessions (docs/PROTOCOL.md
// 6.11): HELLO says `purpose`; entries are offered one at a time with plain OFFERs and
// no DATA is ever sent.
//
// Check: after the OFFER of a file the session hashes the whole file (HashPrefix) while
// the receiver hashes what it holds, and sends COMMIT with the file digest as soon as
// it has it. The receiver answers CHECK (identical, different, missing, partial),
// possibly before the COMMIT when it holds nothing comparable (the hash result is then
// dropped), or ANSWER accept when it waits for the COMMIT. A file that cannot be read
// here fails (file_failed) once the receiver has answered; the next OFFER abandons it
// on the receiver's side.
//
// Dry run: OFFER, then the receiver's ANSWER says what a transfer would do (accept with
// the offset it would resume from and the blocks it holds; `created` for a directory it
// would make; refuse). Reported as entry_planned, nothing else happens.
#include <algorithm>

#include "sender/sender_session.hpp"

namespace ferry::sender {

using protocol::FrameType;
namespace P = protocol;

void SenderSession::start_check() {
  state_ = State::checking;
  check_digest_.reset();
  check_hash_error_.reset();
  check_wants_commit_ = false;
  if (entry(cur_).kind != P::EntryKind::file) return;
  prefix_token_ = next_token_++;
  actions_.push_back(HashPrefix{cur_, entry(cur_).size, cfg_.chunk_size, prefix_token_});
}

void SenderSession::on_check_hashed(std::uint64_t token, Result<P::FileDigest> digest, Clock::time_point now) {
  if (token != prefix_token_ || state_ != State::checking) return;  // answered already, or a lost connection's
  prefix_token_ = 0;
  if (!digest) {
    check_hash_error_ = digest.error().message();
    if (!check_wants_commit_) return;  // the receiver's answer first
    return fail_inspected(*check_hash_error_, now);
  }
  check_digest_ = digest->hex();
  send_control(FrameType::commit, P::to_json(P::Commit{cur_, entry(cur_).size, *check_digest_}));
}

// ERROR for: an ANSWER not awaited or for another entry; in a check, an accepting one
// for a directory; in a dry run, an offset or held range off the file's blocks.
void SenderSession::inspect_answer(P::Answer a, Clock::time_point now) {
  const bool awaited = state_ == State::checking || state_ == State::awaiting_answer;
  if (!awaited || a.file_id != cur_ || !has_current_) return violation("unexpected ANSWER");
  const auto& ent = entry(cur_);
  if (a.status == P::AnswerStatus::refuse) return fail_inspected(refusal_reason(a), now);
  if (cfg_.purpose == P::Purpose::check) {
    if (ent.kind != P::EntryKind::file || check_wants_commit_) return violation("unexpected ANSWER in a check");
    check_wants_commit_ = true;  // the receiver waits for our COMMIT (sent, or when hashed)
    if (check_hash_error_) return fail_inspected(*check_hash_error_, now);
    return;
  }
  if (ent.kind == P::EntryKind::file) {
    if (auto why = answer_problem(a); !why.empty()) return violation(why);
  }
  Event e;
  e.type = EventType::entry_planned;
  e.path = ent.wire_path;
  e.size = ent.size;
  e.offset = a.offset;
  totals_.planned = true;
  if (ent.kind != P::EntryKind::file) {  // a directory or a link: made, or there already
    e.detail = a.created ? "create" : "exists";
    if (a.created && ent.kind == P::EntryKind::directory) ++totals_.plan_dirs;
  } else if (a.offset == ent.size && ent.size > 0) {
    e.detail = "complete";
    ++totals_.plan_complete;
  } else {
    std::uint64_t held = 0;
    for (const auto& r : a.held) held += r.length;
    e.detail = a.offset > 0 ? "resume" : "send";
    ++(a.offset > 0 ? totals_.plan_resume : totals_.plan_send);
    totals_.plan_bytes += ent.size - a.offset - std::min(held, ent.size - a.offset);
  }
  if (!a.note.empty()) event(EventType::warning, a.note);
  e.transfer = transfer();
  events_.push_back(std::move(e));
  finish_inspected(now);
}

// ERROR for: an unparsable CHECK, one outside a check, not awaited, or for another entry.
void SenderSession::on_check(P::Bytes payload, Clock::time_point now) {
  auto c = P::parse_check(payload);
  if (!c) return violation(c.error().what);
  if (cfg_.purpose != P::Purpose::check || state_ != State::checking || c->file_id != cur_ || !has_current_) {
    return violation("unexpected CHECK");
  }
  const auto& ent = entry(cur_);
  totals_.checked = true;
  switch (c->result) {
    case P::CheckResult::identical:
      ++totals_.check_identical;
      break;
    case P::CheckResult::different:
      ++totals_.check_different;
      break;
    case P::CheckResult::missing:
      ++totals_.check_missing;
      break;
    case P::CheckResult::partial:
      ++totals_.check_partial;
      break;
  }
  Event e;
  e.type = EventType::entry_checked;
  e.path = ent.wire_path;
  e.size = ent.size;
  e.detail = P::check_result_name(c->result);
  e.reason = c->reason;
  e.transfer = transfer();
  events_.push_back(std::move(e));
  if (ent.kind == P::EntryKind::directory && cfg_.list_extra) report_extra(ent.wire_path, *c);
  finish_inspected(now);
}

void SenderSession::report_extra(const std::string& dir, const P::CheckReply& c) {
  expect_extra(dir, std::set<std::string>(c.names.begin(), c.names.end()));
  if (c.truncated) {
    event(EventType::warning, "the receiver listed only the first " + std::to_string(c.names.size()) +
                                  " names of this directory; extra entries beyond them are not reported");
  }
}

// The walk is depth first and sorted, so a directory's children all come before the first
// entry outside it: names wait only while the walk is inside their directory, and the
// session holds the names of the open directories alone, not a set of every path.
void SenderSession::expect_extra(const std::string& dir, std::set<std::string> names) {
  const std::string prefix = dir + "/";
  for (const auto& [index, ent] : entries_) {  // children already taken as look-ahead
    if (index <= cur_ || !ent.wire_path.starts_with(prefix)) continue;
    const std::string rest = ent.wire_path.substr(prefix.size());
    if (rest.find('/') == std::string::npos) names.erase(rest);
  }
  const bool left = source_ended_ || (pulled_ > cur_ + 1 && !entry(pulled_ - 1).wire_path.starts_with(prefix));
  if (left) return emit_extra(dir, names);
  extra_dirs_.push_back(ExtraNames{dir, std::move(names)});
}

void SenderSession::settle_extra(const std::string* wire_path) {
  while (!extra_dirs_.empty()) {
    ExtraNames& top = extra_dirs_.back();
    const std::string prefix = top.dir + "/";
    if (wire_path && wire_path->starts_with(prefix)) {
      const std::string rest = wire_path->substr(prefix.size());
      if (rest.find('/') == std::string::npos) top.names.erase(rest);
      return;
    }
    const ExtraNames done = std::move(top);
    extra_dirs_.pop_back();
    emit_extra(done.dir, done.names);
  }
}

void SenderSession::emit_extra(const std::string& dir, const std::set<std::string>& names) {
  for (const auto& name : names) {
    ++totals_.check_extra;
    Event e;
    e.type = EventType::entry_checked;
    e.path = dir + "/" + name;
    e.detail = "extra";
    e.transfer = transfer();
    events_.push_back(std::move(e));
  }
}

void SenderSession::finish_inspected(Clock::time_point now) {
  ++files_done_;
  bytes_done_ += entry(cur_).size;
  end_inspected(now);
}

void SenderSession::fail_inspected(const std::string& why, Clock::time_point now) {
  finish_file(false, why);  // counts it as done
  end_inspected(now);
}

void SenderSession::end_inspected(Clock::time_point now) {
  prefix_token_ = 0;
  check_digest_.reset();
  check_hash_error_.reset();
  check_wants_commit_ = false;
  next_entry(now);
}

}  // namespace ferry::sender
