#include "receiver/receiver_session.hpp"

#include <algorithm>
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

ReceiverSession::ReceiverSession(ReceiverConfig config, Clock::time_point) : cfg_(std::move(config)) {}

std::vector<Action> ReceiverSession::take_actions() { return std::exchange(actions_, {}); }
std::vector<Event> ReceiverSession::take_events() { return std::exchange(events_, {}); }

void ReceiverSession::event(EventType t, std::string detail) {
  Event e;
  e.type = t;
  e.path = offer_.path;  // the last offer's (empty before the first)
  e.size = offer_.size;
  e.offset = written_;
  e.detail = std::move(detail);
  e.transfer = transfer();
  events_.push_back(std::move(e));
}

TransferProgress ReceiverSession::transfer() const {
  TransferProgress t = hello_progress_;
  t.files_done = sat_add(t.files_done, sat_add(totals_.files_verified, totals_.files_failed));
  t.bytes_done = sat_add(t.bytes_done, sat_add(totals_.bytes_verified, failed_bytes_));
  const bool busy = file_open_ || state_ == State::opening || state_ == State::committing;
  if (busy) {
    // The current entry again after a failure: it is in progress, not done.
    if (auto it = failed_paths_.find(offer_.path); it != failed_paths_.end()) {
      t.files_done -= std::min<std::uint64_t>(t.files_done, 1);
      t.bytes_done -= std::min(t.bytes_done, it->second);
    }
    t.bytes_done = sat_add(t.bytes_done, written_);
  }
  if (t.files_total > 0) t.files_done = std::min(t.files_done, t.files_total);
  if (t.bytes_total > 0) t.bytes_done = std::min(t.bytes_done, t.bytes_total);
  return t;
}

void ReceiverSession::send_control(FrameType t, const std::string& body) {
  actions_.push_back(SendFrame{P::encode_frame(t, body), {}});
}

void ReceiverSession::send_position(FrameType t, std::uint64_t offset) {
  auto body = P::encode_position({cur_, offset});
  actions_.push_back(SendFrame{P::encode_frame(t, P::Bytes(body)), {}});
}

void ReceiverSession::fatal(Error e) {
  if (state_ == State::failed) return;
  close_current(false);
  failure_ = e;
  state_ = State::failed;
  actions_.push_back(CloseConnection{std::move(e)});
}

void ReceiverSession::violation(const std::string& what) {
  close_with_error(protocol_violation(P::Role::sender, what));
}

void ReceiverSession::close_with_error(Error e) {
  actions_.push_back(error_reply(e));
  fatal(std::move(e));
}

void ReceiverSession::refuse_entry(std::string note) {
  P::Answer a{cur_, P::AnswerStatus::refuse, 0, std::move(note)};
  send_control(FrameType::answer, P::to_json(a));
  state_ = State::idle;
  mark_failed();
  event(EventType::file_failed, a.note);
}

void ReceiverSession::send_failed_verdict(std::string why) {
  P::Verdict v{cur_, P::VerdictStatus::failed, std::move(why)};
  send_control(FrameType::verdict, P::to_json(v));
  state_ = State::idle;
  mark_failed();
  event(EventType::file_failed, v.reason);
}

// A file fails for good only if the sender does not send it again and verify it
// later in the same session (after a digest mismatch it usually does).
// The paths are remembered only up to kMaxTrackedFailures (peer input is hostile:
// a sender offering a million bad paths must not grow this without bound); beyond
// that, failures are only counted and can no longer be taken back by a later verify.
void ReceiverSession::mark_failed() {
  if (failed_paths_.count(offer_.path) == 0 && failed_paths_.size() >= kMaxTrackedFailures) {
    ++untracked_failures_;
  } else if (failed_paths_.emplace(offer_.path, offer_.size).second) {
    failed_bytes_ = sat_add(failed_bytes_, offer_.size);
  }
  totals_.files_failed = failed_paths_.size() + untracked_failures_;
}

