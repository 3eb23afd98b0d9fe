// Tests lib/file_sink on real files in a mkdtemp directory: partial + journal (format 2)
// naming, commit (rename, mtime in nanoseconds, mode, nothing left behind; also with
// no_fsync), resume after close_keep with the right prefix file digest, blocks written
// out of order (held) surviving a reopen and re-verified, cut-back of truncated or
// corrupted partials to the last good block, start-over on a changed source, a changed
// block size, a format 1 or missing journal, close_discard, an already complete final
// file, concurrent writes from several threads, misuse refused, and refusal of unsafe
// paths (through symlinks, ferry's own temp names, a directory or file in the way)
// with nothing created outside DEST.
#include "lib/fs/file_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using protocol::Bytes;
using protocol::EntryKind;
using protocol::Offer;
using test::exists_nofollow;
using test::list_dir;
using test::TempDir;

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kBlock = kMiB;  // the offers' block size unless a test says otherwise
constexpr std::int64_t kMtime = 1'700'000'000'123'456'789;

Offer file_offer(const std::string& path, std::uint64_t size, std::string identity = "id-1",
                 std::int64_t mtime_ns = kMtime, std::uint32_t mode = 0640, std::uint64_t block_size = kBlock) {
  return Offer{1, path, EntryKind::file, size, mtime_ns, mode, std::move(identity),
               static_cast<std::uint32_t>(block_size)};
}

Offer dir_offer(const std::string& path) {
  return Offer{2, path, EntryKind::directory, 0, kMtime, 0755, "dir"};
}

std::vector<std::byte> content(std::size_t n, unsigned seed = 1) { return test::pseudo_random_bytes(n, seed); }

// The file digest of d[0, n) in blocks of `block_size`.
std::string digest_of(const std::vector<std::byte>& d, std::uint64_t n, std::uint64_t block_size = kBlock) {
  protocol::FileDigest g;
  protocol::add_blocks(g, Bytes(d).first(static_cast<std::size_t>(n)), 0, static_cast<std::size_t>(block_size));
  return g.hex();
}

std::string as_string(const std::vector<std::byte>& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

std::uint64_t file_size(const std::string& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return ~0ull;
  return static_cast<std::uint64_t>(st.st_size);
}

// A DEST under a fresh temp dir.
struct Fixture {
  TempDir tmp;
  std::string dest = tmp.path() + "/dest";
  std::shared_ptr<DestDir> dir;
  explicit Fixture(DestOptions options = {}) {
    auto d = DestDir::open(dest, options);
    if (!d) throw std::runtime_error(d.error().message());
    dir = *d;
  }
  std::unique_ptr<PartialFile> open(const Offer& o, PartialState& st) {
    auto p = dir->open_partial(o, st);
    EXPECT_TRUE(p) << o.path << ": " << (p ? "" : p.error().message());
    return p ? std::move(*p) : nullptr;
  }
  std::string at(const std::string& rel) const { return dest + "/" + rel; }
};

// The block of `d` at `off` (size d.size(), blocks of `bs`).
Bytes block_at(const std::vector<std::byte>& d, std::uint64_t off, std::uint64_t bs = kBlock) {
  return Bytes(d).subspan(static_cast<std::size_t>(off), static_cast<std::size_t>(std::min(bs, d.size() - off)));
}

Result<void> write_block(PartialFile& p, const std::vector<std::byte>& d, std::uint64_t off, std::uint64_t bs = kBlock) {
  auto b = block_at(d, off, bs);
  return p.write(off, b, protocol::block_digest(b, off));
}

// Writes the blocks of d[from, to) in order.
void write_range(PartialFile& p, const std::vector<std::byte>& d, std::uint64_t from, std::uint64_t to,
                 std::uint64_t bs = kBlock) {
  for (std::uint64_t off = from; off < to; off += bs) {
    auto r = write_block(p, d, off, bs);
    ASSERT_TRUE(r) << off << ": " << r.error().message();
  }
  ASSERT_EQ(p.written(), to);
}

// Writes every block from st.offset to the end that st.held does not hold.
void write_missing(PartialFile& p, const std::vector<std::byte>& d, const PartialState& st, std::uint64_t bs = kBlock) {
  for (std::uint64_t off = st.offset; off < d.size(); off += bs) {
    if (std::any_of(st.held.begin(), st.held.end(), [&](const auto& h) { return h.offset == off; })) continue;
    auto r = write_block(p, d, off, bs);
    ASSERT_TRUE(r) << off << ": " << r.error().message();
  }
  ASSERT_EQ(p.written(), d.size());
}

void flip_byte(const std::string& path, std::uint64_t off) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  unsigned char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(off)), 1);
  c ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(off)), 1);
  ::close(fd);
}

void truncate_to(const std::string& path, std::uint64_t size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  ::close(fd);
}

// Writes [0, held) of `d` for `o`, then closes keeping the partial.
void leave_partial(Fixture& f, const Offer& o, const std::vector<std::byte>& d, std::uint64_t held) {
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  ASSERT_EQ(st.offset, 0u);
  write_range(*p, d, 0, held, o.block_size);
  p->close_keep();
}

// ---------------------------------------------------------------------------

