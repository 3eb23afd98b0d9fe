#include "lib/fs/file_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>


namespace ferry {

namespace {
struct PoolJob {
  uv_work_t req{};
  std::function<void()> work;
  std::function<void()> done;
};
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
  struct stat st{};
  if (::fstat(fd_.get(), &st) != 0) return make_error(Errc::local_io, "fstat(" + entry_.local_path + ")", errno);
  if (static_cast<std::uint64_t>(st.st_size) != entry_.size || mtime_ns(st) != entry_.mtime_ns ||
      ctime_ns(st) != entry_.ctime_ns || static_cast<std::uint64_t>(st.st_ino) != entry_.inode) {
    return make_error(Errc::local_io,
                      "source file changed since it was listed (size, mtime or ctime): " + entry_.local_path);
  }
  return {};
}

void FileSource::read(uv_loop_t* loop, std::uint64_t offset, std::size_t length,
                      std::function<void(Result<std::vector<std::byte>>)> done) {
  auto self = shared_from_this();
  auto result = std::make_shared<Result<std::vector<std::byte>>>(std::vector<std::byte>{});
  run_on_pool(
      loop,
      [self, offset, length, result] {
        std::vector<std::byte> buf(length);
        auto n = pread_full(self->fd_.get(), buf.data(), length, offset, self->entry_.local_path);
        if (!n) {
          *result = n.error();
          return;
        }
        buf.resize(*n);
        *result = std::move(buf);
      },
      [result, done = std::move(done)] { done(std::move(*result)); });
}

void FileSource::hash_prefix(uv_loop_t* loop, std::uint64_t length,
                             std::function<void(Result<protocol::Digest128>)> done) {
  auto self = shared_from_this();
  auto result = std::make_shared<Result<protocol::Digest128>>(protocol::Digest128{});
  run_on_pool(
      loop,
      [self, length, result] {
        protocol::Digest128 d;
        std::vector<std::byte> buf(1 << 20);
        std::uint64_t off = 0;
        while (off < length) {
          std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), length - off));
          auto n = pread_full(self->fd_.get(), buf.data(), want, off, self->entry_.local_path);
          if (!n) {
            *result = n.error();
            return;
          }
          if (*n != want) {
            *result = make_error(Errc::local_io, "source file shrank while hashing: " + self->entry_.local_path);
            return;
          }
          d.update(std::span<const std::byte>(buf.data(), want));
          off += want;
        }
        *result = d;
      },
      [result, done = std::move(done)] { done(std::move(*result)); });
}

}  // namespace ferry
