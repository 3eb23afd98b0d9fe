#include "receiver/receiver_session.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>

#include "lib/core/session_replies.hpp"
#include "protocol/wire_path.hpp"

namespace ferry::receiver {

using protocol::FrameType;
namespace P = protocol;

namespace {
// The figures are the sender's word, or sums of its offered sizes: never wrap.
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) {
  return b > std::numeric_limits<std::uint64_t>::max() - a ? std::numeric_limits<std::uint64_t>::max() : a + b;
}
}  // namespace

ReceiverSession::ReceiverSession(ReceiverConfig config, Clock::time_point now)
    : cfg_(std::move(config)), started_(now), progress_at_(now) {}

std::vector<Action> ReceiverSession::take_actions() { return std::exchange(actions_, {}); }
std::vector<Event> ReceiverSession::take_events() { return std::exchange(events_, {}); }

void ReceiverSession::event(EventType t, std::string detail) {
  event_for(t, offer_.path, offer_.size, std::move(detail));  // the last offer's (empty before the first)
  events_.back().offset = written_;
}

void ReceiverSession::event_for(EventType t, const std::string& path, std::uint64_t size, std::string detail) {
  Event e;
  e.type = t;
  e.path = path;
  e.size = size;
  e.offset = t == EventType::file_verified ? size : 0;
  e.detail = std::move(detail);
  e.transfer = transfer();
  events_.push_back(std::move(e));
}

TransferProgress ReceiverSession::transfer() const {
  TransferProgress t = hello_progress_;
  t.files_done = sat_add(t.files_done, sat_add(totals_.files_verified, totals_.files_failed));
  t.bytes_done = sat_add(t.bytes_done, sat_add(totals_.bytes_verified, failed_bytes_));
  const bool busy = file_open_ || state_ == State::opening;
  if (busy) {
    // The current entry again after a failure: it is in progress, not done.
    if (auto it = failed_paths_.find(offer_.path); it != failed_paths_.end()) {
      t.files_done -= std::min<std::uint64_t>(t.files_done, 1);
      t.bytes_done -= std::min(t.bytes_done, it->second);
    }
    t.bytes_done = sat_add(t.bytes_done, written_);
  }
  // The sender's totals come from a count made before its walk (issue #10): a tree that
  // grew since has more than it said. Raise the total to what is done rather than cap
  // done at a total known to be too low (done <= total either way).
  if (t.files_total > 0) t.files_total = std::max(t.files_total, t.files_done);
  if (t.bytes_total > 0) t.bytes_total = std::max(t.bytes_total, t.bytes_done);
  return t;
}

void ReceiverSession::send_control(FrameType t, const std::string& body) {
  actions_.push_back(SendFrame{P::encode_frame(t, body), {}});
}

void ReceiverSession::send_ack(std::uint64_t offset) {
  auto body = P::encode_position({cur_, offset});
  actions_.push_back(SendFrame{P::encode_frame(FrameType::ack, P::Bytes(body)), {}});
}

void ReceiverSession::send_rpos(std::uint64_t offset, std::uint64_t length) {
  auto body = P::encode_resend({cur_, offset, length});
  actions_.push_back(SendFrame{P::encode_frame(FrameType::rpos, P::Bytes(body)), {}});
}

void ReceiverSession::fatal(Error e, bool flush) {
  if (state_ == State::failed) return;
  close_current(false);
  failure_ = e;
  state_ = State::failed;
  busy_since_.reset();
  actions_.push_back(CloseConnection{std::move(e), flush});
}

void ReceiverSession::violation(const std::string& what) {
  close_with_error(protocol_violation(P::Role::sender, what));
}

void ReceiverSession::close_with_error(Error e) {
  actions_.push_back(error_reply(e));
  fatal(std::move(e));
}

void ReceiverSession::refuse_entry(std::string note, bool local_io) {
  P::Answer a{cur_, P::AnswerStatus::refuse, 0, std::move(note)};
  a.local_io = local_io;
  send_control(FrameType::answer, P::to_json(a));
  state_ = State::idle;
  mark_failed(offer_.path, offer_.size);
  event(EventType::file_failed, a.note);
}

void ReceiverSession::send_failed_verdict(std::string why) {
  state_ = State::idle;
  fail_entry(cur_, offer_.path, offer_.size, std::move(why));
}

void ReceiverSession::fail_entry(std::uint32_t file_id, const std::string& path, std::uint64_t size,
                                 std::string why) {
  P::Verdict v{file_id, P::VerdictStatus::failed, std::move(why)};
  send_control(FrameType::verdict, P::to_json(v));
  mark_failed(path, size);
  event_for(EventType::file_failed, path, size, v.reason);
}

