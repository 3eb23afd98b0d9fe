#include "lib/fs/file_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

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

// Opening directory `shown` without following a symlink failed with `err`: a symlink
// or a file in the way (ELOOP, ENOTDIR) is the peer's doing (Errc::protocol
// `unsafe_why`), anything else a local error.
Error subdir_error(int err, const std::string& unsafe_why, const std::string& shown) {
  if (err == ELOOP || err == ENOTDIR) return make_error(Errc::protocol, unsafe_why);
  return make_error(Errc::local_io, "open(" + shown + ")", err);
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
  UniqueFd fd = open_dir_fd(AT_FDCWD, path, Symlinks::follow);
  if (!fd) return make_error(Errc::local_io, "open(" + path + ")", errno);
  std::shared_ptr<DestDir> d(new DestDir());
  d->fd_ = std::move(fd);
  d->path_ = path;
  return d;
}

Result<UniqueFd> DestDir::open_parent(const std::string& wire_path, std::string& leaf, bool create) {
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
  UniqueFd dfd(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 3));
  if (!dfd) return make_error(Errc::local_io, "dup(" + path_ + ")", errno);
  std::string so_far;
  for (const auto& c : comps) {
    so_far += so_far.empty() ? c : "/" + c;
    if (create && ::mkdirat(dfd.get(), c.c_str(), 0755) != 0 && errno != EEXIST) {
      return make_error(Errc::local_io, "mkdir(" + path_ + "/" + so_far + ")", errno);
    }
    UniqueFd next = open_dir_fd(dfd.get(), c, Symlinks::refuse);
    if (!next) {
      return subdir_error(errno, "unsafe path '" + wire_path + "': '" + so_far +
                                     "' is a symlink or not a directory on the receiver",
                          path_ + "/" + so_far);
    }
    dfd = std::move(next);
  }
  return dfd;
}

Result<void> DestDir::make_directory(const protocol::Offer& offer) {
  std::string leaf;
  auto pfd = open_parent(offer.path, leaf, true);
  if (!pfd) return pfd.error();
  const std::string shown = path_ + "/" + offer.path;
  if (::mkdirat(pfd->get(), leaf.c_str(), 0755) != 0 && errno != EEXIST) {
    return make_error(Errc::local_io, "mkdir(" + shown + ")", errno);
  }
  if (!open_dir_fd(pfd->get(), leaf, Symlinks::refuse)) {
    return subdir_error(errno, "unsafe path '" + offer.path + "': a symlink or file is in the way", shown);
  }
  return {};
}

Result<std::unique_ptr<PartialFile>> DestDir::open_partial(const protocol::Offer& offer, PartialState& state) {
  std::unique_ptr<PartialFile> p(new PartialFile());
  auto pfd = open_parent(offer.path, p->leaf_, true);
  if (!pfd) return pfd.error();
  p->dirfd_ = std::move(*pfd);
  p->offer_ = offer;
  p->part_name_ = partial_name(p->leaf_);
  p->journal_name_ = journal_name(p->leaf_);
  p->display_ = path_ + "/" + offer.path;
  XXH3_64bits_reset(&p->block_state_);
  state = PartialState{};

  const auto journal = p->load_journal(state);
  // The final name already holding this very file (same size and mtime) is only
  // re-verified, unless a journal says a transfer of it is under way.
  if (!journal) {
    auto reused = p->reuse_final(state);
    if (!reused) return reused.error();
    if (*reused) return p;
  }
  auto part_size = p->open_part(path_ + "/" + p->part_name_);
  if (!part_size) return part_size.error();
  auto good = p->check_journal(journal, *part_size, state);
  if (!good) return good.error();
  auto resumed = p->resume_at(*good, *part_size, state);
  if (!resumed) return resumed.error();
  return p;
}

// ---------------------------------------------------------------------------
// PartialFile

PartialFile::~PartialFile() {
  if (fd_) close_keep();
}

std::optional<Journal> PartialFile::load_journal(PartialState& state) {
  auto journal = Journal::load(dirfd_.get(), journal_name_);
  if (!journal) {
    state.note = "journal unreadable (" + journal.error().what + "); starting over";
    return std::nullopt;
  }
  return std::move(*journal);
}

