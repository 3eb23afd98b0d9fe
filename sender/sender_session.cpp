#include "sender/sender_session.hpp"

#include <algorithm>
#include <cassert>
#include <limits>

#include "lib/core/session_replies.hpp"

namespace ferry::sender {

using protocol::FrameType;
namespace P = protocol;

SenderSession::SenderSession(SenderConfig config, std::vector<SourceEntry> entries, Clock::time_point now)
    : cfg_(std::move(config)), entries_(std::move(entries)) {
  assert(cfg_.window >= cfg_.chunk_size);
  for (const auto& e : entries_) bytes_total_ += e.size;
  last_rx_ = last_ack_progress_ = last_ping_ = now;
}

std::vector<Action> SenderSession::take_actions() { return std::exchange(actions_, {}); }
std::vector<Event> SenderSession::take_events() { return std::exchange(events_, {}); }

std::uint64_t SenderSession::in_flight() const { return next_read_ - acked_; }

Result<void> SenderSession::outcome() const {
  if (failure_) return *failure_;
  if (totals_.files_failed > 0) {
    const bool all_verification = files_failed_verification_ == totals_.files_failed;
    return make_error(all_verification ? Errc::verification : Errc::partial, std::to_string(totals_.files_failed) + " of " +
                                         std::to_string(entries_.size()) + " entries failed");
  }
  return {};
}

TransferProgress SenderSession::transfer() const {
  return TransferProgress{files_done_, entries_.size(), bytes_done_ + cur_done_, bytes_total_};
}

void SenderSession::event(EventType t, std::string detail) {
  Event e;
  e.type = t;
  if (cur_ < entries_.size()) {
    e.path = entries_[cur_].wire_path;
    e.size = entries_[cur_].size;
  }
  e.offset = acked_;
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
  // Informative totals for the receiver's display: only finished entries count as
  // done, since the receiver adds what it holds of the current file itself.
  // (Sizes beyond the field's range, 2^63-1 bytes, are left out rather than refused.)
  h.files_total = entries_.size();
  h.files_done = files_done_;
  if (bytes_total_ <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    h.bytes_total = bytes_total_;
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
  prefix_token_ = 0;
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
// before the receiver's HELLO, and frames only a sender sends.
void SenderSession::handle_frame(const P::DecodedFrame& f, Clock::time_point now) {
  const FrameType type = f.header.type;
  if (state_ == State::awaiting_hello && type != FrameType::hello && type != FrameType::error) {
    return violation(std::string("expected HELLO, got ") + std::string(P::frame_type_name(type)));
  }
  switch (type) {
    case FrameType::hello:
      return on_hello(f.payload, now);
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
  event(EventType::session_start, h->software);
  offer_current(now);
}

// ERROR for: an unparsable ANSWER, one not awaited or for another entry, an offset
// beyond the offered size.
void SenderSession::on_answer(P::Bytes payload, Clock::time_point now) {
  auto a = P::parse_answer(payload);
  if (!a) return violation(a.error().what);
  if (state_ != State::awaiting_answer || a->file_id != cur_) return violation("unexpected ANSWER");
  const auto& ent = entries_[cur_];
  if (a->status == P::AnswerStatus::refuse) {
    finish_file(false, "refused by receiver: " + a->note);
    return next_entry(now);
  }
  if (ent.kind == P::EntryKind::directory) {
    finish_file(true, {});
    return next_entry(now);
  }
  if (a->offset > ent.size) return violation("ANSWER offset beyond the file size");
  if (!a->note.empty()) event(EventType::warning, a->note);
  resume_at(a->offset, now);
}

void SenderSession::resume_at(std::uint64_t offset, Clock::time_point now) {
  if (offset > 0) {
    acked_ = next_read_ = next_send_ = offset;
    note_acked();
    event(EventType::resume, offset == entries_[cur_].size ? "already complete, verifying" : "");
  }
  if (offset > prog_.hashed_upto) {
    // The receiver holds more than this process has hashed: hash that prefix first.
    prog_.digest = P::Digest128();
    prog_.hashed_upto = 0;
    prefix_token_ = next_token_++;
    state_ = State::hashing_prefix;
    actions_.push_back(HashPrefix{cur_, offset, prefix_token_});
    return;
  }
  start_streaming(offset, now);
}

// ERROR as take_position().
void SenderSession::on_ack(P::Bytes payload, Clock::time_point now) {
  if (!take_position(payload, now)) return;
  event(EventType::progress);
  pump(now);
}

// ERROR as take_position().
void SenderSession::on_rpos(P::Bytes payload, Clock::time_point now) {
  const auto offset = take_position(payload, now);
  if (!offset) return;
  // zmodem's ZRPOS: a chunk failed its checksum; everything from here is re-sent.
  ++totals_.chunks_rejected;
  token_base_ = next_token_;
  ready_.clear();
  next_read_ = next_send_ = *offset;
  commit_sent_ = false;
  check_token_ = 0;
  state_ = State::streaming;
  event(EventType::warning,
        "chunk at offset " + std::to_string(*offset) + " failed its checksum on the receiver; re-sending from there");
  pump(now);
}

std::optional<std::uint64_t> SenderSession::take_position(P::Bytes payload, Clock::time_point now) {
  P::Position p;
  if (!P::decode_position(payload, p)) {
    violation("malformed ACK/RPOS body");
    return std::nullopt;
  }
  if ((state_ != State::streaming && state_ != State::awaiting_verdict) || p.file_id != cur_) {
    // Positions for an attempt we abandoned (the source changed, the file failed)
    // were in flight when we moved on: stale, not a violation.
    if (p.file_id > cur_) violation("ACK/RPOS for a file not offered yet");
    return std::nullopt;
  }
  if (p.offset < acked_ || p.offset > next_send_) {
    violation("ACK/RPOS offset " + std::to_string(p.offset) + " outside [" + std::to_string(acked_) + ", " +
              std::to_string(next_send_) + "]");
    return std::nullopt;
  }
  if (p.offset > acked_) last_ack_progress_ = now;
  acked_ = p.offset;
  note_acked();
  return p.offset;
}

// ERROR for: an unparsable VERDICT, one not awaited or for another entry.
void SenderSession::on_verdict(P::Bytes payload, Clock::time_point now) {
  auto v = P::parse_verdict(payload);
  if (!v) return violation(v.error().what);
  if (state_ != State::awaiting_verdict || v->file_id != cur_) return violation("unexpected VERDICT");
  if (v->status == P::VerdictStatus::verified) {
    acked_ = entries_[cur_].size;
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
  if (cur_ >= entries_.size()) {
    P::End e{entries_.size(), totals_.bytes_verified};
    send_control(FrameType::end, P::to_json(e));
    state_ = State::awaiting_end;
    return;
  }
  const auto& ent = entries_[cur_];
  P::Offer o;
  o.file_id = cur_;
  o.path = ent.wire_path;
  o.kind = ent.kind;
  o.size = ent.size;
  o.mtime_ns = ent.mtime_ns;
  o.mode = ent.mode;
  o.identity = ent.identity;
  // Nothing is in flight for this offer yet (after a reconnect or a re-send the old
  // positions would count as outstanding and trip the stall timer while we wait).
  acked_ = next_read_ = next_send_ = 0;
  send_control(FrameType::offer, P::to_json(o));
  state_ = State::awaiting_answer;
  if (!prog_.announced) {
    prog_.announced = true;
    event(EventType::file_start);
  }
}

void SenderSession::start_streaming(std::uint64_t offset, Clock::time_point now) {
  acked_ = next_read_ = next_send_ = offset;
  commit_sent_ = false;
  check_token_ = 0;
  token_base_ = next_token_;
  ready_.clear();
  state_ = State::streaming;
  last_ack_progress_ = now;
  pump(now);
}

void SenderSession::pump(Clock::time_point now) {
  (void)now;
  if (state_ != State::streaming || !connected_) return;
  const auto& ent = entries_[cur_];
  while (reads_in_flight_ < cfg_.max_reads_in_flight && next_read_ < ent.size) {
    std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(cfg_.chunk_size, ent.size - next_read_));
    if (next_read_ - acked_ + len > cfg_.window) break;
    std::uint64_t token = next_token_++;
    read_offsets_[token] = next_read_;
    actions_.push_back(ReadChunk{cur_, next_read_, len, token});
    ++reads_in_flight_;
    next_read_ += len;
  }
  if (next_send_ == ent.size && !commit_sent_ && check_token_ == 0) {
    check_token_ = next_token_++;
    actions_.push_back(CheckSource{cur_, check_token_});
  }
}

void SenderSession::on_source_checked(std::uint64_t token, Result<std::optional<SourceEntry>> now_entry,
                                      Clock::time_point now) {
  if (token != check_token_ || token < token_base_ || state_ != State::streaming) return;
  check_token_ = 0;
  const auto& ent = entries_[cur_];
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
    bytes_total_ = bytes_total_ - ent.size + (*now_entry)->size;
    entries_[cur_] = std::move(**now_entry);
    cur_done_ = std::min(cur_done_, entries_[cur_].size);
    event(EventType::warning, "source file changed during the transfer; sending it again from the start");
    return restart_file(now);
  }
  assert(prog_.hashed_upto == ent.size);
  P::Commit c{cur_, ent.size, prog_.digest.hex()};
  send_control(FrameType::commit, P::to_json(c));
  commit_sent_ = true;
  state_ = State::awaiting_verdict;
}

void SenderSession::restart_file(Clock::time_point now) {
  const unsigned attempts = prog_.attempts;
  prog_ = FileProgress{};
  prog_.attempts = attempts;
  prog_.announced = true;
  token_base_ = next_token_;
  ready_.clear();
  offer_current(now);
}

void SenderSession::on_read_done(std::uint64_t token, Result<std::vector<std::byte>> data, Clock::time_point now) {
  auto it = read_offsets_.find(token);
  if (it == read_offsets_.end()) return;
  const std::uint64_t offset = it->second;
  read_offsets_.erase(it);
  --reads_in_flight_;
  if (token < token_base_ || state_ != State::streaming) {
    pump(now);  // a stale read freed a slot
    return;
  }
  const auto& ent = entries_[cur_];
  if (!data) {
    finish_file(false, data.error().message());
    return next_entry(now);
  }
  const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(cfg_.chunk_size, ent.size - offset));
  if (data->size() != want) {
    finish_file(false, "source file changed during the transfer (it shrank): " + ent.wire_path);
    return next_entry(now);
  }
  ready_.emplace(offset, std::move(*data));
  emit_ready_chunks();
  pump(now);
}

void SenderSession::emit_ready_chunks() {
  while (!ready_.empty() && ready_.begin()->first == next_send_) {
    auto node = ready_.extract(ready_.begin());
    std::vector<std::byte> bytes = std::move(node.mapped());
    const std::uint64_t off = node.key();
    const std::uint64_t end = off + bytes.size();
    if (off <= prog_.hashed_upto && end > prog_.hashed_upto) {
      // The whole-file digest covers each byte once, in order, as first read.
      prog_.digest.update(P::Bytes(bytes).subspan(static_cast<std::size_t>(prog_.hashed_upto - off)));
      prog_.hashed_upto = end;
    }
    if (off < prog_.sent_upto) totals_.bytes_resent += std::min(end, prog_.sent_upto) - off;
    prog_.sent_upto = std::max(prog_.sent_upto, end);
    totals_.bytes_payload += bytes.size();
    auto head = P::encode_data_head(cur_, off, bytes);
    actions_.push_back(SendFrame{std::vector<std::byte>(head.begin(), head.end()), std::move(bytes)});
    next_send_ = end;
  }
}

void SenderSession::on_prefix_hashed(std::uint64_t token, Result<P::Digest128> digest, Clock::time_point now) {
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
  // The entry counts as done whole, whatever was acknowledged of it.
  ++files_done_;
  bytes_done_ += entries_[cur_].size;
  cur_done_ = 0;
  if (verified) {
    ++totals_.files_verified;
    totals_.bytes_verified += entries_[cur_].size;
    event(EventType::file_verified);
  } else {
    ++totals_.files_failed;
    event(EventType::file_failed, why);
  }
}

void SenderSession::next_entry(Clock::time_point now) {
  ++cur_;
  cur_done_ = 0;
  prog_ = FileProgress{};
  acked_ = next_read_ = next_send_ = 0;
  token_base_ = next_token_;
  ready_.clear();
  commit_sent_ = false;
  if (connected_) offer_current(now);
}

std::optional<Clock::time_point> SenderSession::next_deadline() const {
  if (!connected_ || finished() || state_ == State::hashing_prefix) return std::nullopt;
  const bool outstanding = next_send_ > acked_;
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
  const bool outstanding = next_send_ > acked_;
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
