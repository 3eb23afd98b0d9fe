// The receiver's destination: DEST_DIR, partial files, and the commit into place.
//
// Safety: every path is resolved component by component with openat(O_NOFOLLOW), so
// nothing is created or written outside DEST_DIR and no path passes through a
// symlink. Data goes to a hidden partial (".NAME.ferry-part") beside a journal
// (".NAME.ferry-journal", format 2: see journal.hpp); only commit() renames it to
// NAME, after fsync, with the offered mode through the receiver's umask.
//
// Trust (docs/SECURITY.md "Files in DEST"): temporary names are in a namespace no sent
// name may use (protocol::reserved_name). A new partial is created exclusively
// (O_EXCL); an existing partial or journal, and a final file adopted as already
// complete, must be a regular file with one link owned by the receiver's user, opened
// without following links or blocking (lib/fs/owned_file.hpp). Anything else at a
// temporary name is removed and the file starts over (ANSWER's note says so). A
// partial whose files were last modified longer than `stale_partial_age` ago is
// removed when met (at open, and in DEST's top level when DEST is opened).
//
// How the engine calls this (protocol version 2: one DATA frame = one whole block of
// the OFFER's block_size; writes are positional and may complete in any order):
//
//   auto dest = DestDir::open("/srv/in", DestOptions{.no_fsync = false});
//   // on the pool (slow: re-reads and hashes what the partial holds):
//   PartialState st;
//   auto part = (*dest)->open_partial(offer, st);
//   //   -> OpenedFile{st.offset, st.prefix, st.note, st.held} for the session
//   // for each WriteChunk{file_id, offset, data, digest}: copy data into a pooled
//   // buffer on the loop, then on the pool (several at once are fine):
//   auto w = (*part)->write(offset, buf.span(), digest);
//   //   -> on the loop: session.on_chunk_written(file_id, offset, buf.size(), w, now)
//   // when the session asks to commit (no write in flight any more), on the pool:
//   auto c = (*part)->commit();            // fsync, rename, fsync dir (unless no_fsync)
//   // or, when the connection is lost: (*part)->close_keep();  a refusal: close_discard()
//
// Threading: DestDir's methods may run on any thread (they only use *at() calls on
// the directory fd). PartialFile::write() and written()/held_count() are thread-safe:
// several writes of distinct blocks of one file may run at once on pool threads (the
// pwrite is positional; the journal bookkeeping is mutex-guarded). commit(),
// close_keep() and close_discard() must not run while a write of the same file is in
// flight (the engine waits for every write's completion first); they and the
// destructor are called by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lib/fs/fd_io.hpp"
#include "lib/fs/journal.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry {

struct DestOptions {
  // Durability against power loss given up (--no-fsync, for scratch copies): commit
  // skips the file's fsync and the directory's fsync, journals are saved without fsync
  // and no write-back is started behind the write head. Verification is unchanged: a
  // file is still renamed only after its digest matched, and only with every block
  // written (to the page cache).
  bool no_fsync = false;
  // Partials (and their journals) not modified for this long are removed when the
  // receiver meets them (ferry-recv --stale-partial-age); 0: never.
  std::chrono::seconds stale_partial_age{std::chrono::hours(24 * 7)};
  // Read-only use (a receiver started for --check or --dry-run, ferry-recv
  // --inspect-only): open() neither creates DEST nor removes stale partials in it.
  bool read_only = false;
};

// What a partial already holds, verified at open (the receiver session's OpenedFile).
struct PartialState {
  struct Block {
    std::uint64_t offset = 0;  // a multiple of the block size, above `offset`
    std::uint64_t length = 0;  // min(block_size, size - offset)
    std::uint64_t digest = 0;  // protocol::block_digest(bytes, offset)
  };
  std::uint64_t offset = 0;     // contiguous verified bytes held: a multiple of block_size, or the size
  protocol::FileDigest prefix;  // file digest of the blocks of [0, offset)
  std::string note;             // why it starts over or was cut back; empty otherwise
  std::vector<Block> held;      // blocks above `offset` the partial holds, re-verified; by offset
};

class PartialFile;

class DestDir {
 public:
  // Opens (creating if missing, one level) the destination directory, reads the
  // process's umask (applied to every offered mode) and removes the stale partials
  // and journals in DEST's top level (stale_removed() counts them).
  static Result<std::shared_ptr<DestDir>> open(const std::string& path, DestOptions options = {});