TEST(FileSink, OpenCreatesTheDestination) {
  TempDir t;
  auto d = DestDir::open(t.path() + "/new");
  ASSERT_TRUE(d) << d.error().message();
  struct stat st {};
  ASSERT_EQ(::stat((t.path() + "/new").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ((*d)->path(), t.path() + "/new");
  auto again = DestDir::open(t.path() + "/new");  // existing is fine
  EXPECT_TRUE(again);
  auto deep = DestDir::open(t.path() + "/missing/parent");  // one level only
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().code, Errc::local_io);
  test::write_file(t.path() + "/file", "x");
  EXPECT_FALSE(DestDir::open(t.path() + "/file"));
}

TEST(FileSink, NewFileGoesToAHiddenPartialThenCommits) {
  Fixture f;
  const std::uint64_t size = 3 * kMiB + 5;
  auto d = content(size);
  auto o = file_offer("f.bin", size);
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 0u);
  EXPECT_EQ(st.note, "");
  EXPECT_EQ(st.prefix.hex(), protocol::FileDigest().hex());
  EXPECT_TRUE(st.held.empty());
  // Nothing verified yet: no journal (the first is saved after a second or 32 MiB).
  EXPECT_EQ(list_dir(f.dest), (std::vector<std::string>{".f.bin.ferry-part"}));
  EXPECT_EQ(p->display_path(), f.dest + "/f.bin");

  // A journal, once there is one, never claims more than the partial holds.
  int dfd = ::open(f.dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dfd, 0);
  for (std::uint64_t off = 0; off < size; off += kBlock) {
    write_range(*p, d, off, std::min(size, off + kBlock));
    auto j = Journal::load(dfd, ".f.bin.ferry-journal");
    ASSERT_TRUE(j);
    if (!j->has_value()) continue;
    EXPECT_LE((*j)->verified, file_size(f.at(".f.bin.ferry-part")));
    EXPECT_EQ((*j)->identity, "id-1");
    EXPECT_EQ((*j)->block_size, kBlock);
  }
  ::close(dfd);
  EXPECT_FALSE(exists_nofollow(f.at("f.bin"))) << "the final name appeared before commit";
  EXPECT_EQ(file_size(f.at(".f.bin.ferry-part")), size);

  auto c = p->commit();
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"f.bin"});
  EXPECT_EQ(test::read_file(f.at("f.bin")), as_string(d));
  struct stat fst {};
  ASSERT_EQ(::stat(f.at("f.bin").c_str(), &fst), 0);
  EXPECT_EQ(static_cast<std::int64_t>(fst.st_mtim.tv_sec) * 1'000'000'000 + fst.st_mtim.tv_nsec, kMtime);
  EXPECT_EQ(fst.st_mode & 07777, 0640u);
  EXPECT_TRUE(S_ISREG(fst.st_mode));
}

TEST(FileSink, CommitAppliesModeAndPreEpochMtime) {
  Fixture f;
  auto d = content(10);
  auto o = file_offer("x", 10, "id", -1'500'000'001, 0600);
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  write_range(*p, d, 0, 10);
  ASSERT_TRUE(p->commit());
  struct stat fst {};
  ASSERT_EQ(::stat(f.at("x").c_str(), &fst), 0);
  EXPECT_EQ(static_cast<std::int64_t>(fst.st_mtim.tv_sec) * 1'000'000'000 + fst.st_mtim.tv_nsec, -1'500'000'001);
  EXPECT_EQ(fst.st_mode & 07777, 0600u);
}

TEST(FileSink, EmptyFile) {
  Fixture f;
  PartialState st;
  auto p = f.open(file_offer("empty", 0), st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 0u);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"empty"});
  EXPECT_EQ(file_size(f.at("empty")), 0u);
}

// A fresh partial gets its journal with its first progress (here at close_keep), and
// a journal an earlier transfer left for another version of the file is removed at
// once rather than left beside a partial it does not describe.
TEST(FileSink, JournalIsWrittenOnceThereIsProgressToRecord) {
  Fixture f;
  auto d = content(3 * kBlock);
  auto o = file_offer("j.bin", d.size());
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  EXPECT_FALSE(exists_nofollow(f.at(".j.bin.ferry-journal")));
  write_range(*p, d, 0, kBlock);
  p->close_keep();
  int dfd = ::open(f.dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dfd, 0);
  auto j = Journal::load(dfd, ".j.bin.ferry-journal");
  ::close(dfd);
  ASSERT_TRUE(j && j->has_value());
  EXPECT_EQ((*j)->verified, kBlock);
  auto again = f.open(o, st);
  ASSERT_TRUE(again);
  EXPECT_EQ(st.offset, kBlock);  // resumed from it
  again->close_keep();

  // Another version of j.bin: its partial starts over and the old journal goes.
  auto other = file_offer("j.bin", d.size());
  other.identity = "id-2";
  auto fresh = f.open(other, st);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(st.offset, 0u);
  EXPECT_FALSE(exists_nofollow(f.at(".j.bin.ferry-journal")));
  fresh->close_discard();
}

