#include "lib/fs/file_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "lib/fs/posix_io.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

// The journal is saved at least this often, and after this many bytes, so that a
// killed receiver loses little verified progress.
constexpr auto kJournalInterval = std::chrono::seconds(1);
constexpr std::uint64_t kJournalBytes = 32u << 20;
// Start writeback of written data in steps this large, so the final fsync is short.
constexpr std::uint64_t kWritebackStep = 8u << 20;
constexpr std::size_t kMaxPlainLeaf = 200;

std::string hidden_base(const std::string& leaf) {
  if (leaf.size() <= kMaxPlainLeaf) return "." + leaf;
  auto h = protocol::xxh3_64(std::span<const std::byte>(reinterpret_cast<const std::byte*>(leaf.data()), leaf.size()));
  return ".ferry-" + protocol::hex64(h);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}


std::int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::string partial_name(const std::string& leaf) { return hidden_base(leaf) + ".ferry-part"; }
std::string journal_name(const std::string& leaf) { return hidden_base(leaf) + ".ferry-journal"; }
bool is_ferry_temp_name(const std::string& leaf) {
  return !leaf.empty() && leaf[0] == '.' &&
         (ends_with(leaf, ".ferry-part") || ends_with(leaf, ".ferry-journal") || ends_with(leaf, ".ferry-journal.tmp"));
}

// ---------------------------------------------------------------------------
// DestDir

Result<std::shared_ptr<DestDir>> DestDir::open(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return make_error(Errc::local_io, "mkdir(" + path + ")", errno);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::local_io, "open(" + path + ")", errno);
  std::shared_ptr<DestDir> d(new DestDir());
  d->fd_ = fd;
  d->path_ = path;
  return d;
}

DestDir::~DestDir() {
  if (fd_ >= 0) ::close(fd_);
}

