#include "sender/spool/spool_scan.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "lib/fs/dir_walk.hpp"
#include "lib/fs/fd_io.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

constexpr unsigned kMaxNameSuffix = 999;
constexpr std::size_t kCopyBufferSize = 1 << 20;

struct DirId {
  dev_t dev;
  ino_t ino;
  bool operator==(const DirId&) const = default;
};

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// Is `e` one of the errno values a concurrent rename or removal produces? Then the
// entry is simply not there any more (or not what it was): absent, not an error.
bool is_race(int e) {
  return e == ENOENT || e == ENOTDIR || e == ELOOP;
}

// Lists the spool for scan_spool(): visits every entry below DIR (hidden names not
// listed), keeps regular files, says why anything else is not sent, and stops at the
// limits.
class Scanner : public DirVisitor {
 public:
  Scanner(std::string dir, const SpoolLimits& limits, std::vector<DirId> excluded)
      : dir_(std::move(dir)), limits_(limits), excluded_(std::move(excluded)) {}

  WalkStep visit(const DirEntry& e) override {
    const WalkStep step = classify(e);
    return stopped_ ? WalkStep::stop : step;
  }

  // Checked on the open directory, not on the name: it is what will be read.
  bool entering(const DirEntry& dir, int fd) override {
    struct stat dst {};
    if (::fstat(fd, &dst) != 0) {
      skip(dir.rel, std::string("fstat: ") + std::strerror(errno));
      return false;
    }
    return std::find(excluded_.begin(), excluded_.end(), DirId{dst.st_dev, dst.st_ino}) == excluded_.end();
  }

  void failed(const DirEntry& dir, DirOp op, int err) override {
    if (op == DirOp::open && is_race(err)) return;  // removed or replaced since the stat
    skip(dir.rel, std::string(dir_op_name(op)) + ": " + std::strerror(err));
  }

  // Out of entries: the names read are still listed, but no directory is entered.
  void out_of_names(const std::string& rel) override {
    stop(rel.empty() ? "." : rel, "more than " + std::to_string(limits_.max_entries) + " entries");
  }

  SpoolListing take() {
    std::sort(out_.files.begin(), out_.files.end(),
              [](const SourceEntry& a, const SourceEntry& b) { return a.wire_path < b.wire_path; });
    if (skipped_over_ > 0) {
      out_.skipped.push_back("(" + std::to_string(skipped_over_) + " more entries not sent, not listed here)");
    }
    return std::move(out_);
  }

 private:
  WalkStep classify(const DirEntry& e) {
    const std::string& rel = e.rel;
    if (!is_valid_utf8(e.name)) return skip(rel, "name is not valid UTF-8, not sent");
    struct stat st {};
    if (int err = e.lstat(st); err != 0) {
      if (err == ENOENT) return WalkStep::next;  // vanished since readdir
      return skip(rel, std::string("stat: ") + std::strerror(err));
    }
    if (S_ISREG(st.st_mode)) return add_file(rel, st);
    if (!S_ISDIR(st.st_mode)) return skip(rel, std::string(special_kind_name(st.st_mode)) + " not sent");
    if (!e.may_descend) return WalkStep::next;
    if (e.depth > limits_.max_depth) {
      return skip(rel, "deeper than " + std::to_string(limits_.max_depth) + " levels, not listed");
    }
    return WalkStep::descend;
  }

  WalkStep skip(const std::string& rel, const std::string& why) {
    if (out_.skipped.size() < limits_.max_skipped) {
      out_.skipped.push_back(rel + ": " + why);
    } else {
      ++skipped_over_;
    }
    return WalkStep::next;
  }