TEST(FileSink, NestedPathCreatesParents) {
  Fixture f;
  auto d = content(kMiB + 1);
  PartialState st;
  auto p = f.open(file_offer("a/b/c.bin", d.size()), st);
  ASSERT_TRUE(p);
  EXPECT_EQ(list_dir(f.at("a/b")), (std::vector<std::string>{".c.bin.ferry-part"}));
  write_range(*p, d, 0, d.size());
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"a"});
  EXPECT_EQ(list_dir(f.at("a")), std::vector<std::string>{"b"});
  EXPECT_EQ(list_dir(f.at("a/b")), std::vector<std::string>{"c.bin"});
  EXPECT_EQ(test::read_file(f.at("a/b/c.bin")), as_string(d));
}

TEST(FileSink, CloseKeepThenResume) {
  const std::uint64_t size = 4 * kMiB + 3;
  auto d = content(size, 2);
  for (std::uint64_t held : {std::uint64_t{0}, kMiB, 2 * kMiB, 4 * kMiB, size}) {
    SCOPED_TRACE("held " + std::to_string(held));
    Fixture f;
    auto o = file_offer("r.bin", size);
    leave_partial(f, o, d, held);
    // Nothing written: nothing worth resuming is left behind (no partial at all).
    EXPECT_EQ(file_size(f.at(".r.bin.ferry-part")), held == 0 ? ~0ull : held);
    PartialState st;
    auto p = f.open(o, st);
    ASSERT_TRUE(p);
    EXPECT_EQ(st.offset, held);
    EXPECT_EQ(st.note, "");
    EXPECT_EQ(st.prefix.hex(), digest_of(d, held));
    EXPECT_TRUE(st.held.empty());
    EXPECT_EQ(p->written(), held);
    write_range(*p, d, held, size);
    ASSERT_TRUE(p->commit());
    EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"r.bin"});
    EXPECT_EQ(test::read_file(f.at("r.bin")), as_string(d));
  }
}

// A resumed partial goes on recording blocks correctly: a second resume finds every
// block good, with a small block size (many blocks).
TEST(FileSink, ResumeTwice) {
  Fixture f;
  constexpr std::uint64_t bs = 4096;
  const std::uint64_t size = 300 * bs + 17;
  auto d = content(size, 3);
  auto o = file_offer("t.bin", size, "id-1", kMtime, 0640, bs);
  leave_partial(f, o, d, 37 * bs);
  {
    PartialState st;
    auto p = f.open(o, st);
    ASSERT_TRUE(p);
    ASSERT_EQ(st.offset, 37 * bs);
    write_range(*p, d, st.offset, 200 * bs, bs);
    // destroyed without an explicit close: keeps the partial
  }
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 200 * bs);
  EXPECT_EQ(st.note, "");
  EXPECT_EQ(st.prefix.hex(), digest_of(d, st.offset, bs));
  write_range(*p, d, st.offset, size, bs);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(test::read_file(f.at("t.bin")), as_string(d));
}

TEST(FileSink, TruncatedPartialIsCutBackToTheLastGoodBlock) {
  const std::uint64_t size = 3 * kMiB + kMiB / 2;  // the last block is short
  auto d = content(size, 4);
  struct Case {
    std::uint64_t truncate_to, want;
  };
  for (Case c : {Case{2 * kMiB + kMiB / 2, 2 * kMiB}, Case{3 * kMiB, 3 * kMiB}, Case{kMiB - 1, 0},
                 Case{3 * kMiB + 1000, 3 * kMiB}}) {
    SCOPED_TRACE("truncated to " + std::to_string(c.truncate_to));
    Fixture f;
    auto o = file_offer("p.bin", size);
    leave_partial(f, o, d, size);
    truncate_to(f.at(".p.bin.ferry-part"), c.truncate_to);
    PartialState st;
    auto p = f.open(o, st);
    ASSERT_TRUE(p);
    EXPECT_EQ(st.offset, c.want);
    EXPECT_NE(st.note.find("truncated"), std::string::npos) << st.note;
    EXPECT_NE(st.note.find(std::to_string(c.want)), std::string::npos) << st.note;
    EXPECT_EQ(st.prefix.hex(), digest_of(d, c.want));
    EXPECT_TRUE(st.held.empty());
    EXPECT_EQ(file_size(f.at(".p.bin.ferry-part")), c.want);
    write_range(*p, d, st.offset, size);
    ASSERT_TRUE(p->commit());
    EXPECT_EQ(test::read_file(f.at("p.bin")), as_string(d));
  }
}

// A corrupted block cuts the contiguous point back to it; the good blocks after it are
// kept (held), so only the bad block is sent again.
TEST(FileSink, CorruptedByteCutsBackToItsBlock) {
  const std::uint64_t size = 3 * kMiB + kMiB / 2;
  auto d = content(size, 5);
  for (std::uint64_t k = 0; k <= 3; ++k) {  // block 3 is the short last one
    SCOPED_TRACE("block " + std::to_string(k));
    Fixture f;
    auto o = file_offer("c.bin", size);
    leave_partial(f, o, d, size);
    flip_byte(f.at(".c.bin.ferry-part"), k * kMiB + 777);
    PartialState st;
    auto p = f.open(o, st);
    ASSERT_TRUE(p);
    EXPECT_EQ(st.offset, k * kMiB);
    EXPECT_NE(st.note.find("resuming from the last good block at " + std::to_string(k * kMiB)), std::string::npos)
        << st.note;
    EXPECT_EQ(st.prefix.hex(), digest_of(d, k * kMiB));
    ASSERT_EQ(st.held.size(), 3 - k);
    for (std::uint64_t i = k + 1; i <= 3; ++i) {
      const auto& h = st.held[i - k - 1];
      EXPECT_EQ(h.offset, i * kMiB);
      EXPECT_EQ(h.length, block_at(d, i * kMiB).size());
      EXPECT_EQ(h.digest, protocol::block_digest(block_at(d, i * kMiB), i * kMiB));
    }
    EXPECT_EQ(p->held_count(), 3 - k);
    EXPECT_EQ(file_size(f.at(".c.bin.ferry-part")), k < 3 ? size : k * kMiB);
    write_missing(*p, d, st);
    ASSERT_TRUE(p->commit());
    EXPECT_EQ(test::read_file(f.at("c.bin")), as_string(d));
  }
}

