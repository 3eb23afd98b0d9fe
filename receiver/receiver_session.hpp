// ReceiverSession: the receiving side of one ferry connection, sans-I/O.
//
// The driver feeds it bytes from one connection; it verifies every frame, and returns
// Actions: frames to send, and file actions (open a partial, write a verified chunk,
// commit, close) that the driver performs on the destination and answers with
// on_file_opened / on_chunk_written / on_file_committed. One session serves one
// connection; a sender that reconnects gets a new session, and resumes through the
// partial file and its journal.
//
//   ReceiverSession s(cfg, now);
//   auto space = s.input_space(64 * 1024);          // or s.on_bytes(bytes, now)
//   s.on_input(read(fd, space), now);
//   for (auto& a : s.take_actions()) perform(a);   // spans in WriteChunk stay valid
//                                                   // until the next input call
//   s.on_input_drained(now);                        // ACK and RPOS reports
//
// Protocol version 2 (docs/PROTOCOL.md section 6): each DATA frame is one block. A
// good block at or above the contiguous written point is written where it belongs
// (WriteChunk, positional; writes complete in any order); a block whose data failed its
// check is reported missing (RPOS with a length) and only it is sent again; a frame
// whose prefix failed cannot be placed, so the sender is asked to go back (RPOS with
// length 0) from the contiguous written point.
//
// Acknowledgement rule: ACK(N) means every byte below N matched its block digest and
// its write completed. Sent at least every window/4 bytes and whenever the input is
// drained.
//
// Deadlines (docs/SECURITY.md, "Limits"): the session tells its driver when it next
// needs on_timeout() (next_deadline(), as SenderSession does). Until the handshake is
// complete (handshake_complete(): the one predicate) only frames of at most
// kMaxHandshakePayload bytes are taken, and the connection is closed at
// handshake_timeout after the session began. After it, a sender must make progress
// while the next step is its own: a whole frame other than PING and PONG, or another
// kProgressBytes of a DATA frame still arriving (a slow link carries a large block in
// pieces; a trickle of a few bytes a second is no progress). A connection
// without progress for peer_timeout is closed (idle, trickling or PING-only peers).
// The clock stops while the receiver itself works (an open, block writes, a commit) and
// restarts when that work completes; after an ANSWER that lets the sender resume, the
// sender first reads and hashes the bytes the receiver holds, so the clock gets an
// allowance of those bytes at kMinSenderHashRate. An OpenFile that waits for another
// connection to release its path (on_path_busy) is refused with ANSWER "busy" after
// busy_timeout.
//
// Bounds (the sender is hostile): at most kMaxHeldBlocks blocks above the contiguous
// point (written, being written or held from the journal), plus the one at it; beyond
// that a block is dropped and reported missing once there is room. At most kMaxReportsPerBatch RPOS
// frames per input batch; the rest wait for the next batch.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lib/core/events.hpp"
#include "lib/core/session_actions.hpp"
#include "protocol/auth.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry::receiver {

enum class LinkPolicy { all, safe, none };

// Why the symlink `wire_path` -> `target` is refused under `policy`, or nullopt when it
// may be created. Under `safe`: an absolute target, or one whose ".." components reach
// above DEST counting from the directory that holds the link.
std::optional<std::string> link_refusal(LinkPolicy policy, std::string_view wire_path, std::string_view target);

