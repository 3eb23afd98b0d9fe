#include "lib/fs/file_batch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "lib/fs/fd_io.hpp"
#include "protocol/digest.hpp"
#include "protocol/wire_path.hpp"

namespace ferry {
namespace {

// Descriptor budget (a batch may hold thousands of files; a process has 1,024
// descriptors by default, shared with every connection): a round opens at most this
// many directories, and in the fdatasync mode keeps at most this many files open,
// syncing and closing them in groups of this size. 32 + 32 per batch step: the
// receiver runs at most a prepare and a finish step per sender at once.
constexpr std::size_t kMaxDirsPerRound = 32;
constexpr std::size_t kMaxOpenFiles = 32;
// Fresh temporary names tried when one exists already (a leftover of a killed process
// that had the same pid).
constexpr int kTempNameAttempts = 4;

std::atomic<std::uint32_t> temp_counter{0};

// A hidden name beside `leaf`, in ferry's own namespace (".ferry-batch", a suffix no
// wire path may use, unlike a partial's): no commit in this or another live process uses
// it, and it never meets the partial of a resumable transfer of `leaf`. `pid`: this
// process's id (asked once per round, not per file: getpid is a system call).
std::string unique_temp_name(const std::string& leaf, pid_t pid) {
  const std::uint64_t unique =
      (static_cast<std::uint64_t>(pid) << 32) | temp_counter.fetch_add(1, std::memory_order_relaxed);
  return batch_temp_name(leaf, unique);
}

// The directory part of a wire path ("" for a top-level name): files with the same key
// share a parent directory.
std::string parent_key(const std::string& wire_path) {
  const auto slash = wire_path.rfind('/');
  return slash == std::string::npos ? std::string() : wire_path.substr(0, slash);
}

std::string_view as_chars(const std::vector<std::byte>& data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

// The process id in a batch temporary's name (batch_temp_name), or 0 when `name` is not
// one.
pid_t batch_temp_pid(std::string_view name) {
  constexpr std::string_view kSuffix = ".ferry-batch";
  constexpr std::size_t kHex = 16;
  if (name.size() < kSuffix.size() + kHex + 2 || name.front() != '.' ||
      name.substr(name.size() - kSuffix.size()) != kSuffix) {
    return 0;
  }
  const std::string_view hex = name.substr(name.size() - kSuffix.size() - kHex, kHex);
  if (name[name.size() - kSuffix.size() - kHex - 1] != '.') return 0;
  std::uint64_t v = 0;
  for (char c : hex) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return 0;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return static_cast<pid_t>(v >> 32);
}

// True when no process `pid` runs (kill(pid, 0) says ESRCH).
bool process_gone(pid_t pid) { return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace

// One round of a batch: the files of at most kMaxDirsPerRound directories. commit_batch
// runs each round through every step at once; prepare_batch stages every round (and
// closes their directories), and finish_batch makes them durable together and renames.
class BatchCommit {
 public:
  BatchCommit(DestDir& dest, const BatchSync& sync, std::vector<Result<void>>& results)
      : dest_(dest), sync_(sync), results_(results) {}

  // Stages files[i] for each i in `round`: temporaries created and written, mode and
  // mtime set. With `use_syncfs` their descriptors are closed (a syncfs makes them
  // durable later), else they stay open for fdatasync (at most kMaxOpenFiles at once).
  void stage_all(std::span<StagedFile> files, const std::vector<std::size_t>& round, bool use_syncfs);
  // After stage_all: every file still open is synced (fdatasync mode) and every
  // directory closed, its identity kept: a prepared round holds no descriptor.
  void release();
  // One syncfs made the round durable (or failed: every live file fails with `synced`).
  void after_syncfs(const Result<void>& synced);
  // fdatasync mode: syncs and closes every file still open; one that fails is failed.
  void sync_open_files();
  // Renames every live file into place (reopening released directories).
  void rename_all();
  // commit_batch: one fsync per directory renamed into, or one syncfs for several
  // (see the definition).
  void sync_dirs(bool synced_by_syncfs);
  bool renamed_any() const;
  // remove_dead_batch_temps() (file_batch.hpp).
  static std::size_t remove_dead_temps(DestDir& dest, const std::string& wire_dir);
  // sync_names() (file_batch.hpp): the one syncfs call of this file, whose error the
  // callers extend with the files it concerns.
  static Result<void> sync_names(DestDir& dest, const BatchSync& sync);
  // The temporaries left by a round that is dropped unfinished are removed.
  void discard();
  // After rename_all (and sync_dirs): the round's directories are closed.
  void close_dirs() {
    for (auto& dir : dirs_) dir.fd.reset();
  }

 private:
  struct Dir {
    std::string key;  // parent_key of its files
    std::string wire_path;  // a file's wire path in it (to reopen it with open_parent)
    UniqueFd fd;
    dev_t dev = 0;  // identity kept by release(), checked when reopened
    ino_t ino = 0;
    bool renamed_into = false;
  };
  struct Item {
    std::size_t index = 0;  // into the batch (and the results)
    std::size_t dir = 0;    // into dirs_
    std::string leaf, temp, shown;
    UniqueFd fd;         // kept open only in the fdatasync mode, until its group syncs
    bool alive = false;  // staged and not failed
    bool renamed = false;
  };

  void stage(Item& item, const StagedFile& file, bool use_syncfs);
  void make_directory(Item& item, const std::string& wire_path);
  Result<std::size_t> open_dir(const StagedFile& file, std::string& leaf);
  Result<void> reopen_dir(Dir& dir);
  Result<void> create_temp(Item& item);
  void sync_dirs_together();
  void fail(Item& item, Error error);
  std::size_t open_files() const;

  DestDir& dest_;
  const BatchSync& sync_;
  std::vector<Result<void>>& results_;
  const pid_t pid_ = ::getpid();
  std::vector<Dir> dirs_;
  std::vector<Item> items_;
};

void BatchCommit::stage_all(std::span<StagedFile> files, const std::vector<std::size_t>& round, bool use_syncfs) {
  items_.resize(round.size());
  for (std::size_t i = 0; i < round.size(); ++i) {
    const StagedFile& file = files[round[i]];
    items_[i].index = round[i];
    items_[i].shown = dest_.path_ + "/" + file.wire_path;
    stage(items_[i], file, use_syncfs);
    if (!use_syncfs && !dest_.options_.no_fsync && open_files() >= kMaxOpenFiles) sync_open_files();
  }
}

// The directory of `file` (cached per round) and its last component in `leaf`.
Result<std::size_t> BatchCommit::open_dir(const StagedFile& file, std::string& leaf) {
  const std::string key = parent_key(file.wire_path);
  for (std::size_t d = 0; d < dirs_.size(); ++d) {
    if (dirs_[d].key != key) continue;
    // The walk to this directory checked its components; the leaf is checked here.
    if (auto why = protocol::wire_path_problem(file.wire_path)) {
      return make_error(Errc::protocol, "unsafe path '" + file.wire_path + "': " + *why);
    }
    leaf = protocol::split_wire_path(file.wire_path).back();
    if (is_ferry_temp_name(leaf)) {
      return make_error(Errc::protocol,
                        "unsafe path '" + file.wire_path + "': uses a name reserved for ferry's own files");
    }
    return d;
  }
  // A failed walk is not cached: each file of that directory reports its own path.
  auto fd = dest_.open_parent(file.wire_path, leaf, true);
  if (!fd) return fd.error();
  dirs_.push_back(Dir{key, file.wire_path, std::move(*fd)});
  return dirs_.size() - 1;
}

// The directory a released round staged into, opened again the same safe way; one
// that is no longer the same directory (moved or replaced meanwhile) is an error: its
// files' temporaries are not there.
Result<void> BatchCommit::reopen_dir(Dir& dir) {
  if (dir.fd) return {};
  std::string leaf;
  auto fd = dest_.open_parent(dir.wire_path, leaf, false);
  if (!fd) return fd.error();
  struct stat st{};
  if (::fstat(fd->get(), &st) != 0) return make_error(Errc::local_io, "fstat(directory of " + dir.wire_path + ")", errno);
  if (st.st_dev != dir.dev || st.st_ino != dir.ino) {
    return make_error(Errc::local_io, "directory of " + dest_.path_ + "/" + dir.wire_path +
                                          " was replaced while its batch was written");
  }
  dir.fd = std::move(*fd);
  return {};
}

Result<void> BatchCommit::create_temp(Item& item) {
  const int dfd = dirs_[item.dir].fd.get();
  for (int attempt = 0; attempt < kTempNameAttempts; ++attempt) {
    item.temp = unique_temp_name(item.leaf, pid_);
    item.fd.reset(::openat(dfd, item.temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (item.fd) return {};
    if (errno != EEXIST) break;
  }
  const int err = errno;
  item.temp.clear();  // nothing of ours to remove
  return make_error(Errc::local_io, "open(temporary of " + item.shown + ")", err);
}

// Temporary created, bytes written, mode and mtime set. The descriptor stays open only
// for the fdatasync mode.
void BatchCommit::stage(Item& item, const StagedFile& file, bool use_syncfs) {
  auto dir = open_dir(file, item.leaf);
  if (!dir) return fail(item, dir.error());
  item.dir = *dir;
  if (file.directory) return make_directory(item, file.wire_path);
  if (auto created = create_temp(item); !created) return fail(item, created.error());
  item.alive = true;
  if (auto w = write_all(item.fd.get(), as_chars(file.data), item.shown); !w) return fail(item, w.error());
  if (auto m = apply_offer_metadata(item.fd.get(), file.mode & ~dest_.umask_, file.mtime_ns, item.shown); !m) {
    return fail(item, m.error());
  }
  if (use_syncfs || dest_.options_.no_fsync) item.fd.reset();
}

// In place at once (nothing to make durable first): counted as renamed, so its parent
// is synced with the batch's names and a failure to sync them fails it too.
void BatchCommit::make_directory(Item& item, const std::string& wire_path) {
  const int dfd = dirs_[item.dir].fd.get();
  if (::mkdirat(dfd, item.leaf.c_str(), 0755) != 0) {
    const int err = errno;
    struct stat st{};
    if (err != EEXIST) return fail(item, make_error(Errc::local_io, "mkdir(" + item.shown + ")", err));
    if (::fstatat(dfd, item.leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
      return fail(item, make_error(Errc::protocol, "unsafe path '" + wire_path + "': a symlink or file is in the way"));
    }
    return;  // there already: nothing new to make durable
  }
  item.renamed = true;
  dirs_[item.dir].renamed_into = true;
}

std::size_t BatchCommit::open_files() const {
  std::size_t n = 0;
  for (const auto& item : items_) n += item.fd ? 1 : 0;
  return n;
}

void BatchCommit::sync_open_files() {
  auto call = sync_.fdatasync_call != nullptr ? sync_.fdatasync_call : ::fdatasync;
  for (auto& item : items_) {
    if (!item.fd) continue;
    if (call(item.fd.get()) != 0) {
      fail(item, make_error(Errc::local_io, "fdatasync(" + item.shown + ")", errno));
      continue;
    }
    item.fd.reset();
  }
}

void BatchCommit::release() {
  if (!dest_.options_.no_fsync) sync_open_files();
  for (auto& dir : dirs_) {
    struct stat st{};
    if (::fstat(dir.fd.get(), &st) != 0) {
      const int err = errno;
      for (auto& item : items_) {
        if (item.alive && &dirs_[item.dir] == &dir) {
          fail(item, make_error(Errc::local_io, "fstat(directory of " + item.shown + ")", err));
        }
      }
    }
    dir.dev = st.st_dev;
    dir.ino = st.st_ino;
    dir.fd.reset();
  }
}

// Only after this may a file be renamed. A failed syncfs says nothing about which file
// was not written back, so it fails them all.
void BatchCommit::after_syncfs(const Result<void>& synced) {
  if (synced) return;
  const int err = synced.error().sys_errno;
  for (auto& item : items_) {
    if (item.alive) fail(item, make_error(Errc::local_io, "syncfs(" + dest_.path_ + ") for " + item.shown, err));
  }
}

// Every file's descriptor is closed by now: at its staging when a syncfs makes it
// durable (or with no_fsync), by sync_open_files otherwise.
void BatchCommit::rename_all() {
  for (auto& item : items_) {
    if (!item.alive) continue;
    Dir& dir = dirs_[item.dir];
    if (auto open = reopen_dir(dir); !open) {
      fail(item, open.error());
      continue;
    }
    if (::renameat(dir.fd.get(), item.temp.c_str(), dir.fd.get(), item.leaf.c_str()) != 0) {
      fail(item, make_error(Errc::local_io, "rename(" + item.shown + ")", errno));
      continue;
    }
    item.renamed = true;
    dir.renamed_into = true;
  }
}

bool BatchCommit::renamed_any() const {
  return std::any_of(dirs_.begin(), dirs_.end(), [](const Dir& d) { return d.renamed_into; });
}

// One fsync per directory renamed into, or, when the batch was made durable by a
// syncfs and renamed into more than one directory, one more syncfs for all of them (it
// writes back every dirty directory of the file system: one device flush instead of one
// per directory). The files are in place then, but a failure means their names may not
// survive a crash: they are reported failed (not removed).
void BatchCommit::sync_dirs(bool synced_by_syncfs) {
  if (dest_.options_.no_fsync) return;
  const auto touched = std::count_if(dirs_.begin(), dirs_.end(), [](const Dir& d) { return d.renamed_into; });
  if (synced_by_syncfs && touched > 1) return sync_dirs_together();
  for (std::size_t d = 0; d < dirs_.size(); ++d) {
    if (!dirs_[d].renamed_into) continue;
    // A released round whose only news here are directories made while it was
    // prepared has not opened this one again yet.
    auto open = reopen_dir(dirs_[d]);
    if (open && ::fsync(dirs_[d].fd.get()) == 0) continue;
    const int err = errno;
    for (auto& item : items_) {
      if (item.renamed && item.dir == d) {
        results_[item.index] =
            open ? make_error(Errc::local_io, "fsync(directory of " + item.shown + ")", err) : open.error();
      }
    }
  }
}

void BatchCommit::sync_dirs_together() {
  auto synced = sync_names(dest_, sync_);
  if (synced) return;
  const int err = synced.error().sys_errno;
  for (auto& item : items_) {
    if (item.renamed) {
      results_[item.index] = make_error(Errc::local_io, "syncfs(" + dest_.path_ + ") after renaming " + item.shown, err);
    }
  }
}

void BatchCommit::discard() {
  for (auto& item : items_) {
    if (item.alive) fail(item, make_error(Errc::internal, "batch dropped before its commit: " + item.shown));
  }
}

void BatchCommit::fail(Item& item, Error error) {
  results_[item.index] = std::move(error);
  item.fd.reset();
  if (!item.temp.empty() && reopen_dir(dirs_[item.dir])) ::unlinkat(dirs_[item.dir].fd.get(), item.temp.c_str(), 0);
  item.temp.clear();
  item.alive = false;
}

namespace {

// Calls `commit` with the indexes of each round: the files of the first
// kMaxDirsPerRound directories (in order of first appearance), then the next ones.
template <class Commit>
void for_each_round(std::span<StagedFile> files, Commit&& commit) {
  std::unordered_map<std::string, std::size_t> key_index;
  std::vector<std::vector<std::size_t>> files_of_key;  // by key, in order of first appearance
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto [it, added] = key_index.try_emplace(parent_key(files[i].wire_path), files_of_key.size());
    if (added) files_of_key.emplace_back();
    files_of_key[it->second].push_back(i);
  }
  for (std::size_t first = 0; first < files_of_key.size(); first += kMaxDirsPerRound) {
    std::vector<std::size_t> round;
    for (std::size_t k = first; k < std::min(files_of_key.size(), first + kMaxDirsPerRound); ++k) {
      round.insert(round.end(), files_of_key[k].begin(), files_of_key[k].end());
    }
    commit(round);
  }
}

}  // namespace

std::vector<Result<void>> commit_batch(DestDir& dest, std::span<StagedFile> files, const BatchSync& sync) {
  std::vector<Result<void>> results(files.size());
  const bool durable = !dest.options().no_fsync;
  for_each_round(files, [&](const std::vector<std::size_t>& round) {
    BatchCommit commit(dest, sync, results);
    const bool by_syncfs = durable && round.size() >= sync.syncfs_from;
    commit.stage_all(files, round, by_syncfs);
    if (by_syncfs) {
      commit.after_syncfs(BatchCommit::sync_names(dest, sync));
    } else if (durable) {
      commit.sync_open_files();
    }
    commit.rename_all();
    commit.sync_dirs(by_syncfs);
  });
  return results;
}

// A prepared batch: its rounds, staged and released, and where their outcomes go. The
// rounds refer to `sync` and `results` here, so the State never moves.
struct PreparedBatch::State {
  State(DestDir& d, const BatchSync& s, std::size_t files) : dest(d), sync(s), results(files) {}
  DestDir& dest;
  BatchSync sync;
  std::vector<Result<void>> results;
  bool use_syncfs = false;  // else each file was fdatasynced in prepare_batch
  std::vector<std::unique_ptr<BatchCommit>> rounds;
  bool finished = false;
  // Dropped unfinished (destroyed, or replaced by a move assignment): the temporaries go.
  ~State() {
    if (finished) return;
    for (auto& round : rounds) round->discard();
  }
};

PreparedBatch::PreparedBatch() = default;
PreparedBatch::PreparedBatch(PreparedBatch&&) noexcept = default;
PreparedBatch& PreparedBatch::operator=(PreparedBatch&&) noexcept = default;

PreparedBatch::~PreparedBatch() = default;

std::size_t PreparedBatch::size() const { return state_ ? state_->results.size() : 0; }

PreparedBatch prepare_batch(DestDir& dest, std::span<StagedFile> files, bool syncfs_follows, const BatchSync& sync) {
  PreparedBatch batch;
  batch.state_ = std::make_unique<PreparedBatch::State>(dest, sync, files.size());
  auto& st = *batch.state_;
  st.use_syncfs = !dest.options().no_fsync && (syncfs_follows || files.size() >= sync.syncfs_from);
  for_each_round(files, [&](const std::vector<std::size_t>& round) {
    auto& commit = *st.rounds.emplace_back(std::make_unique<BatchCommit>(dest, st.sync, st.results));
    commit.stage_all(files, round, st.use_syncfs);
    commit.release();
  });
  return batch;
}

BatchOutcome finish_batch(PreparedBatch& batch, bool prior_names_pending) {
  BatchOutcome out;
  if (!batch.state_ || batch.state_->finished) {
    if (prior_names_pending) out.prior = make_error(Errc::internal, "finish_batch of a batch finished already");
    return out;
  }
  auto& st = *batch.state_;
  const bool by_syncfs = !st.dest.options().no_fsync && (st.use_syncfs || prior_names_pending);
  if (by_syncfs) {
    auto synced = BatchCommit::sync_names(st.dest, st.sync);
    if (prior_names_pending) out.prior = synced;
    for (auto& round : st.rounds) round->after_syncfs(synced);
  }
  for (auto& round : st.rounds) {
    round->rename_all();
    if (!by_syncfs) round->sync_dirs(false);
    out.names_pending = out.names_pending || (by_syncfs && round->renamed_any());
    round->close_dirs();
  }
  out.results = std::move(st.results);
  st.finished = true;
  return out;
}

BatchOutcome commit_batch_pipelined(DestDir& dest, std::span<StagedFile> files, bool prior_names_pending,
                                    const BatchSync& sync) {
  auto batch = prepare_batch(dest, files, prior_names_pending, sync);
  return finish_batch(batch, prior_names_pending);
}

Result<void> sync_names(DestDir& dest, const BatchSync& sync) { return BatchCommit::sync_names(dest, sync); }

Result<void> BatchCommit::sync_names(DestDir& dest, const BatchSync& sync) {
  if (dest.options_.no_fsync) return {};
  auto call = sync.syncfs_call != nullptr ? sync.syncfs_call : ::syncfs;
  if (call(dest.fd_.get()) == 0) return {};
  return make_error(Errc::local_io, "syncfs(" + dest.path_ + ")", errno);
}

std::size_t BatchCommit::remove_dead_temps(DestDir& dest, const std::string& wire_dir) {
  std::string leaf;
  auto dfd = dest.open_parent(wire_dir + "/x", leaf, false);  // the directory itself
  if (!dfd) return 0;
  UniqueFd scan(::openat(dfd->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!scan) return 0;
  UniqueDir dir(::fdopendir(scan.get()));
  if (!dir) return 0;
  scan.release();  // owned by the stream now
  std::size_t removed = 0;
  while (const dirent* e = ::readdir(dir.get())) {
    const pid_t pid = batch_temp_pid(e->d_name);
    if (pid == 0 || pid == ::getpid() || !process_gone(pid)) continue;
    struct stat st{};
    if (::fstatat(dfd->get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    if (st.st_uid != ::geteuid()) continue;  // another user's: not ours to remove
    if (::unlinkat(dfd->get(), e->d_name, 0) == 0) ++removed;
  }
  return removed;
}

std::size_t remove_dead_batch_temps(DestDir& dest, const std::string& wire_dir) {
  return BatchCommit::remove_dead_temps(dest, wire_dir);
}

}  // namespace ferry