// A file fails for good only if the sender does not send it again and verify it
// later in the same session (after a digest mismatch it usually does).
// The paths are remembered only up to kMaxTrackedFailures (peer input is hostile:
// a sender offering a million bad paths must not grow this without bound); beyond
// that, failures are only counted and can no longer be taken back by a later verify.
void ReceiverSession::mark_failed(const std::string& path, std::uint64_t size) {
  if (failed_paths_.count(path) == 0 && failed_paths_.size() >= kMaxTrackedFailures) {
    ++untracked_failures_;
  } else if (failed_paths_.emplace(path, size).second) {
    failed_bytes_ = sat_add(failed_bytes_, size);
  }
  totals_.files_failed = failed_paths_.size() + untracked_failures_;
}

void ReceiverSession::unmark_failed(const std::string& path) {
  if (auto it = failed_paths_.find(path); it != failed_paths_.end()) {
    failed_bytes_ -= std::min(failed_bytes_, it->second);
    failed_paths_.erase(it);
  }
  totals_.files_failed = failed_paths_.size() + untracked_failures_;
}

void ReceiverSession::close_current(bool discard) {
  if (!file_open_) return;
  actions_.push_back(CloseFile{cur_, discard});
  file_open_ = false;
}

void ReceiverSession::on_bytes(P::Bytes bytes, Clock::time_point now) {
  if (state_ == State::failed || state_ == State::ended) return;
  auto space = input_space(bytes.size());
  if (!bytes.empty()) std::memcpy(space.data(), bytes.data(), bytes.size());
  on_input(bytes.size(), now);
}

std::span<std::byte> ReceiverSession::input_space(std::size_t at_least) {
  // The spans handed out before are no longer valid after this call. Everything
  // decoded: start over at the front, no copy. Otherwise the undecoded tail (less than a
  // frame) moves to the front only when the room behind it is too small: with room for
  // two reads, that is every other read at most, not every read.
  if (consumed_ == filled_) {
    consumed_ = filled_ = 0;
  } else if (consumed_ > 0 && inbuf_.size() - filled_ < at_least) {
    std::memmove(inbuf_.data(), inbuf_.data() + consumed_, filled_ - consumed_);
    filled_ -= consumed_;
    consumed_ = 0;
  }
  // Grows (and zero-fills) only past the largest frame seen so far: reused after that.
  if (inbuf_.size() < filled_ + at_least) inbuf_.resize(std::max(filled_ + at_least, 2 * at_least));
  return {inbuf_.data() + filled_, inbuf_.size() - filled_};
}

void ReceiverSession::on_input(std::size_t n, Clock::time_point now) {
  assert(filled_ + n <= inbuf_.size());
  filled_ += n;
  if (state_ == State::failed || state_ == State::ended) return;
  decode_input(now);
}

void ReceiverSession::decode_input(Clock::time_point now) {
  while (state_ != State::failed && state_ != State::ended) {
    // Before the handshake is complete a large frame is refused by its header alone.
    auto r = P::decode_frame(P::Bytes(inbuf_.data() + consumed_, filled_ - consumed_), max_payload());
    if (std::holds_alternative<P::NeedMore>(r)) return note_partial_frame(now);
    if (auto* m = std::get_if<P::Malformed>(&r)) {
      if (m->incompatible) {  // tell the peer why, then close
        return close_with_error(incompatible_frame(P::Role::sender, m->reason));
      }
      // The stream cannot be resynchronised: end this connection; the sender resumes.
      return fatal(make_error(Errc::connection, "corrupt frame from sender: " + m->reason));
    }
    auto& f = std::get<P::DecodedFrame>(r);
    consumed_ += f.consumed;
    partial_progress_ = 0;
    handle_frame(f, now);
  }
}

// Dispatches one frame to its handler. ERROR for: anything but HELLO first, anything
// but AUTH, ERROR, PING or PONG while the sender's AUTH is awaited, and frames only a
// receiver sends.
void ReceiverSession::handle_frame(const P::DecodedFrame& f, Clock::time_point now) {
  const FrameType type = f.header.type;
  // Progress: any whole frame but a keepalive (a PING-only peer is idle).
  if (type != FrameType::ping && type != FrameType::pong) note_progress(std::max(progress_at_, now));
  if (!f.payload_ok) return on_corrupt_payload(f);
  if (state_ == State::awaiting_hello && type != FrameType::hello) {
    return violation(std::string("expected HELLO, got ") + std::string(P::frame_type_name(type)));
  }
  if (state_ == State::awaiting_auth && type != FrameType::auth && type != FrameType::error &&
      type != FrameType::ping && type != FrameType::pong) {
    return violation(std::string("expected AUTH, got ") + std::string(P::frame_type_name(type)));
  }
  switch (type) {
    case FrameType::hello:
      return on_hello(f.payload);
    case FrameType::auth:
      return on_auth(f.payload);
    case FrameType::offer:
      if (purpose_ != P::Purpose::transfer) return inspect_offer(f.payload, now);
      return on_offer(f.payload);
    case FrameType::data:
      if (purpose_ != P::Purpose::transfer) return violation("DATA in a check or dry-run session");
      return on_data(f);
    case FrameType::commit:
      if (purpose_ != P::Purpose::transfer) return inspect_commit(f.payload);
      return on_commit(f.payload);
    case FrameType::end:
      return on_end(f.payload);
    case FrameType::error:
      return on_error(f.payload);
    case FrameType::ping:
      return on_ping(f.payload);
    case FrameType::pong:
      return;
    case FrameType::answer:
    case FrameType::ack:
    case FrameType::rpos:
    case FrameType::verdict:
    case FrameType::check:
      return violation(std::string(P::frame_type_name(type)) + " is a receiver's frame");
  }
}