  // Creates the directory `offer.path` (and missing parents); true when this call made
  // it (it did not exist), false when it was there already. Errc::protocol for an
  // unsafe path (through a symlink, or over a non-directory), Errc::local_io else.
  Result<bool> make_directory(const protocol::Offer& offer);
  // Creates the symlink `offer.path` -> `offer.target` (kind symlink, version 4;
  // lib/fs/dest_link.cpp): missing parents are made as for a file, the link is made
  // under a temporary name in ferry's namespace and renamed over the final name
  // (replacing a file or a link there, never following one), with the offered mtime
  // (the link's own), and the directory is fsynced (unless no_fsync). The target is
  // stored verbatim and never followed. True when it was made; false when the same
  // link was there already (left unchanged). Errc::protocol for an unsafe path or a
  // directory in the way, Errc::local_io else.
  Result<bool> make_symlink(const protocol::Offer& offer);
  // Opens or creates the partial for `offer`, checks its journal and re-reads every
  // block it records (contiguous and held), and fills `state`. A final file with the
  // offered size and mtime counts as complete (state.offset == size, state.prefix its
  // file digest with the offer's block size; commit() then only re-verifies).
  // Errc::protocol for an unsafe path or a block size outside
  // kMinChunkSize..kMaxChunkSize; Errc::local_io for a local failure.
  Result<std::unique_ptr<PartialFile>> open_partial(const protocol::Offer& offer, PartialState& state);
  const std::string& path() const { return path_; }
  // DEST's descriptor and options, for the read-only looks of lib/fs/dest_probe.
  int dir_fd() const { return fd_.get(); }
  const DestOptions& options() const { return options_; }
  // Temporary files removed as stale when DEST was opened.
  std::size_t stale_removed() const { return stale_removed_; }

 private:
  // commit_batch (file_batch.cpp) walks to parents with open_parent, syncs DEST's file
  // system through fd_, and follows options_ (no_fsync) and path_ (in errors).
  friend class BatchCommit;
  DestDir() = default;
  // Opens the parent directory of `wire_path` (creating missing ones); returns its
  // fd and sets `leaf` to the last component.
  Result<UniqueFd> open_parent(const std::string& wire_path, std::string& leaf, bool create);
  // Removes the stale temporary files in DEST's top level (regular, ours, older than
  // stale_partial_age); returns how many.
  std::size_t remove_stale_top_level() const;
  UniqueFd fd_;
  std::string path_;
  DestOptions options_;
  mode_t umask_ = 022;
  std::size_t stale_removed_ = 0;
};

class PartialFile {
 public:
  ~PartialFile();
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  // Writes one whole block at `offset` (positional) and records `digest`
  // (= protocol::block_digest(data, offset), computed by the caller's decoder) for the
  // journal: contiguous when it lands at written(), else held. Starts write-back of the
  // block (sync_file_range) unless no_fsync. Saves the journal about once a second or
  // every 32 MiB. Thread-safe (see the header's overview).
  // Errc::internal when the block is misplaced (not aligned, wrong length, past the
  // end), was already recorded, or would exceed kMaxHeldBlocks held blocks: the session
  // prevents these. Errc::local_io when the write or the journal save fails (nothing
  // is recorded for a failed write).
  Result<void> write(std::uint64_t offset, protocol::Bytes data, std::uint64_t digest);
  // Precondition: every block was written (written() == size) and no write is in
  // flight. fsync, set mode and mtime, rename to the final name, fsync the directory
  // (both fsyncs skipped with no_fsync), remove the journal. Errc::local_io on
  // failure; Errc::internal when blocks are missing.
  Result<void> commit();
  // Saves the journal and closes (a later open resumes).
  void close_keep();
  // Removes partial and journal.
  void close_discard();
  // The contiguous written point: every block below it was written and recorded.
  std::uint64_t written() const;
  // Blocks written above written().
  std::size_t held_count() const;
  const std::string& display_path() const { return display_; }

 private:
  friend class DestDir;
  PartialFile() = default;
  // Both: called with mu_ held.
  Result<void> save_journal();
  Result<void> record_block(std::uint64_t offset, std::uint64_t length, std::uint64_t digest);
  // Why a block at `offset` of `length` bytes is misplaced, or empty when it is not.
  std::string misplaced(std::uint64_t offset, std::uint64_t length) const;
  std::uint64_t block_length(std::uint64_t offset) const;

