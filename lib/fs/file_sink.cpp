#include "lib/fs/file_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <algorithm>
#include <vector>

#include "lib/fs/owned_file.hpp"

#include "protocol/frame.hpp"

#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

// The journal is saved at least this often, and after this many bytes, so that a
// killed receiver loses little verified progress.
constexpr auto kJournalInterval = std::chrono::seconds(1);
constexpr std::uint64_t kJournalBytes = 32u << 20;
// reuse_final reads the final file in pieces of at least this many bytes.
constexpr std::size_t kHashReadBytes = 1u << 20;
constexpr std::size_t kMaxPlainLeaf = 200;

std::string hidden_base(const std::string& leaf) {
  if (leaf.size() <= kMaxPlainLeaf) return "." + leaf;
  auto h = protocol::xxh3_64(std::span<const std::byte>(reinterpret_cast<const std::byte*>(leaf.data()), leaf.size()));
  return "." + protocol::hex64(h) + ".ferry-long";
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
std::string batch_temp_name(const std::string& leaf, std::uint64_t unique) {
  return hidden_base(leaf) + "." + protocol::hex64(unique) + ".ferry-batch";
}
std::string journal_name(const std::string& leaf) { return hidden_base(leaf) + ".ferry-journal"; }
bool is_ferry_temp_name(const std::string& leaf) { return protocol::reserved_name(leaf); }

std::string on_disk_key(const std::string& wire_path) {
  if (protocol::wire_path_problem(wire_path)) return wire_path;  // refused at open anyway
  const std::size_t slash = wire_path.rfind('/');
  const std::string parent = slash == std::string::npos ? std::string() : wire_path.substr(0, slash + 1);
  return parent + hidden_base(wire_path.substr(slash == std::string::npos ? 0 : slash + 1));
}

Result<void> apply_offer_metadata(int fd, std::uint32_t mode, std::int64_t mtime_ns, const std::string& shown) {
  if (::fchmod(fd, mode & 0777) != 0) return make_error(Errc::local_io, "chmod(" + shown + ")", errno);
  timespec times[2];
  set_times_for_mtime(mtime_ns, times);
  if (::futimens(fd, times) != 0) return make_error(Errc::local_io, "utimens(" + shown + ")", errno);
  return {};
}

// ---------------------------------------------------------------------------
// DestDir

Result<std::shared_ptr<DestDir>> DestDir::open(const std::string& path, DestOptions options) {
  if (!options.read_only && ::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return make_error(Errc::local_io, "mkdir(" + path + ")", errno);
  }
  UniqueFd fd = open_dir_fd(AT_FDCWD, path, Symlinks::follow);
  if (!fd) return make_error(Errc::local_io, "open(" + path + ")", errno);
  std::shared_ptr<DestDir> d(new DestDir());
  d->fd_ = std::move(fd);
  d->path_ = path;
  d->options_ = options;
  d->umask_ = read_umask();
  if (!options.read_only) d->stale_removed_ = d->remove_stale_top_level();
  return d;
}

std::size_t DestDir::remove_stale_top_level() const {
  if (options_.stale_partial_age.count() <= 0) return 0;
  UniqueDir listing = open_dir_stream(UniqueFd(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 3)));
  if (!listing) return 0;  // best effort: each partial is checked again when met
  std::size_t removed = 0;
  while (const dirent* e = ::readdir(listing.get())) {
    if (!is_ferry_temp_name(e->d_name)) continue;
    struct stat st {};
    if (::fstatat(fd_.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !untrusted_why(st).empty()) continue;
    if (older_than(mtime_ns(st), options_.stale_partial_age) && ::unlinkat(fd_.get(), e->d_name, 0) == 0) ++removed;
  }
  return removed;
}

Result<std::vector<std::string>> dest_path_components(const std::string& wire_path) {
  if (auto why = protocol::wire_path_problem(wire_path)) {
    return make_error(Errc::protocol, "unsafe path '" + wire_path + "': " + *why);
  }
  auto comps = protocol::split_wire_path(wire_path);
  for (const auto& c : comps) {
    if (is_ferry_temp_name(c)) {
      return make_error(Errc::protocol, "unsafe path '" + wire_path + "': uses a name reserved for ferry's own files");
    }
  }
  return comps;
}

Result<UniqueFd> DestDir::open_parent(const std::string& wire_path, std::string& leaf, bool create) {
  // Ferry's own names are refused before any missing parent is created.
  auto checked = dest_path_components(wire_path);
  if (!checked) return checked.error();
  auto& comps = *checked;
  leaf = comps.back();
  comps.pop_back();
  if (!comps.empty()) {
    // Usually the whole way exists: one call. Else the walk below creates what is
    // missing and names the component that is in the way.
    UniqueFd direct = open_dir_beneath(fd_.get(), wire_path.substr(0, wire_path.size() - leaf.size() - 1));
    if (direct) return direct;
  }
  UniqueFd dfd(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 3));
  if (!dfd) return make_error(Errc::local_io, "dup(" + path_ + ")", errno);
  std::string so_far;
  for (const auto& c : comps) {
    so_far += so_far.empty() ? c : "/" + c;
    // Opened first: the directory usually exists (its OFFER came first), and a mkdir
    // that fails with EEXIST costs a lookup of its own.
    UniqueFd next = open_dir_fd(dfd.get(), c, Symlinks::refuse);
    if (!next && errno == ENOENT && create) {
      if (::mkdirat(dfd.get(), c.c_str(), 0755) != 0 && errno != EEXIST) {
        return make_error(Errc::local_io, "mkdir(" + path_ + "/" + so_far + ")", errno);
      }
      next = open_dir_fd(dfd.get(), c, Symlinks::refuse);
    }
    if (!next) {
      return subdir_error(errno, "unsafe path '" + wire_path + "': '" + so_far +
                                     "' is a symlink or not a directory on the receiver",
                          path_ + "/" + so_far);
    }
    dfd = std::move(next);
  }
  return dfd;
}