// A damaged DATA frame while receiving is recovered (PROTOCOL.md 6.4): with a good
// prefix its block is reported missing; with a bad one nothing in it can be trusted, so
// the sender goes back to the contiguous point. ERROR for a good prefix naming another
// file or a misplaced block. Any other corrupt payload ends the connection
// (Errc::connection: the sender resumes).
void ReceiverSession::on_corrupt_payload(const P::DecodedFrame& f) {
  const FrameType type = f.header.type;
  if (type == FrameType::data && state_ == State::eager) {
    ++totals_.chunks_rejected;
    P::DataView d;
    if (f.data_check.prefix_ok && P::decode_data(f.payload, d) && d.file_id != eager_->offer.file_id) {
      return violation("DATA for a file not open");
    }
    eager_->damaged = eager_->got_data = true;  // its VERDICT says failed; the sender sends it again
    return;
  }
  if (type == FrameType::data && state_ == State::receiving) {
    ++totals_.chunks_rejected;
    P::DataView d;
    if (!f.data_check.prefix_ok || !P::decode_data(f.payload, d)) {
      go_back_ = unplaced_ = true;
      return;
    }
    if (d.file_id != cur_) return violation("DATA for a file not open");
    if (auto why = block_problem(d.offset, d.data.size()); !why.empty()) return violation(why);
    seen_upto_ = std::max<std::uint64_t>(seen_upto_, d.offset + d.data.size());
    if (d.offset < written_ || above_.count(d.offset) > 0) return;  // a damaged duplicate
    note_missing(d.offset);
    return;
  }
  fatal(make_error(Errc::connection, std::string("payload checksum mismatch in ") +
                                         std::string(P::frame_type_name(type)) + " from sender"));
}

// ERROR for: a second HELLO, an unparsable one, a peer that is not a sender, no common
// protocol version, no nonce; keys on one side only (Errc::authentication).
void ReceiverSession::on_hello(P::Bytes payload) {
  if (state_ != State::awaiting_hello) return violation("second HELLO");
  auto h = P::parse_hello(payload);
  if (!h) return violation(h.error().what);
  if (h->role != P::Role::sender) return violation("peer is not a sender");
  P::Hello mine;
  mine.role = P::Role::receiver;
  mine.session = h->session;
  mine.software = cfg_.software;
  if (P::negotiate_version(mine, *h) == 0) return close_with_error(no_common_version(P::Role::sender, *h));
  auto peer_nonce = P::parse_nonce_hex(h->nonce);
  if (!peer_nonce) return violation("HELLO without a nonce");
  if (cfg_.key && !h->keyed) return close_with_error(auth_key_required());
  if (!cfg_.key && h->keyed) return close_with_error(auth_key_unused());
  session_id_ = h->session;
  peer_nonce_ = *peer_nonce;
  nonce_ = cfg_.make_nonce();
  mine.nonce = P::nonce_hex(nonce_);
  mine.keyed = cfg_.key.has_value();
  send_control(FrameType::hello, P::to_json(mine));
  if (!cfg_.key) return begin_session(*h);
  pending_hello_ = std::move(*h);
  state_ = State::awaiting_auth;
}

void ReceiverSession::begin_session(const P::Hello& theirs) {
  if (cfg_.inspect_only && theirs.purpose == P::Purpose::transfer) {
    return close_with_error(make_error(
        Errc::usage, "this ferry-recv was started with --inspect-only: it answers --check and --dry-run, no transfer"));
  }
  // For display only (parse_hello checked their ranges and done <= total).
  hello_progress_ = TransferProgress{theirs.files_done.value_or(0), theirs.files_total.value_or(0),
                                     theirs.bytes_done.value_or(0), theirs.bytes_total.value_or(0)};
  purpose_ = theirs.purpose;
  list_extra_ = theirs.list_extra && theirs.purpose == P::Purpose::check;
  state_ = State::idle;
  handshake_complete_ = true;
  event(EventType::session_start, theirs.software);
}

// ERROR for: an AUTH not awaited; one that does not prove our key (Errc::authentication).
// Answers a good one with our own AUTH, which the sender checks before it offers.
void ReceiverSession::on_auth(P::Bytes payload) {
  if (state_ != State::awaiting_auth || !pending_hello_) return violation("unexpected AUTH");
  if (!P::auth_verify(*cfg_.key, {P::kProtocolVersion, session_id_, P::Role::sender, peer_nonce_, nonce_}, payload)) {
    return close_with_error(auth_wrong_key(P::Role::sender));
  }
  actions_.push_back(SendFrame{
      P::auth_frame(*cfg_.key, {P::kProtocolVersion, session_id_, P::Role::receiver, nonce_, peer_nonce_}), {}});
  const P::Hello theirs = std::move(*pending_hello_);
  pending_hello_.reset();
  begin_session(theirs);
}

