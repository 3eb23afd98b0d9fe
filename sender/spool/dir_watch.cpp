#include "sender/spool/dir_watch.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "lib/fs/dir_walk.hpp"

namespace ferry {
namespace {

constexpr std::size_t kReadBufferSize = std::size_t{64} * 1024;
constexpr int kReadsPerEvent = 16;  // then yield to the loop
// `failed` events kept while start() walks the tree (then one summary line).
constexpr std::size_t kMaxPendingAtStart = 256;

constexpr std::uint32_t kWatchMask = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE |
                                     IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;
// DIR itself may be named through a symlink (as scan_spool allows); a sub-directory
// that became a symlink since it was listed is not followed.
constexpr std::uint32_t kSubdirMask = kWatchMask | IN_DONT_FOLLOW;

bool is_hidden(const std::string& name) {
  return !name.empty() && name[0] == '.';
}

std::string join(const std::string& a, const std::string& b) {
  return a.empty() ? b : a + "/" + b;
}

unsigned depth_of(const std::string& rel) {
  if (rel.empty()) return 0;
  unsigned n = 1;
  for (char c : rel) n += c == '/' ? 1 : 0;
  return n;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

const char* dir_watch_kind_name(DirWatchKind k) {
  switch (k) {
    case DirWatchKind::moved_in:
      return "moved_in";
    case DirWatchKind::written:
      return "written";
    case DirWatchKind::changed:
      return "changed";
    case DirWatchKind::removed:
      return "removed";
    case DirWatchKind::overflow:
      return "overflow";
    case DirWatchKind::failed:
      return "failed";
  }
  return "unknown";
}

Result<std::unique_ptr<DirWatch>> DirWatch::start(uv_loop_t* loop, const std::string& dir, Callback cb, Limits limits) {
  std::unique_ptr<DirWatch> w(new DirWatch());
  w->dir_ = dir;
  while (w->dir_.size() > 1 && w->dir_.back() == '/') w->dir_.pop_back();
  w->cb_ = std::move(cb);
  w->limits_ = limits;
  w->fd_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!w->fd_) return make_error(Errc::local_io, "inotify_init1", errno);
  // DIR itself first: without it there is nothing to watch.
  errno = 0;
  if (!w->add_watch("")) {
    return make_error(Errc::local_io, "inotify_add_watch(" + w->dir_ + ")", errno ? errno : ENOSPC);
  }
  if (!w->watch_tree("", 0, false)) return make_error(Errc::internal, "DirWatch destroyed while starting");
  w->poll_ = UvOwner<uv_poll_t>(loop, [fd = w->fd_.get()](uv_loop_t* l, uv_poll_t* h) { return uv_poll_init(l, h, fd); });
  if (!w->poll_) return uv_error(Errc::local_io, "poll(inotify of " + w->dir_ + ")", w->poll_.status());
  w->poll_.get()->data = w.get();
  if (int rc = uv_poll_start(w->poll_.get(), UV_READABLE, &DirWatch::on_poll); rc != 0) {
    return uv_error(Errc::local_io, "poll(inotify of " + w->dir_ + ")", rc);
  }
  w->flush_timer_ = make_timer(loop, w.get());
  if (!w->flush_timer_) return uv_error(Errc::local_io, "timer_init", w->flush_timer_.status());
  w->started_ = true;
  if (!w->pending_.empty()) {
    uv_timer_start(
        w->flush_timer_.get(),
        [](uv_timer_t* t) {
          if (auto* self = static_cast<DirWatch*>(t->data)) self->flush_pending();
        },
        0, 0);
  }
  return w;
}

DirWatch::~DirWatch() {
  *alive_ = false;
  // Stop the poll before the descriptor goes (uv_close unregisters it at once).
  poll_.reset();
  flush_timer_.reset();
  fd_.reset();
}

bool DirWatch::emit(DirWatchEvent e) {
  if (!started_) {
    if (pending_.size() < kMaxPendingAtStart) {
      pending_.push_back(std::move(e));
    } else {
      ++pending_dropped_;
    }
    return true;
  }
  auto alive = alive_;
  cb_(e);
  return *alive;
}

void DirWatch::flush_pending() {
  auto events = std::move(pending_);
  pending_.clear();
  if (pending_dropped_ > 0) {
    events.push_back({DirWatchKind::failed, "",
                      make_error(Errc::local_io, "and " + std::to_string(pending_dropped_) +
                                                     " more directories could not be watched; rescans only")});
    pending_dropped_ = 0;
  }
  for (auto& e : events) {
    if (!emit(std::move(e))) return;
  }
}

void DirWatch::on_poll(uv_poll_t* h, int status, int /*events*/) {
  auto* self = static_cast<DirWatch*>(h->data);
  if (!self) return;
  if (status < 0) {
    uv_poll_stop(h);
    self->emit({DirWatchKind::failed, "",
                uv_error(Errc::local_io, "poll(inotify of " + self->dir_ + "); no more change hints", status)});
    return;
  }
  self->read_events();
}

void DirWatch::read_events() {
  auto alive = alive_;
  std::vector<char> buf(kReadBufferSize);
  for (int i = 0; i < kReadsPerEvent; ++i) {
    const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // a readiness event is a hint
      const int e = errno;
      uv_poll_stop(poll_.get());
      emit({DirWatchKind::failed, "",
            make_error(Errc::local_io, "read(inotify of " + dir_ + "); no more change hints", e)});
      return;
    }
    if (n == 0) return;
    // The kernel returns whole events only; each is a header and `len` bytes of a
    // NUL-padded name. Copied out: the buffer gives no alignment guarantee.
    std::size_t off = 0;
    while (off + sizeof(inotify_event) <= static_cast<std::size_t>(n)) {
      inotify_event ev{};
      std::memcpy(&ev, buf.data() + off, sizeof ev);
      const char* name_p = buf.data() + off + sizeof ev;
      const std::size_t name_cap = std::min<std::size_t>(ev.len, static_cast<std::size_t>(n) - off - sizeof ev);
      std::string name(name_p, strnlen(name_p, name_cap));
      off += sizeof ev + ev.len;
      handle(ev.wd, ev.mask, name);
      if (!*alive) return;
    }
  }
}

void DirWatch::handle(int wd, std::uint32_t mask, const std::string& name) {
  if (mask & IN_Q_OVERFLOW) {
    // Events were lost, among them perhaps new directories: walk again (a watch that
    // exists is kept as it is), then let the driver rescan.
    if (!watch_tree("", 0, false)) return;
    emit({DirWatchKind::overflow, "", std::nullopt});
    return;
  }
  auto it = wd_to_rel_.find(wd);
  if (it == wd_to_rel_.end()) return;  // a watch already dropped
  const std::string dir_rel = it->second;
  if (mask & IN_IGNORED) {  // the kernel dropped the watch (its directory is gone)
    auto r = rel_to_wd_.find(dir_rel);
    if (r != rel_to_wd_.end() && r->second == wd) rel_to_wd_.erase(r);
    wd_to_rel_.erase(it);
    limit_reported_ = false;
    return;
  }
  if (name.empty()) {  // about the directory itself
    if (dir_rel.empty() && (mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
      // The watches would follow the old inode wherever it went: stop reporting.
      for (const auto& [w, rel] : wd_to_rel_) ::inotify_rm_watch(fd_.get(), w);
      wd_to_rel_.clear();
      rel_to_wd_.clear();
      emit({DirWatchKind::failed, "",
            make_error(Errc::local_io, dir_ + " was removed or moved away; it is no longer watched")});
    }
    // A sub-directory's own removal or move is handled at its parent's event.
    return;
  }
  if (is_hidden(name)) return;
  const std::string rel = join(dir_rel, name);
  if (mask & IN_ISDIR) {
    if (mask & (IN_DELETE | IN_MOVED_FROM)) {
      drop_tree(rel);
      emit({DirWatchKind::removed, rel, std::nullopt});
    } else if ((mask & (IN_CREATE | IN_MOVED_TO)) || ((mask & IN_ATTRIB) && rel_to_wd_.count(rel) == 0)) {
      // New here, or perhaps made readable (an attribute change of one not watched).
      watch_tree(rel, depth_of(rel), true);
    }
    return;
  }
  DirWatchKind kind;
  if (mask & IN_MOVED_TO) {
    kind = DirWatchKind::moved_in;
  } else if (mask & IN_CLOSE_WRITE) {
    kind = DirWatchKind::written;
  } else if (mask & (IN_CREATE | IN_MODIFY | IN_ATTRIB)) {
    kind = DirWatchKind::changed;
  } else if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    kind = DirWatchKind::removed;
  } else {
    return;
  }
  emit({kind, rel, std::nullopt});
}

std::optional<int> DirWatch::add_watch(const std::string& rel) {
  if (wd_to_rel_.size() >= limits_.max_watches && rel_to_wd_.count(rel) == 0) {
    errno = ENOSPC;
    return std::nullopt;
  }
  const std::string path = rel.empty() ? dir_ : dir_ + "/" + rel;
  const int wd = ::inotify_add_watch(fd_.get(), path.c_str(), rel.empty() ? kWatchMask : kSubdirMask);
  if (wd < 0) return std::nullopt;
  // The kernel has one watch per inode: a known wd under another name means that
  // directory moved (its events were lost); it is known by the new name from now on.
  auto known = wd_to_rel_.find(wd);
  if (known != wd_to_rel_.end() && known->second != rel) {
    auto r = rel_to_wd_.find(known->second);
    if (r != rel_to_wd_.end() && r->second == wd) rel_to_wd_.erase(r);
  }
  wd_to_rel_[wd] = rel;
  rel_to_wd_[rel] = wd;
  return wd;
}

DirWatch::Watched DirWatch::watch_failed(const std::string& rel, Error e) {
  return emit({DirWatchKind::failed, rel, std::move(e)}) ? Watched::no : Watched::destroyed;
}

DirWatch::Watched DirWatch::watch_dir(const std::string& rel, unsigned depth) {
  const std::string shown = rel.empty() ? dir_ : dir_ + "/" + rel;
  if (depth > limits_.max_depth) {
    return watch_failed(rel, make_error(Errc::local_io, shown + " is deeper than " +
                                                            std::to_string(limits_.max_depth) +
                                                            " levels: not watched, rescans only"));
  }
  errno = 0;
  if (rel.empty() || add_watch(rel)) return Watched::yes;
  const int e = errno;
  if (e == ENOENT || e == ENOTDIR || e == ELOOP) return Watched::no;  // gone or replaced: a race
  if (wd_to_rel_.size() >= limits_.max_watches) {
    if (limit_reported_) return Watched::no;
    limit_reported_ = true;
    return watch_failed(rel, make_error(Errc::local_io, "watch limit (" + std::to_string(limits_.max_watches) +
                                                            " directories) reached; " + shown +
                                                            " and others are found by rescans only"));
  }
  const std::string hint = e == ENOSPC ? " (the inotify watch limit, fs.inotify.max_user_watches, is reached)" : "";
  return watch_failed(rel, make_error(Errc::local_io, "inotify_add_watch(" + shown + ")" + hint, e));
}

// Watches every directory below `rel` (hidden ones not) and, with `report_files`,
// reports the regular files found as `changed`, up to Limits::max_files_reported.
class DirWatch::TreeVisitor : public DirVisitor {
 public:
  TreeVisitor(DirWatch& self, const std::string& rel, unsigned depth, bool report_files)
      : self_(self), rel_(rel), depth_(depth), report_files_(report_files) {}