Result<bool> DestDir::make_directory(const protocol::Offer& offer) {
  std::string leaf;
  auto pfd = open_parent(offer.path, leaf, true);
  if (!pfd) return pfd.error();
  const std::string shown = path_ + "/" + offer.path;
  const bool created = ::mkdirat(pfd->get(), leaf.c_str(), 0755) == 0;
  if (!created && errno != EEXIST) return make_error(Errc::local_io, "mkdir(" + shown + ")", errno);
  if (!open_dir_fd(pfd->get(), leaf, Symlinks::refuse)) {
    return subdir_error(errno, "unsafe path '" + offer.path + "': a symlink or file is in the way", shown);
  }
  return created;
}

Result<std::unique_ptr<PartialFile>> DestDir::open_partial(const protocol::Offer& offer, PartialState& state) {
  if (offer.block_size < protocol::kMinChunkSize || offer.block_size > protocol::kMaxChunkSize) {
    return make_error(Errc::protocol, "invalid block size " + std::to_string(offer.block_size) + " for " + offer.path);
  }
  std::unique_ptr<PartialFile> p(new PartialFile());
  auto pfd = open_parent(offer.path, p->leaf_, true);
  if (!pfd) return pfd.error();
  p->dirfd_ = std::move(*pfd);
  p->offer_ = offer;
  p->options_ = options_;
  p->umask_ = umask_;
  p->part_name_ = partial_name(p->leaf_);
  p->journal_name_ = journal_name(p->leaf_);
  p->display_ = path_ + "/" + offer.path;
  state = PartialState{};

  if (auto cleared = p->clear_unusable(state); !cleared) return cleared.error();
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
  std::uint64_t good = 0;
  if (p->journal_matches(journal, *part_size, state)) {
    auto checked = p->check_blocks(*journal, *part_size, state);
    if (!checked) return checked.error();
    good = *checked;
  }
  auto resumed = p->resume_at(good, *part_size, state);
  if (!resumed) return resumed.error();
  return p;
}

// ---------------------------------------------------------------------------
// PartialFile: opening

PartialFile::~PartialFile() {
  if (fd_) close_keep();
}

std::uint64_t PartialFile::block_length(std::uint64_t offset) const {
  return std::min<std::uint64_t>(offer_.block_size, offer_.size - offset);
}

Result<void> PartialFile::clear_unusable(PartialState& state) {
  bool found = false;
  std::int64_t newest = 0;
  for (const std::string* name : {&part_name_, &journal_name_}) {
    const std::string shown = path_of(*name);
    auto owned = open_owned(dirfd_.get(), *name, O_RDONLY, shown);
    if (!owned) return owned.error();
    if (owned->fd) {
      newest = found ? std::max(newest, mtime_ns(owned->st)) : mtime_ns(owned->st);
      found = true;
    }
    if (owned->why.empty()) continue;
    // Set aside by removal: it was not ours, and nothing in it is trusted.
    if (::unlinkat(dirfd_.get(), name->c_str(), 0) != 0) {
      return make_error(Errc::local_io, "cannot remove " + shown + " (" + owned->why + ")", errno);
    }
    state.note = "a file at the partial's name was not the receiver's own (" + owned->why + "); removed, starting over";
  }
  if (found && older_than(newest, options_.stale_partial_age)) {
    for (const std::string* name : {&part_name_, &journal_name_}) ::unlinkat(dirfd_.get(), name->c_str(), 0);
    state.note = "the partial was older than the stale-partial age; removed, starting over";
  }
  return {};
}