// ERROR for: an OFFER while a file is opening, an unparsable one. An
// unsafe path is refused with ANSWER, not ERROR.
void ReceiverSession::on_offer(P::Bytes payload) {
  if (state_ != State::idle && state_ != State::receiving) return violation("OFFER while busy");
  auto o = P::parse_offer(payload);
  if (!o) return violation(o.error().what);
  if (o->eager) return begin_eager(*o);
  close_current(false);  // an OFFER abandons the current file; its partial stays
  cur_ = o->file_id;
  offer_ = *o;
  written_ = acked_ = seen_upto_ = 0;  // nothing of this entry yet (events report offset 0)
  above_.clear();
  missing_.clear();
  reported_.clear();
  dropped_ = go_back_ = unplaced_ = false;
  commit_digest_.reset();
  writes_pending_ = 0;  // those of the file abandoned are no longer ours to wait for
  busy_since_.reset();
  if (auto why = P::wire_path_problem(o->path)) {
    // Refused, not fatal: the sender goes on with its other files.
    return refuse_entry("unsafe path: " + *why);
  }
  if (o->kind == P::EntryKind::symlink) {
    if (auto why = link_refusal(cfg_.links, o->path, o->target)) return refuse_entry(*why);
  }
  state_ = State::opening;
  actions_.push_back(OpenFile{cur_, offer_});
}

// ERROR for: a malformed DATA body, DATA for a file not open, at an offset that is not
// a block boundary, beyond the offered size, or not exactly its block's length.
// Duplicates (below the contiguous point or already accepted) are dropped; a block past
// the kMaxHeldBlocks bound (other than the one at the contiguous point) is dropped and
// reported missing once there is room.
void ReceiverSession::on_data(const P::DecodedFrame& f) {
  P::DataView d;
  if (!P::decode_data(f.payload, d)) return violation("malformed DATA");
  if (state_ == State::eager) return on_eager_data(d, f.data_check.digest);
  if (state_ != State::receiving || d.file_id != cur_) return violation("DATA for a file not open");
  if (auto why = block_problem(d.offset, d.data.size()); !why.empty()) return violation(why);
  const std::uint64_t end = d.offset + d.data.size();
  seen_upto_ = std::max(seen_upto_, end);
  if (d.offset < written_ || above_.count(d.offset) > 0) return;  // a duplicate
  if (above_.size() >= kMaxHeldBlocks && d.offset != written_) {
    // Full. The block at the contiguous point is always taken (everything waits on it);
    // any other is dropped and found again as a hole (even one reported before).
    forget_reported(d.offset, end);
    dropped_ = true;
    return;
  }
  forget_reported(d.offset, end);
  missing_.erase(d.offset);
  above_.emplace(d.offset, Block{d.data.size(), f.data_check.digest, false});
  totals_.bytes_payload += d.data.size();
  ++writes_pending_;
  actions_.push_back(WriteChunk{cur_, d.offset, d.data, f.data_check.digest});
}

std::size_t ReceiverSession::block_length(std::uint64_t offset) const {
  return static_cast<std::size_t>(std::min<std::uint64_t>(offer_.block_size, offer_.size - offset));
}

std::string ReceiverSession::block_problem(std::uint64_t offset, std::size_t length) const {
  if (offset >= offer_.size) return "DATA beyond the offered size";
  if (offset % offer_.block_size != 0) {
    return "DATA at offset " + std::to_string(offset) + ", not a multiple of the block size " +
           std::to_string(offer_.block_size);
  }
  if (length != block_length(offset)) {
    return "DATA of " + std::to_string(length) + " bytes at offset " + std::to_string(offset) +
           ", the block there has " + std::to_string(block_length(offset));
  }
  return {};
}

void ReceiverSession::note_missing(std::uint64_t offset) {
  forget_reported(offset, offset + block_length(offset));  // found corrupt again: report again
  if (missing_.size() < kMaxHeldBlocks) {
    missing_.insert(offset);
  } else {
    dropped_ = true;  // found by find_dropped_holes() once there is room
  }
}

void ReceiverSession::forget_reported(std::uint64_t offset, std::uint64_t end) {
  auto it = reported_.upper_bound(offset);
  if (it == reported_.begin()) return;
  --it;
  const std::uint64_t from = it->first, to = it->second;
  if (offset >= to) return;
  reported_.erase(it);
  if (from < offset) reported_.emplace(from, offset);
  if (end < to) reported_.emplace(end, to);
}

