// Tests lib/fs/file_source (protocol version 2) on a real libuv loop: read() fills the
// buffer handed in (from the engine's pool) and computes the seeded block digest next
// to the read; a short read at end of file; a buffer too small or missing is an error
// reported through the callback; try_read() never takes more buffers than the pool
// holds (nothing started when all are out); hash_prefix() equals protocol::add_blocks
// over the same bytes, for several block sizes and lengths, and fails when the file is
// shorter; a changed file is refused at open. read_whole_now() reads and hashes a whole
// small file in one step and tells whether it was still the listed version after the
// read (a replacement that keeps size and mtime shows in the inode). SourceDirCache opens
// files relative to the last directory and by path when that one was replaced.
#include "lib/fs/file_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using test::TempDir;

struct Loop {
  uv_loop_t loop{};
  Loop() { uv_loop_init(&loop); }
  ~Loop() { uv_loop_close(&loop); }
  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
};

// A source file of `n` bytes and its open FileSource.
struct Source {
  TempDir tmp;
  std::vector<std::byte> bytes;
  std::shared_ptr<FileSource> src;
  explicit Source(std::size_t n, unsigned seed = 1) : bytes(test::pseudo_random_bytes(n, seed)) {
    const std::string path = tmp.path() + "/src.bin";
    test::write_file(path, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    auto e = source_file_entry(path, "src.bin");
    if (!e) throw std::runtime_error(e.error().message());
    auto s = FileSource::open(*e);
    if (!s) throw std::runtime_error(s.error().message());
    src = *s;
  }
  std::span<const std::byte> at(std::uint64_t off, std::size_t n) const {
    return std::span<const std::byte>(bytes).subspan(off, std::min<std::size_t>(n, bytes.size() - off));
  }
};

TEST(FileSource, ReadFillsTheGivenBufferAndHashesIt) {
  Loop l;
  Source s(1000 * 1000 + 7);
  BufferPool pool(256 * 1024, 2);
  struct Want {
    std::uint64_t off;
    std::size_t len;
  };
  for (Want w : {Want{0, 256 * 1024}, Want{3 * 256 * 1024, 256 * 1024}, Want{999 * 1000, 256 * 1024}}) {
    auto buf = pool.acquire();
    ASSERT_TRUE(buf);
    const std::byte* storage = buf->data();
    std::optional<Result<ReadBlockResult>> got;
    s.src->read(&l.loop, w.off, w.len, std::move(*buf), [&](Result<ReadBlockResult> r) { got = std::move(r); });
    EXPECT_FALSE(got) << "completed inside the call";
    l.run();
    ASSERT_TRUE(got && *got) << (got ? (*got).error().message() : "no callback");
    const ReadBlockResult& rb = **got;
    EXPECT_EQ(rb.data.data(), storage) << "read into another buffer";
    auto want = s.at(w.off, w.len);  // short at end of file
    ASSERT_EQ(rb.data.size(), want.size());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), rb.data.span().begin()));
    EXPECT_EQ(rb.digest, protocol::block_digest(want, w.off));
    EXPECT_EQ(pool.outstanding(), 1u);
    got.reset();  // the buffer goes back
    EXPECT_EQ(pool.outstanding(), 0u);
  }
}

TEST(FileSource, BufferTooSmallOrMissingIsAnError) {
  Loop l;
  Source s(10'000);
  BufferPool pool(4096, 1);
  for (bool missing : {false, true}) {
    ByteBuffer buf = missing ? ByteBuffer{} : std::move(*pool.acquire());
    std::optional<Result<ReadBlockResult>> got;
    s.src->read(&l.loop, 0, 8192, std::move(buf), [&](Result<ReadBlockResult> r) { got = std::move(r); });
    l.run();
    ASSERT_TRUE(got);
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, Errc::internal) << got->error().message();
    got.reset();
    EXPECT_EQ(pool.outstanding(), 0u) << "the buffer was not returned";
  }
}

// The engine never has more reads than buffers: try_read() starts nothing when the
// pool is empty, and the bound is never exceeded.
TEST(FileSource, TryReadNeverExceedsThePool) {
  Loop l;
  constexpr std::size_t kBlock = 4096;
  Source s(64 * kBlock + 5);
  BufferPool pool(kBlock, 3);
  std::vector<ReadBlockResult> kept;  // a session holding read-and-unsent blocks
  std::uint64_t next = 0, refused = 0;
  while (next < s.bytes.size()) {
    const std::uint64_t off = next;
    auto done = [&, off](Result<ReadBlockResult> r) {
      ASSERT_TRUE(r) << r.error().message();
      EXPECT_EQ(r->digest, protocol::block_digest(s.at(off, kBlock), off));
      kept.push_back(std::move(*r));
    };
    if (!s.src->try_read(&l.loop, pool, off, kBlock, done)) {
      ++refused;
      l.run();        // the reads in flight complete
      kept.clear();   // "sent": the buffers come back, the engine retries
      continue;
    }
    next += kBlock;
  }
  l.run();
  EXPECT_GT(refused, 0u);
  EXPECT_LE(pool.high_water(), 3u);
  kept.clear();
  EXPECT_EQ(pool.outstanding(), 0u);
}

