// SenderSession: the sending side of the ferry protocol as a sans-I/O state machine.
//
// It owns no socket, file or clock. The driver feeds it connection events, decoded
// input bytes, completed file reads and the current time; it returns Actions (frames
// to write, file reads and prefix hashes to perform, "close this connection") and
// Events, and tells when it next needs on_timeout().
//
//   SenderSession s(cfg, entries, now);   // or SenderSession(cfg, std::move(source), now)
//   s.on_connected(now);
//   for (;;) {
//     for (auto& a : s.take_actions()) perform(a);     // SendFrame, ReadChunk, ...
//     for (auto& e : s.take_events()) sink.emit(e);
//     wait for bytes / read completion / s.next_deadline(); feed it back.
//   }
//
// Invariants (tested):
// - window: bytes of DATA sent but not acknowledged, plus bytes being read for sending,
//   never exceed config.window (`next_read - acked <= window`; re-sends of blocks below
//   the sent point do not move it).
// - buffers: blocks read-and-unsent plus blocks being read (first reads, re-reads for
//   RPOS and reads made stale by a rewind alike) never exceed
//   window / chunk_size + max_reads_in_flight (max_blocks()). The engine sizes its
//   BufferPool at max_blocks() + 2, so acquire() never runs dry in normal operation.
//
// Protocol version 2 (docs/PROTOCOL.md): every DATA frame is one whole block of
// chunk_size bytes (the OFFER's block_size); the driver reads a block into a pooled
// buffer and computes its block digest next to the read; that digest is both the DATA
// frame's checksum and the block's input to the file digest (each byte hashed once).
// RPOS with a length re-sends exactly the blocks named (selective repeat); RPOS with
// length 0 rewinds (go-back, when the receiver could not trust a DATA prefix).
//
// Protocol version 3 (docs/PROTOCOL.md section 5.5): files of at most one block inside a
// directory the receiver created on this connection (its ANSWER said `created`) are sent
// eagerly: the block is read and the source checked first, then OFFER (`eager`), DATA
// and COMMIT go out together with no round trip, and the session moves on to the next
// entry while up to kMaxEagerFiles such files (kMaxEagerBytes of data, and at most the
// window) wait for their VERDICTs. Any other entry waits until the eager files ahead of
// it are on the wire, then takes the one-file-at-a-time path above. A failed eager
// file, and every eager file without a VERDICT when a connection is lost, is offered
// again later the ordinary way (the receiver then answers with what it holds).
// Version 6: a directory inside such a directory goes eagerly too (its OFFER alone,
// answered later by an ANSWER), and counts as created from its OFFER on.
//
// Entries come from an EntrySource (lib/core/entry_source.hpp), pulled as they are
// needed, and the session holds only those not yet finished (the current file, the
// eager files and the entries to offer again, one entry of look-ahead), plus those
// finished within the last two take_actions() rounds, so that an action already
// handed out can still name its entry: at most kMaxHeldEntries, whatever the number
// of entries (tested). Entry indexes (the wire's file_id) are global and increasing.
// Totals start from the source's expected() figures and are corrected as entries are
// met (the larger of the two until the source ends; exact from then on).
#pragma once

#include <deque>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "lib/core/entry_source.hpp"
#include "lib/core/events.hpp"
#include "lib/core/session_actions.hpp"
#include "lib/core/source_entry.hpp"
#include "protocol/auth.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry::sender {