  // The steps of DestDir::open_partial, in order.
  // Removes what is at the partial's or the journal's name when it is untrusted
  // (owned_file.hpp), or both when they are stale; state.note says so.
  Result<void> clear_unusable(PartialState& state);
  // DEST's path of `name` beside the final file, for messages.
  std::string path_of(const std::string& name) const;
  // The journal beside the partial; nullopt when there is none or it is unreadable
  // (state.note then says so).
  std::optional<Journal> load_journal(PartialState& state);
  // True when the final name already holds the offered file (same size and mtime) and
  // its file digest is in `state`: commit() then only re-verifies. Errc::local_io when
  // a directory is in the way or reading fails.
  Result<bool> reuse_final(PartialState& state);
  // Opens the partial: created exclusively when absent, else opened as owned_file.hpp
  // says (an untrusted one, planted since clear_unusable, fails the open). Returns its
  // size; `shown` in errors.
  Result<std::uint64_t> open_part(const std::string& shown);
  // Whether the journal belongs to this offer; state.note says why not.
  bool journal_matches(const std::optional<Journal>& journal, std::uint64_t part_size, PartialState& state) const;
  // Re-reads every block the journal records: the good contiguous ones go to
  // journal_.blocks and state.prefix, the good ones above the first bad one (and the
  // held ones) to held_ and state.held. Returns the contiguous good point.
  Result<std::uint64_t> check_blocks(const Journal& j, std::uint64_t part_size, PartialState& state);
  // Re-reads the block at `offset`: true when it has `length` bytes and `digest`.
  Result<bool> block_matches(std::uint64_t offset, std::uint64_t digest, std::byte* buf);
  // Cuts the partial back to what is kept, records that in the journal and `state`.
  Result<void> resume_at(std::uint64_t good, std::uint64_t part_size, PartialState& state);

  UniqueFd dirfd_;
  UniqueFd fd_;
  bool already_final_ = false;  // the final file is there already; commit re-verifies only
  DestOptions options_;
  mode_t umask_ = 022;
  std::string leaf_, part_name_, journal_name_, display_;
  protocol::Offer offer_;

  mutable std::mutex mu_;  // guards what follows
  Journal journal_;        // verified = contiguous written point; blocks below it (held: at save)
  std::map<std::uint64_t, std::uint64_t> held_;  // offset -> digest, above journal_.verified
  std::uint64_t unsaved_bytes_ = 0;              // recorded since the last journal save
  std::chrono::steady_clock::time_point last_save_{};
};

// The hidden names used for `leaf`'s partial and journal: "." + LEAF + suffix, or for
// a leaf over 200 bytes "." + HEX + ".ferry-long" + suffix (HEX: XXH3-64 of the leaf).
std::string partial_name(const std::string& leaf);
std::string journal_name(const std::string& leaf);
// The temporary name of `leaf` in a batched commit (file_batch.hpp): the hidden base, the
// 16 hex digits of `unique` (the process id in the high 32 bits), ".ferry-batch".
std::string batch_temp_name(const std::string& leaf, std::uint64_t unique);
// True for names in ferry's namespace for its own files (protocol::reserved_name):
// refused as any component of a wire path.
bool is_ferry_temp_name(const std::string& leaf);

// The components of `wire_path` once it passed protocol::wire_path_problem and none of
// them is one of ferry's own temporary names; else Errc::protocol "unsafe path '...': why".
Result<std::vector<std::string>> dest_path_components(const std::string& wire_path);
// The key of the file `wire_path` names on disk, for the receiver's one-writer lock:
// its parent directories and the base of its temporary names (the leaf, or its hash
// for a long leaf). Wire paths pass through no symlink and have no "." or "..", so
// two paths with one file on disk (or one partial) have one key. Case-insensitive
// directories are the exception (docs/SECURITY.md).
std::string on_disk_key(const std::string& wire_path);

// Sets the permission bits (mode & 0777) and the modification time (nanoseconds since
// the epoch; access time: now) of the open file `fd`; `shown` names it in errors
// (Errc::local_io "chmod(SHOWN)" or "utimens(SHOWN)"). The one place where both commits,
// PartialFile::commit and commit_batch (file_batch.hpp), apply an OFFER's metadata.
Result<void> apply_offer_metadata(int fd, std::uint32_t mode, std::int64_t mtime_ns, const std::string& shown);

}  // namespace ferry
