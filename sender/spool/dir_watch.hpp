// DirWatch: change hints for the spool directory of `ferry-send --watch`, from Linux
// inotify, on the libuv loop.
//
// Why not uv_fs_event_t: on Linux libuv folds IN_CREATE, IN_MOVED_TO, IN_DELETE and
// IN_MOVED_FROM into one UV_RENAME and IN_MODIFY/IN_ATTRIB/IN_CLOSE_WRITE into
// UV_CHANGE, and it has no recursive mode there. The spool must tell a file "moved in
// by rename" (complete now: send it) from one "created and being written" (wait until
// it settles), and must see sub-directories. So this reads inotify itself: one
// non-blocking, close-on-exec inotify descriptor, read through a uv_poll_t.
//
// Contract:
// - Watches DIR and every sub-directory whose name does not start with '.'. A
//   sub-directory created or moved in gets a watch, and the files already inside it
//   (whose events came before the watch) are reported as `changed`; watches of
//   directories removed or moved away are dropped.
// - Events are hints, delivered on the loop thread through the callback, never from
//   inside start(). Names starting with '.' (at any depth) are not reported. Nothing
//   here is fatal: `overflow` and `failed` tell the driver to rely on a rescan.
// - Bounded: at most Limits::max_watches directories are watched (then `failed`),
//   and every readiness event reads at most a fixed number of buffers.
// - Destroying the DirWatch stops everything at once (also from inside the callback):
//   no callback comes after it. A readable event with nothing to read is normal.
//
//   auto w = DirWatch::start(loop, spool, [&](const DirWatchEvent& e) {
//     switch (e.kind) { case DirWatchKind::moved_in: queue.on_moved_in(e.rel_path, now()); ... }
//   });
//   if (!w) log(w.error());   // rely on periodic rescans
#pragma once

#include <uv.h>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/fs/fd_io.hpp"
#include "lib/uv/uv_owner.hpp"
#include "protocol/result.hpp"

namespace ferry {

enum class DirWatchKind {
  moved_in,  // IN_MOVED_TO of a file: it was renamed into the spool, complete
  written,   // IN_CLOSE_WRITE: a writer closed the file
  changed,   // IN_CREATE, IN_MODIFY, IN_ATTRIB of a file; or a file found in a new directory
  removed,   // IN_DELETE, IN_MOVED_FROM of a file or directory
  overflow,  // IN_Q_OVERFLOW, or too many files in a new directory to report one by one
             // (Limits::max_files_reported): a full rescan is needed (rel_path empty)
  failed,    // a watch could not be added (error says why); that part relies on rescans
};

const char* dir_watch_kind_name(DirWatchKind k);

struct DirWatchEvent {
  DirWatchKind kind = DirWatchKind::changed;
  std::string rel_path;        // relative to DIR, '/'-separated; "" for DIR itself
  std::optional<Error> error;  // failed only
};

class DirWatch {
 public:
  using Callback = std::function<void(const DirWatchEvent&)>;

  struct Limits {
    std::size_t max_watches = 8192;  // directories watched at once
    unsigned max_depth = 64;         // directory levels below DIR
    // Files reported as `changed` for one directory moved in; past it, one `overflow`.
    std::size_t max_files_reported = 10'000;
  };

  // Starts watching `dir` and its sub-directories (walked now, on the calling thread).
  // Errc::local_io when inotify cannot be set up or DIR itself cannot be watched;
  // sub-directories that cannot be are reported as `failed` on the first loop turn
  // (at most 256 such events, then one that counts the rest).
  static Result<std::unique_ptr<DirWatch>> start(uv_loop_t* loop, const std::string& dir, Callback cb, Limits limits);
  static Result<std::unique_ptr<DirWatch>> start(uv_loop_t* loop, const std::string& dir, Callback cb) {
    return start(loop, dir, std::move(cb), Limits{});
  }

  DirWatch(const DirWatch&) = delete;
  DirWatch& operator=(const DirWatch&) = delete;
  // Stops the poll (no callback after this) and closes the inotify descriptor.
  ~DirWatch();

  // Directories watched now (DIR included).
  std::size_t watch_count() const { return wd_to_rel_.size(); }

 private:
  DirWatch() = default;
  static void on_poll(uv_poll_t* h, int status, int events);
  void read_events();
  void handle(int wd, std::uint32_t mask, const std::string& name);
  // Adds watches for `rel` and the directories below it; with `report_files`, reports
  // the files found as `changed`. Returns false when `this` was destroyed meanwhile.
  bool watch_tree(const std::string& rel, unsigned depth, bool report_files);
  class TreeVisitor;  // watch_tree's walk below `rel`
  enum class Watched { yes, no, destroyed };
  // Adds the watch of directory `rel` (`depth` levels below DIR; DIR itself is watched
  // by start()). `no` when it is too deep, gone or cannot be watched (said as `failed`,
  // the watch limit once); `destroyed` when the callback destroyed `this`.
  Watched watch_dir(const std::string& rel, unsigned depth);
  Watched watch_failed(const std::string& rel, Error e);
  std::optional<int> add_watch(const std::string& rel);
  void drop_tree(const std::string& rel);
  // Delivers an event now, or queues it while start() runs. False when the callback
  // destroyed `this`.
  bool emit(DirWatchEvent e);
  void flush_pending();

  std::string dir_;
  Callback cb_;
  Limits limits_;
  UniqueFd fd_;  // inotify
  UvOwner<uv_poll_t> poll_;
  UvOwner<uv_timer_t> flush_timer_;     // delivers what start() found, on the first turn
  std::vector<DirWatchEvent> pending_;  // bounded; what did not fit is counted
  std::size_t pending_dropped_ = 0;
  bool started_ = false;
  bool limit_reported_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::unordered_map<int, std::string> wd_to_rel_;
  std::map<std::string, int> rel_to_wd_;  // ordered: a directory's subtree is a range
};

}  // namespace ferry
