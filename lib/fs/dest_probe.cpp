#include "lib/fs/dest_probe.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "lib/fs/fd_io.hpp"
#include "lib/fs/journal.hpp"
#include "lib/fs/owned_file.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

// Whole blocks per read, at least this many bytes (add_blocks cuts them).
constexpr std::size_t kReadBytes = 1u << 20;

struct Located {
  UniqueFd parent;  // empty: a parent is missing, a symlink or not a directory
  std::string leaf;
};

// Walks to the parent of `wire_path` without creating or following anything.
Result<Located> locate(const DestDir& dest, const std::string& wire_path) {
  auto checked = dest_path_components(wire_path);
  if (!checked) return checked.error();
  auto& comps = *checked;
  Located out;
  out.leaf = comps.back();
  comps.pop_back();
  UniqueFd dfd(::fcntl(dest.dir_fd(), F_DUPFD_CLOEXEC, 3));
  if (!dfd) return make_error(Errc::local_io, "dup(" + dest.path() + ")", errno);
  for (const auto& c : comps) {
    UniqueFd next = open_dir_fd(dfd.get(), c, Symlinks::refuse);
    if (!next) return out;  // nothing at this path the receiver would use
    dfd = std::move(next);
  }
  out.parent = std::move(dfd);
  return out;
}

