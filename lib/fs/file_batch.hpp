// The receiver's batched commit of small files: many whole files, already verified in
// memory, made durable together and renamed into place with the promise of
// PartialFile::commit (file_sink.hpp): nothing appears under a final name before its
// bytes are durable (unless the DestDir has no_fsync).
//
// For a batch, in order: each file goes to a fresh hidden temporary beside its final
// name (exclusive create, never through a symlink, a name in ferry's own temp namespace
// that no wire path can name), with its bytes, mode and mtime; then all of them are made
// durable together (an fdatasync() each when few, one syncfs() of the destination's file
// system when many); then each is renamed into place; then each directory renamed into
// is fsynced once (or, for a batch synced by syncfs that renamed into several
// directories, one more syncfs makes all their names durable). Costs per small file against PartialFile: no journal, no fsync of its
// own when the batch is large, parent directories walked once per batch, one directory
// fsync per directory rather than per file.
//
//   // on a pool thread, with the files the receiver session verified:
//   std::vector<StagedFile> files = ...;
//   auto results = commit_batch(*dest, files);  // results[i] belongs to files[i]
//   for (std::size_t i = 0; i < files.size(); ++i)
//     if (!results[i]) report(files[i].wire_path, results[i].error());
//
// Threading: like DestDir's other methods, any thread (only *at() calls on descriptors
// of its own and the destination's). Several batches may run at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lib/fs/file_sink.hpp"
#include "protocol/result.hpp"

namespace ferry {

// One whole small file, already verified (digest matched) by the receiver session.
struct StagedFile {
  std::string wire_path;          // a wire path the session already validated
  std::uint32_t mode = 0644;      // the OFFER's permission bits
  std::int64_t mtime_ns = 0;      // the OFFER's mtime
  std::vector<std::byte> data{};  // the file's bytes (may be empty)
  // Version 6's eager directory: made (mkdir, 0755 less the umask, like
  // DestDir::make_directory; one there already is fine) in batch order, so the files
  // after it in the batch go into it; no data, mode or mtime. Its parent's entry is
  // made durable with the batch's names.
  bool directory = false;
};

// From this many files in a batch on, one syncfs() of the destination's file system
// replaces an fdatasync() per file. Measured (docs/ARCHITECTURE.md, "Batched commit of
// small files"), on ext4, a batch synced by one syncfs committed faster than with an
// fdatasync per file at every size (medians of per-round ratios): 1.2-1.3x for 1 file,
// 1.2-1.5x for 2 or 3, 1.3-1.8x for 4, 3-4x for 6 and 8, 10x at 64, 17x at 256. But a
// syncfs also writes back whatever else is dirty on that file system, other writers'
// data included, so its cost is not bounded by the batch: a small batch (the tail of a
// transfer) keeps the bounded per-file calls, where the gain is small anyway.
inline constexpr std::size_t kSyncfsFromFiles = 4;

// How commit_batch makes a batch durable. The defaults are the receiver's; the fields
// exist for measurements and tests.
struct BatchSync {
  std::size_t syncfs_from = kSyncfsFromFiles;  // see kSyncfsFromFiles
  // The calls used (same contract as fdatasync(2) and syncfs(2)): a test plants a
  // failure here.
  int (*fdatasync_call)(int) = nullptr;  // nullptr: ::fdatasync
  int (*syncfs_call)(int) = nullptr;     // nullptr: ::syncfs
};

// Commits `files` into `dest` as one batch (see the header's overview); results[i]
// belongs to files[i]. A file whose step fails gets its own error, the call, the errno
// and its path ("rename(DEST/a/b): Is a directory"; Errc::protocol for an unsafe path,
// one through a symlink or over a non-directory, or a name reserved for ferry's own
// files; Errc::local_io else), and its temporary is removed; the others still commit.
// A failed syncfs() fails every file it was to make durable, and none of them is
// renamed. A failed fsync of a directory (or the syncfs that replaces those fsyncs)
// fails the files renamed into it (they are in place, but not durably). Missing parent directories are created (like
// DestDir::make_directory). Any number of files; at most about 64 descriptors are held
// at once (a batch touching more than 32 directories is committed in several rounds).
std::vector<Result<void>> commit_batch(DestDir& dest, std::span<StagedFile> files, const BatchSync& sync = {});

// What commit_batch_pipelined (or finish_batch) did: results[i] belongs to files[i] (as commit_batch's);
// `names_pending`: files were renamed whose names are not durable yet; `prior`: the
// syncfs that made an earlier batch's pending names durable (ok when there were none
// or it succeeded).
struct BatchOutcome {
  std::vector<Result<void>> results;
  bool names_pending = false;
  Result<void> prior;
};

// A batch in two steps, so that a stream of batches overlaps: prepare_batch writes the
// files of the next batch while finish_batch of the previous one waits for its syncfs.
// A PreparedBatch holds no descriptor (its directories are closed, their identity kept,
// and opened again by finish_batch the same safe way; a directory replaced meanwhile
// fails its files). Dropped without finish_batch, it removes its temporaries. The
// DestDir must outlive it. Move-only.
class BatchCommit;
class PreparedBatch {
 public:
  PreparedBatch();
  ~PreparedBatch();
  PreparedBatch(PreparedBatch&&) noexcept;
  PreparedBatch& operator=(PreparedBatch&&) noexcept;
  std::size_t size() const;  // files in it