// Bytes written after the last journal save are not trusted: cut back to what the
// journal records.
TEST(FileSink, BytesBeyondTheJournalAreDropped) {
  Fixture f;
  const std::uint64_t size = 3 * kMiB;
  auto d = content(size, 6);
  auto o = file_offer("b.bin", size);
  leave_partial(f, o, d, kMiB);
  {
    int fd = ::open(f.at(".b.bin.ferry-part").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "junk", 4), 4);
    ::close(fd);
  }
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, kMiB);
  EXPECT_EQ(file_size(f.at(".b.bin.ferry-part")), kMiB);
  EXPECT_EQ(st.prefix.hex(), digest_of(d, kMiB));
}

TEST(FileSink, ChangedSourceStartsOver) {
  const std::uint64_t size = 3 * kMiB;
  auto d = content(size, 7);
  for (int what = 0; what < 2; ++what) {
    Fixture f;
    leave_partial(f, file_offer("s.bin", size), d, 2 * kMiB);
    auto changed = what == 0 ? file_offer("s.bin", size, "id-2") : file_offer("s.bin", size + 1);
    PartialState st;
    auto p = f.open(changed, st);
    ASSERT_TRUE(p);
    EXPECT_EQ(st.offset, 0u);
    EXPECT_NE(st.note.find("starting over"), std::string::npos) << st.note;
    EXPECT_EQ(st.prefix.hex(), protocol::FileDigest().hex());
    EXPECT_EQ(file_size(f.at(".s.bin.ferry-part")), 0u);
  }
}

TEST(FileSink, ChangedBlockSizeStartsOver) {
  Fixture f;
  const std::uint64_t size = 3 * kMiB;
  auto d = content(size, 15);
  leave_partial(f, file_offer("bs.bin", size), d, 2 * kMiB);
  PartialState st;
  auto p = f.open(file_offer("bs.bin", size, "id-1", kMtime, 0640, 256 * 1024), st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 0u);
  EXPECT_EQ(st.note, "block size changed (1048576 -> 262144); starting over");
  EXPECT_TRUE(st.held.empty());
  EXPECT_EQ(file_size(f.at(".bs.bin.ferry-part")), 0u);
  write_range(*p, d, 0, size, 256 * 1024);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(test::read_file(f.at("bs.bin")), as_string(d));
}

TEST(FileSink, PartialWithoutJournalStartsOver) {
  Fixture f;
  const std::uint64_t size = 2 * kMiB;
  auto d = content(size, 8);
  auto o = file_offer("n.bin", size);
  leave_partial(f, o, d, kMiB);
  ASSERT_EQ(::unlink(f.at(".n.bin.ferry-journal").c_str()), 0);
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 0u);
  EXPECT_NE(st.note.find("without a journal"), std::string::npos) << st.note;
  EXPECT_EQ(file_size(f.at(".n.bin.ferry-part")), 0u);
}

// An invalid journal, or one an older ferry wrote (format 1), is unreadable: start
// over, and say why.
TEST(FileSink, UnreadableJournalStartsOver) {
  const std::uint64_t size = 2 * kMiB;
  auto d = content(size, 9);
  const std::pair<std::string, std::string> cases[] = {
      {R"({"ferry_journal": 2, "verified": 99999999})", "journal unreadable (invalid journal: "},
      {R"({"ferry_journal":1,"path":"u.bin","identity":"id-1","size":2097152,"block_size":1048576,)"
       R"("verified":1048576,"blocks":["0123456789abcdef"]})",
       "journal unreadable (invalid journal: format 1 from an older ferry); starting over"},
  };
  for (const auto& [text, note] : cases) {
    Fixture f;
    auto o = file_offer("u.bin", size);
    leave_partial(f, o, d, kMiB);
    test::write_file(f.at(".u.bin.ferry-journal"), text);
    PartialState st;
    auto p = f.open(o, st);
    ASSERT_TRUE(p);
    EXPECT_EQ(st.offset, 0u);
    EXPECT_EQ(st.note.rfind(note, 0), 0u) << st.note;
    EXPECT_EQ(file_size(f.at(".u.bin.ferry-part")), 0u);
  }
}

TEST(FileSink, CloseDiscardRemovesPartialAndJournal) {
  Fixture f;
  auto d = content(kMiB + 3, 10);
  PartialState st;
  auto p = f.open(file_offer("dir/gone.bin", d.size()), st);
  ASSERT_TRUE(p);
  write_range(*p, d, 0, d.size());
  p->close_discard();
  EXPECT_EQ(list_dir(f.at("dir")), std::vector<std::string>{});
  p.reset();  // the destructor must not bring anything back
  EXPECT_EQ(list_dir(f.at("dir")), std::vector<std::string>{});
}