std::string PartialFile::path_of(const std::string& name) const {
  const std::size_t slash = display_.rfind('/');
  return display_.substr(0, slash + 1) + name;
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
  struct stat lst{};
  if (::fstatat(dirfd_.get(), leaf_.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISDIR(lst.st_mode)) {
    return make_error(Errc::local_io, "cannot write " + display_ + ": a directory is in the way");
  }
  // Only a file of ours is adopted as complete: never a FIFO (it is not even opened),
  // a hard link, or another user's file; those are replaced by the transfer.
  auto owned = open_owned(dirfd_.get(), leaf_, O_RDONLY, display_);
  if (!owned) return owned.error();
  if (!owned->fd || static_cast<std::uint64_t>(owned->st.st_size) != offer_.size ||
      mtime_ns(owned->st) != offer_.mtime_ns) {
    return false;
  }
  fd_ = std::move(owned->fd);
  // Whole blocks per read, at least kHashReadBytes: add_blocks cuts them.
  const std::size_t bs = offer_.block_size;
  const std::size_t piece = std::max<std::size_t>(1, kHashReadBytes / bs) * bs;
  auto buf = std::make_unique_for_overwrite<std::byte[]>(piece);
  std::uint64_t off = 0;
  while (off < offer_.size) {
    auto n = pread_full(fd_.get(), buf.get(), piece, off, display_);
    if (!n) return n.error();
    if (*n == 0) break;
    off = protocol::add_blocks(state.prefix, std::span<const std::byte>(buf.get(), *n), off, bs);
    if (*n < piece) break;  // a short piece must be the file's last
  }
  if (off == offer_.size) {
    state.offset = off;
    already_final_ = true;
    journal_.verified = off;
    return true;
  }
  fd_.reset();  // it changed under us: transfer it normally
  state.prefix = protocol::FileDigest();
  return false;
}

Result<std::uint64_t> PartialFile::open_part(const std::string& shown) {
  fd_.reset(::openat(dirfd_.get(), part_name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd_) return 0;
  if (errno != EEXIST) return make_error(Errc::local_io, "open(" + shown + ")", errno);
  auto owned = open_owned(dirfd_.get(), part_name_, O_RDWR, shown);
  if (!owned) return owned.error();
  if (!owned->why.empty()) return make_error(Errc::local_io, "cannot resume " + shown + ": " + owned->why);
  if (!owned->fd) return make_error(Errc::local_io, "open(" + shown + ")", ENOENT);  // removed meanwhile
  fd_ = std::move(owned->fd);
  return static_cast<std::uint64_t>(owned->st.st_size);
}

bool PartialFile::journal_matches(const std::optional<Journal>& journal, std::uint64_t part_size,
                                  PartialState& state) const {
  if (!journal) {
    if (part_size > 0 && state.note.empty()) state.note = "partial without a journal; starting over";
    return false;
  }
  const Journal& j = *journal;
  if (j.path != offer_.path || j.identity != offer_.identity || j.size != offer_.size) {
    // Nothing about the partial's source (another sender's file) goes into the note.
    state.note = "the partial is of another source or version of the file; starting over";
    return false;
  }
  if (j.block_size != offer_.block_size) {
    state.note = "block size changed (" + std::to_string(j.block_size) + " -> " + std::to_string(offer_.block_size) +
                 "); starting over";
    return false;
  }
  return true;
}

Result<bool> PartialFile::block_matches(std::uint64_t offset, std::uint64_t digest, std::byte* buf) {
  const std::uint64_t len = block_length(offset);
  auto n = pread_full(fd_.get(), buf, static_cast<std::size_t>(len), offset, display_);
  if (!n) return n.error();
  return *n == len && protocol::block_digest(std::span<const std::byte>(buf, *n), offset) == digest;
}

// One read and one hash per recorded block. A block that matches after a bad one is
// kept as held (written, out of order) rather than lost.
Result<std::uint64_t> PartialFile::check_blocks(const Journal& j, std::uint64_t part_size, PartialState& state) {
  auto buf = std::make_unique_for_overwrite<std::byte[]>(offer_.block_size);
  std::uint64_t good = 0;
  bool contiguous = true;
  std::size_t lost_held = 0;
  auto check = [&](std::uint64_t off, std::uint64_t digest) -> Result<void> {
    auto ok = block_matches(off, digest, buf.get());
    if (!ok) return ok.error();
    if (contiguous && *ok) {
      state.prefix.add_block(digest);
      journal_.blocks.push_back(digest);
      good = off + block_length(off);
    } else if (*ok && held_.size() < kMaxHeldBlocks) {
      held_.emplace(off, digest);
      state.held.push_back({off, block_length(off), digest});
    } else if (!contiguous) {
      ++lost_held;
    }
    contiguous = contiguous && *ok;
    return {};
  };
  for (std::size_t i = 0; i < j.blocks.size(); ++i) {
    if (auto r = check(i * j.block_size, j.blocks[i]); !r) return r.error();
  }
  contiguous = false;  // held blocks are above `verified`: never contiguous here
  for (const auto& h : j.held) {
    if (auto r = check(h.offset, h.digest); !r) return r.error();
  }
  // (Counts of the partial's own blocks: the journal matched this offer's source.)
  if (good < j.verified) {
    state.note = "partial damaged or truncated (journal " + std::to_string(j.verified) + " bytes, " +
                 std::to_string(part_size) + " on disk); resuming from the last good block at " +
                 std::to_string(good);
  } else if (lost_held > 0) {
    state.note = "partial damaged or truncated (" + std::to_string(lost_held) + " of " +
                 std::to_string(j.held.size()) + " held blocks no longer match); they are sent again";
  }
  return good;
}

Result<void> PartialFile::resume_at(std::uint64_t good, std::uint64_t part_size, PartialState& state) {
  // Nothing beyond the last block kept is vouched for: cut it off, so the file ends up
  // exactly `size` bytes once every block is written.
  const std::uint64_t keep = held_.empty() ? good : held_.rbegin()->first + block_length(held_.rbegin()->first);
  if (part_size != keep && ::ftruncate(fd_.get(), static_cast<off_t>(keep)) != 0) {
    return make_error(Errc::local_io, "ftruncate(" + display_ + ")", errno);
  }
  std::lock_guard lock(mu_);
  journal_.path = offer_.path;
  journal_.identity = offer_.identity;
  journal_.size = offer_.size;
  journal_.block_size = offer_.block_size;
  journal_.verified = good;
  if (good == 0 && held_.empty()) {
    // Nothing verified to record: no journal now (a file sent whole within
    // kJournalInterval and kJournalBytes never needs one; the first is saved after
    // them), and one left by an earlier transfer no longer describes this partial.
    Journal::remove(dirfd_.get(), journal_name_);
    last_save_ = std::chrono::steady_clock::now();
    unsaved_bytes_ = 0;
    state.offset = 0;
    return {};
  }
  auto saved = save_journal();
  if (!saved) return saved;
  state.offset = good;
  return {};
}

// ---------------------------------------------------------------------------
// PartialFile: writing

std::uint64_t PartialFile::written() const {
  std::lock_guard lock(mu_);
  return journal_.verified;
}

std::size_t PartialFile::held_count() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

std::string PartialFile::misplaced(std::uint64_t offset, std::uint64_t length) const {
  if (already_final_ || !fd_) return "write to a closed or complete file";
  if (offset >= offer_.size || offset % offer_.block_size != 0) return "misplaced block at " + std::to_string(offset);
  if (length != block_length(offset)) {
    return "block at " + std::to_string(offset) + " has " + std::to_string(length) + " bytes, not " +
           std::to_string(block_length(offset));
  }
  return {};
}

Result<void> PartialFile::save_journal() {
  journal_.held.clear();
  journal_.held.reserve(held_.size());
  for (const auto& [off, digest] : held_) journal_.held.push_back({off, digest});
  last_save_ = std::chrono::steady_clock::now();
  unsaved_bytes_ = 0;
  return journal_.save(dirfd_.get(), journal_name_, !options_.no_fsync);
}

Result<void> PartialFile::record_block(std::uint64_t offset, std::uint64_t length, std::uint64_t digest) {
  if (offset < journal_.verified || held_.contains(offset)) {
    return make_error(Errc::internal, "block at " + std::to_string(offset) + " of " + display_ + " written twice");
  }
  if (offset != journal_.verified) {
    if (held_.size() >= kMaxHeldBlocks) {
      return make_error(Errc::internal, "more than " + std::to_string(kMaxHeldBlocks) + " blocks held for " + display_);
    }
    held_.emplace(offset, digest);
  } else {
    journal_.blocks.push_back(digest);
    journal_.verified += length;
    // The contiguous point moves over the held blocks it reaches.
    for (auto it = held_.begin(); it != held_.end() && it->first == journal_.verified; it = held_.erase(it)) {
      journal_.blocks.push_back(it->second);
      journal_.verified += block_length(it->first);
    }
  }
  unsaved_bytes_ += length;
  if (unsaved_bytes_ >= kJournalBytes || std::chrono::steady_clock::now() - last_save_ >= kJournalInterval) {
    return save_journal();
  }
  return {};
}

Result<void> PartialFile::write(std::uint64_t offset, protocol::Bytes data, std::uint64_t digest) {
  if (auto why = misplaced(offset, data.size()); !why.empty()) {
    return make_error(Errc::internal, why + " (" + display_ + ")");
  }
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    // Nothing is recorded for this block; a resume re-checks every block anyway.
    if (n < 0) return make_error(Errc::local_io, "write(" + display_ + ")", errno);
    done += static_cast<std::size_t>(n);
  }
  if (!options_.no_fsync) {
    // Start write-back now, behind the write head, so commit's fsync finds little left.
    // Asynchronous: durability still comes from commit's fsync.
    (void)::sync_file_range(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(data.size()),
                            SYNC_FILE_RANGE_WRITE);
  }
  std::lock_guard lock(mu_);
  return record_block(offset, data.size(), digest);
}

// ---------------------------------------------------------------------------
// PartialFile: closing

Result<void> PartialFile::commit() {
  if (already_final_) {  // the final file was re-verified by its digest: nothing to move
    fd_.reset();
    return {};
  }
  if (!fd_ || written() != offer_.size) {
    return make_error(Errc::internal, "commit of " + display_ + " before every block was written");
  }
  if (!options_.no_fsync && ::fsync(fd_.get()) != 0) {
    return make_error(Errc::local_io, "fsync(" + display_ + ")", errno);
  }
  if (auto meta = apply_offer_metadata(fd_.get(), offer_.mode & ~umask_, offer_.mtime_ns, display_); !meta) return meta;
  if (::renameat(dirfd_.get(), part_name_.c_str(), dirfd_.get(), leaf_.c_str()) != 0) {
    return make_error(Errc::local_io, "rename(" + display_ + ")", errno);
  }
  fd_.reset();
  if (!options_.no_fsync && ::fsync(dirfd_.get()) != 0) {
    return make_error(Errc::local_io, "fsync(directory of " + display_ + ")", errno);
  }
  ::unlinkat(dirfd_.get(), journal_name_.c_str(), 0);
  return {};
}

void PartialFile::close_keep() {
  if (!fd_) return;
  if (!already_final_) {
    std::lock_guard lock(mu_);
    if (journal_.verified == 0 && held_.empty()) {
      // Nothing worth resuming (e.g. the first write failed with ENOSPC): leave no
      // hidden partial behind.
      fd_.reset();
      ::unlinkat(dirfd_.get(), part_name_.c_str(), 0);
      ::unlinkat(dirfd_.get(), journal_name_.c_str(), 0);
      return;
    }
    (void)save_journal();  // best effort: an older journal is still true
  }
  fd_.reset();
}

void PartialFile::close_discard() {
  if (!fd_) return;
  fd_.reset();
  if (already_final_) {
    // The final file did not match the sender's digest: leave it in place, and make
    // the next offer transfer into a fresh partial instead of re-verifying it.
    Journal fresh{offer_.path, offer_.identity, offer_.size, offer_.block_size, 0, {}, {}};
    ::unlinkat(dirfd_.get(), part_name_.c_str(), 0);  // created exclusively, never opened
    (void)UniqueFd(::openat(dirfd_.get(), part_name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                            0600));  // an empty partial, closed at once
    (void)fresh.save(dirfd_.get(), journal_name_, !options_.no_fsync);
    return;
  }
  ::unlinkat(dirfd_.get(), part_name_.c_str(), 0);
  ::unlinkat(dirfd_.get(), journal_name_.c_str(), 0);
}

}  // namespace ferry