struct SenderConfig {
  std::size_t chunk_size = protocol::kDefaultChunkSize;
  std::uint64_t window = protocol::kDefaultWindow;  // >= chunk_size
  unsigned max_reads_in_flight = 4;
  unsigned max_file_attempts = 3;  // whole-file sends before a digest mismatch fails it
  std::chrono::milliseconds stall_timeout{10'000};
  std::string session_id;          // 32 hex digits
  std::string software = "ferry";
  // Authentication (PROTOCOL.md 5.3): the shared key, or none. A keyed sender offers
  // nothing before the receiver has proved the same key; keys on one side only fail
  // at once (Errc::authentication, never retried).
  std::optional<protocol::AuthKey> key{};
  // A fresh nonce for each connection's HELLO: the CSPRNG by default; tests inject one.
  std::function<protocol::Nonce()> make_nonce = protocol::random_nonce;
  // Version 4 (sender/sender_inspect.cpp): a check or a dry run instead of a transfer.
  // No DATA is ever sent then, and no file is sent eagerly.
  protocol::Purpose purpose = protocol::Purpose::transfer;
  // Check only: ask for the names in each offered directory and report those the
  // entries do not have (entry_checked "extra").
  bool list_extra = false;
};

// Read the block of `length` bytes at `offset` of entry `entry` (offset a multiple of
// the chunk size, length = min(chunk_size, size - offset)) into a pooled buffer, compute
// protocol::block_digest(data, offset) on the same pool thread, and answer with
// on_read_done().
struct ReadChunk {
  std::uint32_t entry;
  std::uint64_t offset;
  std::size_t length;
  std::uint64_t token;  // pass back unchanged
  // An eager file read whole (offset 0, length its size): when the read returns it whole,
  // the session's next action about this entry is its CheckSource, so the driver may
  // check the source right after the read, on the same descriptor, and answer that
  // CheckSource with the result (sender.cpp: one open, read, fstat, close per file).
  bool eager = false;
};
// Hash bytes [0, length) of entry `entry` as blocks of `block_size` into a
// protocol::FileDigest (protocol::add_blocks); answer with on_prefix_hashed().
struct HashPrefix {
  std::uint32_t entry;
  std::uint64_t length;       // a multiple of block_size, or the file's size
  std::size_t block_size;
  std::uint64_t token;
};
// A completed ReadChunk: the block's bytes (data.size() < length: the file shrank) and
// protocol::block_digest(data, offset), computed by the driver next to the read.
struct ReadBlock {
  ByteBuffer data;
  std::uint64_t digest = 0;
};
// Every byte was sent: check that the source still has the size and mtime it was
// offered with; answer with on_source_checked(). A change restarts the file, so a
// mix of old and new bytes can never verify.
struct CheckSource {
  std::uint32_t entry;
  std::uint64_t token;
};
using Action = std::variant<SendFrame, ReadChunk, HashPrefix, CheckSource, CloseConnection>;

// The most entries a session holds at once (see the overview): the current one and one
// of look-ahead, the eager files and the entries to offer again (each at most
// kMaxEagerFiles), and those finished in the last two rounds of take_actions().
inline constexpr std::size_t kMaxHeldEntries = 4 * protocol::kMaxEagerFiles + 8;

class SenderSession {
 public:
  enum class State {
    disconnected,     // no connection: waiting for on_connected()
    awaiting_hello,   // HELLO sent, waiting for the receiver's
    awaiting_auth,    // keyed: our AUTH sent, waiting for the receiver's
    awaiting_answer,  // OFFER sent
    hashing_prefix,   // driver hashes the part the receiver already holds
    streaming,        // sending DATA under the window
    awaiting_verdict, // COMMIT sent
    checking,         // check: OFFER sent; hashing the file, then COMMIT; awaiting CHECK
    pipelining,       // no ordinary file current: eager files in flight, or the next entry next
    awaiting_end,     // END sent
    done,             // receiver confirmed END: outcome() is final
    failed,           // unrecoverable: outcome() holds the error
  };

  SenderSession(SenderConfig config, std::vector<SourceEntry> entries, Clock::time_point now);
  // Entries pulled from `source` as they are needed (never null).
  SenderSession(SenderConfig config, std::unique_ptr<EntrySource> source, Clock::time_point now);

  // A new connection is up (first or after a loss): sends HELLO and resumes.
  void on_connected(Clock::time_point now);
  // The connection is gone (EOF, error, or a CloseConnection the driver performed).
  void on_disconnected(const Error& why, Clock::time_point now);
  // Bytes read from the connection (any split). Precondition: connected.
  void on_bytes(protocol::Bytes bytes, Clock::time_point now);
  // Completion of a ReadChunk: the block is sent as it is (no copy, no rehash), or
  // dropped (stale token, a held block) and its buffer returned to the pool. An Error
  // fails the file (not the session).
  void on_read_done(std::uint64_t token, Result<ReadBlock> block, Clock::time_point now);
  // Completion of a HashPrefix: the file digest of the blocks below the resume offset.
  void on_prefix_hashed(std::uint64_t token, Result<protocol::FileDigest> digest, Clock::time_point now);
  // Completion of a CheckSource: nullopt when unchanged, else the entry as it is now
  // (new size, mtime, identity); an Error when it can no longer be read.
  void on_source_checked(std::uint64_t token, Result<std::optional<SourceEntry>> now_entry, Clock::time_point now);
  // The driver's timer fired (at or after next_deadline()).
  void on_timeout(Clock::time_point now);