TEST(FileSink, CompleteFinalFileIsReportedAndLeftInPlace) {
  Fixture f;
  const std::uint64_t size = 2 * kMiB + 77;
  auto d = content(size, 11);
  {
    PartialState st;
    auto p = f.open(file_offer("done.bin", size), st);
    ASSERT_TRUE(p);
    write_range(*p, d, 0, size);
    ASSERT_TRUE(p->commit());
  }
  struct stat before {};
  ASSERT_EQ(::stat(f.at("done.bin").c_str(), &before), 0);

  // The digest uses the offer's block size, whatever the earlier transfer used.
  constexpr std::uint64_t bs = 64 * 1024;
  PartialState st;
  auto p = f.open(file_offer("done.bin", size, "id-1", kMtime, 0640, bs), st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, size);
  EXPECT_EQ(st.prefix.hex(), digest_of(d, size, bs));
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"done.bin"}) << "no partial for a complete file";
  ASSERT_TRUE(p->commit());
  p.reset();
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"done.bin"});
  struct stat after {};
  ASSERT_EQ(::stat(f.at("done.bin").c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(test::read_file(f.at("done.bin")), as_string(d));
}

TEST(FileSink, FinalFileWithAnotherMtimeIsTransferredAgain) {
  Fixture f;
  auto d = content(1000, 12);
  test::write_file(f.at("old.bin"), std::string(1000, 'o'));
  PartialState st;
  auto p = f.open(file_offer("old.bin", 1000), st);  // same size, another mtime
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 0u);
  write_range(*p, d, 0, d.size());
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(test::read_file(f.at("old.bin")), as_string(d));
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"old.bin"});
}

// ---------------------------------------------------------------------------
// Version 2: blocks out of order, held blocks, write-back, no_fsync

constexpr std::uint64_t kSmall = 64 * 1024;  // block size of the tests below

Offer small_offer(const std::string& path, std::uint64_t size) {
  return file_offer(path, size, "id-1", kMtime, 0640, kSmall);
}

// A new partial for `size` bytes of content(size, seed) in blocks of kSmall.
struct SmallFile {
  Fixture f;
  std::vector<std::byte> d;
  PartialState st;
  std::unique_ptr<PartialFile> p;
  SmallFile(const std::string& path, std::uint64_t size, unsigned seed)
      : d(content(size, seed)), p(f.open(small_offer(path, size), st)) {}
};

struct HeldCase {
  Fixture f;
  std::uint64_t size = 8 * kSmall - 100;  // 8 blocks, the last short
  std::vector<std::byte> d = content(size, 20);
  Offer o = small_offer("h.bin", size);

  // Writes blocks 6, 0, 4, 1, 7 (out of order) and closes keeping the partial.
  void leave_out_of_order() {
    PartialState st;
    auto p = f.open(o, st);
    ASSERT_TRUE(p);
    for (std::uint64_t k : {6, 0, 4, 1, 7}) ASSERT_TRUE(write_block(*p, d, k * kSmall, kSmall)) << k;
    EXPECT_EQ(p->written(), 2 * kSmall);
    EXPECT_EQ(p->held_count(), 3u);
    p->close_keep();
  }
};

TEST(FileSink, HeldBlocksSurviveAReopen) {
  HeldCase c;
  c.leave_out_of_order();
  int dfd = ::open(c.f.dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dfd, 0);
  auto j = Journal::load(dfd, ".h.bin.ferry-journal");
  ::close(dfd);
  ASSERT_TRUE(j && j->has_value());
  EXPECT_EQ((*j)->verified, 2 * kSmall);
  EXPECT_EQ((*j)->blocks.size(), 2u);
  ASSERT_EQ((*j)->held.size(), 3u);
  EXPECT_EQ((*j)->held[0].offset, 4 * kSmall);
  EXPECT_EQ((*j)->held[2].digest, protocol::block_digest(block_at(c.d, 7 * kSmall, kSmall), 7 * kSmall));

  PartialState st;
  auto p = c.f.open(c.o, st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 2 * kSmall);
  EXPECT_EQ(st.note, "");
  EXPECT_EQ(st.prefix.hex(), digest_of(c.d, 2 * kSmall, kSmall));
  ASSERT_EQ(st.held.size(), 3u);
  const std::uint64_t want[] = {4, 6, 7};
  for (std::size_t i = 0; i < 3; ++i) {
    const auto off = want[i] * kSmall;
    EXPECT_EQ(st.held[i].offset, off);
    EXPECT_EQ(st.held[i].length, block_at(c.d, off, kSmall).size());
    EXPECT_EQ(st.held[i].digest, protocol::block_digest(block_at(c.d, off, kSmall), off));
  }
  EXPECT_EQ(file_size(c.f.at(".h.bin.ferry-part")), c.size);
  // The held blocks are recorded: writing one again is a misuse.
  auto again = write_block(*p, c.d, 4 * kSmall, kSmall);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::internal);
  write_missing(*p, c.d, st, kSmall);
  EXPECT_EQ(p->held_count(), 0u);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(test::read_file(c.f.at("h.bin")), as_string(c.d));
}

