#include "lib/fs/dir_walk.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

namespace ferry {

int DirEntry::lstat(struct stat& st) const {
  return ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

const char* dir_op_name(DirOp op) {
  switch (op) {
    case DirOp::open:
      return "open";
    case DirOp::opendir:
      return "opendir";
    case DirOp::readdir:
      return "readdir";
  }
  return "?";
}

bool DirVisitor::entering(const DirEntry& /*dir*/, int /*fd*/) {
  return true;
}
void DirVisitor::failed(const DirEntry& /*dir*/, DirOp /*op*/, int /*err*/) {}
void DirVisitor::out_of_names(const std::string& /*dir_rel*/) {}

namespace {

struct Name {
  std::string name;
  unsigned char type;
};

enum class Read { name, end, cut };

class Walk {
 public:
  Walk(DirVisitor& visitor, const DirWalkOptions& options) : visitor_(visitor), options_(options) {}

  // Lists `d` (at `rel`, `depth` levels below the root) and walks what the visitor
  // descends into. Returns the readdir errno of `d`, 0 when none.
  int list(DIR* d, const std::string& rel, unsigned depth) {
    int err = 0;
    bool cut = false;
    if (options_.sorted) {
      std::vector<Name> names;
      Name n;
      Read r;
      while ((r = next(d, n, err)) == Read::name) names.push_back(std::move(n));
      cut = r == Read::cut;
      std::sort(names.begin(), names.end(), [](const Name& a, const Name& b) { return a.name < b.name; });
      for (auto& name : names) {
        if (stopped_) break;
        visit(::dirfd(d), rel, depth, std::move(name));
      }
    } else {
      Name n;
      Read r = Read::end;
      while (!stopped_ && (r = next(d, n, err)) == Read::name) visit(::dirfd(d), rel, depth, std::move(n));
      cut = r == Read::cut;
    }
    if (cut) visitor_.out_of_names(rel);
    return err;
  }

 private:
  // The next name to list; `err` is set to readdir's errno when it fails (Read::end).
  Read next(DIR* d, Name& out, int& err) {
    for (;;) {
      errno = 0;
      const dirent* de = ::readdir(d);
      if (!de) {
        err = errno;
        return Read::end;
      }
      const std::string_view name = de->d_name;
      if (name == "." || name == ".." || (options_.skip_hidden && name[0] == '.')) continue;
      if (names_ >= options_.max_names) {
        spent_ = true;
        return Read::cut;
      }
      ++names_;
      out = Name{std::string(name), de->d_type};
      return Read::name;
    }
  }

  void visit(int dir_fd, const std::string& rel, unsigned depth, Name n) {
    DirEntry e{dir_fd, std::move(n.name), {}, depth + 1, n.type, !spent_};
    e.rel = rel.empty() ? e.name : rel + "/" + e.name;
    switch (visitor_.visit(e)) {
      case WalkStep::next:
        return;
      case WalkStep::stop:
        stopped_ = true;
        return;
      case WalkStep::descend:
        if (!spent_) descend(e);
        return;
    }
  }

  void descend(const DirEntry& dir) {
    UniqueFd fd = open_dir_fd(dir.dir_fd, dir.name, Symlinks::refuse);
    if (!fd) return visitor_.failed(dir, DirOp::open, errno);
    if (!visitor_.entering(dir, fd.get())) return;
    UniqueDir sub = open_dir_stream(std::move(fd));
    if (!sub) return visitor_.failed(dir, DirOp::opendir, errno);
    if (int err = list(sub.get(), dir.rel, dir.depth); err != 0) visitor_.failed(dir, DirOp::readdir, err);
  }

  DirVisitor& visitor_;
  const DirWalkOptions& options_;
  std::size_t names_ = 0;  // listed so far
  bool spent_ = false;     // the name budget ran out: no directory is entered
  bool stopped_ = false;   // the visitor said stop
};

}  // namespace

int walk_dir(const UniqueDir& root, DirVisitor& visitor, const DirWalkOptions& options) {
  Walk walk(visitor, options);
  return walk.list(root.get(), "", 0);
}

}  // namespace ferry