 private:
  struct State;
  std::unique_ptr<State> state_;
  friend PreparedBatch prepare_batch(DestDir& dest, std::span<StagedFile> files, bool syncfs_follows,
                                     const BatchSync& sync);
  friend BatchOutcome finish_batch(PreparedBatch& batch, bool prior_names_pending);
};

// Each file to a fresh temporary with its bytes, mode and mtime (as commit_batch). A
// batch of syncfs_from files or more, or any batch when `syncfs_follows` (the caller
// expects to finish it with prior names pending), is left for one syncfs; a smaller one
// is fdatasynced here, file by file. A directory item is made here (in batch order, so
// the files after it go into it; a dropped batch leaves it there). A file that fails
// here has its error in the outcome finish_batch returns. The data of `files` may be
// freed after the call.
PreparedBatch prepare_batch(DestDir& dest, std::span<StagedFile> files, bool syncfs_follows,
                            const BatchSync& sync = {});

// Makes a prepared batch durable and renames it into place. A batch left for syncfs, or
// any batch called with prior_names_pending, takes one syncfs, which makes its data and
// an earlier batch's pending names durable together (`prior` says whether it
// succeeded); its files are renamed and it returns with names_pending instead of syncing
// their directories: the caller holds their outcome (their VERDICTs) until a later
// syncfs made the names durable (the next batch's, or sync_names() when none follows).
// A batch synced file by file syncs its directories as commit_batch does
// (names_pending stays false). An empty batch syncs only the prior names. Call it once.
BatchOutcome finish_batch(PreparedBatch& batch, bool prior_names_pending);

// prepare_batch and finish_batch in one call.
BatchOutcome commit_batch_pipelined(DestDir& dest, std::span<StagedFile> files, bool prior_names_pending,
                                    const BatchSync& sync = {});

// One syncfs of the destination's file system (none with no_fsync): makes the names of
// a batch that returned names_pending durable.
Result<void> sync_names(DestDir& dest, const BatchSync& sync = {});

// Removes, from the directory `wire_dir` of `dest`, the temporaries of batches whose
// process no longer runs (killed between the write and the rename): regular files of
// this user whose name batch_temp_name() made with a process id that is gone. Returns
// how many; best effort (errors are skipped: such files are hidden, never under a final
// name, and the stale-partial rule of docs/SECURITY.md covers what is left). The
// receiver calls it for each directory a sender offers that exists already, once.
std::size_t remove_dead_batch_temps(DestDir& dest, const std::string& wire_dir);

}  // namespace ferry