// A held block whose bytes changed, or are gone (the partial was truncated), is not
// listed: it is sent again. The partial is cut back to the end of the last block kept.
TEST(FileSink, DamagedOrTruncatedHeldBlockIsNotListed) {
  for (bool truncate : {false, true}) {
    SCOPED_TRACE(truncate ? "truncated" : "damaged");
    HeldCase c;
    c.leave_out_of_order();
    const std::string part = c.f.at(".h.bin.ferry-part");
    if (truncate) {
      truncate_to(part, 7 * kSmall + 10);  // block 7 is gone
    } else {
      flip_byte(part, 6 * kSmall + 5);  // block 6 changed
    }
    PartialState st;
    auto p = c.f.open(c.o, st);
    ASSERT_TRUE(p);
    EXPECT_EQ(st.offset, 2 * kSmall);
    ASSERT_EQ(st.held.size(), 2u);
    EXPECT_EQ(st.held[0].offset, 4 * kSmall);
    EXPECT_EQ(st.held[1].offset, (truncate ? 6 : 7) * kSmall);
    EXPECT_NE(st.note.find("1 of 3 held blocks"), std::string::npos) << st.note;
    EXPECT_EQ(file_size(part), truncate ? 7 * kSmall : c.size);
    write_missing(*p, c.d, st, kSmall);
    ASSERT_TRUE(p->commit());
    EXPECT_EQ(test::read_file(c.f.at("h.bin")), as_string(c.d));
  }
}

// Every block written in reverse: nothing is contiguous until block 0 lands, then the
// contiguous point jumps to the end. Write-back (sync_file_range) runs after each
// write; commit produces the right file.
TEST(FileSink, ReverseOrderWritesThenCommit) {
  const std::uint64_t size = 40 * kSmall + 1;
  SmallFile sf("rev.bin", size, 21);
  auto& [f, d, st, p] = sf;
  ASSERT_TRUE(p);
  for (std::uint64_t k = 41; k-- > 1;) {
    ASSERT_TRUE(write_block(*p, d, k * kSmall, kSmall)) << k;
    EXPECT_EQ(p->written(), 0u);
  }
  EXPECT_EQ(p->held_count(), 40u);
  auto early = p->commit();
  ASSERT_FALSE(early) << "commit with a block missing";
  EXPECT_EQ(early.error().code, Errc::internal);
  ASSERT_TRUE(write_block(*p, d, 0, kSmall));
  EXPECT_EQ(p->written(), size);
  EXPECT_EQ(p->held_count(), 0u);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(test::read_file(f.at("rev.bin")), as_string(d));
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"rev.bin"});
}

// Several pool threads write distinct blocks of one file at once.
TEST(FileSink, ConcurrentWritesFromSeveralThreads) {
  const std::uint64_t size = 256 * kSmall - 3;
  SmallFile sf("mt.bin", size, 22);
  auto& [f, d, st, p] = sf;
  ASSERT_TRUE(p);
  constexpr unsigned kThreads = 4;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (unsigned t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t k = t; k * kSmall < size; k += kThreads) {
        if (!write_block(*p, d, k * kSmall, kSmall)) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(p->written(), size);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(test::read_file(f.at("mt.bin")), as_string(d));
}

TEST(FileSink, NoFsyncCommitWorks) {
  Fixture f(DestOptions{.no_fsync = true});
  const std::uint64_t size = 5 * kSmall + 9;
  auto d = content(size, 23);
  auto o = small_offer("nf.bin", size);
  leave_partial(f, o, d, 2 * kSmall);  // journals saved without fsync
  PartialState st;
  auto p = f.open(o, st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, 2 * kSmall);
  write_range(*p, d, st.offset, size, kSmall);
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"nf.bin"});
  EXPECT_EQ(test::read_file(f.at("nf.bin")), as_string(d));
}

TEST(FileSink, MisplacedBlocksAreRefused) {
  SmallFile sf("m.bin", 3 * kSmall + 10, 24);
  auto& [f, d, st, p] = sf;
  ASSERT_TRUE(p);
  auto bytes = Bytes(d);
  const std::pair<std::uint64_t, Bytes> bad[] = {
      {1, bytes.subspan(1, kSmall)},                      // not aligned
      {0, bytes.first(kSmall - 1)},                       // short
      {3 * kSmall, bytes.subspan(3 * kSmall, 9)},         // the last block, short
      {4 * kSmall, bytes.first(10)},                      // past the end
  };
  for (const auto& [off, data] : bad) {
    auto r = p->write(off, data, protocol::block_digest(data, off));
    ASSERT_FALSE(r) << off;
    EXPECT_EQ(r.error().code, Errc::internal) << r.error().message();
  }
  ASSERT_TRUE(write_block(*p, d, 0, kSmall));
  auto twice = write_block(*p, d, 0, kSmall);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, Errc::internal);
  EXPECT_EQ(p->written(), kSmall);

  for (std::uint32_t bs : {0u, 1023u, 16u * 1024 * 1024 + 1}) {
    PartialState st2;
    auto q = f.dir->open_partial(file_offer("q.bin", 10, "id", kMtime, 0640, bs), st2);
    ASSERT_FALSE(q) << bs;
    EXPECT_EQ(q.error().code, Errc::protocol);
  }
}

// ---------------------------------------------------------------------------
// Refusals

