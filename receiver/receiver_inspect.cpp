// ReceiverSession, protocol version 4's check and dry-run sessions (docs/PROTOCOL.md
// 6.11): the sender's HELLO says `purpose` "check" or "dry_run", and the session then
// answers each OFFER after a read-only look into DEST (DigestFinalFile, ProbeFile),
// one entry at a time. It never emits OpenFile, WriteChunk, CommitFile, CloseFile or
// CommitSmallFile, whatever the sender sends: DATA is a violation, an eager OFFER too,
// and COMMIT only carries the sender's digest for comparison.
//
// Check, per entry: OFFER -> DigestFinalFile. A directory, or a file that is missing,
// of another size or not a regular file, is answered with CHECK as soon as the look is
// done. A regular file of the offered size needs the sender's COMMIT (it hashes its
// file meanwhile): with the COMMIT in, CHECK identical or different (content);
// without, ANSWER accept (offset 0) says "send your COMMIT", and an OFFER or END that
// comes instead abandons the entry (the sender could not read its file). A COMMIT
// that crossed the CHECK of its entry on the wire is dropped.
//
// Dry run, per entry: OFFER -> ProbeFile -> ANSWER as a transfer would give it
// (accept with the resume offset and held ranges, `created` for a directory that would
// be made; refuse for an unsafe path). COMMIT is a violation.
#include <algorithm>
#include <chrono>

#include "protocol/wire_path.hpp"
#include "receiver/receiver_session.hpp"