void ReceiverSession::unmark_failed() {
  if (auto it = failed_paths_.find(offer_.path); it != failed_paths_.end()) {
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
  if (consumed_ > 0) {
    inbuf_.erase(inbuf_.begin(), inbuf_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  inbuf_.insert(inbuf_.end(), bytes.begin(), bytes.end());
  while (state_ != State::failed && state_ != State::ended) {
    auto r = P::decode_frame(P::Bytes(inbuf_).subspan(consumed_));
    if (std::holds_alternative<P::NeedMore>(r)) break;
    if (auto* m = std::get_if<P::Malformed>(&r)) {
      if (m->incompatible) {  // tell the peer why, then close
        return close_with_error(incompatible_frame(P::Role::sender, m->reason));
      }
      // The stream cannot be resynchronised: end this connection; the sender resumes.
      return fatal(make_error(Errc::connection, "corrupt frame from sender: " + m->reason));
    }
    auto& f = std::get<P::DecodedFrame>(r);
    consumed_ += f.consumed;
    handle_frame(f, now);
  }
}

// Dispatches one frame to its handler. ERROR for: anything but HELLO first, and frames
// only a receiver sends.
void ReceiverSession::handle_frame(const P::DecodedFrame& f, Clock::time_point) {
  const FrameType type = f.header.type;
  if (!f.payload_ok) return on_corrupt_payload(type);
  if (state_ == State::awaiting_hello && type != FrameType::hello) {
    return violation(std::string("expected HELLO, got ") + std::string(P::frame_type_name(type)));
  }
  switch (type) {
    case FrameType::hello:
      return on_hello(f.payload);
    case FrameType::offer:
      return on_offer(f.payload);
    case FrameType::data:
      return on_data(f.payload);
    case FrameType::commit:
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
      return violation(std::string(P::frame_type_name(type)) + " is a receiver's frame");
  }
}

// Never ERROR: a corrupt DATA chunk while receiving is asked for again with RPOS; any
// other corrupt payload ends the connection (Errc::connection: the sender resumes).
void ReceiverSession::on_corrupt_payload(FrameType type) {
  if (type == FrameType::data && state_ == State::receiving) {
    // zmodem's ZRPOS: drop the chunk (its offset cannot be trusted either) and name
    // the offset to resume from; later chunks are discarded until that one arrives.
    ++totals_.chunks_rejected;
    if (!rpos_pending_) {
      rpos_pending_ = true;
      send_position(FrameType::rpos, verified_);
      event(EventType::warning, "chunk failed its checksum; asked to resend from offset " + std::to_string(verified_));
    }
    return;
  }
  fatal(make_error(Errc::connection, std::string("payload checksum mismatch in ") +
                                         std::string(P::frame_type_name(type)) + " from sender"));
}

// ERROR for: a second HELLO, an unparsable one, a peer that is not a sender, no common
// protocol version.
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
  session_id_ = h->session;
  // For display only (parse_hello checked their ranges and done <= total).
  hello_progress_ = TransferProgress{h->files_done.value_or(0), h->files_total.value_or(0), h->bytes_done.value_or(0),
                                     h->bytes_total.value_or(0)};
  send_control(FrameType::hello, P::to_json(mine));
  state_ = State::idle;
  event(EventType::session_start, h->software);
}

// ERROR for: an OFFER while a file is opening or committing, an unparsable one. An
// unsafe path is refused with ANSWER, not ERROR.
void ReceiverSession::on_offer(P::Bytes payload) {
  if (state_ != State::idle && state_ != State::receiving) return violation("OFFER while busy");
  auto o = P::parse_offer(payload);
  if (!o) return violation(o.error().what);
  close_current(false);  // an OFFER abandons the current file; its partial stays
  cur_ = o->file_id;
  offer_ = *o;
  verified_ = written_ = acked_ = 0;  // nothing of this entry yet (events report offset 0)
  if (auto why = P::wire_path_problem(o->path)) {
    // Refused, not fatal: the sender goes on with its other files.
    return refuse_entry("unsafe path: " + *why);
  }
  state_ = State::opening;
  actions_.push_back(OpenFile{cur_, offer_});
}

// ERROR for: a malformed DATA body, DATA for a file not open, at another offset than
// the next expected one (unless an RPOS is pending: then discarded), or beyond the
// offered size.
void ReceiverSession::on_data(P::Bytes payload) {
  P::DataView d;
  if (!P::decode_data(payload, d)) return violation("malformed DATA");
  if (state_ != State::receiving || d.file_id != cur_) return violation("DATA for a file not open");
  if (d.offset != verified_) {
    if (rpos_pending_) return;  // in flight before our RPOS arrived: discard
    return violation("DATA at offset " + std::to_string(d.offset) + ", expected " + std::to_string(verified_));
  }
  if (d.data.size() > offer_.size - verified_) return violation("DATA beyond the offered size");
  rpos_pending_ = false;
  digest_.update(d.data);
  verified_ += d.data.size();
  totals_.bytes_payload += d.data.size();
  actions_.push_back(WriteChunk{cur_, d.offset, d.data});
}

// ERROR for: an unparsable COMMIT, one for a file not open, one before all data. A
// digest mismatch is a failed VERDICT, not ERROR.
void ReceiverSession::on_commit(P::Bytes payload) {
  auto c = P::parse_commit(payload);
  if (!c) return violation(c.error().what);
  if (state_ != State::receiving || c->file_id != cur_) return violation("COMMIT for a file not open");
  if (rpos_pending_) return;  // the sender re-sends data, then COMMIT again
  if (c->size != offer_.size || verified_ != offer_.size) {
    return violation("COMMIT before all data (have " + std::to_string(verified_) + " of " +
                     std::to_string(offer_.size) + ")");
  }
  const std::string mine = digest_.hex();
  if (mine != c->xxh3_128) {
    close_current(true);
    return send_failed_verdict("whole-file digest mismatch (sender " + c->xxh3_128 + ", receiver " + mine + ")");
  }
  state_ = State::committing;
  actions_.push_back(CommitFile{cur_});
}

// ERROR for: an unparsable END, or one while a file is opening or committing.
void ReceiverSession::on_end(P::Bytes payload) {
  auto e = P::parse_end(payload);
  if (!e) return violation(e.error().what);
  if (state_ != State::idle && state_ != State::receiving) return violation("END while a file is busy");
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

void ReceiverSession::on_file_opened(std::uint32_t file_id, Result<OpenedFile> r, Clock::time_point) {
  if (state_ != State::opening || file_id != cur_) return;  // connection already failed
  if (!r) return refuse_entry(r.error().message());
  if (offer_.kind == P::EntryKind::directory) {
    send_control(FrameType::answer, P::to_json(P::Answer{cur_, P::AnswerStatus::accept, 0, {}}));
    ++totals_.files_verified;
    unmark_failed();
    state_ = State::idle;
    event(EventType::file_verified, "directory");
    return;
  }
  if (r->offset > offer_.size) {  // the driver's contract; treat as a local fault
    return fatal(make_error(Errc::internal, "partial larger than the offered size: " + offer_.path));
  }
  file_open_ = true;
  digest_ = r->prefix;
  verified_ = written_ = acked_ = r->offset;
  rpos_pending_ = false;
  state_ = State::receiving;
  send_control(FrameType::answer, P::to_json(P::Answer{cur_, P::AnswerStatus::accept, r->offset, r->note}));
  event(EventType::file_start);
  if (!r->note.empty()) event(EventType::warning, r->note);
  if (r->offset > 0) event(EventType::resume);
}

void ReceiverSession::on_chunk_written(std::uint32_t file_id, std::uint64_t end, Result<void> r,
                                       Clock::time_point) {
  if (!file_open_ || file_id != cur_ || state_ == State::failed) return;
  if (!r) {
    // A local write failure (ENOSPC, EIO): tell the sender and end this connection.
    // The journal describes only what was written before; a later run resumes.
    event(EventType::file_failed, r.error().message());
    return close_with_error(r.error());
  }
  written_ = end;
  if (written_ - acked_ >= cfg_.window / 4) {
    acked_ = written_;
    send_position(FrameType::ack, acked_);
  }
}

void ReceiverSession::on_input_drained(Clock::time_point) {
  if (!file_open_ || state_ == State::failed || written_ == acked_) return;
  acked_ = written_;
  send_position(FrameType::ack, acked_);
  event(EventType::progress);
}

void ReceiverSession::on_file_committed(std::uint32_t file_id, Result<void> r, Clock::time_point) {
  if (state_ != State::committing || file_id != cur_) return;
  file_open_ = false;  // the driver closed it as part of the commit
  state_ = State::idle;
  if (!r) return send_failed_verdict(r.error().message());
  ++totals_.files_verified;
  unmark_failed();
  totals_.bytes_verified += offer_.size;
  send_control(FrameType::verdict, P::to_json(P::Verdict{cur_, P::VerdictStatus::verified, {}}));
  written_ = offer_.size;
  event(EventType::file_verified);
}

void ReceiverSession::on_disconnected(const Error& why, Clock::time_point) {
  if (state_ == State::ended || state_ == State::failed) return;
  // A commit in flight completes on its own; anything else open keeps its journal.
  if (state_ != State::committing) close_current(false);
  failure_ = why;
  state_ = State::failed;
  event(EventType::connection_lost, why.message());
}

}  // namespace ferry::receiver