void expect_refused(Fixture& f, const std::string& path, Errc code = Errc::protocol) {
  PartialState st;
  auto p = f.dir->open_partial(file_offer(path, 10), st);
  ASSERT_FALSE(p) << "accepted '" << path << "'";
  EXPECT_EQ(p.error().code, code) << path << ": " << p.error().message();
}

TEST(FileSink, PathThroughASymlinkIsRefused) {
  Fixture f;
  TempDir elsewhere;
  ASSERT_EQ(::symlink(elsewhere.path().c_str(), f.at("link").c_str()), 0);
  for (const char* path : {"link/x", "link/sub/x", "link/sub/deeper/x"}) {
    expect_refused(f, path);
    EXPECT_EQ(list_dir(elsewhere.path()), std::vector<std::string>{}) << "created through the symlink: " << path;
  }
  for (const char* path : {"link", "link/sub"}) {
    auto r = f.dir->make_directory(dir_offer(path));
    ASSERT_FALSE(r) << path;
    EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
  }
  EXPECT_EQ(list_dir(elsewhere.path()), std::vector<std::string>{});
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"link"});

  // A dangling symlink is not created through either.
  const std::string missing = elsewhere.path() + "/missing";
  ASSERT_EQ(::symlink(missing.c_str(), f.at("dangling").c_str()), 0);
  expect_refused(f, "dangling/x");
  EXPECT_FALSE(f.dir->make_directory(dir_offer("dangling/y")));
  EXPECT_FALSE(exists_nofollow(missing));
}

TEST(FileSink, SymlinkInADeeperComponentIsRefused) {
  Fixture f;
  TempDir elsewhere;
  ASSERT_TRUE(f.dir->make_directory(dir_offer("a/b")));
  ASSERT_EQ(::symlink(elsewhere.path().c_str(), f.at("a/b/c").c_str()), 0);
  expect_refused(f, "a/b/c/x");
  EXPECT_EQ(list_dir(elsewhere.path()), std::vector<std::string>{});
}

// A symlink at the leaf is replaced by the committed file, never written through.
TEST(FileSink, SymlinkAtTheLeafIsNotWrittenThrough) {
  Fixture f;
  TempDir elsewhere;
  const std::string target = elsewhere.path() + "/target";
  test::write_file(target, "precious");
  ASSERT_EQ(::symlink(target.c_str(), f.at("leaf").c_str()), 0);
  auto d = content(100, 13);
  PartialState st;
  auto p = f.dir->open_partial(file_offer("leaf", d.size()), st);
  if (p) {
    write_range(**p, d, 0, d.size());
    auto c = (*p)->commit();
    if (c) {
      struct stat lst {};
      ASSERT_EQ(::lstat(f.at("leaf").c_str(), &lst), 0);
      EXPECT_TRUE(S_ISREG(lst.st_mode));
      EXPECT_EQ(test::read_file(f.at("leaf")), as_string(d));
    }
  }
  EXPECT_EQ(test::read_file(target), "precious");
  EXPECT_EQ(list_dir(elsewhere.path()), std::vector<std::string>{"target"});
}

TEST(FileSink, FerryTempNamesAreRefused) {
  Fixture f;
  for (const char* path : {".x.ferry-part", ".x.ferry-journal", ".x.ferry-journal.tmp", "d/.x.ferry-part",
                           ".d.ferry-part/x", "a/.b.ferry-journal/c"}) {
    expect_refused(f, path);
    EXPECT_FALSE(f.dir->make_directory(dir_offer(path))) << path;
  }
  EXPECT_TRUE(is_ferry_temp_name(partial_name("x")));
  EXPECT_TRUE(is_ferry_temp_name(journal_name("x")));
  EXPECT_TRUE(is_ferry_temp_name("x.ferry-part"));  // any component ending in a reserved suffix
  EXPECT_FALSE(is_ferry_temp_name(".hidden"));
  EXPECT_EQ(partial_name("x"), ".x.ferry-part");
  EXPECT_EQ(journal_name("x"), ".x.ferry-journal");
  // nothing was created, not even the parent "d" of a refused leaf
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{});
}

TEST(FileSink, UnsafeWirePathsAreRefused) {
  Fixture f;
  for (const std::string& path : {std::string(""), std::string("../x"), std::string("/abs"), std::string("a/../../x"),
                                  std::string("a//b"), std::string("./x"), std::string("x/"), std::string("a\0b", 3)}) {
    expect_refused(f, path);
    EXPECT_FALSE(f.dir->make_directory(dir_offer(path))) << path;
  }
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{});
  EXPECT_EQ(list_dir(f.tmp.path()), std::vector<std::string>{"dest"});
}

TEST(FileSink, LongNamesGetHashedTempNames) {
  Fixture f;
  const std::string leaf(255, 'L');
  EXPECT_LE(partial_name(leaf).size(), 255u);
  EXPECT_LE(journal_name(leaf).size() + 4, 255u);  // and its ".tmp"
  EXPECT_TRUE(is_ferry_temp_name(partial_name(leaf)));
  EXPECT_NE(partial_name(leaf), partial_name(std::string(254, 'L') + "M"));
  auto d = content(2000, 14);
  PartialState st;
  auto p = f.open(file_offer(leaf, d.size()), st);
  ASSERT_TRUE(p);
  write_range(*p, d, 0, d.size());
  p->close_keep();
  p = f.open(file_offer(leaf, d.size()), st);
  ASSERT_TRUE(p);
  EXPECT_EQ(st.offset, d.size());
  ASSERT_TRUE(p->commit());
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{leaf});
}