namespace ferry::receiver {

using protocol::FrameType;
namespace P = protocol;

// ERROR for: an OFFER while the look at the previous entry is pending, an unparsable
// one, an eager one. An unsafe path is refused with ANSWER, as in a transfer.
void ReceiverSession::inspect_offer(P::Bytes payload, Clock::time_point now) {
  if (state_ != State::idle && state_ != State::awaiting_commit) return violation("OFFER while busy");
  auto o = P::parse_offer(payload);
  if (!o) return violation(o.error().what);
  if (o->eager) return violation("eager OFFER in a check or dry-run session");
  cur_ = o->file_id;
  offer_ = *o;
  written_ = 0;
  final_.reset();
  check_commit_.reset();
  last_checked_.reset();
  if (auto why = P::wire_path_problem(o->path)) {
    if (purpose_ == P::Purpose::check) last_checked_ = cur_;  // its COMMIT may follow: dropped
    return refuse_entry("unsafe path: " + *why);
  }
  state_ = State::inspecting;
  if (purpose_ == P::Purpose::dry_run) return actions_.push_back(ProbeFile{cur_, offer_});
  actions_.push_back(DigestFinalFile{cur_, offer_, list_extra_ && offer_.kind == P::EntryKind::directory});
  // The sender hashes its file meanwhile: its COMMIT gets an allowance for that.
  note_progress(now + std::chrono::milliseconds(offer_.size / (kMinSenderHashRate / 1000)));
}

// ERROR for: an unparsable COMMIT, one in a dry run, for a directory, for an entry not
// being checked, a second one, or one whose size differs from the OFFER's.
void ReceiverSession::inspect_commit(P::Bytes payload) {
  auto c = P::parse_commit(payload);
  if (!c) return violation(c.error().what);
  if (purpose_ != P::Purpose::check) return violation("COMMIT in a dry-run session");
  if (state_ == State::idle && last_checked_ == c->file_id) return;  // crossed our CHECK
  const bool current = state_ == State::inspecting || state_ == State::awaiting_commit;
  if (!current || c->file_id != cur_ || offer_.kind != P::EntryKind::file || check_commit_) {
    return violation("COMMIT for an entry not being checked");
  }
  if (c->size != offer_.size) return violation("COMMIT size differs from the OFFER");
  check_commit_ = *c;
  if (state_ == State::awaiting_commit) reply_check();
}

void ReceiverSession::on_final_digested(std::uint32_t file_id, Result<FinalFile> r, Clock::time_point now) {
  if (state_ != State::inspecting || purpose_ != P::Purpose::check || file_id != cur_) return;
  note_progress(std::max(progress_at_, now));  // our own work ended
  if (!r) {
    last_checked_ = cur_;
    return refuse_entry(r.error().message(), r.error().code == Errc::local_io);
  }
  final_ = std::move(*r);
  reply_check();
}

void ReceiverSession::reply_check() {
  using Kind = FinalFile::Kind;
  FinalFile& f = *final_;
  const bool dir_offered = offer_.kind == P::EntryKind::directory;
  const bool link_offered = offer_.kind == P::EntryKind::symlink;
  const bool comparable = offer_.kind == P::EntryKind::file && f.kind == Kind::file && f.size == offer_.size && f.digest;
  if (comparable && !check_commit_) {
    // Our digest is ready first: the sender's COMMIT decides.
    state_ = State::awaiting_commit;
    send_control(FrameType::answer, P::to_json(P::Answer{cur_, P::AnswerStatus::accept, 0, {}}));
    return;
  }
  P::CheckReply c;
  c.file_id = cur_;
  if (f.kind == Kind::missing) {
    c.result = offer_.kind == P::EntryKind::file && f.partial ? P::CheckResult::partial : P::CheckResult::missing;
  } else if (link_offered && f.kind == Kind::symlink) {
    // A link is its text (--links sends it verbatim): the same text is identical.
    c.result = f.target == offer_.target ? P::CheckResult::identical : P::CheckResult::different;
    if (c.result == P::CheckResult::different) c.reason = "target";
  } else if (link_offered || dir_offered != (f.kind == Kind::directory) || f.kind == Kind::other ||
             f.kind == Kind::symlink) {
    c.result = P::CheckResult::different;
    c.reason = "kind";
  } else if (dir_offered) {
    c.result = P::CheckResult::identical;
    c.names = std::move(f.names);
    c.truncated = f.truncated;
  } else if (!comparable) {
    c.result = P::CheckResult::different;
    c.reason = "size";
  } else {
    // Only the outcome goes back: never the receiver's digest (SECURITY.md, "say less").
    const bool same = f.digest->hex() == check_commit_->xxh3_128;
    c.result = same ? P::CheckResult::identical : P::CheckResult::different;
    if (!same) c.reason = "content";
  }
  send_check(std::move(c));
}

void ReceiverSession::send_check(P::CheckReply reply) {
  const std::string word = P::check_result_name(reply.result);
  if (reply.result == P::CheckResult::identical) ++totals_.files_verified;
  Event e;
  e.type = EventType::entry_checked;
  e.path = offer_.path;
  e.size = offer_.size;
  e.detail = word;
  e.reason = reply.reason;
  e.transfer = transfer();
  events_.push_back(std::move(e));
  send_control(FrameType::check, P::to_json(reply));
  state_ = State::idle;
  last_checked_ = cur_;
  final_.reset();
  check_commit_.reset();
}

void ReceiverSession::on_file_probed(std::uint32_t file_id, Result<OpenedFile> r, Clock::time_point now) {
  if (state_ != State::inspecting || purpose_ != P::Purpose::dry_run || file_id != cur_) return;
  note_progress(std::max(progress_at_, now));
  if (!r) return refuse_entry(r.error().message(), r.error().code == Errc::local_io);
  const bool is_file = offer_.kind == P::EntryKind::file;
  if (is_file && (r->offset > offer_.size || (r->offset % offer_.block_size != 0 && r->offset != offer_.size))) {
    return fatal(
        make_error(Errc::internal, "planned resume offset is not a block boundary of the file: " + offer_.path));
  }
  P::Answer a{cur_, P::AnswerStatus::accept, is_file ? r->offset : 0, r->note};
  a.created = !is_file && r->created;
  // Held blocks as ranges, merged, above the offset, at most kMaxHeldRanges (as a
  // transfer lists them).
  for (const auto& b : r->held) {
    if (b.offset < a.offset) continue;
    if (!a.held.empty() && a.held.back().offset + a.held.back().length == b.offset) {
      a.held.back().length += b.length;
    } else if (a.held.size() < P::kMaxHeldRanges) {
      a.held.push_back({b.offset, b.length});
    }
  }
  state_ = State::idle;
  send_control(FrameType::answer, P::to_json(a));
  Event e;
  e.type = EventType::entry_planned;
  e.path = offer_.path;
  e.size = offer_.size;
  e.offset = a.offset;
  e.detail = !is_file                                     ? (a.created ? "create" : "exists")
             : a.offset == offer_.size && offer_.size > 0 ? "complete"
             : a.offset > 0                               ? "resume"
                                                          : "send";
  e.transfer = transfer();
  events_.push_back(std::move(e));
}

}  // namespace ferry::receiver