Result<bool> PartialFile::reuse_final(PartialState& state) {
  struct stat fst{};
  if (::fstatat(dirfd_.get(), leaf_.c_str(), &fst, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISDIR(fst.st_mode)) {
    return make_error(Errc::local_io, "cannot write " + display_ + ": a directory is in the way");
  }
  if (!S_ISREG(fst.st_mode) || static_cast<std::uint64_t>(fst.st_size) != offer_.size ||
      mtime_ns(fst) != offer_.mtime_ns) {
    return false;
  }
  fd_.reset(::openat(dirfd_.get(), leaf_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd_) return false;
  already_final_ = true;
  std::vector<std::byte> buf(1 << 20);
  std::uint64_t off = 0;
  while (off < offer_.size) {
    auto n = pread_full(fd_.get(), buf.data(), buf.size(), off, display_);
    if (!n) return n.error();
    if (*n == 0) break;
    state.prefix.update(std::span<const std::byte>(buf.data(), *n));
    off += *n;
  }
  if (off == offer_.size) {
    state.offset = off;
    written_ = off;
    return true;
  }
  fd_.reset();  // it shrank under us: transfer it normally
  already_final_ = false;
  state.prefix = protocol::Digest128();
  return false;
}

Result<std::uint64_t> PartialFile::open_part(const std::string& shown) {
  fd_.reset(::openat(dirfd_.get(), part_name_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd_) return make_error(Errc::local_io, "open(" + shown + ")", errno);
  struct stat pst{};
  if (::fstat(fd_.get(), &pst) != 0) return make_error(Errc::local_io, "fstat(" + display_ + ")", errno);
  return static_cast<std::uint64_t>(pst.st_size);
}

Result<std::uint64_t> PartialFile::check_journal(const std::optional<Journal>& journal, std::uint64_t part_size,
                                                 PartialState& state) {
  if (!journal) {
    if (part_size > 0 && state.note.empty()) state.note = "partial without a journal; starting over";
    return 0;
  }
  const Journal& j = *journal;
  if (j.path != offer_.path || j.identity != offer_.identity || j.size != offer_.size) {
    state.note = "the source changed since the partial was written (" + j.identity + " -> " + offer_.identity +
                 "); starting over";
    return 0;
  }
  std::vector<std::byte> buf(kJournalBlock);
  auto good = check_blocks(j, buf, state);
  if (!good) return good;
  if (*good == j.blocks.size() * kJournalBlock && j.tail) {  // every whole block is good
    good = check_tail(j, *good, buf, state);
    if (!good) return good;
  }
  if (*good < j.verified) {
    state.note = "partial damaged or truncated (journal " + std::to_string(j.verified) + " bytes, " +
                 std::to_string(part_size) + " on disk); resuming from the last good block at " +
                 std::to_string(*good);
  }
  return good;
}

// Re-checks every recorded block against the partial; cuts back to the last good one.
Result<std::uint64_t> PartialFile::check_blocks(const Journal& j, std::vector<std::byte>& buf, PartialState& state) {
  std::uint64_t good = 0;
  for (std::size_t i = 0; i < j.blocks.size(); ++i) {
    auto n = pread_full(fd_.get(), buf.data(), kJournalBlock, good, display_);
    if (!n) return n.error();
    std::span<const std::byte> blk(buf.data(), *n);
    if (*n != kJournalBlock || protocol::xxh3_64(blk) != j.blocks[i]) break;
    state.prefix.update(blk);
    journal_.blocks.push_back(j.blocks[i]);
    good += kJournalBlock;
  }
  return good;
}

// The partial block after the whole ones: kept when it matches, and then it goes on
// filling the block being hashed.
Result<std::uint64_t> PartialFile::check_tail(const Journal& j, std::uint64_t good, std::vector<std::byte>& buf,
                                              PartialState& state) {
  const std::size_t tail_len = static_cast<std::size_t>(j.verified - good);
  auto n = pread_full(fd_.get(), buf.data(), tail_len, good, display_);
  if (!n) return n.error();
  std::span<const std::byte> blk(buf.data(), *n);
  if (*n != tail_len || protocol::xxh3_64(blk) != *j.tail) return good;
  state.prefix.update(blk);
  XXH3_64bits_update(&block_state_, blk.data(), blk.size());
  block_fill_ = tail_len;
  return good + tail_len;
}

Result<void> PartialFile::resume_at(std::uint64_t good, std::uint64_t part_size, PartialState& state) {
  if (part_size != good && ::ftruncate(fd_.get(), static_cast<off_t>(good)) != 0) {
    return make_error(Errc::local_io, "ftruncate(" + display_ + ")", errno);
  }
  journal_.path = offer_.path;
  journal_.identity = offer_.identity;
  journal_.size = offer_.size;
  journal_.verified = good;
  written_ = synced_upto_ = good;
  auto saved = save_journal();
  if (!saved) return saved;
  state.offset = good;
  return {};
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
  return journal_.save(dirfd_.get(), journal_name_);
}

Result<void> PartialFile::write(std::uint64_t offset, protocol::Bytes data) {
  if (already_final_ || !fd_ || offset != written_) {
    return make_error(Errc::internal, "write out of order to " + display_);
  }
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      // Drop the partly written tail so the file holds no more than the journal's blocks.
      if (::ftruncate(fd_.get(), static_cast<off_t>(written_)) != 0) { /* the resume check cuts it back */ }
      return make_error(Errc::local_io, "write(" + display_ + ")", e);
    }
    done += static_cast<std::size_t>(n);
  }
  add_block_bytes(data);
  written_ += data.size();
  if (written_ - synced_upto_ >= kWritebackStep) {
    // A hint to start writeback now; durability still comes from commit's fsync.
    ::sync_file_range(fd_.get(), static_cast<off_t>(synced_upto_), static_cast<off_t>(written_ - synced_upto_),
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
    fd_.reset();
    return {};
  }
  if (::fsync(fd_.get()) != 0) return make_error(Errc::local_io, "fsync(" + display_ + ")", errno);
  if (::fchmod(fd_.get(), offer_.mode & 0777) != 0) return make_error(Errc::local_io, "chmod(" + display_ + ")", errno);
  timespec times[2];
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_NOW;
  times[1].tv_sec = static_cast<time_t>(offer_.mtime_ns / 1'000'000'000);
  times[1].tv_nsec = static_cast<long>(offer_.mtime_ns % 1'000'000'000);
  if (times[1].tv_nsec < 0) {
    times[1].tv_nsec += 1'000'000'000;
    times[1].tv_sec -= 1;
  }
  if (::futimens(fd_.get(), times) != 0) return make_error(Errc::local_io, "utimens(" + display_ + ")", errno);
  if (::renameat(dirfd_.get(), part_name_.c_str(), dirfd_.get(), leaf_.c_str()) != 0) {
    return make_error(Errc::local_io, "rename(" + display_ + ")", errno);
  }
  fd_.reset();
  if (::fsync(dirfd_.get()) != 0) return make_error(Errc::local_io, "fsync(directory of " + display_ + ")", errno);
  ::unlinkat(dirfd_.get(), journal_name_.c_str(), 0);
  return {};
}

void PartialFile::close_keep() {
  if (!fd_) return;
  if (!already_final_) (void)save_journal();  // best effort: an older journal is still true
  fd_.reset();
}

void PartialFile::close_discard() {
  if (!fd_) return;
  fd_.reset();
  if (already_final_) {
    // The final file did not match the sender's digest: leave it in place, and make
    // the next offer transfer into a fresh partial instead of re-verifying it.
    journal_ = Journal{offer_.path, offer_.identity, offer_.size, 0, {}, std::nullopt};
    (void)UniqueFd(::openat(dirfd_.get(), part_name_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                            0600));  // an empty partial, closed at once
    (void)journal_.save(dirfd_.get(), journal_name_);
    return;
  }
  ::unlinkat(dirfd_.get(), part_name_.c_str(), 0);
  ::unlinkat(dirfd_.get(), journal_name_.c_str(), 0);
}

}  // namespace ferry
