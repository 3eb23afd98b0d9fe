#include "sender/sender_session.hpp"

#include <algorithm>
#include <cassert>
#include <limits>

#include "lib/core/session_replies.hpp"

namespace ferry::sender {

using protocol::FrameType;
namespace P = protocol;

SenderSession::SenderSession(SenderConfig config, std::vector<SourceEntry> entries, Clock::time_point now)
    : SenderSession(std::move(config), std::make_unique<VectorEntrySource>(std::move(entries)), now) {}

SenderSession::SenderSession(SenderConfig config, std::unique_ptr<EntrySource> source, Clock::time_point now)
    : cfg_(std::move(config)), source_(std::move(source)) {
  assert(cfg_.window >= cfg_.chunk_size);
  assert(source_);
  expected_ = source_->expected();
  last_rx_ = last_ack_progress_ = last_ping_ = now;
}

std::vector<Action> SenderSession::take_actions() {
  release_retired();
  return std::exchange(actions_, {});
}

// Entries finished before the previous take_actions(): every action that named them
// has been performed by now (drive() performs a round before it takes the next).
void SenderSession::release_retired() {
  for (const auto index : retiring_) entries_.erase(index);
  retiring_ = std::exchange(retired_, {});
}

bool SenderSession::pull_entry() {
  if (source_ended_) return false;
  auto e = pulled_ < std::numeric_limits<std::uint32_t>::max() ? source_->next() : std::nullopt;
  if (!e) {
    source_ended_ = true;  // from here on the totals are exact
    settle_extra(nullptr);
    return false;
  }
  settle_extra(&e->wire_path);
  pulled_bytes_ += e->size;
  entries_.emplace(pulled_++, std::move(*e));
  peak_entries_held_ = std::max(peak_entries_held_, entries_.size());
  return true;
}

void SenderSession::replace_entry(std::uint32_t index, SourceEntry now_entry) {
  SourceEntry& held = entries_.at(index);
  pulled_bytes_ = pulled_bytes_ - held.size + now_entry.size;
  expected_.bytes = expected_.bytes - std::min(expected_.bytes, held.size) + now_entry.size;
  held = std::move(now_entry);
}

std::uint64_t SenderSession::files_total() const {
  return source_ended_ ? pulled_ : std::max<std::uint64_t>(expected_.files, pulled_);
}

std::uint64_t SenderSession::bytes_total() const {
  return source_ended_ ? pulled_bytes_ : std::max(expected_.bytes, pulled_bytes_);
}
std::vector<Event> SenderSession::take_events() { return std::exchange(events_, {}); }

std::uint64_t SenderSession::in_flight() const { return next_read_ > acked_ ? next_read_ - acked_ : 0; }

std::size_t SenderSession::max_blocks() const {
  return static_cast<std::size_t>(cfg_.window / cfg_.chunk_size) + cfg_.max_reads_in_flight;
}

std::size_t SenderSession::block_length(std::uint64_t offset) const {
  return static_cast<std::size_t>(std::min<std::uint64_t>(cfg_.chunk_size, entry(cur_).size - offset));
}

bool SenderSession::is_held(std::uint64_t offset, std::uint64_t end) const {
  return std::any_of(held_.begin(), held_.end(),
                     [&](const P::ByteRange& r) { return r.offset <= offset && end <= r.offset + r.length; });
}

Result<void> SenderSession::outcome() const {
  if (failure_) return *failure_;
  if (totals_.files_failed == 0) return {};
  const std::string count = std::to_string(totals_.files_failed) + " of " + std::to_string(files_total());
  if (files_failed_verification_ == totals_.files_failed) {
    return make_error(Errc::verification, count + " entries failed verification");
  }
  // Nothing delivered because file operations failed (a source unreadable here, or a
  // receiver that could not write: ANSWER `local_io`) is local I/O, not "partial".
  if (totals_.files_verified == 0 && files_failed_io_ == totals_.files_failed) {
    return make_error(Errc::local_io, "nothing delivered: " + count + " entries failed (first: " + first_failure_ + ")");
  }
  return make_error(Errc::partial, count + " entries failed");
}

TransferProgress SenderSession::transfer() const {
  return TransferProgress{files_done_, files_total(), bytes_done_ + committing_bytes_ + cur_done_, bytes_total()};
}

void SenderSession::event(EventType t, std::string detail) { event_for(cur_, t, acked_, std::move(detail)); }

void SenderSession::event_for(std::uint32_t index, EventType t, std::uint64_t offset, std::string detail) {
  Event e;
  e.type = t;
  if (auto it = entries_.find(index); it != entries_.end()) {
    e.path = it->second.wire_path;
    e.size = it->second.size;
  }
  e.offset = offset;
  e.detail = std::move(detail);
  e.transfer = transfer();
  events_.push_back(std::move(e));
}

void SenderSession::send_control(FrameType t, const std::string& body) {
  actions_.push_back(SendFrame{P::encode_frame(t, body), {}});
}

void SenderSession::fail(Error e) {
  if (finished()) return;
  failure_ = std::move(e);
  state_ = State::failed;
  token_base_ = next_token_;
  ready_.clear();
  resend_.clear();
  clear_eager();
  eager_tokens_.clear();
  if (connected_) {
    actions_.push_back(CloseConnection{*failure_});
    connected_ = false;
  }
}

void SenderSession::drop_connection(Error e, Clock::time_point now) {
  if (!connected_) return;
  actions_.push_back(CloseConnection{e, /*flush=*/false});
  on_disconnected(e, now);
}

void SenderSession::on_connected(Clock::time_point now) {
  if (finished()) return;
  connected_ = true;
  inbuf_.clear();
  last_rx_ = last_ack_progress_ = last_ping_ = now;
  state_ = State::awaiting_hello;
  P::Hello h;
  h.role = P::Role::sender;
  h.session = cfg_.session_id;
  h.software = cfg_.software;
  nonce_ = cfg_.make_nonce();
  h.nonce = P::nonce_hex(nonce_);
  h.keyed = cfg_.key.has_value();
  h.purpose = cfg_.purpose;
  h.list_extra = cfg_.list_extra && cfg_.purpose == P::Purpose::check;
  // Informative totals for the receiver's display: only finished entries count as
  // done, since the receiver adds what it holds of the current file itself.
  // (Sizes beyond the field's range, 2^63-1 bytes, are left out rather than refused.)
  // Until the source ended the totals are the count made ahead of the walk, corrected by
  // what the walk met so far (a receiver raises them if more arrive).
  h.files_total = files_total();
  h.files_done = files_done_;
  if (bytes_total() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    h.bytes_total = bytes_total();
    h.bytes_done = bytes_done_;
  }
  send_control(FrameType::hello, P::to_json(h));
}

void SenderSession::on_disconnected(const Error& why, Clock::time_point) {
  if (!connected_ || finished()) return;
  if (state_ == State::awaiting_end) {
    // Every entry already has its verdict; only the receiver's END reply was lost.
    connected_ = false;
    state_ = State::done;
    event(EventType::warning, "connection lost before the receiver confirmed END (" + why.message() +
                                  "); every file already has its verdict");
    return;
  }
  connected_ = false;
  state_ = State::disconnected;
  token_base_ = next_token_;  // reads in flight are for the old connection
  ready_.clear();
  resend_.clear();
  resend_reads_ = 0;
  prefix_token_ = 0;
  requeue_eager();
  last_connection_error_ = why;
  event(EventType::connection_lost, why.message());
}

void SenderSession::on_bytes(P::Bytes bytes, Clock::time_point now) {
  if (!connected_) return;
  inbuf_.insert(inbuf_.end(), bytes.begin(), bytes.end());
  std::size_t pos = 0;
  while (connected_ && !finished()) {
    auto r = P::decode_frame(P::Bytes(inbuf_).subspan(pos));
    if (std::holds_alternative<P::NeedMore>(r)) break;
    if (auto* m = std::get_if<P::Malformed>(&r)) {
      if (m->incompatible) {  // no reconnect can help: say why and stop
        return close_with_error(incompatible_frame(P::Role::receiver, m->reason));
      }
      drop_connection(make_error(Errc::connection, "corrupt frame from receiver: " + m->reason), now);
      return;
    }
    auto& f = std::get<P::DecodedFrame>(r);
    pos += f.consumed;
    last_rx_ = now;
    if (!f.payload_ok) {
      drop_connection(make_error(Errc::connection, std::string("payload checksum mismatch in ") +
                                                       std::string(P::frame_type_name(f.header.type)) +
                                                       " from receiver"),
                      now);
      return;
    }
    handle_frame(f, now);
  }
  if (connected_) inbuf_.erase(inbuf_.begin(), inbuf_.begin() + static_cast<std::ptrdiff_t>(pos));
}

// Dispatches one intact frame to its handler. ERROR for: anything but HELLO or ERROR
// before the receiver's HELLO, anything but AUTH, ERROR, PING or PONG before its AUTH,
// and frames only a sender sends.
void SenderSession::handle_frame(const P::DecodedFrame& f, Clock::time_point now) {
  const FrameType type = f.header.type;
  if (state_ == State::awaiting_hello && type != FrameType::hello && type != FrameType::error) {
    return violation(std::string("expected HELLO, got ") + std::string(P::frame_type_name(type)));
  }
  if (state_ == State::awaiting_auth && type != FrameType::auth && type != FrameType::error &&
      type != FrameType::ping && type != FrameType::pong) {
    return violation(std::string("expected AUTH, got ") + std::string(P::frame_type_name(type)));
  }
  switch (type) {
    case FrameType::hello:
      return on_hello(f.payload, now);
    case FrameType::auth:
      return on_auth(f.payload, now);
    case FrameType::answer:
      return on_answer(f.payload, now);
    case FrameType::ack:
      return on_ack(f.payload, now);
    case FrameType::rpos:
      return on_rpos(f.payload, now);
    case FrameType::verdict:
      return on_verdict(f.payload, now);
    case FrameType::end:
      return on_end(f.payload);
    case FrameType::error:
      return on_error(f.payload);
    case FrameType::ping:
      return on_ping(f.payload);
    case FrameType::pong:
      return;  // last_rx_ already updated
    case FrameType::check:
      return on_check(f.payload, now);
    case FrameType::offer:
    case FrameType::data:
    case FrameType::commit:
      return violation(std::string(P::frame_type_name(type)) + " is a sender's frame");
  }
}

void SenderSession::violation(const std::string& what) {
  close_with_error(protocol_violation(P::Role::receiver, what));
}

void SenderSession::close_with_error(Error e) {
  actions_.push_back(error_reply(e));
  fail(std::move(e));
}

// ERROR for: a second HELLO, an unparsable one, a peer that is not a receiver, no
// common protocol version, a HELLO that echoes another session id.
void SenderSession::on_hello(P::Bytes payload, Clock::time_point now) {
  if (state_ != State::awaiting_hello) return violation("second HELLO");
  auto h = P::parse_hello(payload);
  if (!h) return violation(h.error().what);
  if (h->role != P::Role::receiver) return violation("peer is not a receiver");
  P::Hello mine;
  if (P::negotiate_version(mine, *h) == 0) return close_with_error(no_common_version(P::Role::receiver, *h));
  if (h->session != cfg_.session_id) return violation("HELLO echoes another session id");
  authenticate(*h, now);
}

// ERROR for: a HELLO without a nonce; keys on one side only (Errc::authentication).
void SenderSession::authenticate(const P::Hello& theirs, Clock::time_point now) {
  auto peer_nonce = P::parse_nonce_hex(theirs.nonce);
  if (!peer_nonce) return violation("HELLO without a nonce");
  peer_nonce_ = *peer_nonce;
  if (cfg_.key && !theirs.keyed) return close_with_error(auth_key_unused());
  if (!cfg_.key && theirs.keyed) return close_with_error(auth_key_required());
  if (!cfg_.key) {
    event(EventType::session_start, theirs.software);
    return start_offering(now);
  }
  actions_.push_back(SendFrame{
      P::auth_frame(*cfg_.key, {P::kProtocolVersion, cfg_.session_id, P::Role::sender, nonce_, peer_nonce_}), {}});
  state_ = State::awaiting_auth;
  software_ = theirs.software;
}

// ERROR for: an AUTH not awaited; one that does not prove our key (Errc::authentication).
// Only after it does the receiver learn anything about the files (the first OFFER).
void SenderSession::on_auth(P::Bytes payload, Clock::time_point now) {
  if (state_ != State::awaiting_auth) return violation("unexpected AUTH");
  if (!P::auth_verify(*cfg_.key, {P::kProtocolVersion, cfg_.session_id, P::Role::receiver, peer_nonce_, nonce_},
                      payload)) {
    return close_with_error(auth_wrong_key(P::Role::receiver));
  }
  event(EventType::session_start, software_);
  start_offering(now);
}

void SenderSession::start_offering(Clock::time_point now) {
  if (has_current_) return offer_current(now);  // again, after a lost connection
  state_ = State::pipelining;
  advance(now);
}

// ERROR for: an unparsable ANSWER, one not awaited or for another entry, an offset
// beyond the offered size.
void SenderSession::on_answer(P::Bytes payload, Clock::time_point now) {
  auto a = P::parse_answer(payload);
  if (!a) return violation(a.error().what);
  if (inspecting()) return inspect_answer(std::move(*a), now);
  if (on_eager_answer(*a, now)) return;
  if (state_ != State::awaiting_answer || a->file_id != cur_) return violation("unexpected ANSWER");
  const auto& ent = entry(cur_);
  if (a->status == P::AnswerStatus::refuse) {
    finish_file(false, refusal_reason(*a));
    return next_entry(now);
  }
  if (ent.kind == P::EntryKind::directory) {
    if (a->created) created_dirs_.insert(ent.wire_path);
    finish_file(true, {});
    return next_entry(now);
  }
  if (ent.kind == P::EntryKind::symlink) {  // version 4: the ANSWER is all there is
    if (a->offset != 0 || !a->held.empty()) return violation("ANSWER for a symlink with an offset or held ranges");
    finish_file(true, {});
    return next_entry(now);
  }
  if (auto why = answer_problem(*a); !why.empty()) return violation(why);
  held_ = std::move(a->held);
  if (!a->note.empty()) event(EventType::warning, a->note);
  resume_at(a->offset, now);
}

std::string SenderSession::answer_problem(const P::Answer& a) const {
  const std::uint64_t size = entry(cur_).size;
  const std::uint64_t b = cfg_.chunk_size;
  if (a.offset > size) return "ANSWER offset beyond the file size";
  if (a.offset % b != 0 && a.offset != size) return "ANSWER offset " + std::to_string(a.offset) + " not a block boundary";
  for (const auto& r : a.held) {
    const std::uint64_t end = r.offset + r.length;
    if (end > size || end < r.offset) return "ANSWER held range beyond the file size";
    if (r.offset % b != 0 || (end % b != 0 && end != size)) return "ANSWER held range not on block boundaries";
  }
  return {};
}

void SenderSession::resume_at(std::uint64_t offset, Clock::time_point now) {
  if (offset > 0) {
    acked_ = next_read_ = next_send_ = offset;
    note_acked();
    event(EventType::resume, offset == entry(cur_).size ? "already complete, verifying" : "");
  }
  if (offset > prog_.hashed_upto) {
    // The receiver holds more than this process has hashed: hash that prefix first.
    prog_.digest = P::FileDigest();
    prog_.hashed_upto = 0;
    prefix_token_ = next_token_++;
    state_ = State::hashing_prefix;
    actions_.push_back(HashPrefix{cur_, offset, cfg_.chunk_size, prefix_token_});
    return;
  }
  start_streaming(offset, now);
}

// ERROR as take_position().
void SenderSession::on_ack(P::Bytes payload, Clock::time_point now) {
  if (!take_position(payload, now)) return;
  event(EventType::progress);
  if (state_ == State::awaiting_verdict) commit_in_background(now);
  pump(now);  // as on every ACK (nothing to do unless streaming or awaiting a verdict)
}

// ERROR for: a malformed body, an RPOS for a file not offered yet, an offset outside
// [acknowledged, sent], a range not on block boundaries (PROTOCOL.md 6.4).
void SenderSession::on_rpos(P::Bytes payload, Clock::time_point now) {
  P::Resend r;
  if (!P::decode_resend(payload, r)) return violation("malformed RPOS body");
  if (!position_current(r.file_id, "RPOS")) return;
  const std::uint64_t size = entry(cur_).size;
  const std::uint64_t end = r.offset + r.length;
  if (r.offset % cfg_.chunk_size != 0 && r.offset != size) return violation("RPOS offset not a block boundary");
  if (r.length == 0) {
    if (!acknowledge(r.offset, now)) return;
    return go_back(r.offset, now);
  }
  if (r.offset < acked_ || end > sent_hw_ || (end % cfg_.chunk_size != 0 && end != size)) {
    return violation("RPOS range [" + std::to_string(r.offset) + ", " + std::to_string(end) + ") outside [" +
                     std::to_string(acked_) + ", " + std::to_string(sent_hw_) + ") or not on block boundaries");
  }
  queue_resend(r, now);
}

void SenderSession::queue_resend(const P::Resend& r, Clock::time_point now) {
  ++totals_.chunks_rejected;
  // Blocks at or above next_send_ go out in order anyway (after a go-back).
  for (std::uint64_t off = r.offset; off < r.offset + r.length && off < next_send_; off += cfg_.chunk_size) {
    resend_.insert(off);
  }
  event(EventType::warning, "blocks [" + std::to_string(r.offset) + ", " + std::to_string(r.offset + r.length) +
                                ") failed their checksum on the receiver; re-sending them");
  pump(now);
}

void SenderSession::go_back(std::uint64_t offset, Clock::time_point now) {
  // zmodem's ZRPOS: the receiver could not trust a DATA prefix; everything from here is
  // re-sent (it drops what it already holds). COMMIT, if sent, is not repeated.
  ++totals_.chunks_rejected;
  token_base_ = next_token_;
  ready_.clear();
  resend_.clear();
  resend_reads_ = 0;
  next_read_ = next_send_ = offset;
  event(EventType::warning,
        "a chunk near offset " + std::to_string(offset) + " arrived damaged on the receiver; re-sending from there");
  pump(now);
}

std::optional<std::uint64_t> SenderSession::take_position(P::Bytes payload, Clock::time_point now) {
  P::Position p;
  if (!P::decode_position(payload, p)) {
    violation("malformed ACK body");
    return std::nullopt;
  }
  if (!position_current(p.file_id, "ACK") || !acknowledge(p.offset, now)) return std::nullopt;
  return p.offset;
}

bool SenderSession::position_current(std::uint32_t file_id, const char* what) {
  if ((state_ != State::streaming && state_ != State::awaiting_verdict) || file_id != cur_) {
    // Positions for an attempt we abandoned (the source changed, the file failed)
    // were in flight when we moved on: stale, not a violation.
    if (file_id >= next_new_) violation(std::string(what) + " for a file not offered yet");
    return false;
  }
  return true;
}

std::uint64_t SenderSession::ack_limit() const {
  std::uint64_t limit = std::max(sent_hw_, next_send_);
  for (const auto& r : held_) {  // sorted: each range may extend the limit
    if (r.offset <= limit) limit = std::max(limit, r.offset + r.length);
  }
  return limit;
}

bool SenderSession::acknowledge(std::uint64_t offset, Clock::time_point now) {
  if (offset < acked_ || offset > ack_limit()) {
    violation("ACK/RPOS offset " + std::to_string(offset) + " outside [" + std::to_string(acked_) + ", " +
              std::to_string(ack_limit()) + "]");
    return false;
  }
  if (offset > acked_) last_ack_progress_ = now;
  acked_ = offset;
  note_acked();
  return true;
}

// ERROR for: an unparsable VERDICT, one not awaited or for another entry.
void SenderSession::on_verdict(P::Bytes payload, Clock::time_point now) {
  auto v = P::parse_verdict(payload);
  if (!v) return violation(v.error().what);
  if (on_eager_verdict(*v, now)) return;
  if (on_committing_verdict(*v, now)) return;
  if (state_ != State::awaiting_verdict || v->file_id != cur_) return violation("unexpected VERDICT");
  if (v->status == P::VerdictStatus::verified) {
    acked_ = entry(cur_).size;
    finish_file(true, {});
    return next_entry(now);
  }
  ++prog_.attempts;
  if (prog_.attempts >= cfg_.max_file_attempts) {
    ++files_failed_verification_;
    finish_file(false, "verification failed " + std::to_string(prog_.attempts) + " times: " + v->reason);
    return next_entry(now);
  }
  event(EventType::warning, "verification failed (" + v->reason + "); sending the file again");
  restart_file(now);
}

// ERROR for: an unparsable END, or one before this side sent its own.
void SenderSession::on_end(P::Bytes payload) {
  auto e = P::parse_end(payload);
  if (!e) return violation(e.error().what);
  if (state_ != State::awaiting_end) return violation("unexpected END");
  state_ = State::done;
  actions_.push_back(CloseConnection{make_error(Errc::connection, "transfer complete")});
  connected_ = false;
}

// Never answered with ERROR: the receiver is closing. Its local_io code is kept (a
// full or failing disk on its side), anything else is a protocol failure.
void SenderSession::on_error(P::Bytes payload) {
  auto e = P::parse_error(payload);
  std::string msg = e ? e->code + ": " + e->message : "unreadable ERROR frame";
  Errc code = Errc::protocol;
  if (e && e->code == errc_name(Errc::local_io)) code = Errc::local_io;
  // The receiver's authentication errors are worded for both sides (session_replies):
  // shown as they are, and final (reconnecting with the same key cannot help).
  if (e && e->code == errc_name(Errc::authentication)) {
    return fail(make_error(Errc::authentication, e->message.rfind("authentication", 0) == 0 ? e->message : msg));
  }
  fail(make_error(code, "receiver reported an error: " + msg));
}

// ERROR for: a payload that is not an 8-byte nonce.
void SenderSession::on_ping(P::Bytes payload) {
  auto pong = pong_reply(payload);
  if (!pong) return violation("malformed PING");
  actions_.push_back(std::move(*pong));
}

void SenderSession::offer_current(Clock::time_point now) {
  (void)now;
  const auto& ent = entry(cur_);
  P::Offer o;
  o.file_id = cur_;
  o.path = ent.wire_path;
  o.kind = ent.kind;
  o.size = ent.size;
  o.mtime_ns = ent.mtime_ns;
  o.mode = ent.mode;
  o.identity = ent.identity;
  o.target = ent.link_target;
  // Nothing is in flight for this offer yet (after a reconnect or a re-send the old
  // positions would count as outstanding and trip the stall timer while we wait).
  o.block_size = ent.kind == P::EntryKind::file ? static_cast<std::uint32_t>(cfg_.chunk_size) : 0;
  acked_ = next_read_ = next_send_ = sent_hw_ = 0;
  held_.clear();
  send_control(FrameType::offer, P::to_json(o));
  state_ = State::awaiting_answer;
  if (!prog_.announced) {
    prog_.announced = true;
    event(EventType::file_start);
  }
  if (cfg_.purpose == P::Purpose::check) start_check();
}

void SenderSession::start_streaming(std::uint64_t offset, Clock::time_point now) {
  acked_ = next_read_ = next_send_ = sent_hw_ = offset;
  commit_sent_ = false;
  check_token_ = 0;
  token_base_ = next_token_;
  ready_.clear();
  resend_.clear();
  resend_reads_ = 0;
  state_ = State::streaming;
  last_ack_progress_ = now;
  pump(now);
}

// Issues reads: blocks an RPOS named first, then the next blocks in order under the
// window; never more than max_reads_in_flight reads nor max_blocks() blocks held.
// Once every block was sent the first time (and none is waiting to be re-sent), checks
// the source before the COMMIT.
void SenderSession::pump(Clock::time_point now) {
  (void)now;
  const bool sending = state_ == State::streaming || state_ == State::awaiting_verdict;
  if (!sending || !connected_) return;
  const auto& ent = entry(cur_);
  while (reads_in_flight_ < cfg_.max_reads_in_flight && blocks_held() < max_blocks()) {
    if (!resend_.empty()) {
      issue_read(resend_.extract(resend_.begin()).value(), true);
      continue;
    }
    if (next_read_ >= ent.size) break;
    const std::size_t len = block_length(next_read_);
    if (next_read_ + len > acked_ + cfg_.window) break;
    issue_read(next_read_, false);
    next_read_ += len;
  }
  if (state_ == State::streaming && next_send_ == ent.size && !commit_sent_ && check_token_ == 0) {
    check_token_ = next_token_++;
    actions_.push_back(CheckSource{cur_, check_token_});
  }
}

void SenderSession::issue_read(std::uint64_t offset, bool resend) {
  const std::uint64_t token = next_token_++;
  read_offsets_[token] = PendingRead{offset, resend};
  actions_.push_back(ReadChunk{cur_, offset, block_length(offset), token});
  ++reads_in_flight_;
  if (resend) ++resend_reads_;
}

void SenderSession::on_source_checked(std::uint64_t token, Result<std::optional<SourceEntry>> now_entry,
                                      Clock::time_point now) {
  if (auto e = eager_tokens_.find(token); e != eager_tokens_.end()) {
    const std::uint32_t entry = e->second;
    eager_tokens_.erase(e);
    return on_eager_checked(entry, std::move(now_entry), now);
  }
  if (token != check_token_ || token < token_base_ || state_ != State::streaming) return;
  check_token_ = 0;
  const auto& ent = entry(cur_);
  if (!now_entry) {
    finish_file(false, now_entry.error().message());
    return next_entry(now);
  }
  if (now_entry->has_value()) {
    // Changed while being sent: what was read may mix old and new bytes. Start over
    // with the file as it is now (its new identity makes the receiver start over too).
    ++prog_.attempts;
    if (prog_.attempts >= cfg_.max_file_attempts) {
      finish_file(false, "source file kept changing during the transfer: " + ent.local_path);
      return next_entry(now);
    }
    replace_entry(cur_, std::move(**now_entry));
    cur_done_ = std::min(cur_done_, entry(cur_).size);
    event(EventType::warning, "source file changed during the transfer; sending it again from the start");
    return restart_file(now);
  }
  assert(prog_.hashed_upto == ent.size);
  // Sent once per attempt: the receiver keeps it while it waits for re-sent blocks.
  P::Commit c{cur_, ent.size, prog_.digest.hex()};
  send_control(FrameType::commit, P::to_json(c));
  commit_sent_ = true;
  state_ = State::awaiting_verdict;
  commit_in_background(now);
}

void SenderSession::recount(std::uint32_t entry, std::uint64_t size) {
  recounted_[entry] = size;
  committing_bytes_ += size;
}

void SenderSession::commit_in_background(Clock::time_point now) {
  if (state_ != State::awaiting_verdict || acked_ < entry(cur_).size) return;
  if (committing_.size() >= P::kMaxCommittingFiles) return;  // its VERDICT is awaited here, as before
  committing_.emplace(cur_, prog_.attempts);
  committing_bytes_ += entry(cur_).size;
  sent_eagerly_.insert(cur_);  // sent again later, it counts as re-sent
  last_ack_progress_ = now;
  next_entry(now);
}

// ERROR: none here (a VERDICT for no file in flight is the caller's violation).
bool SenderSession::on_committing_verdict(const P::Verdict& v, Clock::time_point now) {
  auto it = committing_.find(v.file_id);
  if (it == committing_.end()) return false;
  const unsigned attempts = it->second;
  const std::uint64_t size = entry(v.file_id).size;
  committing_.erase(it);
  committing_bytes_ -= size;
  last_ack_progress_ = now;
  if (v.status == P::VerdictStatus::verified) {
    sent_eagerly_.erase(v.file_id);
    finish_entry(v.file_id, true, {});
  } else {
    if (attempts + 1 < cfg_.max_file_attempts) recount(v.file_id, size);  // sent again: still counted
    retry_attempts_[v.file_id] = attempts;
    retry_entry(v.file_id, true, "verification failed (" + v.reason + ")");
  }
  if (state_ == State::pipelining) advance(now);
  if (state_ == State::awaiting_verdict) commit_in_background(now);  // a slot came free
  return true;
}

void SenderSession::restart_file(Clock::time_point now) {
  const unsigned attempts = prog_.attempts;
  prog_ = FileProgress{};
  prog_.attempts = attempts;
  prog_.announced = true;
  token_base_ = next_token_;
  ready_.clear();
  resend_.clear();
  resend_reads_ = 0;
  offer_current(now);
}

void SenderSession::on_read_done(std::uint64_t token, Result<ReadBlock> block, Clock::time_point now) {
  if (auto e = eager_tokens_.find(token); e != eager_tokens_.end()) {
    const std::uint32_t entry = e->second;
    eager_tokens_.erase(e);
    --reads_in_flight_;
    return on_eager_read(entry, std::move(block), now);
  }
  auto it = read_offsets_.find(token);
  if (it == read_offsets_.end()) return;
  const PendingRead read = it->second;
  read_offsets_.erase(it);
  --reads_in_flight_;
  const bool sending = state_ == State::streaming || state_ == State::awaiting_verdict;
  if (token < token_base_ || !sending) {
    pump(now);  // a stale read freed a slot (its buffer goes back to the pool here)
    pump_eager(now);
    return;
  }
  if (read.resend) --resend_reads_;
  const auto& ent = entry(cur_);
  if (!block) {
    finish_file(false, block.error().message());
    return next_entry(now);
  }
  if (block->data.size() != block_length(read.offset)) {
    finish_file(false, "source file changed during the transfer (it shrank): " + ent.wire_path);
    return next_entry(now);
  }
  if (read.resend) {
    send_block(read.offset, std::move(*block));
  } else {
    ready_.emplace(read.offset, std::move(*block));
  }
  emit_ready_chunks();
  pump(now);
}

void SenderSession::send_block(std::uint64_t offset, ReadBlock block) {
  const std::uint64_t end = offset + block.data.size();
  if (offset < prog_.sent_upto) totals_.bytes_resent += std::min(end, prog_.sent_upto) - offset;
  prog_.sent_upto = std::max(prog_.sent_upto, end);
  totals_.bytes_payload += block.data.size();
  auto head = P::encode_data_head(cur_, offset, block.digest, block.data.size());
  actions_.push_back(SendFrame{std::vector<std::byte>(head.begin(), head.end()), std::move(block.data)});
}

// Blocks read in order go out in offset order once no re-send is waiting (RPOS blocks
// first). Each feeds the file digest on its first read; blocks the receiver holds (the
// ANSWER's held ranges, or below its acknowledged point after a go-back) are not sent.
void SenderSession::emit_ready_chunks() {
  if (!resend_.empty() || resend_reads_ > 0) return;
  while (!ready_.empty() && ready_.begin()->first == next_send_) {
    auto node = ready_.extract(ready_.begin());
    const std::uint64_t off = node.key();
    const std::uint64_t end = off + node.mapped().data.size();
    if (off == prog_.hashed_upto) {
      prog_.digest.add_block(node.mapped().digest);
      prog_.hashed_upto = end;
    }
    if (end > acked_ && !is_held(off, end)) send_block(off, std::move(node.mapped()));
    next_send_ = end;
    sent_hw_ = std::max(sent_hw_, end);
  }
}

void SenderSession::on_prefix_hashed(std::uint64_t token, Result<P::FileDigest> digest, Clock::time_point now) {
  if (cfg_.purpose == P::Purpose::check) return on_check_hashed(token, std::move(digest), now);
  if (token != prefix_token_ || state_ != State::hashing_prefix) return;
  prefix_token_ = 0;
  if (!digest) {
    finish_file(false, digest.error().message());
    return next_entry(now);
  }
  prog_.digest = *digest;
  prog_.hashed_upto = acked_;
  start_streaming(acked_, now);
}

void SenderSession::finish_file(bool verified, const std::string& why) {
  cur_done_ = 0;
  finish_entry(cur_, verified, why);
}

std::string SenderSession::refusal_reason(const P::Answer& a) {
  return (a.local_io ? "receiver could not write it: " : "refused by receiver: ") + a.note;
}

void SenderSession::finish_entry(std::uint32_t index, bool verified, const std::string& why) {
  // The entry counts as done whole, whatever was acknowledged of it.
  ++files_done_;
  const SourceEntry& ent = entry(index);
  bytes_done_ += ent.size;
  if (verified) {
    ++totals_.files_verified;
    totals_.bytes_verified += ent.size;
    event_for(index, EventType::file_verified, ent.size);
  } else {
    ++totals_.files_failed;
    if (first_failure_.empty()) first_failure_ = ent.wire_path + ": " + why;
    // Refusals by rule and failed VERDICTs are the receiver's; every other failure is a
    // file operation's: this side's (a source that cannot be opened, read, or kept
    // still) or the receiver's own (refusal_reason: "receiver could not write it").
    if (!why.starts_with("refused by receiver") && !why.starts_with("verification failed")) ++files_failed_io_;
    event_for(index, EventType::file_failed, index == cur_ ? acked_ : 0, why);
  }
  retire_entry(index);
}

void SenderSession::next_entry(Clock::time_point now) {
  has_current_ = false;
  cur_done_ = 0;
  prog_ = FileProgress{};
  acked_ = next_read_ = next_send_ = sent_hw_ = 0;
  token_base_ = next_token_;
  ready_.clear();
  resend_.clear();
  resend_reads_ = 0;
  held_.clear();
  commit_sent_ = false;
  state_ = State::pipelining;
  advance(now);
}

// One entry of look-ahead: the next new one is pulled from the source when it is asked for.
std::optional<std::uint32_t> SenderSession::peek_next_entry() {
  if (!retry_.empty()) return retry_.front();
  if (next_new_ < pulled_ || pull_entry()) return next_new_;
  return std::nullopt;
}

void SenderSession::take_next_entry() {
  if (!retry_.empty()) {
    retry_.pop_front();
  } else {
    ++next_new_;
  }
}

void SenderSession::advance(Clock::time_point now) {
  while (connected_ && state_ == State::pipelining) {
    if (has_current_) {
      if (eager_unsent()) return;  // its OFFER goes out behind the eager files ahead of it
      return offer_current(now);
    }
    const auto next = peek_next_entry();
    if (!next) {
      if (!eager_.empty() || !committing_.empty()) return;  // their VERDICTs first
      send_control(FrameType::end, P::to_json(P::End{pulled_, totals_.bytes_verified}));
      state_ = State::awaiting_end;
      return;
    }
    if (eager_eligible(*next)) {
      if (!eager_room(entry(*next).size)) return;  // a VERDICT makes room
      take_next_entry();
      start_eager(*next, now);
      continue;
    }
    take_next_entry();
    cur_ = *next;
    has_current_ = true;
    prog_ = FileProgress{};
    if (auto it = retry_attempts_.find(cur_); it != retry_attempts_.end()) {
      prog_.attempts = it->second;
      prog_.announced = true;
      retry_attempts_.erase(it);
    }
    if (sent_eagerly_.erase(cur_) > 0) prog_.sent_upto = entry(cur_).size;  // sending it again is a re-send
    if (auto it = recounted_.find(cur_); it != recounted_.end()) {
      committing_bytes_ -= it->second;
      cur_done_ = it->second;
      recounted_.erase(it);
    }
  }
}

// Eager files count from when they are taken, sent or not: a pipeline that stops
// moving for a stall timeout is ended like any stalled connection (and its files are
// offered again the ordinary way on the next one).
bool SenderSession::has_outstanding() const {
  return next_send_ > acked_ || !resend_.empty() || resend_reads_ > 0 || !eager_.empty() || !committing_.empty();
}

std::optional<Clock::time_point> SenderSession::next_deadline() const {
  if (!connected_ || finished() || state_ == State::hashing_prefix) return std::nullopt;
  const bool outstanding = has_outstanding();
  const bool waiting = state_ != State::streaming || outstanding;
  if (!waiting) return std::nullopt;
  const auto quarter = cfg_.stall_timeout / 4;
  Clock::time_point t = std::max(last_rx_, last_ping_) + quarter;  // next keepalive
  t = std::min(t, last_rx_ + cfg_.stall_timeout);
  if (outstanding) t = std::min(t, last_ack_progress_ + cfg_.stall_timeout);
  return t;
}

void SenderSession::on_timeout(Clock::time_point now) {
  auto deadline = next_deadline();
  if (!deadline || now < *deadline) return;
  const bool outstanding = has_outstanding();
  const auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.stall_timeout).count() / 1000.0;
  if (outstanding && now - last_ack_progress_ >= cfg_.stall_timeout) {
    ++totals_.stall_timeouts;
    return drop_connection(make_error(Errc::connection, "stalled: no acknowledgement for " +
                                                            std::to_string(secs).substr(0, 4) + " s"),
                           now);
  }
  if (now - last_rx_ >= cfg_.stall_timeout) {
    ++totals_.stall_timeouts;
    return drop_connection(make_error(Errc::connection, "stalled: receiver silent for " +
                                                            std::to_string(secs).substr(0, 4) + " s"),
                           now);
  }
  if (now - std::max(last_rx_, last_ping_) >= cfg_.stall_timeout / 4) {
    last_ping_ = now;
    auto body = P::encode_nonce(++ping_nonce_);
    actions_.push_back(SendFrame{P::encode_frame(FrameType::ping, P::Bytes(body)), {}});
  }
}

}  // namespace ferry::sender