Result<int> DestDir::open_parent(const std::string& wire_path, std::string& leaf, bool create) {
  if (auto why = protocol::wire_path_problem(wire_path)) {
    return make_error(Errc::protocol, "unsafe path '" + wire_path + "': " + *why);
  }
  auto comps = protocol::split_wire_path(wire_path);
  // Refuse ferry's own names before creating any missing parent.
  for (const auto& c : comps) {
    if (is_ferry_temp_name(c)) {
      return make_error(Errc::protocol, "unsafe path '" + wire_path + "': uses a name reserved for ferry's own files");
    }
  }
  leaf = comps.back();
  comps.pop_back();
  int dfd = ::fcntl(fd_, F_DUPFD_CLOEXEC, 3);
  if (dfd < 0) return make_error(Errc::local_io, "dup(" + path_ + ")", errno);
  std::string so_far;
  for (const auto& c : comps) {
    so_far += so_far.empty() ? c : "/" + c;
    if (create && ::mkdirat(dfd, c.c_str(), 0755) != 0 && errno != EEXIST) {
      int e = errno;
      ::close(dfd);
      return make_error(Errc::local_io, "mkdir(" + path_ + "/" + so_far + ")", e);
    }
    int nfd = ::openat(dfd, c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    ::close(dfd);
    if (nfd < 0) {
      if (e == ELOOP || e == ENOTDIR) {
        return make_error(Errc::protocol, "unsafe path '" + wire_path + "': '" + so_far +
                                              "' is a symlink or not a directory on the receiver");
      }
      return make_error(Errc::local_io, "open(" + path_ + "/" + so_far + ")", e);
    }
    dfd = nfd;
  }
  return dfd;
}

Result<void> DestDir::make_directory(const protocol::Offer& offer) {
  std::string leaf;
  auto pfd = open_parent(offer.path, leaf, true);
  if (!pfd) return pfd.error();
  const std::string shown = path_ + "/" + offer.path;
  if (::mkdirat(*pfd, leaf.c_str(), 0755) != 0 && errno != EEXIST) {
    int e = errno;
    ::close(*pfd);
    return make_error(Errc::local_io, "mkdir(" + shown + ")", e);
  }
  int dfd = ::openat(*pfd, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int e = errno;
  ::close(*pfd);
  if (dfd < 0) {
    if (e == ELOOP || e == ENOTDIR) {
      return make_error(Errc::protocol, "unsafe path '" + offer.path + "': a symlink or file is in the way");
    }
    return make_error(Errc::local_io, "open(" + shown + ")", e);
  }
  ::close(dfd);
  return {};
}

Result<std::unique_ptr<PartialFile>> DestDir::open_partial(const protocol::Offer& offer, PartialState& state) {
  std::unique_ptr<PartialFile> p(new PartialFile());
  auto pfd = open_parent(offer.path, p->leaf_, true);
  if (!pfd) return pfd.error();
  p->dirfd_ = *pfd;
  p->offer_ = offer;
  p->part_name_ = partial_name(p->leaf_);
  p->journal_name_ = journal_name(p->leaf_);
  p->display_ = path_ + "/" + offer.path;
  XXH3_64bits_reset(&p->block_state_);
  state = PartialState{};

  auto journal = Journal::load(p->dirfd_, p->journal_name_);
  if (!journal) {
    state.note = "journal unreadable (" + journal.error().what + "); starting over";
    journal = std::optional<Journal>{};
  }

  // The final name already holding this very file (same size and mtime) is only
  // re-verified, unless a journal says a transfer of it is under way.
  struct stat fst{};
  if (!journal->has_value() && ::fstatat(p->dirfd_, p->leaf_.c_str(), &fst, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(fst.st_mode)) {
      return make_error(Errc::local_io, "cannot write " + p->display_ + ": a directory is in the way");
    }
    if (S_ISREG(fst.st_mode) && static_cast<std::uint64_t>(fst.st_size) == offer.size &&
        mtime_ns_of(fst) == offer.mtime_ns) {
      int fd = ::openat(p->dirfd_, p->leaf_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        p->fd_ = fd;
        p->already_final_ = true;
        std::vector<std::byte> buf(1 << 20);
        std::uint64_t off = 0;
        while (off < offer.size) {
          auto n = pread_full(fd, buf.data(), buf.size(), off, p->display_);
          if (!n) return n.error();
          if (*n == 0) break;
          state.prefix.update(std::span<const std::byte>(buf.data(), *n));
          off += *n;
        }
        if (off == offer.size) {
          state.offset = off;
          p->written_ = off;
          return p;
        }
        ::close(fd);  // it shrank under us: transfer it normally
        p->fd_ = -1;
        p->already_final_ = false;
        state.prefix = protocol::Digest128();
      }
    }
  }

  p->fd_ = ::openat(p->dirfd_, p->part_name_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (p->fd_ < 0) return make_error(Errc::local_io, "open(" + path_ + "/" + p->part_name_ + ")", errno);
  struct stat pst{};
  if (::fstat(p->fd_, &pst) != 0) return make_error(Errc::local_io, "fstat(" + p->display_ + ")", errno);
  const auto part_size = static_cast<std::uint64_t>(pst.st_size);

  std::uint64_t good = 0;
  if (journal->has_value()) {
    const Journal& j = **journal;
    if (j.path != offer.path || j.identity != offer.identity || j.size != offer.size) {
      state.note = "the source changed since the partial was written (" + j.identity + " -> " +
                   offer.identity + "); starting over";
    } else {
      // Re-check every recorded block against the partial; cut back to the last good one.
      std::vector<std::byte> buf(kJournalBlock);
      std::size_t i = 0;
      for (; i < j.blocks.size(); ++i) {
        auto n = pread_full(p->fd_, buf.data(), kJournalBlock, good, p->display_);
        if (!n) return n.error();
        std::span<const std::byte> blk(buf.data(), *n);
        if (*n != kJournalBlock || protocol::xxh3_64(blk) != j.blocks[i]) break;
        state.prefix.update(blk);
        p->journal_.blocks.push_back(j.blocks[i]);
        good += kJournalBlock;
      }
      if (i == j.blocks.size() && j.tail) {
        const std::size_t tail_len = static_cast<std::size_t>(j.verified - good);
        auto n = pread_full(p->fd_, buf.data(), tail_len, good, p->display_);
        if (!n) return n.error();
        std::span<const std::byte> blk(buf.data(), *n);
        if (*n == tail_len && protocol::xxh3_64(blk) == *j.tail) {
          state.prefix.update(blk);
          XXH3_64bits_update(&p->block_state_, blk.data(), blk.size());
          p->block_fill_ = tail_len;
          good += tail_len;
        }
      }
      if (good < j.verified) {
        state.note = "partial damaged or truncated (journal " + std::to_string(j.verified) + " bytes, " +
                     std::to_string(part_size) + " on disk); resuming from the last good block at " +
                     std::to_string(good);
      }
    }
  } else if (part_size > 0 && state.note.empty()) {
    state.note = "partial without a journal; starting over";
  }
  if (part_size != good && ::ftruncate(p->fd_, static_cast<off_t>(good)) != 0) {
    return make_error(Errc::local_io, "ftruncate(" + p->display_ + ")", errno);
  }
  p->journal_.path = offer.path;
  p->journal_.identity = offer.identity;
  p->journal_.size = offer.size;
  p->journal_.verified = good;
  p->written_ = p->synced_upto_ = good;
  auto saved = p->save_journal();
  if (!saved) return saved.error();
  state.offset = good;
  return p;
}

// ---------------------------------------------------------------------------
// PartialFile

PartialFile::~PartialFile() {
  if (fd_ >= 0) close_keep();
  if (dirfd_ >= 0) ::close(dirfd_);
}

void PartialFile::add_block_bytes(protocol::Bytes data) {
  while (!data.empty()) {
    std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(kJournalBlock - block_fill_, data.size()));
    XXH3_64bits_update(&block_state_, data.data(), take);
    block_fill_ += take;
    data = data.subspan(take);
    if (block_fill_ == kJournalBlock) {
      journal_.blocks.push_back(XXH3_64bits_digest(&block_state_));
      XXH3_64bits_reset(&block_state_);
      block_fill_ = 0;
    }
  }
}

Result<void> PartialFile::save_journal() {
  journal_.verified = written_;
  journal_.tail = block_fill_ ? std::optional<std::uint64_t>(XXH3_64bits_digest(&block_state_)) : std::nullopt;
  last_save_ = std::chrono::steady_clock::now();
  return journal_.save(dirfd_, journal_name_);
}

Result<void> PartialFile::write(std::uint64_t offset, protocol::Bytes data) {
  if (already_final_ || fd_ < 0 || offset != written_) {
    return make_error(Errc::internal, "write out of order to " + display_);
  }
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      // Drop the partly written tail so the file holds no more than the journal's blocks.
      if (::ftruncate(fd_, static_cast<off_t>(written_)) != 0) { /* the resume check cuts it back */ }
      return make_error(Errc::local_io, "write(" + display_ + ")", e);
    }
    done += static_cast<std::size_t>(n);
  }
  add_block_bytes(data);
  written_ += data.size();
  if (written_ - synced_upto_ >= kWritebackStep) {
    // A hint to start writeback now; durability still comes from commit's fsync.
    ::sync_file_range(fd_, static_cast<off_t>(synced_upto_), static_cast<off_t>(written_ - synced_upto_),
                      SYNC_FILE_RANGE_WRITE);
    synced_upto_ = written_;
  }
  if (written_ - journal_.verified >= kJournalBytes ||
      std::chrono::steady_clock::now() - last_save_ >= kJournalInterval) {
    return save_journal();
  }
  return {};
}