  std::vector<Action> take_actions();
  std::vector<Event> take_events();
  // Earliest time on_timeout() has work to do; nullopt when none.
  std::optional<Clock::time_point> next_deadline() const;

  State state() const { return state_; }
  bool finished() const { return state_ == State::done || state_ == State::failed; }
  // After finished(): ok, or the reason. Errc::partial when some files failed.
  Result<void> outcome() const;
  const Totals& totals() const { return totals_; }
  // Bytes in flight now (sent or being read, not acknowledged), for tests.
  std::uint64_t in_flight() const;
  // The most blocks this session holds at once, read-and-unsent or being read:
  // window / chunk_size + max_reads_in_flight. Size the read BufferPool at this + 2.
  std::size_t max_blocks() const;
  // Blocks held now (read-and-unsent plus reads in flight), for tests.
  std::size_t blocks_held() const { return reads_in_flight_ + ready_.size() + eager_blocks_; }
  // Grows whenever the receiver confirms something new (an entry done or bytes
  // acknowledged); the app resets its redial budget when it grows.
  std::uint64_t progress_marker() const { return (files_done_ << 40) + acked_; }
  // Entry `index` as the session knows it now (a source that changed is updated by
  // on_source_checked): the driver opens and re-checks files from it, so each entry is
  // held once, here. Precondition: an entry an action handed out by take_actions()
  // names, until the round after the next take_actions() (see the overview).
  const SourceEntry& entry(std::uint32_t index) const { return entries_.at(index); }
  // The same, or nullptr when the session no longer holds entry `index` (finished and
  // released): for a driver that performs an action later than the contract allows
  // (a read that waited for a buffer), whose completion the session then ignores.
  const SourceEntry* held_entry(std::uint32_t index) const {
    auto it = entries_.find(index);
    return it == entries_.end() ? nullptr : &it->second;
  }
  // Entries held now, and the most ever held at once (<= kMaxHeldEntries), for tests.
  std::size_t entries_held() const { return entries_.size(); }
  std::size_t peak_entries_held() const { return peak_entries_held_; }
  // Eager files taken and not finished (being read, or waiting for their VERDICT).
  std::size_t eager_in_flight() const { return eager_.size(); }
  // The whole transfer as events report it (lib/core/events.hpp): files_total = entries,
  // bytes_total = sum of their sizes (the source's expected() figures until it ended,
  // raised to what was met when that is more; exact from then on); done = finished entries (verified, failed or
  // refused) and their sizes, plus the most the receiver ever acknowledged of the
  // current file (so a resumed part counts as done, a re-send does not count twice,
  // and bytes_done never goes down while the entry list is unchanged).
  TransferProgress transfer() const;

 private:
  struct FileProgress {
    protocol::FileDigest digest;   // over the blocks below hashed_upto
    std::uint64_t hashed_upto = 0; // blocks fed to digest, in order, first reads only
    std::uint64_t sent_upto = 0;   // highest offset ever sent (to count re-sends)
    unsigned attempts = 0;
    bool announced = false;        // file_start emitted
  };