  WalkStep add_file(const std::string& rel, const struct stat& st) {
    if (auto why = protocol::wire_path_problem(rel)) return skip(rel, "cannot be sent: " + *why);
    if (out_.files.size() >= limits_.max_files) {
      return stop(rel, "more than " + std::to_string(limits_.max_files) + " files");
    }
    if (path_bytes_ + rel.size() > limits_.max_path_bytes) {
      return stop(rel, "paths longer than " + std::to_string(limits_.max_path_bytes) + " bytes in all");
    }
    path_bytes_ += rel.size();
    SourceEntry e;
    e.wire_path = rel;
    e.local_path = dir_ + "/" + rel;
    e.kind = protocol::EntryKind::file;
    fill_from_stat(e, st);
    out_.files.push_back(std::move(e));
    return WalkStep::next;
  }

  // A limit was reached at `rel`: nothing more is listed by this scan. Said once.
  WalkStep stop(const std::string& rel, const std::string& limit) {
    if (!stopped_) {
      stopped_ = true;
      skip(rel, "the spool holds " + limit + "; the listing stops here, the rest waits for a later scan");
    }
    return WalkStep::stop;
  }

  std::string dir_;
  SpoolLimits limits_;
  std::vector<DirId> excluded_;
  SpoolListing out_;
  std::size_t path_bytes_ = 0;
  std::size_t skipped_over_ = 0;
  bool stopped_ = false;  // a limit was reached: nothing more is listed
};

std::vector<std::string> split_local_path(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Opens base/comps[0]/.../comps[n-1] as a directory, one component at a time. With
// `create` a missing component is made (mode 0755); without `follow` a component that
// is a symlink fails (ENOTDIR, as O_DIRECTORY|O_NOFOLLOW reports it, or ELOOP). Errors are Errc::local_io with the errno, naming
// `shown` (how base is shown) and the components so far.
Result<UniqueFd> open_dir_path(int base_fd, const std::vector<std::string>& comps, bool create, bool follow,
                               const std::string& shown) {
  const Symlinks symlinks = follow ? Symlinks::follow : Symlinks::refuse;
  UniqueFd cur(::fcntl(base_fd, F_DUPFD_CLOEXEC, 3));
  if (!cur) return make_error(Errc::local_io, "dup(" + shown + ")", errno);
  std::string so_far = shown;
  for (const auto& c : comps) {
    if (so_far != "/") so_far += '/';
    so_far += c;
    UniqueFd next = open_dir_fd(cur.get(), c, symlinks);
    if (!next && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), c.c_str(), 0755) != 0 && errno != EEXIST) {
        return make_error(Errc::local_io, "mkdir(" + so_far + ")", errno);
      }
      next = open_dir_fd(cur.get(), c, symlinks);
    }
    if (!next) return make_error(Errc::local_io, "open(" + so_far + ")", errno);
    cur = std::move(next);
  }
  return cur;
}

std::string parent_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

enum class Placed { done, exists, cross_device };

