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
//   s.on_bytes(bytes, now);
//   for (auto& a : s.take_actions()) perform(a);   // spans in WriteChunk stay valid
//                                                   // until the next on_bytes()
//   s.on_input_drained(now);                        // acknowledges what was written
//
// Acknowledgement rule: ACK(N) means every byte below N matched its chunk checksum
// and was written to the partial file. Sent at least every window/4 bytes and
// whenever the input is drained.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "lib/core/events.hpp"
#include "lib/core/session_actions.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry::receiver {

struct ReceiverConfig {
  std::uint64_t window = protocol::kDefaultWindow;  // for ACK pacing only
  std::string software = "ferry";
};

// Prepare the offered entry: directory -> create it; file -> open or create its
// partial, check the journal and the partial, and report the verified offset and the
// digest of bytes [0, offset). Answer with on_file_opened().
struct OpenFile {
  std::uint32_t file_id;
  protocol::Offer offer;
};
// Write verified bytes at offset of the open file; answer with on_chunk_written().
struct WriteChunk {
  std::uint32_t file_id;
  std::uint64_t offset;
  protocol::Bytes data;  // valid until the next on_bytes()
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
using Action = std::variant<SendFrame, CloseConnection, OpenFile, WriteChunk, CommitFile, CloseFile>;

struct OpenedFile {
  std::uint64_t offset = 0;     // verified bytes already held
  protocol::Digest128 prefix;   // digest of those bytes
  std::string note;             // e.g. "source changed, starting over", "partial repaired"
};

class ReceiverSession {
 public:
  enum class State {
    awaiting_hello,  // nothing received yet
    idle,            // between files
    opening,         // OpenFile pending
    receiving,       // DATA expected for the current file
    committing,      // CommitFile pending
    ended,           // END exchanged: the sender's transfer is complete
    failed,          // connection-fatal error (sent ERROR or got one)
  };

  ReceiverSession(ReceiverConfig config, Clock::time_point now);

  void on_bytes(protocol::Bytes bytes, Clock::time_point now);
  void on_input_drained(Clock::time_point now);
  void on_file_opened(std::uint32_t file_id, Result<OpenedFile> r, Clock::time_point now);
  // `end` is the WriteChunk's offset + length.
  void on_chunk_written(std::uint32_t file_id, std::uint64_t end, Result<void> r, Clock::time_point now);
  void on_file_committed(std::uint32_t file_id, Result<void> r, Clock::time_point now);
  // The connection is gone: closes the open file (journal kept).
  void on_disconnected(const Error& why, Clock::time_point now);

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
  void on_corrupt_payload(protocol::FrameType type);
  void on_hello(protocol::Bytes payload);
  void on_offer(protocol::Bytes payload);
  void on_data(protocol::Bytes payload);
  void on_commit(protocol::Bytes payload);
  void on_end(protocol::Bytes payload);
  void on_error(protocol::Bytes payload);
  void on_ping(protocol::Bytes payload);
  void send_control(protocol::FrameType t, const std::string& body);
  void send_position(protocol::FrameType t, std::uint64_t offset);
  // The sender broke the protocol: ERROR "protocol violation by sender: <what>", fatal.
  void violation(const std::string& what);
  // Tell the sender why in an ERROR frame, then fatal(e) (closes the connection).
  void close_with_error(Error e);
  // The current entry is refused (ANSWER refuse) with `note`, and counted as failed.
  void refuse_entry(std::string note);
  // The current file failed verification or its commit (VERDICT failed, `why`).
  void send_failed_verdict(std::string why);
  void fatal(Error e);
  void close_current(bool discard);
  void mark_failed();
  void unmark_failed();  // the current entry was verified after all
  void event(EventType t, std::string detail = {});

  ReceiverConfig cfg_;
  State state_ = State::awaiting_hello;
  std::vector<std::byte> inbuf_;
  std::size_t consumed_ = 0;  // bytes of inbuf_ already decoded (compacted lazily)
  std::vector<Action> actions_;
  std::vector<Event> events_;
  Totals totals_;
  std::optional<Error> failure_;
  std::string session_id_;
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
  protocol::Digest128 digest_;
  std::uint64_t verified_ = 0;  // bytes checked and handed to WriteChunk, in order
  std::uint64_t written_ = 0;   // bytes confirmed written
  std::uint64_t acked_ = 0;     // last ACK sent
  bool rpos_pending_ = false;   // RPOS sent; discarding DATA until offset == verified_
};

}  // namespace ferry::receiver