  void send_control(protocol::FrameType t, const std::string& body);
  void handle_frame(const protocol::DecodedFrame& f, Clock::time_point now);
  // One handler per frame type the receiver sends (handle_frame dispatches); each says
  // which protocol violations it answers with an ERROR frame.
  void on_hello(protocol::Bytes payload, Clock::time_point now);
  // Keys on both sides: sends our AUTH; on one side only: fails (PROTOCOL.md 5.3).
  void authenticate(const protocol::Hello& theirs, Clock::time_point now);
  void on_auth(protocol::Bytes payload, Clock::time_point now);
  // The handshake is complete: offers the entry that was current when a connection was
  // lost again, or takes the next entries.
  void start_offering(Clock::time_point now);
  void on_answer(protocol::Bytes payload, Clock::time_point now);
  void on_ack(protocol::Bytes payload, Clock::time_point now);
  void on_rpos(protocol::Bytes payload, Clock::time_point now);
  // RPOS with a length: queue the blocks of [offset, offset + length) for re-sending.
  void queue_resend(const protocol::Resend& r, Clock::time_point now);
  // RPOS with length 0: rewind to `offset` (version 1's RPOS).
  void go_back(std::uint64_t offset, Clock::time_point now);
  void on_verdict(protocol::Bytes payload, Clock::time_point now);
  void on_end(protocol::Bytes payload);
  void on_error(protocol::Bytes payload);
  void on_ping(protocol::Bytes payload);
  // Version 4's check and dry-run sessions (sender/sender_inspect.cpp).
  bool inspecting() const { return cfg_.purpose != protocol::Purpose::transfer; }
  // Check: after the OFFER, hash the whole file (HashPrefix) while the receiver hashes
  // its own.
  void start_check();
  void on_check_hashed(std::uint64_t token, Result<protocol::FileDigest> digest, Clock::time_point now);
  void inspect_answer(protocol::Answer a, Clock::time_point now);
  void on_check(protocol::Bytes payload, Clock::time_point now);
  // Directory `dir`'s names on the receiver: those no entry has are extra.
  void report_extra(const std::string& dir, const protocol::CheckReply& c);
  void emit_extra(const std::string& dir, const std::set<std::string>& names);
  // The current entry was checked or planned: counted as done, on to the next.
  void finish_inspected(Clock::time_point now);
  // The current entry failed (refused, unreadable here): file_failed, on to the next.
  void fail_inspected(const std::string& why, Clock::time_point now);
  void end_inspected(Clock::time_point now);
  // An ACK's or RPOS's offset, once checked and acknowledged; nullopt when the position
  // is stale (for an attempt already abandoned: ignored) or a violation (ERROR sent:
  // malformed body, an entry not offered yet, an offset outside [acknowledged, sent]).
  std::optional<std::uint64_t> take_position(protocol::Bytes payload, Clock::time_point now);
  // The common part of ACK and RPOS checks: nullopt when stale or a violation (sent).
  bool position_current(std::uint32_t file_id, const char* what);
  // Acknowledges `offset`; false (violation sent) when outside [acked, ack_limit()].
  bool acknowledge(std::uint64_t offset, Clock::time_point now);
  // The highest offset the receiver may acknowledge: the highest sent, extended over
  // the ANSWER's held ranges that follow it.
  std::uint64_t ack_limit() const;
  // ANSWER checks for version 2: offset and held ranges block-aligned; empty when fine.
  std::string answer_problem(const protocol::Answer& a) const;
  bool is_held(std::uint64_t offset, std::uint64_t end) const;
  std::size_t block_length(std::uint64_t offset) const;
  void issue_read(std::uint64_t offset, bool resend);
  // Sends one block read for an RPOS at once.
  void send_block(std::uint64_t offset, ReadBlock block);
  // After an accepting ANSWER: stream the current file from `offset` (the receiver's
  // verified bytes), hashing that prefix first when this process has not yet.
  void resume_at(std::uint64_t offset, Clock::time_point now);
  // The receiver broke the protocol: ERROR "protocol violation by receiver: <what>", fail.
  void violation(const std::string& what);
  // Tell the receiver why in an ERROR frame, then fail with `e` (closes the connection).
  void close_with_error(Error e);
  void offer_current(Clock::time_point now);
  void start_streaming(std::uint64_t offset, Clock::time_point now);
  void restart_file(Clock::time_point now);
  void pump(Clock::time_point now);
  void emit_ready_chunks();
  void finish_file(bool verified, const std::string& why);
  // Counts entry `index` as finished (verified or failed) and reports it.
  void finish_entry(std::uint32_t index, bool verified, const std::string& why);
  // The failure text of a refused entry: "receiver could not write it: NOTE" for a
  // refusal marked local_io (counted as local I/O in outcome()), else
  // "refused by receiver: NOTE".
  static std::string refusal_reason(const protocol::Answer& a);
  // The current ordinary file is finished: on to the next entry.
  void next_entry(Clock::time_point now);
  // Takes entries while it can (state pipelining): eager ones start reading, an ordinary
  // one becomes current and is offered once the eager files ahead are on the wire; END
  // when every entry is finished.
  void advance(Clock::time_point now);
  std::optional<std::uint32_t> peek_next_entry();
  void take_next_entry();
  // Takes one more entry from the source into the window; false at its end.
  bool pull_entry();
  // The entry `index` now looks like `now_entry` (a source that changed): sizes in the
  // totals follow.
  void replace_entry(std::uint32_t index, SourceEntry now_entry);
  // Entry `index` is finished: released two take_actions() rounds later.
  void retire_entry(std::uint32_t index) { retired_.push_back(index); }
  void release_retired();
  std::uint64_t files_total() const;
  std::uint64_t bytes_total() const;
  // --check-extra: the receiver's names of a checked directory wait until the walk
  // leaves it (every child was met then); those no entry had are reported extra.
  void expect_extra(const std::string& dir, std::set<std::string> names);
  // `wire_path` was pulled: the pending directories it is not inside are finished.
  void settle_extra(const std::string* wire_path);
  bool has_outstanding() const;