  WalkStep visit(const DirEntry& e) override {
    bool is_dir = e.type == DT_DIR;
    bool is_reg = e.type == DT_REG;
    if (e.type == DT_UNKNOWN) {
      struct stat st {};
      if (e.lstat(st) != 0) return WalkStep::next;
      is_dir = S_ISDIR(st.st_mode);
      is_reg = S_ISREG(st.st_mode);
    }
    const std::string child = join(rel_, e.rel);
    if (is_dir) {
      switch (self_.watch_dir(child, depth_ + e.depth)) {
        case Watched::yes:
          return WalkStep::descend;  // listed after the watch exists: nothing created meanwhile is missed
        case Watched::no:
          return WalkStep::next;
        case Watched::destroyed:
          return destroyed();
      }
    }
    if (is_reg && report_files_ && !report(child)) return destroyed();
    return WalkStep::next;
  }

  bool alive() const { return alive_; }

 private:
  // Reports `child` as changed, or past the limit one overflow. False when the
  // callback destroyed the DirWatch.
  bool report(const std::string& child) {
    const std::size_t max = self_.limits_.max_files_reported;
    if (reported_ > max) return true;
    return self_.emit(reported_++ == max ? DirWatchEvent{DirWatchKind::overflow, "", std::nullopt}
                                         : DirWatchEvent{DirWatchKind::changed, child, std::nullopt});
  }