struct ReceiverConfig {
  std::uint64_t window = protocol::kDefaultWindow;  // for ACK pacing only
  std::string software = "ferry";
  // Authentication (PROTOCOL.md 5.3): the shared key, or none. A keyed receiver takes
  // no OFFER (and emits no session_start) before the sender has proved the same key;
  // keys on one side only fail at once (Errc::authentication).
  std::optional<protocol::AuthKey> key{};
  // This connection's fresh HELLO nonce: the CSPRNG by default; tests inject one.
  std::function<protocol::Nonce()> make_nonce = protocol::random_nonce;
  // Limits (see the header comment; defaults in docs/SECURITY.md, "Limits").
  std::chrono::milliseconds handshake_timeout{10'000};  // from the session's start
  std::chrono::milliseconds peer_timeout{60'000};       // without progress from the sender
  std::chrono::milliseconds busy_timeout{120'000};      // waiting for a path another connection holds
  // Symlink OFFERs (version 4): `all` creates them with any target; `safe` refuses an
  // absolute target or one whose ".." climb out of DEST from the link's place
  // (rsync's --safe-links); `none` refuses every one (ferry-recv --no-links).
  LinkPolicy links = LinkPolicy::all;
  // Only check and dry-run sessions (ferry-recv --inspect-only): a sender whose HELLO
  // asks for a transfer gets ERROR and the connection ends.
  bool inspect_only = false;
};

// Prepare the offered entry: directory -> create it; symlink -> create it (atomically,
// never following a link on its path or at its name), on_file_opened with no offset;
// file -> open or create its
// partial, check the journal and the partial, and report the verified offset and the
// digest of bytes [0, offset). Answer with on_file_opened().
struct OpenFile {
  std::uint32_t file_id;
  protocol::Offer offer;
};
// Write one verified block at `offset` of the open file (positional; several may be in
// flight and complete in any order); answer with on_chunk_written(). The driver
// records `digest` (the block digest the decoder computed) in the journal.
struct WriteChunk {
  std::uint32_t file_id;
  std::uint64_t offset;
  protocol::Bytes data;  // valid until the next on_bytes(), input_space() or on_input()
  std::uint64_t digest;
};
// The digest matched: fsync, rename to the final name, fsync the directory, set
// mtime and mode. Answer with on_file_committed().
struct CommitFile {
  std::uint32_t file_id;
};
// Stop using the open file. discard: delete partial and journal (digest mismatch);
// otherwise save the journal so a later connection resumes.
struct CloseFile {
  std::uint32_t file_id;
  bool discard;
};
// Version 3: an eager file (OFFER `eager`: at most one block, sent whole behind its
// OFFER) verified in memory: its block digest and file digest matched. Write it, with
// the others of its batch, durably under its final name (lib/fs/file_batch), then answer
// with on_file_committed(file_id). Several may be pending; answer in any order.
// Version 6: `offer.kind` directory (no data) is an eager directory, made in the batch
// in order with the files (lib/fs/file_batch StagedFile::directory).
struct CommitSmallFile {
  std::uint32_t file_id;
  protocol::Offer offer;
  std::vector<std::byte> data;  // the whole file
};
// Version 4, check sessions (HELLO purpose "check", docs/PROTOCOL.md 6.11): read what
// DEST holds at `offer.path` without writing anything (lib/fs/dest_probe
// inspect_final): its kind, size, whether ferry's partial is there, and for a regular
// file of the offered size its file digest with the offer's block size; for a directory
// with `list_names`, the names in it. Answer with on_final_digested(). At most one is
// pending per session.
struct DigestFinalFile {
  std::uint32_t file_id;
  protocol::Offer offer;
  bool list_names = false;
};
struct FinalFile {
  enum class Kind { missing, file, directory, other, symlink };  // as lib/fs FinalState's
  Kind kind = Kind::missing;
  std::uint64_t size = 0;
  bool partial = false;
  std::optional<protocol::FileDigest> digest{};
  std::vector<std::string> names{};
  bool truncated = false;
  std::string target{};  // kind symlink: its text
};
// Version 4, dry-run sessions (HELLO purpose "dry_run"): what OpenFile would report,
// computed without writing anything (lib/fs/dest_probe plan_open; `created`: a
// directory that would be made). Answer with on_file_probed(). At most one is pending.
struct ProbeFile {
  std::uint32_t file_id;
  protocol::Offer offer;
};
// In check and dry-run sessions the session emits only SendFrame, CloseConnection,
// DigestFinalFile and ProbeFile: none of the actions that write.
using Action = std::variant<SendFrame, CloseConnection, OpenFile, WriteChunk, CommitFile, CloseFile, CommitSmallFile,
                            DigestFinalFile, ProbeFile>;

// A block above the resume offset that the partial holds and its journal vouches for
// (re-verified at open).
struct HeldBlock {
  std::uint64_t offset;
  std::uint64_t length;
  std::uint64_t digest;  // its block digest
};
struct OpenedFile {
  std::uint64_t offset = 0;     // verified contiguous bytes already held (a block boundary or the size)
  protocol::FileDigest prefix;  // file digest of the blocks below offset
  std::string note;             // e.g. "source changed, starting over", "partial repaired"
  // Blocks above offset, sorted; the session lists them in ANSWER's held ranges (merged,
  // at most protocol::kMaxHeldRanges; blocks beyond are not listed and not counted).
  std::vector<HeldBlock> held;
  bool created = false;  // directories: it did not exist and was made for this offer
};

class ReceiverSession {
 public:
  enum class State {
    awaiting_hello,  // nothing received yet
    awaiting_auth,   // keyed: HELLOs exchanged, waiting for the sender's AUTH
    idle,            // between files
    opening,         // OpenFile pending
    receiving,       // DATA expected for the current file
    eager,           // an eager OFFER came: its DATA and COMMIT follow
    inspecting,      // check / dry run: DigestFinalFile or ProbeFile pending
    awaiting_commit, // check: our digest is ready, the sender's COMMIT is awaited
    ended,           // END exchanged: the sender's transfer is complete
    failed,          // connection-fatal error (sent ERROR or got one)
  };

  ReceiverSession(ReceiverConfig config, Clock::time_point now);

  static constexpr std::size_t kMaxHeldBlocks = protocol::kMaxHeldBlocks;
  static constexpr std::size_t kMaxReportsPerBatch = 64;
  // The slowest rate at which a sender is expected to read and hash the bytes an ANSWER
  // lets it skip (a resume offset, held blocks, a file already complete).
  static constexpr std::uint64_t kMinSenderHashRate = 64ull * 1024 * 1024;  // bytes per second
  // Bytes of a DATA frame still arriving that count as progress (see the header comment).
  static constexpr std::size_t kProgressBytes = 16 * 1024;

  // Bytes read from the connection (copied into the session's input buffer).
  void on_bytes(protocol::Bytes bytes, Clock::time_point now);
  // Room for at least `at_least` bytes at the end of the session's input buffer, so the
  // driver can read straight into it; then on_input(n) with the bytes it read. Ends the
  // validity of earlier WriteChunk spans.
  std::span<std::byte> input_space(std::size_t at_least);
  // `n` bytes were read into input_space(): as on_bytes() of them, without the copy.
  // Precondition: n <= input_space().size().
  void on_input(std::size_t n, Clock::time_point now);
  // The end of an input batch: sends the ACK for what was written and the RPOS reports.
  void on_input_drained(Clock::time_point now);
  void on_file_opened(std::uint32_t file_id, Result<OpenedFile> r, Clock::time_point now);
  // Completion of the WriteChunk at `offset` of `length` bytes (any order). An Error
  // (ENOSPC, EIO) is sent to the sender in an ERROR frame and ends the connection.
  void on_chunk_written(std::uint32_t file_id, std::uint64_t offset, std::uint64_t length, Result<void> r,
                        Clock::time_point now);
  // Completion of CommitFile, or of a CommitSmallFile (any order among those).
  void on_file_committed(std::uint32_t file_id, Result<void> r, Clock::time_point now);
  // Eager files handed over in CommitSmallFile and not answered yet (<= kMaxEagerFiles).
  std::size_t eager_pending() const { return pending_.size(); }
  // Version 4 (receiver/receiver_inspect.cpp): completion of a DigestFinalFile (check)
  // or a ProbeFile (dry run). An Error refuses the entry (ANSWER refuse).
  void on_final_digested(std::uint32_t file_id, Result<FinalFile> r, Clock::time_point now);
  void on_file_probed(std::uint32_t file_id, Result<OpenedFile> r, Clock::time_point now);
  // What the sender's HELLO said this session is for (transfer until then).
  protocol::Purpose purpose() const { return purpose_; }
  // The connection is gone: closes the open file (journal kept).
  void on_disconnected(const Error& why, Clock::time_point now);
  // The driver could not start the OpenFile for `file_id` yet: another connection holds
  // its path. It starts it later (on_file_opened as usual) or, after busy_timeout, the
  // session refuses the entry itself (waiting_for_path() turns false: the driver then
  // forgets the wait).
  void on_path_busy(std::uint32_t file_id, Clock::time_point now);
  // The path is free now and the driver starts the OpenFile: the busy wait is over (the
  // open itself is the receiver's work, with no deadline).
  void on_path_free(std::uint32_t file_id);
  bool waiting_for_path() const { return busy_since_.has_value(); }
  // Earliest time on_timeout() has work to do; nullopt when none (the driver arms one
  // timer from it after every input and completion).
  std::optional<Clock::time_point> next_deadline() const;
  // The driver's timer fired (at or after next_deadline()): closes a connection past
  // its handshake or progress deadline, refuses an entry past its busy wait.
  void on_timeout(Clock::time_point now);
  // The handshake is complete: HELLO exchanged (and, where there is one, the sender
  // authenticated). Until then only small frames are taken (max_payload()).
  bool handshake_complete() const { return handshake_complete_; }
  // The largest frame payload the session accepts now.
  std::size_t max_payload() const {
    return handshake_complete_ ? protocol::kMaxPayload : protocol::kMaxHandshakePayload;
  }

  std::vector<Action> take_actions();
  std::vector<Event> take_events();

  State state() const { return state_; }
  bool ended() const { return state_ == State::ended; }
  bool failed() const { return state_ == State::failed; }
  const std::string& session_id() const { return session_id_; }
  const Totals& totals() const { return totals_; }
  std::optional<Error> failure() const { return failure_; }
  // Bytes written and confirmed for the current file (0 until a file is opened).
  std::uint64_t written() const { return written_; }
  // The whole transfer as events report it (lib/core/events.hpp): totals from the sender's
  // HELLO (0, unknown, when it did not send them); done = the HELLO's figures plus
  // the entries finished on this connection (a failed one counts until it is offered
  // again) and what is held of the current file. Display only: the sender's figures
  // are not checked against anything, just clamped to the totals.
  TransferProgress transfer() const;

 private:
  void handle_frame(const protocol::DecodedFrame& f, Clock::time_point now);
  // One handler per frame type the sender sends (handle_frame dispatches); each says
  // which protocol violations it answers with an ERROR frame.
  void on_corrupt_payload(const protocol::DecodedFrame& f);
  // Decodes and handles every whole frame in the input buffer.
  void decode_input(Clock::time_point now);
  void on_hello(protocol::Bytes payload);
  // The sender has proved the key (or neither side has one): the session begins.
  void begin_session(const protocol::Hello& theirs);
  void on_auth(protocol::Bytes payload);
  void on_offer(protocol::Bytes payload);
  void on_data(const protocol::DecodedFrame& f);
  // DATA's block-placement checks (aligned, right length, inside the file): the problem
  // or empty.
  std::string block_problem(std::uint64_t offset, std::size_t length) const;
  std::size_t block_length(std::uint64_t offset) const;
  // A block that failed its data check, or was dropped at the bound: report it.
  void note_missing(std::uint64_t offset);
  // The blocks in [offset, end) arrived: no longer missing or reported.
  void forget_reported(std::uint64_t offset, std::uint64_t end);
  // Sends up to kMaxReportsPerBatch RPOS for the missing blocks noted.
  void send_reports();
  // Notes the holes below the highest block seen that were dropped at the bound.
  void find_dropped_holes();
  // Moves the contiguous written point over completed writes and held blocks.
  void advance_written();
  // The file is complete and a COMMIT is waiting: verify and commit, or fail.
  void evaluate_commit();
  // Accepts OpenedFile::held blocks (listed in ANSWER): returns the ranges.
  std::vector<protocol::ByteRange> take_held(const std::vector<HeldBlock>& held);
  void on_commit(protocol::Bytes payload);
  // Version 3's eager files (OFFER `eager`): OFFER, DATA (size > 0), COMMIT in a row.
  void begin_eager(const protocol::Offer& o);
  void on_eager_data(const protocol::DataView& d, std::uint64_t digest);
  void on_eager_commit(const protocol::Commit& c);
  // Version 6's eager directories: staged like an eager file, answered after its batch.
  void begin_eager_directory(const protocol::Offer& o);
  // Answers a CommitSmallFile: false when `file_id` is not pending.
  bool finish_small_file(std::uint32_t file_id, const Result<void>& r);
  // Version 4's check and dry-run sessions (receiver/receiver_inspect.cpp): OFFER and
  // COMMIT there; DATA is a violation.
  void inspect_offer(protocol::Bytes payload, Clock::time_point now);
  void inspect_commit(protocol::Bytes payload);
  // The check of the current entry once what it needs is known: CHECK, or ANSWER
  // accept when the sender's COMMIT is still to come.
  void reply_check();
  void send_check(protocol::CheckReply reply);
  void on_end(protocol::Bytes payload);
  void on_error(protocol::Bytes payload);
  void on_ping(protocol::Bytes payload);
  void send_control(protocol::FrameType t, const std::string& body);
  void send_ack(std::uint64_t offset);
  void send_rpos(std::uint64_t offset, std::uint64_t length);
  // The sender broke the protocol: ERROR "protocol violation by sender: <what>", fatal.
  void violation(const std::string& what);
  // Tell the sender why in an ERROR frame, then fatal(e) (closes the connection).
  void close_with_error(Error e);
  // The current entry is refused (ANSWER refuse) with `note`, and counted as failed;
  // `local_io`: because a file operation failed here (ANSWER `local_io`, so that the
  // sender's exit code can say so), not by rule or for a busy path.
  void refuse_entry(std::string note, bool local_io = false);
  // The current file failed verification or its commit (VERDICT failed, `why`).
  void send_failed_verdict(std::string why);
  // VERDICT failed for entry `file_id` (`path`, `size`), counted as failed.
  void fail_entry(std::uint32_t file_id, const std::string& path, std::uint64_t size, std::string why);
  // flush false: the connection is dropped at once, queued frames and all (timeouts: a
  // peer that stopped reading must not keep it for the flush).
  void fatal(Error e, bool flush = true);
  // True while the next step is the sender's (the progress clock runs).
  bool waiting_on_peer() const;
  // Restarts the progress clock at `at` (may be in the future: an allowance).
  void note_progress(Clock::time_point at) { progress_at_ = at; }
  // The undecoded tail is part of a DATA frame: progress once kProgressBytes more came.
  void note_partial_frame(Clock::time_point now);
  void close_current(bool discard);
  void mark_failed(const std::string& path, std::uint64_t size);
  void unmark_failed(const std::string& path);  // the entry was verified after all
  void event(EventType t, std::string detail = {});
  // An event about an entry other than the current one (an eager file).
  void event_for(EventType t, const std::string& path, std::uint64_t size, std::string detail = {});

  ReceiverConfig cfg_;
  State state_ = State::awaiting_hello;
  bool handshake_complete_ = false;
  Clock::time_point started_;      // the session began: the handshake deadline counts from it
  Clock::time_point progress_at_;  // the sender's last progress (or the end of our own work)
  std::optional<Clock::time_point> busy_since_;  // the OpenFile waits for a busy path
  std::size_t writes_pending_ = 0;  // WriteChunk of the current file not completed yet
  std::size_t partial_progress_ = 0;  // undecoded bytes at the last note_partial_frame progress
  std::vector<std::byte> inbuf_;  // capacity; bytes [consumed_, filled_) not decoded yet
  std::size_t consumed_ = 0;     // bytes of inbuf_ already decoded (compacted lazily)
  std::size_t filled_ = 0;       // bytes of inbuf_ holding input
  std::vector<Action> actions_;
  std::vector<Event> events_;
  Totals totals_;
  std::optional<Error> failure_;
  std::string session_id_;
  // Authentication of this connection (keyed only): our nonce and the sender's, and its
  // HELLO, kept for begin_session() until its AUTH has verified.
  protocol::Nonce nonce_{};
  protocol::Nonce peer_nonce_{};
  std::optional<protocol::Hello> pending_hello_;
  // Failed and not verified since, with their offered sizes; files_failed counts them
  // and the failures past the bound (see mark_failed).
  static constexpr std::size_t kMaxTrackedFailures = 10'000;
  std::map<std::string, std::uint64_t> failed_paths_;
  std::uint64_t untracked_failures_ = 0;
  std::uint64_t failed_bytes_ = 0;  // sum of those sizes (saturating)
  TransferProgress hello_progress_;  // the sender's HELLO figures

  bool file_open_ = false;
  std::uint32_t cur_ = 0;
  protocol::Offer offer_;
  protocol::FileDigest digest_;  // over the blocks below written_
  std::uint64_t written_ = 0;    // contiguous point: every block below is written (or held)
  std::uint64_t acked_ = 0;      // last ACK sent
  std::uint64_t seen_upto_ = 0;  // end of the highest block the sender sent (good or not)
  struct Block {
    std::uint64_t length = 0;
    std::uint64_t digest = 0;
    bool written = false;  // the write completed (or a held block)
  };
  // Blocks at or above written_ accepted (being written, written, held); <= kMaxHeldBlocks.
  std::map<std::uint64_t, Block> above_;
  // Blocks found missing in this batch (to report), and the ranges reported and not yet
  // arrived (start -> end); both bounded by the blocks of the file above written_ that
  // are not in above_, and in count by kMaxHeldBlocks.
  std::set<std::uint64_t> missing_;
  std::map<std::uint64_t, std::uint64_t> reported_;
  bool dropped_ = false;     // a block was dropped at the bound: look for holes
  bool go_back_ = false;     // a DATA prefix failed in this batch: RPOS length 0
  bool unplaced_ = false;    // a DATA prefix failed for this file: seen_upto_ may be short
  std::optional<std::string> commit_digest_;  // a COMMIT waiting for the missing blocks

  // The eager file between its OFFER and its COMMIT (state eager).
  struct EagerFile {
    protocol::Offer offer;
    std::vector<std::byte> data;  // its one block, copied (the input buffer moves on)
    std::uint64_t block_digest = 0;
    bool got_data = false;
    bool damaged = false;  // its DATA failed its check: the VERDICT says failed
    bool refused = false;  // ANSWER refuse sent: its DATA and COMMIT are dropped
  };
  std::optional<EagerFile> eager_;
  // Entries handed to the driver, not answered yet: eager files and directories
  // (CommitSmallFile) and, version 6, ordinary files (CommitFile) whose commit runs
  // while the sender goes on.
  enum class Pending { eager_file, eager_directory, file };
  struct PendingCommit {
    std::uint32_t file_id = 0;
    std::string path;
    std::uint64_t size = 0;
    Pending kind = Pending::eager_file;  // an eager directory is answered by ANSWER, not VERDICT
  };
  std::deque<PendingCommit> pending_;  // eager ones <= kMaxEagerFiles, files <= kMaxCommittingFiles + 1
  std::uint64_t pending_bytes_ = 0;     // the eager files' sizes (held in memory), <= kMaxEagerBytes
  std::size_t pending_files_ = 0;       // of pending_, the ordinary files (Pending::file)
  // ANSWER accept (made) or refuse (the batch's error) for an eager directory.
  void finish_eager_directory(const PendingCommit& done, const Result<void>& r);

  // Version 4: the session's purpose (HELLO), and for a check the entry's state: what
  // DEST holds (DigestFinalFile done), the sender's COMMIT (at most one, for the current
  // entry), and the last entry answered with CHECK (a COMMIT for it that crossed the
  // CHECK on the wire is dropped).
  protocol::Purpose purpose_ = protocol::Purpose::transfer;
  bool list_extra_ = false;
  std::optional<FinalFile> final_;
  std::optional<protocol::Commit> check_commit_;
  std::optional<std::uint32_t> last_checked_;
};

}  // namespace ferry::receiver