TEST(FileSink, DirectoryInTheWay) {
  Fixture f;
  ASSERT_EQ(::mkdir(f.at("d").c_str(), 0755), 0);
  test::write_file(f.at("d/keep"), "k");
  PartialState st;
  auto p = f.dir->open_partial(file_offer("d", 10), st);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message().find("directory"), std::string::npos) << p.error().message();
  EXPECT_EQ(list_dir(f.at("d")), std::vector<std::string>{"keep"});
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"d"});
}

TEST(FileSink, FileInTheWayOfADirectory) {
  Fixture f;
  test::write_file(f.at("plain"), "p");
  expect_refused(f, "plain/x");
  auto r = f.dir->make_directory(dir_offer("plain"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_FALSE(f.dir->make_directory(dir_offer("plain/sub")));
  EXPECT_EQ(test::read_file(f.at("plain")), "p");
  EXPECT_EQ(list_dir(f.dest), std::vector<std::string>{"plain"});
}

TEST(FileSink, MakeDirectoryNested) {
  Fixture f;
  auto r = f.dir->make_directory(dir_offer("a/b/c"));
  ASSERT_TRUE(r) << r.error().message();
  for (const char* p : {"a", "a/b", "a/b/c"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(f.at(p).c_str(), &st), 0) << p;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << p;
  }
  EXPECT_TRUE(f.dir->make_directory(dir_offer("a/b/c")));  // again: fine
  EXPECT_TRUE(f.dir->make_directory(dir_offer("a")));
  EXPECT_EQ(list_dir(f.at("a/b/c")), std::vector<std::string>{});
}

}  // namespace
}  // namespace ferry

// --- version 4: DestDir::make_symlink (lib/fs/dest_link.cpp) ------------------------------

namespace ferry {
namespace {

Offer link_offer(const std::string& path, const std::string& target, std::int64_t mtime_ns = 1'600'000'000'123'000'000) {
  Offer o;
  o.path = path;
  o.kind = protocol::EntryKind::symlink;
  o.mtime_ns = mtime_ns;
  o.mode = 0777;
  o.identity = "symlink";
  o.target = target;
  return o;
}

std::string link_text(const std::string& path) {
  char buf[8192];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string("(not a link)") : std::string(buf, static_cast<std::size_t>(n));
}

// Made verbatim (parents created), with its own mtime; an identical one is left in
// place; another target or a file at the name is replaced, never followed; no
// temporary is left behind.
TEST(DestLink, MadeVerbatimReplacedAtomicallyAndLeftWhenIdentical) {
  Fixture f;
  TempDir elsewhere;
  const std::string precious = elsewhere.path() + "/precious";
  test::write_file(precious, "keep");
  auto made = f.dir->make_symlink(link_offer("a/b/l", precious));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_TRUE(*made);
  EXPECT_EQ(link_text(f.at("a/b/l")), precious);
  struct stat st{};
  ASSERT_EQ(::lstat(f.at("a/b/l").c_str(), &st), 0);
  EXPECT_EQ(mtime_ns(st), 1'600'000'000'123'000'000) << "the link's own mtime";

  auto again = f.dir->make_symlink(link_offer("a/b/l", precious));
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again) << "an identical link is left as it is";

  ASSERT_TRUE(f.dir->make_symlink(link_offer("a/b/l", "../other")));
  EXPECT_EQ(link_text(f.at("a/b/l")), "../other");
  test::write_file(f.at("a/file"), "old");
  ASSERT_TRUE(f.dir->make_symlink(link_offer("a/file", "x")));
  EXPECT_EQ(link_text(f.at("a/file")), "x");
  EXPECT_EQ(test::read_file(precious), "keep") << "never written through";
  EXPECT_EQ(list_dir(f.at("a")), (std::vector<std::string>{"b", "file"}));
  EXPECT_EQ(list_dir(f.at("a/b")), std::vector<std::string>{"l"});
}

TEST(DestLink, ADirectoryInTheWayOrASymlinkOnThePathIsRefused) {
  Fixture f;
  TempDir elsewhere;
  ASSERT_TRUE(f.dir->make_directory(dir_offer("d/inner")));
  auto r = f.dir->make_symlink(link_offer("d", "x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
  EXPECT_EQ(list_dir(f.at("d")), std::vector<std::string>{"inner"});
  ASSERT_TRUE(f.dir->make_symlink(link_offer("out", elsewhere.path())));
  for (const char* path : {"out/l", "out/sub/l"}) {
    auto through = f.dir->make_symlink(link_offer(path, "x"));
    ASSERT_FALSE(through) << path;
    EXPECT_EQ(through.error().code, Errc::protocol) << through.error().message();
  }
  EXPECT_EQ(list_dir(elsewhere.path()), std::vector<std::string>{});
  auto unsafe = f.dir->make_symlink(link_offer("../x", "y"));
  ASSERT_FALSE(unsafe);
  EXPECT_EQ(unsafe.error().code, Errc::protocol);
}

}  // namespace
}  // namespace ferry