  WalkStep destroyed() {
    alive_ = false;
    return WalkStep::stop;
  }

  DirWatch& self_;
  const std::string& rel_;
  unsigned depth_;
  bool report_files_;
  std::size_t reported_ = 0;
  bool alive_ = true;
};

bool DirWatch::watch_tree(const std::string& rel, unsigned depth, bool report_files) {
  switch (watch_dir(rel, depth)) {
    case Watched::yes:
      break;
    case Watched::no:
      return true;
    case Watched::destroyed:
      return false;
  }
  // Listed after the watch exists, so nothing created meanwhile is missed.
  const std::string shown = rel.empty() ? dir_ : dir_ + "/" + rel;
  UniqueDir d = open_dir_stream(open_dir_fd(AT_FDCWD, shown, rel.empty() ? Symlinks::follow : Symlinks::refuse));
  if (!d) return true;  // gone, or unreadable: then it could not be watched either
  TreeVisitor visitor(*this, rel, depth, report_files);
  (void)walk_dir(d, visitor, {.skip_hidden = true, .sorted = false});
  return visitor.alive();
}

void DirWatch::drop_tree(const std::string& rel) {
  auto drop = [this](std::map<std::string, int>::iterator it) {
    ::inotify_rm_watch(fd_.get(), it->second);  // its IN_IGNORED then names an unknown wd
    wd_to_rel_.erase(it->second);
    limit_reported_ = false;
    return rel_to_wd_.erase(it);
  };
  if (auto it = rel_to_wd_.find(rel); it != rel_to_wd_.end()) drop(it);
  const std::string prefix = rel + "/";
  for (auto it = rel_to_wd_.lower_bound(prefix); it != rel_to_wd_.end() && starts_with(it->first, prefix);) {
    it = drop(it);
  }
}

}  // namespace ferry