// One RPOS per run of consecutive missing blocks, at most kMaxReportsPerBatch; a go-back
// replaces them all (everything from the contiguous point comes again).
void ReceiverSession::send_reports() {
  if (go_back_) {
    go_back_ = dropped_ = false;
    missing_.clear();
    reported_.clear();
    send_rpos(written_, 0);
    event(EventType::warning, "a DATA frame arrived damaged; asked to resend from offset " + std::to_string(written_));
    return;
  }
  if (dropped_) find_dropped_holes();
  std::size_t sent = 0;
  while (!missing_.empty() && sent < kMaxReportsPerBatch) {
    const std::uint64_t from = *missing_.begin();
    missing_.erase(missing_.begin());
    if (from < written_ || above_.count(from) > 0) continue;  // arrived since
    std::uint64_t to = from + block_length(from);
    while (!missing_.empty() && *missing_.begin() == to && above_.count(to) == 0) {
      missing_.erase(missing_.begin());
      to += block_length(to);
    }
    reported_[from] = to;
    send_rpos(from, to - from);
    event(EventType::warning, "blocks [" + std::to_string(from) + ", " + std::to_string(to) +
                                  ") failed their checksum; asked to resend them");
    ++sent;
  }
}

// Holes below the highest block the sender sent that are neither accepted nor reported
// (blocks dropped at the bound): noted missing as far as there is room to take them.
void ReceiverSession::find_dropped_holes() {
  std::size_t room = kMaxHeldBlocks - std::min(kMaxHeldBlocks, above_.size() + missing_.size());
  std::uint64_t at = written_;
  auto it = above_.lower_bound(written_);
  while (at < seen_upto_ && room > 0) {
    if (it != above_.end() && it->first == at) {
      at += it->second.length;
      ++it;
      continue;
    }
    auto r = reported_.upper_bound(at);
    if (r != reported_.begin() && std::prev(r)->second > at) {
      at = std::prev(r)->second;  // reported already
      continue;
    }
    if (missing_.insert(at).second) --room;
    at += block_length(at);
  }
  if (at >= seen_upto_) dropped_ = false;
}

// ERROR for: an unparsable COMMIT, one for a file not open, one with another size or
// before the sender sent every block. A digest mismatch is a failed VERDICT, not ERROR.
void ReceiverSession::on_commit(P::Bytes payload) {
  auto c = P::parse_commit(payload);
  if (!c) return violation(c.error().what);
  if (state_ == State::eager) return on_eager_commit(*c);
  if (state_ != State::receiving || c->file_id != cur_) return violation("COMMIT for a file not open");
  // A block whose prefix was damaged could have been any block: no claim then.
  const bool all_seen = unplaced_ || std::max(seen_upto_, written_) == offer_.size;
  if (c->size != offer_.size || !all_seen) {
    return violation("COMMIT before all data (have " + std::to_string(std::max(seen_upto_, written_)) + " of " +
                     std::to_string(offer_.size) + ")");
  }
  // Blocks may still be missing or being written: evaluated once the file is complete.
  commit_digest_ = c->xxh3_128;
  if (written_ == offer_.size) evaluate_commit();
}

void ReceiverSession::evaluate_commit() {
  const std::string theirs = *commit_digest_;
  commit_digest_.reset();
  if (digest_.hex() != theirs) {
    close_current(true);
    // No digest in the reason: the receiver's one may be of a file already in DEST (a
    // small secret file could be brute-forced from it).
    return send_failed_verdict("whole-file digest mismatch");
  }
  // Version 6: committed while the sender goes on (it no longer waits for the VERDICT
  // once every byte is acknowledged); answered by id in finish_small_file.
  if (pending_files_ > P::kMaxCommittingFiles) {
    return violation("more files committing than " + std::to_string(P::kMaxCommittingFiles) + " and the current one");
  }
  pending_.push_back(PendingCommit{cur_, offer_.path, offer_.size, Pending::file});
  ++pending_files_;
  file_open_ = false;  // the driver's commit owns it now
  state_ = State::idle;
  actions_.push_back(CommitFile{cur_});
}

// ERROR for: an unparsable END, or one while a file is opening or any entry commits.
void ReceiverSession::on_end(P::Bytes payload) {
  auto e = P::parse_end(payload);
  if (!e) return violation(e.error().what);
  if ((state_ != State::idle && state_ != State::receiving && state_ != State::awaiting_commit) ||
      !pending_.empty()) {
    return violation("END while a file is busy");
  }
  close_current(false);  // the sender gave up on its last file (e.g. it shrank): keep the partial
  P::End mine{totals_.files_verified, totals_.bytes_verified};
  send_control(FrameType::end, P::to_json(mine));
  state_ = State::ended;
}

// Never answered with ERROR: the sender is closing; this connection fails (Errc::protocol).
void ReceiverSession::on_error(P::Bytes payload) {
  auto e = P::parse_error(payload);
  std::string msg = e ? e->code + ": " + e->message : "unreadable ERROR frame";
  fatal(make_error(Errc::protocol, "sender reported an error: " + msg));
}

// ERROR for: a payload that is not an 8-byte nonce.
void ReceiverSession::on_ping(P::Bytes payload) {
  auto pong = pong_reply(payload);
  if (!pong) return violation("malformed PING");
  actions_.push_back(std::move(*pong));
}

