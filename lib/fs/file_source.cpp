#include "lib/fs/file_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <string_view>


namespace ferry {

namespace {
struct PoolJob {
  uv_work_t req{};
  std::function<void()> work;
  std::function<void()> done;
};
// [offset, offset + length) of `fd` into `buffer`, hashed next to the read.
Result<ReadBlockResult> read_and_hash(int fd, const std::string& path, std::uint64_t offset, std::size_t length,
                                      ByteBuffer& buffer) {
  if (!buffer || buffer.capacity() < length) {
    return make_error(Errc::internal, "read of " + std::to_string(length) + " bytes into a buffer of " +
                                          std::to_string(buffer.capacity()) + ": " + path);
  }
  auto n = pread_full(fd, buffer.data(), length, offset, path);
  if (!n) return n.error();
  buffer.resize(*n);
  // Hashed here, while the bytes are still in this core's cache: the digest serves the
  // DATA header and the file digest both.
  const std::uint64_t digest = protocol::block_digest(buffer.span(), offset);
  return ReadBlockResult{std::move(buffer), digest};
}

// Whether `fd` still has `entry`'s size, mtime, ctime and inode (false: changed).
Result<bool> same_as_listed(int fd, const SourceEntry& entry) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return make_error(Errc::local_io, "fstat(" + entry.local_path + ")", errno);
  return static_cast<std::uint64_t>(st.st_size) == entry.size && mtime_ns(st) == entry.mtime_ns &&
         ctime_ns(st) == entry.ctime_ns && static_cast<std::uint64_t>(st.st_ino) == entry.inode;
}
}  // namespace

void run_on_pool(uv_loop_t* loop, std::function<void()> work, std::function<void()> done) {
  auto* job = new PoolJob{};
  job->work = std::move(work);
  job->done = std::move(done);
  job->req.data = job;
  int rc = uv_queue_work(
      loop, &job->req, [](uv_work_t* r) { static_cast<PoolJob*>(r->data)->work(); },
      [](uv_work_t* r, int) {
        std::unique_ptr<PoolJob> j(static_cast<PoolJob*>(r->data));
        j->done();
      });
  if (rc != 0) {  // cannot happen with a live loop; run inline rather than lose the job
    std::unique_ptr<PoolJob> j(job);
    j->work();
    j->done();
  }
}

Result<std::shared_ptr<FileSource>> FileSource::open(const SourceEntry& entry) {
  UniqueFd fd(::open(entry.local_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return make_error(Errc::local_io, "open(" + entry.local_path + ")", errno);
  std::shared_ptr<FileSource> s(new FileSource());
  s->fd_ = std::move(fd);
  s->entry_ = entry;
  auto same = s->check_unchanged();
  if (!same) return same.error();
  return s;
}

Result<void> FileSource::check_unchanged() const {
  auto same = same_as_listed(fd_.get(), entry_);
  if (!same) return same.error();
  if (!*same) {
    return make_error(Errc::local_io,
                      "source file changed since it was listed (size, mtime or ctime): " + entry_.local_path);
  }
  return {};
}

int SourceDirCache::open_file(const std::string& path, int flags) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return ::open(path.c_str(), flags);
  const std::string_view dir(path.data(), slash + 1);
  if (!fd_ || dir != dir_) {
    fd_.reset(::open(std::string(dir).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    dir_ = fd_ ? std::string(dir) : std::string();
    if (!fd_) return ::open(path.c_str(), flags);
  }
  const int fd = ::openat(fd_.get(), path.c_str() + slash + 1, flags);
  if (fd >= 0 || errno != ENOENT) return fd;
  fd_.reset();  // perhaps no longer the directory at that path: by the path itself
  dir_.clear();
  return ::open(path.c_str(), flags);
}

Result<WholeFileRead> FileSource::read_whole_now(const SourceEntry& entry, std::size_t length, ByteBuffer buffer,
                                                 SourceDirCache* dirs) {
  constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC;
  UniqueFd fd(dirs ? dirs->open_file(entry.local_path, kFlags) : ::open(entry.local_path.c_str(), kFlags));
  if (!fd) return make_error(Errc::local_io, "open(" + entry.local_path + ")", errno);
  auto block = read_and_hash(fd.get(), entry.local_path, 0, length, buffer);
  if (!block) return block.error();
  auto same = same_as_listed(fd.get(), entry);
  if (!same) return same.error();
  return WholeFileRead{std::move(*block), *same};
}

void FileSource::read_block(std::uint64_t offset, std::size_t length, ByteBuffer& buffer,
                            Result<ReadBlockResult>& out) const {
  out = read_and_hash(fd_.get(), entry_.local_path, offset, length, buffer);
}

void FileSource::read(uv_loop_t* loop, std::uint64_t offset, std::size_t length, ByteBuffer buffer,
                      ReadDone done) {
  struct Job {
    ByteBuffer buffer;
    Result<ReadBlockResult> result{ReadBlockResult{}};
  };
  auto self = shared_from_this();
  auto job = std::make_shared<Job>();
  job->buffer = std::move(buffer);
  run_on_pool(
      loop, [self, offset, length, job] { self->read_block(offset, length, job->buffer, job->result); },
      [job, done = std::move(done)] { done(std::move(job->result)); });
}

Result<ReadBlockResult> FileSource::read_now(std::uint64_t offset, std::size_t length, ByteBuffer buffer) const {
  Result<ReadBlockResult> out{ReadBlockResult{}};
  read_block(offset, length, buffer, out);
  return out;
}

bool FileSource::try_read(uv_loop_t* loop, BufferPool& pool, std::uint64_t offset, std::size_t length,
                          ReadDone done) {
  auto buffer = pool.acquire();
  if (!buffer) return false;
  read(loop, offset, length, std::move(*buffer), std::move(done));
  return true;
}

Result<protocol::FileDigest> FileSource::hash_blocks(std::uint64_t length, std::size_t block_size) const {
  if (block_size == 0) return make_error(Errc::internal, "hash_prefix with block size 0: " + entry_.local_path);
  // Whole blocks per read, about 1 MiB at a time; one buffer for the whole prefix.
  const std::size_t piece = std::max<std::size_t>(1, (1u << 20) / block_size) * block_size;
  const std::size_t cap = static_cast<std::size_t>(std::min<std::uint64_t>(piece, length));
  auto buf = std::make_unique_for_overwrite<std::byte[]>(std::max<std::size_t>(cap, 1));
  protocol::FileDigest d;
  std::uint64_t off = 0;
  while (off < length) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(piece, length - off));
    auto n = pread_full(fd_.get(), buf.get(), want, off, entry_.local_path);
    if (!n) return n.error();
    if (*n != want) return make_error(Errc::local_io, "source file shrank while hashing: " + entry_.local_path);
    off = protocol::add_blocks(d, std::span<const std::byte>(buf.get(), want), off, block_size);
  }
  return d;
}

void FileSource::hash_prefix(uv_loop_t* loop, std::uint64_t length, std::size_t block_size,
                             std::function<void(Result<protocol::FileDigest>)> done) {
  auto self = shared_from_this();
  auto result = std::make_shared<Result<protocol::FileDigest>>(protocol::FileDigest{});
  run_on_pool(
      loop, [self, length, block_size, result] { *result = self->hash_blocks(length, block_size); },
      [result, done = std::move(done)] { done(std::move(*result)); });
}

}  // namespace ferry
