// FileSource: one source file opened for sending, read on libuv's thread pool so
// disk reads overlap network writes.
//
//   auto src = FileSource::open(entry);               // checks size and mtime still match
//   src->read(loop, offset, len, [](Result<std::vector<std::byte>> r) { ... });
//   src->hash_prefix(loop, n, [](Result<protocol::Digest128> d) { ... });
//
// Callbacks run on the loop thread. A short read (the file shrank) returns fewer bytes.
// Requests keep the file open until they complete, so dropping the FileSource while
// reads are in flight is safe.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "lib/fs/fd_io.hpp"
#include "lib/fs/source_tree.hpp"
#include "protocol/digest.hpp"
#include "protocol/result.hpp"

namespace ferry {

class FileSource : public std::enable_shared_from_this<FileSource> {
 public:
  // Errc::local_io when it cannot be opened, or when its size or mtime differ from
  // the entry's (the file changed since it was listed).
  static Result<std::shared_ptr<FileSource>> open(const SourceEntry& entry);

  void read(uv_loop_t* loop, std::uint64_t offset, std::size_t length,
            std::function<void(Result<std::vector<std::byte>>)> done);
  void hash_prefix(uv_loop_t* loop, std::uint64_t length, std::function<void(Result<protocol::Digest128>)> done);
  // Re-checks size, mtime, ctime and inode against the entry: Errc::local_io when
  // any changed (a rewrite that restores size and mtime still moves ctime).
  Result<void> check_unchanged() const;

 private:
  FileSource() = default;
  UniqueFd fd_;
  SourceEntry entry_;
};

// Runs `work` on libuv's thread pool, then `done` on the loop thread.
void run_on_pool(uv_loop_t* loop, std::function<void()> work, std::function<void()> done);

}  // namespace ferry