// Renames from_fd/from to to_fd/to unless `to` exists. Where the filesystem has no
// RENAME_NOREPLACE (EINVAL) it checks first, which leaves a window a concurrent
// creator could hit; only ferry is expected to write into the target.
Result<Placed> rename_no_replace(int from_fd, const std::string& from, int to_fd, const std::string& to,
                                 const std::string& shown_from, const std::string& shown_to) {
  if (::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), RENAME_NOREPLACE) == 0) return Placed::done;
  if (errno == EEXIST) return Placed::exists;
  if (errno == EXDEV) return Placed::cross_device;
  if (errno == EINVAL) {
    struct stat st {};
    if (::fstatat(to_fd, to.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return Placed::exists;
    if (::renameat(from_fd, from.c_str(), to_fd, to.c_str()) == 0) return Placed::done;
    if (errno == EXDEV) return Placed::cross_device;
  }
  return make_error(Errc::local_io, "rename(" + shown_from + " -> " + shown_to + ")", errno);
}

// Renames from_fd/from to the first free one of leaf, leaf.1, ... in to_fd. Returns
// the name used, or nullopt when the two directories are on different filesystems.
Result<std::optional<std::string>> place_under_free_name(int from_fd, const std::string& from, int to_fd,
                                                         const std::string& leaf, const std::string& shown_from,
                                                         const std::string& shown_to_dir) {
  for (unsigned n = 0; n <= kMaxNameSuffix; ++n) {
    const std::string name = n == 0 ? leaf : leaf + "." + std::to_string(n);
    auto r = rename_no_replace(from_fd, from, to_fd, name, shown_from, shown_to_dir + "/" + name);
    if (!r) return r.error();
    switch (*r) {
      case Placed::done:
        return std::optional<std::string>(name);
      case Placed::cross_device:
        return std::optional<std::string>();
      case Placed::exists:
        break;
    }
  }
  return make_error(Errc::local_io, "no free name for " + shown_to_dir + "/" + leaf + " (" + leaf + ".1 to ." +
                                        std::to_string(kMaxNameSuffix) + " exist too)");
}

Result<void> copy_contents(int in, int out, const std::string& shown_in, const std::string& shown_out) {
  std::vector<std::byte> buf(kCopyBufferSize);
  for (;;) {
    auto r = read_some(in, buf, shown_in);
    if (!r) return r.error();
    if (*r == 0) return {};
    auto w = write_all(out, std::string_view(reinterpret_cast<const char*>(buf.data()), *r), shown_out);
    if (!w) return w;
  }
}

// True when the file `leaf` in `dir_fd` is still `sent`, as verified.
Result<bool> still_as_sent(int dir_fd, const std::string& leaf, const SourceEntry& sent) {
  struct stat st {};
  if (::fstatat(dir_fd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return make_error(Errc::local_io, "stat(" + sent.local_path + ")", errno);
  }
  SourceEntry now = sent;
  fill_from_stat(now, st);
  return S_ISREG(st.st_mode) && same_version(now, sent);
}

OnSentReport changed_report(const SourceEntry& sent) {
  return {OnSentResult::changed_since_sent,
          sent.wire_path + " changed after it was sent; left in place, it is queued again"};
}

std::atomic<unsigned> temp_counter{0};

// Across filesystems: copy to a hidden temporary name in the target directory, fsync,
// rename into place under a free name, fsync the directory, then unlink the source.
Result<OnSentReport> copy_across(int src_dir, const std::string& leaf, int to_dir, const std::string& shown_to_dir,
                                 const SourceEntry& sent) {
  UniqueFd in(::openat(src_dir, leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return make_error(Errc::local_io, "open(" + sent.local_path + ")", errno);
  const std::string tmp =
      "." + leaf + ".ferry-move-" + std::to_string(::getpid()) + "-" + std::to_string(temp_counter.fetch_add(1));
  const std::string shown_tmp = shown_to_dir + "/" + tmp;
  UniqueFd out(::openat(to_dir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return make_error(Errc::local_io, "open(" + shown_tmp + ")", errno);
  auto fail = [&](Error e) -> Result<OnSentReport> {
    ::unlinkat(to_dir, tmp.c_str(), 0);
    return e;
  };
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return fail(make_error(Errc::local_io, "fstat(" + sent.local_path + ")", errno));
  if (auto c = copy_contents(in.get(), out.get(), sent.local_path, shown_tmp); !c) return fail(c.error());
  const timespec times[2] = {st.st_atim, st.st_mtim};
  if (::fchmod(out.get(), st.st_mode & 07777) != 0 || ::futimens(out.get(), times) != 0) {
    return fail(make_error(Errc::local_io, "set mode and times(" + shown_tmp + ")", errno));
  }
  if (::fsync(out.get()) != 0) return fail(make_error(Errc::local_io, "fsync(" + shown_tmp + ")", errno));
  // The copy took a while: it must hold the verified content, and nothing newer.
  struct stat after {};
  if (::fstat(in.get(), &after) != 0) return fail(make_error(Errc::local_io, "fstat(" + sent.local_path + ")", errno));
  SourceEntry now = sent;
  fill_from_stat(now, after);
  if (!same_version(now, sent)) {
    ::unlinkat(to_dir, tmp.c_str(), 0);
    return changed_report(sent);
  }
  auto placed = place_under_free_name(to_dir, tmp, to_dir, leaf, shown_tmp, shown_to_dir);
  if (!placed) return fail(placed.error());
  if (!*placed) return fail(make_error(Errc::internal, "rename within " + shown_to_dir + " crossed a filesystem"));
  const std::string dest = shown_to_dir + "/" + **placed;
  if (::fsync(to_dir) != 0) return make_error(Errc::local_io, "fsync(" + shown_to_dir + ")", errno);
  // Unlink the source only if its name still holds the file that was copied.
  auto same = still_as_sent(src_dir, leaf, sent);
  if (same && !*same) {
    return OnSentReport{OnSentResult::changed_since_sent,
                        "copied " + sent.wire_path + " to " + dest +
                            "; the source changed meanwhile: left in place, it is queued again"};
  }
  if (same && ::unlinkat(src_dir, leaf.c_str(), 0) != 0 && errno != ENOENT) {
    return make_error(Errc::local_io, "unlink(" + sent.local_path + ") after copying it to " + dest, errno);
  }
  if (!same && same.error().sys_errno != ENOENT) return same.error();
  return OnSentReport{OnSentResult::applied,
                      "moved " + sent.wire_path + " to " + dest + " (copied across filesystems)"};
}

Result<OnSentReport> move_to_target(const OnSentPolicy& policy, int src_dir, const std::string& leaf,
                                    const SourceEntry& sent) {
  UniqueFd root = open_dir_fd(AT_FDCWD, "/", Symlinks::follow);
  if (!root) return make_error(Errc::local_io, "open(/)", errno);
  auto target = open_dir_path(root.get(), split_local_path(policy.target), true, true, "/");
  if (!target) return target.error();
  const std::string rel_parent = parent_of(sent.wire_path);
  const auto parents = rel_parent.empty() ? std::vector<std::string>{} : protocol::split_wire_path(rel_parent);
  auto to_dir = open_dir_path(target->get(), parents, true, false, policy.target);
  if (!to_dir) return to_dir.error();
  const std::string shown_to_dir = rel_parent.empty() ? policy.target : policy.target + "/" + rel_parent;
  auto placed = place_under_free_name(src_dir, leaf, to_dir->get(), leaf, sent.local_path, shown_to_dir);
  if (!placed) {
    if (placed.error().sys_errno == ENOENT) return OnSentReport{OnSentResult::gone, sent.wire_path + " is gone"};
    return placed.error();
  }
  if (!*placed) return copy_across(src_dir, leaf, to_dir->get(), shown_to_dir, sent);
  return OnSentReport{OnSentResult::applied, "moved " + sent.wire_path + " to " + shown_to_dir + "/" + **placed};
}

}  // namespace

Result<SpoolListing> scan_spool(const std::string& dir, const std::vector<std::string>& exclude_dirs,
                                const SpoolLimits& limits) {
  std::vector<DirId> excluded;
  for (const auto& x : exclude_dirs) {
    struct stat st {};
    if (::stat(x.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) excluded.push_back({st.st_dev, st.st_ino});
  }
  const std::string root = strip_trailing_slashes(dir);
  UniqueFd fd = open_dir_fd(AT_FDCWD, root, Symlinks::follow);
  if (!fd) return make_error(Errc::local_io, "open(" + root + ")", errno);
  UniqueDir d = open_dir_stream(std::move(fd));
  if (!d) return make_error(Errc::local_io, "opendir(" + root + ")", errno);
  Scanner scanner(root == "/" ? "" : root, limits, std::move(excluded));
  const DirWalkOptions options{.skip_hidden = true, .sorted = true, .max_names = limits.max_entries};
  if (int e = walk_dir(d, scanner, options); e != 0) return make_error(Errc::local_io, "readdir(" + root + ")", e);
  return scanner.take();
}

OnSentPolicy default_on_sent(const std::string& spool_dir) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(spool_dir, ec);
  const std::string base = ec ? spool_dir : abs.lexically_normal().string();
  return {OnSent::move, strip_trailing_slashes(base) + "/.sent"};
}

Result<OnSentPolicy> parse_on_sent(const std::string& text, const std::string& spool_dir) {
  if (text == "remove") return OnSentPolicy{OnSent::remove, {}};
  if (text == "keep") return OnSentPolicy{OnSent::keep, {}};
  const std::string prefix = "move:";
  if (text.rfind(prefix, 0) != 0) {
    return make_error(Errc::usage, "--on-sent: '" + text + "' is not one of remove, keep, move:DIR");
  }
  const std::string dir = text.substr(prefix.size());
  if (dir.empty()) return make_error(Errc::usage, "--on-sent: move: needs a directory, as in move:DIR");
  std::error_code ec;
  auto abs = std::filesystem::absolute(dir, ec);
  if (ec) return make_error(Errc::usage, "--on-sent: cannot make " + dir + " absolute: " + ec.message());
  const std::string target = strip_trailing_slashes(abs.lexically_normal().string());
  // Moving files into the spool's own top would only queue them again (as REL.1).
  auto canon_target = std::filesystem::weakly_canonical(target, ec);
  std::error_code ec2;
  auto canon_spool = std::filesystem::weakly_canonical(spool_dir, ec2);
  if (!ec && !ec2 && canon_target == canon_spool) {
    return make_error(Errc::usage, "--on-sent: move:" + dir + " is the spool itself; give another directory");
  }
  return OnSentPolicy{OnSent::move, target};
}

std::vector<std::string> on_sent_excludes(const OnSentPolicy& policy) {
  switch (policy.action) {
    case OnSent::move:
      return {policy.target};
    case OnSent::remove:
    case OnSent::keep:
      return {};
  }
  return {};
}

Result<OnSentReport> apply_on_sent(const OnSentPolicy& policy, const std::string& spool_dir, const SourceEntry& sent) {
  if (auto why = protocol::wire_path_problem(sent.wire_path)) {
    return make_error(Errc::internal, "apply_on_sent: '" + sent.wire_path + "' is not a spool path: " + *why);
  }
  const std::string root = strip_trailing_slashes(spool_dir);
  UniqueFd spool = open_dir_fd(AT_FDCWD, root, Symlinks::follow);
  if (!spool) return make_error(Errc::local_io, "open(" + root + ")", errno);
  const OnSentReport gone{OnSentResult::gone, sent.wire_path + " is gone; nothing to do"};
  // The file's directory, reached without following a symlink put in its way.
  auto comps = protocol::split_wire_path(sent.wire_path);
  const std::string leaf = comps.back();
  comps.pop_back();
  auto src_dir = open_dir_path(spool.get(), comps, false, false, root);
  if (!src_dir) {
    if (is_race(src_dir.error().sys_errno)) return gone;
    return src_dir.error();
  }
  auto same = still_as_sent(src_dir->get(), leaf, sent);
  if (!same) {
    if (same.error().sys_errno == ENOENT) return gone;
    return same.error();
  }
  if (!*same) return changed_report(sent);
  switch (policy.action) {
    case OnSent::keep:
      return OnSentReport{OnSentResult::applied, "kept " + sent.wire_path};
    case OnSent::remove:
      if (::unlinkat(src_dir->get(), leaf.c_str(), 0) != 0) {
        if (errno == ENOENT) return gone;
        return make_error(Errc::local_io, "unlink(" + sent.local_path + ")", errno);
      }
      return OnSentReport{OnSentResult::applied, "removed " + sent.wire_path};
    case OnSent::move:
      return move_to_target(policy, src_dir->get(), leaf, sent);
  }
  return make_error(Errc::internal, "apply_on_sent: unknown policy");
}

}  // namespace ferry
