// FileSource: one source file opened for sending, read on libuv's thread pool so
// disk reads overlap network writes (protocol version 2: whole blocks, each hashed
// once, next to its read).
//
// How the engine calls this (on the loop thread):
//
//   auto src = FileSource::open(entry);        // checks size and mtime still match
//   // ReadChunk{entry, offset, length, token}: a buffer from the engine's pool
//   auto buf = pool.acquire();
//   if (!buf) { /* all buffers out: retry this read when one comes back */ }
//   src->read(loop, offset, length, std::move(*buf), [&](Result<ReadBlockResult> r) {
//     // r->data: the block (r->data.size() < length: the file shrank);
//     // r->digest == protocol::block_digest(r->data.span(), offset)
//     session.on_read_done(token, map(std::move(r)), now);   // -> sender::ReadBlock
//   });
//   // or, in one step: if (!src->try_read(loop, pool, offset, length, done)) wait;
//   // a small file read whole and checked after the read, in one step, no FileSource kept:
//   auto w = FileSource::read_whole_now(entry, entry.size, std::move(*pool.acquire()));
//   // w->block as read_now's; w->unchanged: still the listed version after the read
//   // HashPrefix{entry, length, block_size, token}:
//   src->hash_prefix(loop, length, block_size, [&](Result<protocol::FileDigest> d) {
//     session.on_prefix_hashed(token, std::move(d), now);
//   });
//
// Callbacks run on the loop thread, on a later loop turn (never inside the call).
// FileSource never allocates a block buffer per read: the caller hands one in. Requests
// keep the file open until they complete, so dropping the FileSource while reads are in
// flight is safe. All methods are called on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "lib/core/byte_buffer.hpp"
#include "lib/fs/fd_io.hpp"
#include "lib/fs/source_tree.hpp"
#include "protocol/digest.hpp"
#include "protocol/result.hpp"

namespace ferry {

// One block read from a source file (the engine maps it to sender::ReadBlock).
struct ReadBlockResult {
  ByteBuffer data;            // the bytes read; fewer than asked only at end of file
  std::uint64_t digest = 0;   // protocol::block_digest(data.span(), offset)
};

// A whole small file read in one step (FileSource::read_whole_now).
struct WholeFileRead {
  ReadBlockResult block;
  // The file still had the entry's size, mtime, ctime and inode after the read (fstat of
  // the descriptor read from): the bytes read are the listed version's.
  bool unchanged = false;
};

// The directory of the last file opened through it, held open (O_PATH): small files read
// one after another from one directory are each opened relative to it (one name looked
// up), not by their whole path. A file whose directory cannot be opened so, or that is
// not found there (the directory was replaced), is opened by its path. Loop thread only.
class SourceDirCache {
 public:
  // ::open(path, flags), relative to the held directory when `path` is in it; -1 and
  // errno as ::open's.
  int open_file(const std::string& path, int flags);

 private:
  std::string dir_;  // with its trailing '/'; empty: none held
  UniqueFd fd_;
};

class FileSource : public std::enable_shared_from_this<FileSource> {
 public:
  using ReadDone = std::function<void(Result<ReadBlockResult>)>;

  // Errc::local_io when it cannot be opened, or when its size or mtime differ from
  // the entry's (the file changed since it was listed).
  static Result<std::shared_ptr<FileSource>> open(const SourceEntry& entry);

  // Reads [offset, offset + length) into `buffer` on the pool and hashes it there.
  // Errc::internal when `buffer` has no storage or less than `length` capacity;
  // Errc::local_io when the read fails. The buffer goes back to its pool with the
  // result when the caller drops it (on failure: when the request ends).
  void read(uv_loop_t* loop, std::uint64_t offset, std::size_t length, ByteBuffer buffer, ReadDone done);
  // read() with a buffer acquired from `pool`: false (nothing started, `done` dropped)
  // when every buffer of the pool is out; the caller retries when one comes back.
  bool try_read(uv_loop_t* loop, BufferPool& pool, std::uint64_t offset, std::size_t length, ReadDone done);
  // read() done here and now, on the calling thread: for small files, where a thread-pool
  // round trip costs more than the read (a few KiB from the page cache).
  Result<ReadBlockResult> read_now(std::uint64_t offset, std::size_t length, ByteBuffer buffer) const;
  // The file digest of [0, length) cut into blocks of `block_size` (protocol::add_blocks),
  // read through one buffer for the whole prefix. Errc::local_io when reading fails or
  // the file is shorter than `length`; Errc::internal for block_size 0.
  void hash_prefix(uv_loop_t* loop, std::uint64_t length, std::size_t block_size,
                   std::function<void(Result<protocol::FileDigest>)> done);
  // Re-checks size, mtime, ctime and inode against the entry: Errc::local_io when
  // any changed (a rewrite that restores size and mtime still moves ctime).
  Result<void> check_unchanged() const;
  // Opens entry.local_path, reads [0, length) into `buffer` and hashes it (as read_now),
  // fstat-checks the descriptor after the read (as check_unchanged) and closes it: four
  // system calls, on the calling thread, for a small file read whole. Not checked at the
  // open: the check after the read is the one that counts (a change before it shows
  // there). Opened through `dirs` when given. Errc::local_io when it cannot be opened,
  // read or fstat'ed; Errc::internal for a buffer as read() refuses.
  static Result<WholeFileRead> read_whole_now(const SourceEntry& entry, std::size_t length, ByteBuffer buffer,
                                              SourceDirCache* dirs = nullptr);

 private:
  FileSource() = default;
  // On the pool: the read and the hash. Fills `out` with the result.
  void read_block(std::uint64_t offset, std::size_t length, ByteBuffer& buffer, Result<ReadBlockResult>& out) const;
  Result<protocol::FileDigest> hash_blocks(std::uint64_t length, std::size_t block_size) const;
  UniqueFd fd_;
  SourceEntry entry_;
};

// Runs `work` on libuv's thread pool, then `done` on the loop thread.
void run_on_pool(uv_loop_t* loop, std::function<void()> work, std::function<void()> done);

}  // namespace ferry