TEST(FileSource, HashPrefixEqualsAddBlocks) {
  Loop l;
  Source s(3 * 1024 * 1024 + 333, 7);
  for (std::size_t bs : {std::size_t{1024}, std::size_t{4096 + 1}, std::size_t{256 * 1024}, std::size_t{3 << 20},
                         std::size_t{16 << 20}}) {
    for (std::uint64_t len : {std::uint64_t{0}, std::uint64_t{bs}, std::uint64_t{5 * bs},
                              std::uint64_t{s.bytes.size()}}) {
      if (len > s.bytes.size()) continue;
      SCOPED_TRACE("block " + std::to_string(bs) + ", length " + std::to_string(len));
      protocol::FileDigest want;
      protocol::add_blocks(want, s.at(0, len), 0, bs);
      std::optional<Result<protocol::FileDigest>> got;
      s.src->hash_prefix(&l.loop, len, bs, [&](Result<protocol::FileDigest> d) { got = std::move(d); });
      l.run();
      ASSERT_TRUE(got && *got);
      EXPECT_EQ((*got)->hex(), want.hex());
    }
  }
}

TEST(FileSource, HashPrefixPastTheEndFails) {
  Loop l;
  Source s(10'000);
  std::optional<Result<protocol::FileDigest>> got;
  s.src->hash_prefix(&l.loop, 20'000, 4096, [&](Result<protocol::FileDigest> d) { got = std::move(d); });
  l.run();
  ASSERT_TRUE(got);
  ASSERT_FALSE(*got);
  EXPECT_EQ(got->error().code, Errc::local_io);
  EXPECT_NE(got->error().message().find("shrank"), std::string::npos) << got->error().message();
}

TEST(FileSource, ChangedFileIsRefusedAtOpen) {
  TempDir t;
  const std::string path = t.path() + "/f";
  test::write_file(path, "hello");
  auto e = source_file_entry(path, "f");
  ASSERT_TRUE(e);
  test::write_file(path, "hello, longer");
  auto s = FileSource::open(*e);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::local_io);
}

TEST(FileSource, ReadWholeNowReadsHashesAndChecks) {
  Source s(5000, 7);
  BufferPool pool(8192, 1);
  auto e = source_file_entry(s.tmp.path() + "/src.bin", "src.bin");
  ASSERT_TRUE(e);
  auto got = FileSource::read_whole_now(*e, 5000, std::move(*pool.acquire()));
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_TRUE(got->unchanged);
  ASSERT_EQ(got->block.data.size(), 5000u);
  EXPECT_TRUE(std::equal(s.bytes.begin(), s.bytes.end(), got->block.data.span().begin()));
  EXPECT_EQ(got->block.digest, protocol::block_digest(s.at(0, 5000), 0));
}

TEST(FileSource, ReadWholeNowSeesAChangeSinceTheListing) {
  TempDir t;
  const std::string path = t.path() + "/f";
  test::write_file(path, "hello");
  auto e = source_file_entry(path, "f");
  ASSERT_TRUE(e);
  BufferPool pool(64, 3);
  // Replaced by a file of the same size with the old mtime: its inode tells.
  struct stat before{};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  test::write_file(path + ".new", "HELLO");
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, (path + ".new").c_str(), times, 0), 0);
  ASSERT_EQ(::rename((path + ".new").c_str(), path.c_str()), 0);
  auto got = FileSource::read_whole_now(*e, 5, std::move(*pool.acquire()));
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_FALSE(got->unchanged);
  // Longer now: the listed length is read, and the change still shows.
  test::write_file(path, "hello, longer");
  got = FileSource::read_whole_now(*e, 5, std::move(*pool.acquire()));
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_FALSE(got->unchanged);
  // Gone: an error naming the file.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  got = FileSource::read_whole_now(*e, 5, std::move(*pool.acquire()));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::local_io);
  EXPECT_NE(got.error().message().find(path), std::string::npos) << got.error().message();
}

TEST(FileSource, SourceDirCacheOpensByNameAndFollowsAReplacedDirectory) {
  TempDir t;
  ASSERT_EQ(::mkdir((t.path() + "/d").c_str(), 0755), 0);
  test::write_file(t.path() + "/d/a", "first");
  test::write_file(t.path() + "/d/b", "second");
  SourceDirCache dirs;
  auto read_through = [&](const std::string& path) {
    UniqueFd fd(dirs.open_file(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return std::string("error ") + std::to_string(errno);
    char buf[64];
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    return std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
  };
  EXPECT_EQ(read_through(t.path() + "/d/a"), "first");
  EXPECT_EQ(read_through(t.path() + "/d/b"), "second");
  // The directory replaced by another of the same name: its files are found by path.
  ASSERT_EQ(::rename((t.path() + "/d").c_str(), (t.path() + "/old").c_str()), 0);
  ASSERT_EQ(::mkdir((t.path() + "/d").c_str(), 0755), 0);
  test::write_file(t.path() + "/d/c", "third");
  EXPECT_EQ(read_through(t.path() + "/d/c"), "third");
  EXPECT_EQ(read_through(t.path() + "/d/missing"), "error " + std::to_string(ENOENT));
  EXPECT_EQ(read_through(t.path() + "/old/a"), "first");
}

}  // namespace
}  // namespace ferry
