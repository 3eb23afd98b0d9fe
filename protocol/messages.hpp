// Typed bodies of the JSON control frames (HELLO, OFFER, ANSWER, COMMIT, VERDICT,
// ERROR, END). Schemas are in docs/PROTOCOL.md section 4.
//
// Every parser is total and validating: wrong JSON, a missing field, a wrong type or
// an out-of-range number yields an Error with Errc::protocol naming the field; a
// parsed value is safe to act upon (paths are checked separately by wire_path).
//
//   auto offer = parse_offer(frame.payload);
//   if (!offer) return peer_violation(offer.error());
//   std::string body = to_json(Answer{...});
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/result.hpp"

namespace ferry::protocol {

enum class Role { sender, receiver };

// Version 4 (PROTOCOL.md 6.11): what a sender's session is for. A transfer writes into
// DEST; a check compares what DEST holds with the offered entries; a dry run answers
// each OFFER as a transfer would, without writing. In check and dry_run the receiver
// performs no action that writes.
enum class Purpose { transfer, check, dry_run };

struct Hello {
  std::uint32_t min_version = kProtocolVersion;
  std::uint32_t max_version = kProtocolVersion;
  Role role = Role::sender;
  std::string session;   // 32 hex digits, chosen by the sender; the receiver echoes it
  std::string software;  // free text, e.g. "ferry 0.1.0"
  // Optional, informative, sender only (PROTOCOL.md 4.3): the whole transfer's size and
  // what was finished before this connection. Absent fields are nullopt and are not
  // written. A receiver may show them; it must not rely on them for anything else.
  std::optional<std::uint64_t> files_total{};  // entries the sender will offer, <= 2^32
  std::optional<std::uint64_t> bytes_total{};  // sum of their sizes, <= 2^63-1
  std::optional<std::uint64_t> files_done{};   // entries finished (verified, failed, refused); <= files_total
  std::optional<std::uint64_t> bytes_done{};   // sum of the sizes of those entries; <= bytes_total
  // Version 3 (PROTOCOL.md 5.3): a fresh random nonce of this connection, 64 hex digits
  // (protocol/auth.hpp), and whether this side uses a key. Both are written only when
  // `nonce` is set; a peer's HELLO without a nonce is refused by the sessions once
  // version 3 is agreed (an older peer fails the version negotiation first).
  std::string nonce{};
  bool keyed = false;
  // Version 4, sender only: written only when not `transfer` (an absent field means
  // transfer, so a transfer's HELLO is unchanged).
  Purpose purpose = Purpose::transfer;
  // Version 4, check only: the sender wants the names DEST holds in each offered
  // directory (CHECK `names`), to find entries only the receiver has. Written only when true.
  bool list_extra = false;
};

// symlink: version 4, a link sent as a link (the OFFER's `target`, no data).
enum class EntryKind { file, directory, symlink };

// The longest symlink target an OFFER may carry, in bytes (PATH_MAX).
inline constexpr std::size_t kMaxLinkTarget = 4096;

struct Offer {
  std::uint32_t file_id = 0;
  std::string path;          // wire path, see wire_path.hpp
  EntryKind kind = EntryKind::file;
  std::uint64_t size = 0;    // bytes; 0 for directories
  std::int64_t mtime_ns = 0; // nanoseconds since the epoch
  std::uint32_t mode = 0644; // permission bits (<= 07777)
  std::string identity;      // source identity; a change means "start over"
  // Files: the size of the blocks the file is cut into (the sender's chunk size,
  // kMinChunkSize..kMaxChunkSize); every DATA frame carries one whole block. 0 for
  // directories (not written).
  std::uint32_t block_size = 0;
  // Version 3, files of at most one block only: the sender sends this file's DATA
  // (when size > 0) and its COMMIT right behind the OFFER without waiting for the ANSWER,
  // and the receiver answers with the VERDICT alone (or an ANSWER refuse). Sent only
  // for files in a directory the receiver created on this connection (ANSWER
  // `created`), where it certainly holds nothing. Written only when true.
  bool eager = false;
  // Version 4, symlinks only (required there, absent otherwise): the link's text as
  // readlink returns it, 1..kMaxLinkTarget bytes, no NUL, UTF-8 (JSON carries nothing
  // else). Stored verbatim by the receiver; size 0, no DATA, no COMMIT.
  std::string target{};
};

enum class AnswerStatus { accept, refuse };

// A range of bytes of a file, [offset, offset + length).
struct ByteRange {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};
inline constexpr std::size_t kMaxHeldRanges = 64;

struct Answer {
  std::uint32_t file_id = 0;
  AnswerStatus status = AnswerStatus::accept;
  std::uint64_t offset = 0;  // verified bytes the receiver already holds (accept)
  std::string note;          // why refused, or e.g. "source changed, starting over"
  // Accept: blocks above `offset` the receiver already holds, verified (from a journal
  // of an earlier connection), sorted, disjoint, at most kMaxHeldRanges; the sender
  // does not send them again. Empty: not written.
  std::vector<ByteRange> held{};
  // Version 3, directories: the receiver created it for this offer (it did not exist),
  // so it holds no file below it yet. Written only when true.
  bool created = false;
  // Version 4, refusals: the receiver could not open or make the entry because a file
  // operation failed there (EACCES, ENOSPC, EIO...), not by rule or because the path
  // is busy. Written only when true.
  bool local_io = false;
};

struct Commit {
  std::uint32_t file_id = 0;
  std::uint64_t size = 0;
  std::string xxh3_128;  // canonical hex of the whole file
};

enum class VerdictStatus { verified, failed };

struct Verdict {
  std::uint32_t file_id = 0;
  VerdictStatus status = VerdictStatus::verified;
  std::string reason;  // for failed
};

// Version 4: the receiver's answer to an entry of a check session (frame CHECK). It
// never carries the receiver's digest (docs/SECURITY.md, "say less").
enum class CheckResult { identical, different, missing, partial };
struct CheckReply {
  std::uint32_t file_id = 0;
  CheckResult result = CheckResult::identical;
  // different: "size", "content" or "kind" (a file where a directory is offered, or
  // the other way round, or something that is neither). Empty otherwise, not written.
  std::string reason{};
  // Directories of a session with `list_extra`: names of the entries directly in it
  // (regular files and directories, ferry's own temporary names left out), sorted, at
  // most kMaxCheckNames and kMaxCheckNameBytes in all; `truncated` when there were more.
  std::vector<std::string> names{};
  bool truncated = false;
};
inline constexpr std::size_t kMaxCheckNames = 4096;
inline constexpr std::size_t kMaxCheckNameBytes = 48 * 1024;

struct ErrorBody {
  std::string code;     // errc_name() of the cause
  std::string message;  // one line
};

struct End {
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;
};

std::string to_json(const Hello& m);
std::string to_json(const Offer& m);
std::string to_json(const Answer& m);
std::string to_json(const Commit& m);
std::string to_json(const Verdict& m);
std::string to_json(const ErrorBody& m);
std::string to_json(const End& m);
std::string to_json(const CheckReply& m);

Result<Hello> parse_hello(Bytes payload);
Result<Offer> parse_offer(Bytes payload);
Result<Answer> parse_answer(Bytes payload);
Result<Commit> parse_commit(Bytes payload);
Result<Verdict> parse_verdict(Bytes payload);
Result<ErrorBody> parse_error(Bytes payload);
Result<End> parse_end(Bytes payload);
Result<CheckReply> parse_check(Bytes payload);
const char* purpose_name(Purpose p);
const char* check_result_name(CheckResult r);

// Highest version both HELLOs support, or 0 when there is none.
std::uint32_t negotiate_version(const Hello& a, const Hello& b);

// Ready-to-send frames.
std::vector<std::byte> frame_of(FrameType type, const std::string& json_body);

}  // namespace ferry::protocol