Result<void> PartialFile::commit() {
  if (already_final_) {  // the final file was re-verified by its digest: nothing to move
    ::close(fd_);
    fd_ = -1;
    return {};
  }
  if (::fsync(fd_) != 0) return make_error(Errc::local_io, "fsync(" + display_ + ")", errno);
  if (::fchmod(fd_, offer_.mode & 0777) != 0) return make_error(Errc::local_io, "chmod(" + display_ + ")", errno);
  timespec times[2];
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_NOW;
  times[1].tv_sec = static_cast<time_t>(offer_.mtime_ns / 1'000'000'000);
  times[1].tv_nsec = static_cast<long>(offer_.mtime_ns % 1'000'000'000);
  if (times[1].tv_nsec < 0) {
    times[1].tv_nsec += 1'000'000'000;
    times[1].tv_sec -= 1;
  }
  if (::futimens(fd_, times) != 0) return make_error(Errc::local_io, "utimens(" + display_ + ")", errno);
  if (::renameat(dirfd_, part_name_.c_str(), dirfd_, leaf_.c_str()) != 0) {
    return make_error(Errc::local_io, "rename(" + display_ + ")", errno);
  }
  ::close(fd_);
  fd_ = -1;
  if (::fsync(dirfd_) != 0) return make_error(Errc::local_io, "fsync(directory of " + display_ + ")", errno);
  ::unlinkat(dirfd_, journal_name_.c_str(), 0);
  return {};
}

void PartialFile::close_keep() {
  if (fd_ < 0) return;
  if (!already_final_) (void)save_journal();  // best effort: an older journal is still true
  ::close(fd_);
  fd_ = -1;
}

void PartialFile::close_discard() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  if (already_final_) {
    // The final file did not match the sender's digest: leave it in place, and make
    // the next offer transfer into a fresh partial instead of re-verifying it.
    journal_ = Journal{offer_.path, offer_.identity, offer_.size, 0, {}, std::nullopt};
    int fd = ::openat(dirfd_, part_name_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
    (void)journal_.save(dirfd_, journal_name_);
    return;
  }
  ::unlinkat(dirfd_, part_name_.c_str(), 0);
  ::unlinkat(dirfd_, journal_name_.c_str(), 0);
}

}  // namespace ferry