void ReceiverSession::on_file_opened(std::uint32_t file_id, Result<OpenedFile> r, Clock::time_point now) {
  if (state_ != State::opening || file_id != cur_) return;  // connection already failed
  busy_since_.reset();
  note_progress(now);  // our own work ended: the sender's clock starts again
  if (!r) return refuse_entry(r.error().message(), r.error().code == Errc::local_io);
  if (offer_.kind != P::EntryKind::file) {  // a directory or a symlink: the ANSWER is all
    P::Answer a{cur_, P::AnswerStatus::accept, 0, {}};
    a.created = offer_.kind == P::EntryKind::directory && r->created;
    send_control(FrameType::answer, P::to_json(a));
    ++totals_.files_verified;
    unmark_failed(offer_.path);
    state_ = State::idle;
    event(EventType::file_verified, offer_.kind == P::EntryKind::directory ? "directory" : "symlink");
    return;
  }
  if (r->offset > offer_.size || (r->offset % offer_.block_size != 0 && r->offset != offer_.size)) {
    // The driver's contract; treat as a local fault.
    return fatal(
        make_error(Errc::internal, "partial's resume offset is not a block boundary of the file: " + offer_.path));
  }
  file_open_ = true;
  // The sender reads and hashes what it may skip before it sends anything more.
  std::uint64_t skipped = r->offset;
  for (const auto& b : r->held) skipped += b.length;
  note_progress(now + std::chrono::milliseconds(skipped / (kMinSenderHashRate / 1000)));
  digest_ = r->prefix;
  written_ = seen_upto_ = r->offset;
  std::vector<P::ByteRange> held = take_held(r->held);
  advance_written();  // held blocks right at the offset
  acked_ = written_;
  state_ = State::receiving;
  std::erase_if(held, [&](const P::ByteRange& h) { return h.offset < written_; });
  P::Answer a{cur_, P::AnswerStatus::accept, written_, r->note, std::move(held)};
  send_control(FrameType::answer, P::to_json(a));
  event(EventType::file_start);
  if (!r->note.empty()) event(EventType::warning, r->note);
  if (written_ > 0 || !a.held.empty()) event(EventType::resume);
}

// Held blocks are the driver's word, checked anyway (sorted, above the offset, whole
// blocks); they count as written and feed the file digest in order.
std::vector<P::ByteRange> ReceiverSession::take_held(const std::vector<HeldBlock>& held) {
  std::vector<P::ByteRange> ranges;
  std::uint64_t last_end = written_;
  for (const auto& h : held) {
    if (h.offset < last_end || h.offset >= offer_.size || h.offset % offer_.block_size != 0 ||
        h.length != block_length(h.offset) || above_.size() >= kMaxHeldBlocks) {
      continue;
    }
    if (ranges.empty() || ranges.back().offset + ranges.back().length != h.offset) {
      if (ranges.size() == P::kMaxHeldRanges) break;  // not listed, not counted
      ranges.push_back({h.offset, 0});
    }
    ranges.back().length += h.length;
    above_.emplace(h.offset, Block{h.length, h.digest, true});
    last_end = h.offset + h.length;
    seen_upto_ = std::max(seen_upto_, last_end);
  }
  return ranges;
}

void ReceiverSession::advance_written() {
  while (!above_.empty() && above_.begin()->first == written_ && above_.begin()->second.written) {
    digest_.add_block(above_.begin()->second.digest);
    written_ += above_.begin()->second.length;
    above_.erase(above_.begin());
  }
}

void ReceiverSession::on_chunk_written(std::uint32_t file_id, std::uint64_t offset, std::uint64_t length,
                                       Result<void> r, Clock::time_point now) {
  if (!file_open_ || file_id != cur_ || state_ == State::failed) return;
  if (!r) {
    // A local write failure (ENOSPC, EIO): tell the sender and end this connection.
    // The journal describes only what was written before; a later run resumes.
    event(EventType::file_failed, r.error().message());
    return close_with_error(r.error());
  }
  auto it = above_.find(offset);
  if (it == above_.end() || it->second.length != length || it->second.written) return;  // not ours
  it->second.written = true;
  if (writes_pending_ > 0) --writes_pending_;
  note_progress(std::max(progress_at_, now));
  advance_written();
  if (written_ - acked_ >= cfg_.window / 4) {
    acked_ = written_;
    send_ack(acked_);
  }
  if (commit_digest_ && written_ == offer_.size && state_ == State::receiving) evaluate_commit();
}

void ReceiverSession::on_input_drained(Clock::time_point) {
  if (!file_open_ || state_ == State::failed) return;
  if (written_ != acked_) {
    acked_ = written_;
    send_ack(acked_);
    event(EventType::progress);
  }
  if (state_ == State::receiving) send_reports();
}

void ReceiverSession::on_file_committed(std::uint32_t file_id, Result<void> r, Clock::time_point now) {
  if (finish_small_file(file_id, r)) note_progress(now);
}