  // Version 3's eager files (sender/sender_eager.cpp).
  struct EagerFile {
    std::uint32_t entry = 0;
    std::uint64_t size = 0;          // the entry's, as taken
    bool reading = false;            // a ReadChunk is in flight
    std::optional<ReadBlock> block;  // read (size > 0), source not yet checked or checked
    bool checked = false;            // the source was unchanged after the read: ready to send
    bool sent = false;               // OFFER, DATA, COMMIT are on the wire: VERDICT awaited
  };
  bool eager_eligible(std::uint32_t index) const;
  bool eager_room(std::uint64_t size) const;
  void start_eager(std::uint32_t index, Clock::time_point now);
  // Issues the reads of eager files not read yet, under the read and buffer bounds.
  void pump_eager(Clock::time_point now);
  void on_eager_read(std::uint32_t entry, Result<ReadBlock> block, Clock::time_point now);
  void on_eager_checked(std::uint32_t entry, Result<std::optional<SourceEntry>> now_entry, Clock::time_point now);
  // Sends the ready eager files at the front of the unsent ones, in entry order.
  void emit_eager(Clock::time_point now);
  void send_eager(EagerFile& f);
  // An ANSWER (refuse) or VERDICT for an eager file: false when `file_id` is none.
  bool on_eager_answer(const protocol::Answer& a, Clock::time_point now);
  bool on_eager_verdict(const protocol::Verdict& v, Clock::time_point now);
  // Drops eager file `entry` from the pipeline; `retry`: offer it again later the
  // ordinary way (counting an attempt when `attempt`), else it is finished.
  std::deque<EagerFile>::iterator find_eager(std::uint32_t entry);
  void drop_eager(std::deque<EagerFile>::iterator it);
  // No eager file any more (failure, lost connection): the counts below follow.
  void clear_eager();
  void retry_entry(std::uint32_t entry, bool attempt, const std::string& why);
  bool eager_unsent() const;
  // Asks the driver whether the source of eager file `entry` is unchanged (after its
  // read; at once for an empty file).
  void check_eager(std::uint32_t entry);
  // The connection is gone: every eager file not verified is offered again later.
  void requeue_eager();
  // Version 6: the current file needs nothing more but its VERDICT: go on to the next
  // entry and take the VERDICT by id (committing_), within kMaxCommittingFiles.
  void commit_in_background(Clock::time_point now);
  bool on_committing_verdict(const protocol::Verdict& v, Clock::time_point now);
  // Keeps `size` bytes of `entry`, to be sent again, counted done (recounted_).
  void recount(std::uint32_t entry, std::uint64_t size);
  void fail(Error e);
  void drop_connection(Error e, Clock::time_point now);
  void event(EventType t, std::string detail = {});
  void event_for(std::uint32_t index, EventType t, std::uint64_t offset, std::string detail = {});
  void note_acked() { cur_done_ = std::max(cur_done_, acked_); }

  SenderConfig cfg_;
  // The window of entries (see the overview), by index; where more come from.
  std::map<std::uint32_t, SourceEntry> entries_;
  std::unique_ptr<EntrySource> source_;
  bool source_ended_ = false;
  std::uint32_t pulled_ = 0;       // entries taken from the source: the next index
  std::uint64_t pulled_bytes_ = 0; // sum of their sizes (as they are now)
  EntryCounts expected_;           // the source's figures, corrected by changed sources
  std::vector<std::uint32_t> retired_, retiring_;  // finished: released at take_actions()
  std::size_t peak_entries_held_ = 0;
  State state_ = State::disconnected;
  bool connected_ = false;
  std::vector<std::byte> inbuf_;
  std::vector<Action> actions_;
  std::vector<Event> events_;
  Totals totals_;
  std::optional<Error> failure_;
  std::optional<Error> last_connection_error_;
  std::uint64_t files_failed_verification_ = 0;
  std::uint64_t files_failed_io_ = 0;  // failures of file operations, here or at the receiver
  std::string first_failure_;  // "PATH: why" of the first entry that failed, for outcome()
  std::uint64_t files_done_ = 0;   // entries finished (verified, failed or refused)
  std::uint64_t bytes_done_ = 0;   // sum of their sizes
  std::uint64_t cur_done_ = 0;     // highest acknowledged offset of the current entry, any attempt