bool exists_at(int dirfd, const std::string& name) {
  struct stat st {};
  return ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// The file digest of the open regular file `fd` of `size` bytes with `block_size`;
// nullopt when it no longer has that size.
Result<std::optional<protocol::FileDigest>> digest_file(int fd, std::uint64_t size, std::size_t block_size,
                                                        const std::string& shown) {
  const std::size_t piece = std::max<std::size_t>(1, kReadBytes / block_size) * block_size;
  auto buf = std::make_unique_for_overwrite<std::byte[]>(piece);
  protocol::FileDigest d;
  std::uint64_t off = 0;
  while (off < size) {
    auto n = pread_full(fd, buf.get(), piece, off, shown);
    if (!n) return n.error();
    if (*n == 0) break;
    off = protocol::add_blocks(d, std::span<const std::byte>(buf.get(), *n), off, block_size);
    if (*n < piece) break;
  }
  if (off != size) return std::optional<protocol::FileDigest>{};
  return std::optional<protocol::FileDigest>(d);
}

bool listed_kind(int dirfd, const dirent& e) {
  if (e.d_type == DT_REG || e.d_type == DT_DIR) return true;
  if (e.d_type != DT_UNKNOWN) return false;
  struct stat st {};
  return ::fstatat(dirfd, e.d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

// The names in directory `leaf` of `parent`, as FinalState::names says.
Result<void> list_names(int parent, const std::string& leaf, FinalState& out, const std::string& shown) {
  UniqueDir dir = open_dir_stream(open_dir_fd(parent, leaf, Symlinks::refuse));
  if (!dir) return make_error(Errc::local_io, "opendir(" + shown + ")", errno);
  std::size_t bytes = 0;
  while (const dirent* e = ::readdir(dir.get())) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || is_ferry_temp_name(name) || !listed_kind(dir.fd(), *e)) continue;
    if (out.names.size() >= protocol::kMaxCheckNames || bytes + name.size() > protocol::kMaxCheckNameBytes) {
      out.truncated = true;
      break;
    }
    bytes += name.size();
    out.names.push_back(name);
  }
  std::sort(out.names.begin(), out.names.end());
  return {};
}

Result<void> inspect_file(int parent, const std::string& leaf, const protocol::Offer& offer, FinalState& out,
                          const std::string& shown) {
  auto owned = open_owned(parent, leaf, O_RDONLY, shown);
  if (!owned) return owned.error();
  // open_owned opened it only as a regular file (O_NOFOLLOW | O_NONBLOCK); a file of
  // another user or with more links is still compared, it is what DEST holds.
  UniqueFd fd = std::move(owned->fd);
  if (!fd) {
    fd.reset(::openat(parent, leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat st {};
    if (!fd) return make_error(Errc::local_io, "open(" + shown + ")", errno);
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return make_error(Errc::local_io, "cannot compare " + shown + ": no longer a regular file");
    }
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_error(Errc::local_io, "fstat(" + shown + ")", errno);
  out.size = static_cast<std::uint64_t>(st.st_size);
  if (offer.kind != protocol::EntryKind::file || out.size != offer.size) return {};
  auto d = digest_file(fd.get(), offer.size, offer.block_size, shown);
  if (!d) return d.error();
  out.digest = *d;
  return {};
}

}  // namespace

Result<FinalState> inspect_final(const DestDir& dest, const protocol::Offer& offer, bool want_names) {
  auto loc = locate(dest, offer.path);
  if (!loc) return loc.error();
  FinalState out;
  if (!loc->parent) return out;
  const int parent = loc->parent.get();
  const std::string shown = dest.path() + "/" + offer.path;
  out.partial = exists_at(parent, partial_name(loc->leaf)) || exists_at(parent, journal_name(loc->leaf));
  struct stat st {};
  if (::fstatat(parent, loc->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return out;
    return make_error(Errc::local_io, "lstat(" + shown + ")", errno);
  }
  if (S_ISDIR(st.st_mode)) {
    out.kind = FinalState::Kind::directory;
    if (want_names && offer.kind == protocol::EntryKind::directory) {
      if (auto r = list_names(parent, loc->leaf, out, shown); !r) return r.error();
    }
    return out;
  }
  if (S_ISLNK(st.st_mode)) {
    // Its text only: a check compares it with an offered link's target (--links).
    std::string text(protocol::kMaxLinkTarget + 1, '\0');
    const ssize_t n = ::readlinkat(parent, loc->leaf.c_str(), text.data(), text.size());
    if (n < 0) return make_error(Errc::local_io, "readlink(" + shown + ")", errno);
    text.resize(static_cast<std::size_t>(n));
    out.kind = FinalState::Kind::symlink;
    out.target = std::move(text);
    return out;
  }
  if (!S_ISREG(st.st_mode)) {
    out.kind = FinalState::Kind::other;
    return out;
  }
  out.kind = FinalState::Kind::file;
  if (auto r = inspect_file(parent, loc->leaf, offer, out, shown); !r) return r.error();
  return out;
}

namespace {

// The blocks a matching journal records, re-read from the partial: as
// PartialFile::check_blocks does, without keeping anything.
Result<void> plan_blocks(int part_fd, const Journal& j, const protocol::Offer& offer, PartialState& state,
                         const std::string& shown) {
  const std::size_t bs = offer.block_size;
  auto buf = std::make_unique_for_overwrite<std::byte[]>(bs);
  auto matches = [&](std::uint64_t off, std::uint64_t digest) -> Result<bool> {
    const std::uint64_t len = std::min<std::uint64_t>(bs, offer.size - off);
    auto n = pread_full(part_fd, buf.get(), static_cast<std::size_t>(len), off, shown);
    if (!n) return n.error();
    return *n == len && protocol::block_digest(std::span<const std::byte>(buf.get(), *n), off) == digest;
  };
  bool contiguous = true;
  for (std::size_t i = 0; i < j.blocks.size(); ++i) {
    const std::uint64_t off = i * bs;
    auto ok = matches(off, j.blocks[i]);
    if (!ok) return ok.error();
    const std::uint64_t len = std::min<std::uint64_t>(bs, offer.size - off);
    if (contiguous && *ok) {
      state.prefix.add_block(j.blocks[i]);
      state.offset = off + len;
    } else if (*ok && state.held.size() < kMaxHeldBlocks) {
      state.held.push_back({off, len, j.blocks[i]});
    }
    contiguous = contiguous && *ok;
  }
  for (const auto& h : j.held) {
    auto ok = matches(h.offset, h.digest);
    if (!ok) return ok.error();
    if (*ok && state.held.size() < kMaxHeldBlocks) {
      state.held.push_back({h.offset, std::min<std::uint64_t>(bs, offer.size - h.offset), h.digest});
    }
  }
  if (state.offset < j.verified) state.note = "partial damaged or truncated; resuming from the last good block";
  return {};
}

// A final file of ours with the offered size and mtime: a transfer only re-verifies it.
bool final_complete(int parent, const std::string& leaf, const protocol::Offer& offer, const std::string& shown) {
  auto owned = open_owned(parent, leaf, O_RDONLY, shown);
  return owned && owned->fd && static_cast<std::uint64_t>(owned->st.st_size) == offer.size &&
         mtime_ns(owned->st) == offer.mtime_ns;
}

Result<void> plan_file(const DestDir& dest, int parent, const std::string& leaf, const protocol::Offer& offer,
                       PartialState& state) {
  const std::string shown = dest.path() + "/" + offer.path;
  struct stat st {};
  if (::fstatat(parent, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
    return make_error(Errc::local_io, "cannot write " + shown + ": a directory is in the way");
  }
  auto part = open_owned(parent, partial_name(leaf), O_RDONLY, shown);
  if (!part) return part.error();
  auto journal = Journal::load(parent, journal_name(leaf));
  if (!part->why.empty() || (!journal && journal.error().what.rfind("untrusted", 0) == 0)) {
    state.note = "a file at the partial's name is not the receiver's own; it would be removed, starting over";
    return {};
  }
  if (part->fd && older_than(mtime_ns(part->st), dest.options().stale_partial_age)) {
    state.note = "the partial is older than the stale-partial age; it would be removed, starting over";
    return {};
  }
  if (!journal || !*journal) {
    if (!journal) state.note = "journal unreadable; starting over";
    if (final_complete(parent, leaf, offer, shown)) state.offset = offer.size;
    return {};
  }
  const Journal& j = **journal;
  if (!part->fd || j.path != offer.path || j.identity != offer.identity || j.size != offer.size ||
      j.block_size != offer.block_size) {
    state.note = "the partial is of another source, version or block size of the file; starting over";
    return {};
  }
  return plan_blocks(part->fd.get(), j, offer, state, shown);
}

}  // namespace

Result<PlannedOpen> plan_open(const DestDir& dest, const protocol::Offer& offer) {
  if (offer.kind == protocol::EntryKind::file &&
      (offer.block_size < protocol::kMinChunkSize || offer.block_size > protocol::kMaxChunkSize)) {
    return make_error(Errc::protocol, "invalid block size " + std::to_string(offer.block_size) + " for " + offer.path);
  }
  auto loc = locate(dest, offer.path);
  if (!loc) return loc.error();
  PlannedOpen out;
  if (!loc->parent) {
    // A missing parent would be made; a symlink or file in its place fails the real open.
    out.created = offer.kind == protocol::EntryKind::directory;
    return out;
  }
  const int parent = loc->parent.get();
  if (offer.kind == protocol::EntryKind::symlink) {
    // A transfer leaves an identical link alone and makes (or replaces) any other.
    std::string text(protocol::kMaxLinkTarget + 1, '\0');
    const ssize_t n = ::readlinkat(parent, loc->leaf.c_str(), text.data(), text.size());
    out.created = n < 0 || std::string_view(text.data(), static_cast<std::size_t>(n)) != offer.target;
    return out;
  }
  if (offer.kind == protocol::EntryKind::directory) {
    struct stat st {};
    if (::fstatat(parent, loc->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      out.created = true;
    } else if (!S_ISDIR(st.st_mode)) {
      return make_error(Errc::protocol, "unsafe path '" + offer.path + "': a symlink or file is in the way");
    }
    return out;
  }
  if (auto r = plan_file(dest, parent, loc->leaf, offer, out.state); !r) return r.error();
  return out;
}

}  // namespace ferry