void ReceiverSession::on_disconnected(const Error& why, Clock::time_point) {
  if (state_ == State::ended || state_ == State::failed) return;
  // A commit in flight completes on its own; anything else open keeps its journal.
  close_current(false);
  failure_ = why;
  state_ = State::failed;
  busy_since_.reset();
  event(EventType::connection_lost, why.message());
}

void ReceiverSession::on_path_busy(std::uint32_t file_id, Clock::time_point now) {
  if (state_ != State::opening || file_id != cur_ || busy_since_) return;
  busy_since_ = now;
}

// NeedMore with a whole header buffered means the header passed every check of
// decode_frame (magic, header check, known type, length within the limit).
void ReceiverSession::note_partial_frame(Clock::time_point now) {
  const std::size_t tail = filled_ - consumed_;
  if (!handshake_complete_ || tail < P::kHeaderSize || tail < partial_progress_ + kProgressBytes) return;
  if (static_cast<FrameType>(std::to_integer<std::uint8_t>(inbuf_[consumed_ + 3])) != FrameType::data) return;
  partial_progress_ = tail;
  note_progress(std::max(progress_at_, now));
}

void ReceiverSession::on_path_free(std::uint32_t file_id) {
  if (state_ == State::opening && file_id == cur_) busy_since_.reset();
}

bool ReceiverSession::waiting_on_peer() const {
  switch (state_) {
    case State::idle:
      return pending_.empty();  // else our batch commit of its eager files runs
    case State::eager:          // the eager file's DATA and COMMIT are the sender's
    case State::awaiting_commit:  // the check's COMMIT is the sender's
    case State::ended:  // a sender that said END and stays connected holds a slot
      return true;
    case State::receiving:
      return writes_pending_ == 0;  // else the sender waits for our writes
    case State::awaiting_hello:     // the handshake deadline applies instead
    case State::awaiting_auth:
    case State::opening:            // our open, or the busy wait
    case State::inspecting:         // our read-only look (a digest may take long)
    case State::failed:
      return false;
  }
  return false;
}

std::optional<Clock::time_point> ReceiverSession::next_deadline() const {
  if (state_ == State::failed) return std::nullopt;
  if (!handshake_complete_) return started_ + cfg_.handshake_timeout;
  if (busy_since_) return *busy_since_ + cfg_.busy_timeout;
  if (waiting_on_peer()) return progress_at_ + cfg_.peer_timeout;
  return std::nullopt;
}

namespace {
std::string seconds_text(std::chrono::milliseconds d) {
  const auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}
}  // namespace

void ReceiverSession::on_timeout(Clock::time_point now) {
  const auto deadline = next_deadline();
  if (!deadline || now < *deadline) return;
  if (busy_since_) {
    // Refused, not fatal: the sender goes on with its other files, and may try again.
    busy_since_.reset();
    return refuse_entry("busy: the file is being received on another connection for more than " +
                        seconds_text(cfg_.busy_timeout) + "; try again later");
  }
  const std::string why = !handshake_complete_
                              ? "no complete handshake from the sender within " + seconds_text(cfg_.handshake_timeout)
                              : "no progress from the sender for " + seconds_text(cfg_.peer_timeout);
  event(EventType::warning, "connection closed: " + why);
  fatal(make_error(Errc::connection, why), false);
}

}  // namespace ferry::receiver