  // Entries taken: the next never taken, and those to offer again (failed eager files,
  // eager files without a VERDICT when a connection was lost), before new ones.
  std::uint32_t next_new_ = 0;
  std::deque<std::uint32_t> retry_;
  std::map<std::uint32_t, unsigned> retry_attempts_;  // attempts an entry in retry_ already used
  // Eager files in entry order (<= kMaxEagerFiles); their data bytes; blocks they hold;
  // tokens of their reads and checks; the directories the receiver created on this
  // connection (ANSWER `created`: nothing below them yet).
  std::deque<EagerFile> eager_;
  std::uint64_t eager_bytes_ = 0;
  std::size_t eager_blocks_ = 0;
  std::size_t eager_sent_ = 0;    // eager_'s first ones, sent (the rest are not)
  std::size_t eager_pumped_ = 0;  // eager_'s first ones, read or reading (or empty)
  std::map<std::uint64_t, std::uint32_t> eager_tokens_;
  std::set<std::string> created_dirs_;
  // Entries sent eagerly without a VERDICT that verified them: sent again, they count as
  // re-sent (<= kMaxEagerFiles plus the entries waiting in retry_).
  std::set<std::uint32_t> sent_eagerly_;
  // Version 6: ordinary files whose COMMIT is sent and every byte acknowledged, whose
  // VERDICT this side no longer waits for (<= kMaxCommittingFiles), with their attempts.
  std::map<std::uint32_t, unsigned> committing_;
  // Those of them to be sent again (a failed VERDICT, a lost connection), with their
  // sizes, taken over as cur_done_ when they are current again; and the sizes of both,
  // counted done in the progress figures, which thus never go down.
  std::map<std::uint32_t, std::uint64_t> recounted_;
  std::uint64_t committing_bytes_ = 0;

  // Current ordinary entry (has_current_).
  bool has_current_ = false;
  std::uint32_t cur_ = 0;
  FileProgress prog_;
  std::uint64_t acked_ = 0;      // receiver's verified offset
  std::uint64_t next_read_ = 0;  // next offset to request
  std::uint64_t next_send_ = 0;  // next offset to put on the wire (first sends, in order)
  std::uint64_t sent_hw_ = 0;    // highest next_send_ on this connection for this file
  std::uint64_t token_base_ = 1; // tokens below this are stale (rewind, reconnect)
  std::uint64_t next_token_ = 1;
  unsigned reads_in_flight_ = 0;   // all ReadChunks not completed, stale ones too
  unsigned resend_reads_ = 0;      // current (not stale) re-reads for RPOS in flight
  struct PendingRead {
    std::uint64_t offset;
    bool resend;
  };
  std::map<std::uint64_t, ReadBlock> ready_;          // read in order, not yet sent, by offset
  std::map<std::uint64_t, PendingRead> read_offsets_; // token -> what it reads
  // Blocks an RPOS named, to re-read and re-send before new data: at most the blocks
  // in [acked, sent), so bounded by the window.
  std::set<std::uint64_t> resend_;
  std::vector<protocol::ByteRange> held_;  // the ANSWER's held ranges (<= kMaxHeldRanges)
  std::uint64_t prefix_token_ = 0;
  std::uint64_t check_token_ = 0;  // CheckSource in flight (0: none)
  bool commit_sent_ = false;

  // Check of the current entry: its digest once hashed (or why it could not be), and
  // whether the receiver's ANSWER asked for the COMMIT. For --check-extra, the checked
  // directories the walk is still inside (each inside the one before it) and the
  // receiver's names in each that no entry has had yet.
  std::optional<std::string> check_digest_;
  std::optional<std::string> check_hash_error_;
  bool check_wants_commit_ = false;
  struct ExtraNames {
    std::string dir;
    std::set<std::string> names;
  };
  std::vector<ExtraNames> extra_dirs_;

  // Liveness.
  Clock::time_point last_rx_{};
  Clock::time_point last_ack_progress_{};
  Clock::time_point last_ping_{};
  std::uint64_t ping_nonce_ = 0;

  // Authentication of the current connection.
  protocol::Nonce nonce_{};       // ours, fresh per connection
  protocol::Nonce peer_nonce_{};  // the receiver's
  std::string software_;          // the receiver's HELLO, for session_start after its AUTH
};

}  // namespace ferry::sender