namespace ferry::receiver {

// ERROR for: an eager OFFER while a file is opening, beyond the bounds of
// eager files in flight (kMaxEagerFiles, kMaxEagerBytes). An unsafe path is refused
// with ANSWER (its DATA and COMMIT are then dropped).
void ReceiverSession::begin_eager(const P::Offer& o) {
  if (pending_.size() - pending_files_ >= P::kMaxEagerFiles || pending_bytes_ + o.size > P::kMaxEagerBytes) {
    return violation("more eager files in flight than " + std::to_string(P::kMaxEagerFiles) + " or " +
                     std::to_string(P::kMaxEagerBytes) + " bytes");
  }
  close_current(false);  // an OFFER abandons the current file; its partial stays
  cur_ = o.file_id;
  offer_ = o;
  written_ = acked_ = seen_upto_ = 0;
  commit_digest_.reset();
  if (o.kind == P::EntryKind::directory) return begin_eager_directory(o);
  state_ = State::eager;
  eager_ = EagerFile{o, {}, 0, false, false, false};
  if (auto why = P::wire_path_problem(o.path)) {
    eager_->refused = true;
    P::Answer a{cur_, P::AnswerStatus::refuse, 0, "unsafe path: " + *why};
    send_control(FrameType::answer, P::to_json(a));
    mark_failed(o.path, o.size);
    event(EventType::file_failed, a.note);
  }
}

// Version 6: an eager directory is made in the batch, with the eager files around it;
// nothing follows its OFFER. Its one ANSWER (accept or refuse) comes with the batch's
// outcome (finish_small_file).
void ReceiverSession::begin_eager_directory(const P::Offer& o) {
  state_ = State::idle;
  if (auto why = P::wire_path_problem(o.path)) return refuse_entry("unsafe path: " + *why);
  pending_.push_back(PendingCommit{o.file_id, o.path, 0, Pending::eager_directory});
  actions_.push_back(CommitSmallFile{o.file_id, o, {}});
}

// ERROR for: DATA for another file, a second DATA, one that is not the whole file.
void ReceiverSession::on_eager_data(const P::DataView& d, std::uint64_t digest) {
  EagerFile& e = *eager_;
  if (d.file_id != e.offer.file_id) return violation("DATA for a file not open");
  if (e.got_data) return violation("a second DATA for an eager file");
  if (d.offset != 0 || d.data.size() != e.offer.size) return violation("DATA of an eager file is not the whole file");
  e.got_data = true;
  if (e.refused) return;
  e.data.assign(d.data.begin(), d.data.end());
  e.block_digest = digest;
  totals_.bytes_payload += d.data.size();
}

// ERROR for: a COMMIT for another file, of another size, or before the DATA.
void ReceiverSession::on_eager_commit(const P::Commit& c) {
  EagerFile& e = *eager_;
  if (c.file_id != e.offer.file_id) return violation("COMMIT for a file not open");
  if (c.size != e.offer.size || (e.offer.size > 0 && !e.got_data)) {
    return violation("COMMIT of an eager file before its data");
  }
  EagerFile file = std::move(*eager_);
  eager_.reset();
  state_ = State::idle;
  if (file.refused) return;
  P::FileDigest digest;
  if (file.offer.size > 0) digest.add_block(file.block_digest);
  if (file.damaged) return fail_entry(c.file_id, file.offer.path, file.offer.size, "its data arrived damaged");
  if (digest.hex() != c.xxh3_128) {
    return fail_entry(c.file_id, file.offer.path, file.offer.size, "whole-file digest mismatch");
  }
  event(EventType::file_start);
  pending_.push_back(PendingCommit{c.file_id, file.offer.path, file.offer.size, Pending::eager_file});
  pending_bytes_ += file.offer.size;
  actions_.push_back(CommitSmallFile{c.file_id, std::move(file.offer), std::move(file.data)});
}

bool ReceiverSession::finish_small_file(std::uint32_t file_id, const Result<void>& r) {
  auto it = std::find_if(pending_.begin(), pending_.end(), [&](const PendingCommit& p) { return p.file_id == file_id; });
  if (it == pending_.end()) return false;
  const PendingCommit done = std::move(*it);
  pending_.erase(it);
  if (done.kind == Pending::eager_file) pending_bytes_ -= done.size;
  if (done.kind == Pending::file) --pending_files_;
  if (state_ == State::failed) return true;  // the sender left: it asks again
  if (done.kind == Pending::eager_directory) {
    finish_eager_directory(done, r);
    return true;
  }
  if (!r) {
    fail_entry(done.file_id, done.path, done.size, r.error().message());
    return true;
  }
  ++totals_.files_verified;
  totals_.bytes_verified += done.size;
  unmark_failed(done.path);
  send_control(FrameType::verdict, P::to_json(P::Verdict{done.file_id, P::VerdictStatus::verified, {}}));
  event_for(EventType::file_verified, done.path, done.size);
  return true;
}

void ReceiverSession::finish_eager_directory(const PendingCommit& done, const Result<void>& r) {
  P::Answer a{done.file_id, r ? P::AnswerStatus::accept : P::AnswerStatus::refuse, 0, {}};
  if (!r) {
    a.note = r.error().message();
    a.local_io = r.error().code == Errc::local_io;
    send_control(FrameType::answer, P::to_json(a));
    mark_failed(done.path, 0);
    return event_for(EventType::file_failed, done.path, 0, a.note);
  }
  send_control(FrameType::answer, P::to_json(a));
  ++totals_.files_verified;
  unmark_failed(done.path);
  event_for(EventType::file_verified, done.path, 0, "directory");
}

}  // namespace ferry::receiver

namespace ferry::receiver {

std::optional<std::string> link_refusal(LinkPolicy policy, std::string_view wire_path, std::string_view target) {
  if (policy == LinkPolicy::all) return std::nullopt;
  if (policy == LinkPolicy::none) return std::string("symlinks refused by the receiver (--no-links)");
  if (target.starts_with('/')) return std::string("unsafe symlink: absolute target refused (--safe-links)");
  // Depth below DEST of the directory that holds the link, then of each step of the target.
  long depth = static_cast<long>(std::count(wire_path.begin(), wire_path.end(), '/'));
  std::size_t at = 0;
  while (at <= target.size()) {
    const std::size_t slash = std::min(target.find('/', at), target.size());
    const std::string_view comp = target.substr(at, slash - at);
    if (comp == "..") {
      if (--depth < 0) return std::string("unsafe symlink: target climbs out of the destination (--safe-links)");
    } else if (!comp.empty() && comp != ".") {
      ++depth;
    }
    at = slash + 1;
  }
  return std::nullopt;
}

}  // namespace ferry::receiver
