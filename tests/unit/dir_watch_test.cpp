// Tests lib/dir_watch on a real temporary directory and a real libuv loop, each run
// bounded by a timer (a test waits for the events it expects, for at most 10 s; it
// never asserts how fast they came): a rename into the spool is `moved_in`, writing
// is `changed`/`written`, new and moved-in sub-directories are watched (and what was
// already inside is reported), hidden names are ignored, removals are reported and
// their watches dropped, a directory moved within the spool is known by its new
// name, the watch limit and a queue overflow are reported, and no callback comes
// after the watch is destroyed, even when the callback itself destroys it.
#include "sender/spool/dir_watch.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using namespace std::chrono_literals;
using test::TempDir;
using test::write_file;

constexpr auto kPatience = 10s;  // only ever waited out when a test fails

class Loop {
 public:
  Loop() { uv_loop_init(&loop_); }
  ~Loop() {
    // Close anything a failed test left open, then let the close callbacks run.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, [](uv_handle_t*) {});
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done()` holds or `limit` passes; returns done().
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = kPatience) {
    struct Ctx {
      const std::function<bool()>* done;
      std::chrono::steady_clock::time_point deadline;
    } ctx{&done, std::chrono::steady_clock::now() + limit};
    UvOwner<uv_timer_t> timer(&loop_, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); });
    timer.get()->data = &ctx;
    uv_timer_start(
        timer.get(),
        [](uv_timer_t* t) {
          auto* c = static_cast<Ctx*>(t->data);
          if ((*c->done)() || std::chrono::steady_clock::now() >= c->deadline) uv_stop(t->loop);
        },
        1, 2);
    if (!done()) uv_run(&loop_, UV_RUN_DEFAULT);
    timer.reset();
    uv_run(&loop_, UV_RUN_NOWAIT);  // the timer's close
    return done();
  }

  // Runs the loop for `d` (to show that nothing comes).
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }

 private:
  uv_loop_t loop_{};
};

struct Recorder {
  std::vector<DirWatchEvent> events;
  DirWatch::Callback callback() {
    return [this](const DirWatchEvent& e) { events.push_back(e); };
  }
  bool has(DirWatchKind k, const std::string& rel) const {
    for (const auto& e : events)
      if (e.kind == k && e.rel_path == rel) return true;
    return false;
  }
  std::function<bool()> waits_for(DirWatchKind k, std::string rel) const {
    return [this, k, rel] { return has(k, rel); };
  }
  bool any_about(const std::string& needle) const {
    for (const auto& e : events)
      if (e.rel_path.find(needle) != std::string::npos) return true;
    return false;
  }
  std::string dump() const {
    std::string out;
    for (const auto& e : events) {
      out += std::string(dir_watch_kind_name(e.kind)) + " '" + e.rel_path + "'";
      if (e.error) out += " (" + e.error->message() + ")";
      out += "\n";
    }
    return out;
  }
};

void make_dir(const std::string& p) {
  ASSERT_EQ(::mkdir(p.c_str(), 0755), 0) << p;
}

void rename_or_fail(const std::string& from, const std::string& to) {
  ASSERT_EQ(::rename(from.c_str(), to.c_str()), 0) << from << " -> " << to;
}

struct Fixture {
  TempDir t;
  std::string spool = t.path() + "/spool";
  std::string outside = t.path() + "/outside";  // same filesystem, not watched
  Loop loop;
  Recorder rec;
  Fixture() {
    ::mkdir(spool.c_str(), 0755);
    ::mkdir(outside.c_str(), 0755);
  }
  std::unique_ptr<DirWatch> start(DirWatch::Limits limits = {}) {
    auto w = DirWatch::start(loop.get(), spool, rec.callback(), limits);
    if (!w) throw std::runtime_error(w.error().message());
    return std::move(*w);
  }
};

TEST(DirWatch, RenameIntoTheSpoolIsMovedIn) {
  Fixture f;
  auto w = f.start();
  write_file(f.spool + "/.incoming.tmp", "data");  // the write-then-rename convention
  rename_or_fail(f.spool + "/.incoming.tmp", f.spool + "/file");
  write_file(f.outside + "/other", "x");
  rename_or_fail(f.outside + "/other", f.spool + "/other");
  ASSERT_TRUE(f.loop.run_until([&] { return f.rec.has(DirWatchKind::moved_in, "other"); })) << f.rec.dump();
  EXPECT_TRUE(f.rec.has(DirWatchKind::moved_in, "file")) << f.rec.dump();
  EXPECT_FALSE(f.rec.any_about(".incoming")) << f.rec.dump();
  EXPECT_FALSE(f.rec.has(DirWatchKind::changed, "file")) << f.rec.dump();
}

TEST(DirWatch, WritingAFileIsChangedThenWritten) {
  Fixture f;
  auto w = f.start();
  write_file(f.spool + "/g", "hello");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "g"))) << f.rec.dump();
  EXPECT_TRUE(f.rec.has(DirWatchKind::changed, "g")) << f.rec.dump();
  EXPECT_FALSE(f.rec.has(DirWatchKind::moved_in, "g")) << f.rec.dump();
  f.rec.events.clear();
  ASSERT_EQ(::chmod((f.spool + "/g").c_str(), 0600), 0);
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::changed, "g"))) << f.rec.dump();
}

TEST(DirWatch, ExistingSubdirectoriesAreWatchedFromTheStart) {
  Fixture f;
  make_dir(f.spool + "/a");
  make_dir(f.spool + "/a/b");
  make_dir(f.spool + "/.hidden");
  auto w = f.start();
  EXPECT_EQ(w->watch_count(), 3u);  // spool, a, a/b
  write_file(f.outside + "/x", "x");
  rename_or_fail(f.outside + "/x", f.spool + "/a/b/x");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::moved_in, "a/b/x"))) << f.rec.dump();
}

TEST(DirWatch, NewSubdirectoryIsWatched) {
  Fixture f;
  auto w = f.start();
  make_dir(f.spool + "/sub");
  ASSERT_TRUE(f.loop.run_until([&] { return w->watch_count() == 2; })) << f.rec.dump();
  write_file(f.outside + "/x", "x");
  rename_or_fail(f.outside + "/x", f.spool + "/sub/x");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::moved_in, "sub/x"))) << f.rec.dump();
  make_dir(f.spool + "/sub/deeper");
  ASSERT_TRUE(f.loop.run_until([&] { return w->watch_count() == 3; })) << f.rec.dump();
  write_file(f.spool + "/sub/deeper/y", "y");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "sub/deeper/y"))) << f.rec.dump();
}

// Files already inside a directory moved into the spool had their events elsewhere:
// they are reported as `changed` (the queue lets them settle), hidden ones are not.
TEST(DirWatch, FilesInsideAMovedInDirectoryAreReported) {
  Fixture f;
  auto w = f.start();
  const std::string in = f.outside + "/batch";
  make_dir(in);
  make_dir(in + "/nested");
  make_dir(in + "/.tmpdir");
  write_file(in + "/a", "a");
  write_file(in + "/b", "b");
  write_file(in + "/nested/c", "c");
  write_file(in + "/.partial", "p");
  write_file(in + "/.tmpdir/z", "z");
  rename_or_fail(in, f.spool + "/batch");
  ASSERT_TRUE(f.loop.run_until([&] {
    return f.rec.has(DirWatchKind::changed, "batch/a") && f.rec.has(DirWatchKind::changed, "batch/b") &&
           f.rec.has(DirWatchKind::changed, "batch/nested/c");
  })) << f.rec.dump();
  EXPECT_FALSE(f.rec.any_about("partial")) << f.rec.dump();
  EXPECT_FALSE(f.rec.any_about("tmpdir")) << f.rec.dump();
  EXPECT_EQ(w->watch_count(), 3u);  // spool, batch, batch/nested
  write_file(f.spool + "/batch/nested/d", "d");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "batch/nested/d"))) << f.rec.dump();
}

TEST(DirWatch, TooManyFilesInAMovedInDirectoryAreOneOverflow) {
  Fixture f;
  DirWatch::Limits lim;
  lim.max_files_reported = 2;
  auto w = f.start(lim);
  const std::string in = f.outside + "/many";
  make_dir(in);
  for (int i = 0; i < 5; ++i) write_file(in + "/" + std::to_string(i), "x");
  rename_or_fail(in, f.spool + "/many");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::overflow, ""))) << f.rec.dump();
  std::size_t changed = 0;
  for (const auto& e : f.rec.events) changed += e.kind == DirWatchKind::changed ? 1 : 0;
  EXPECT_EQ(changed, 2u) << f.rec.dump();
  EXPECT_EQ(f.rec.events.size(), 3u) << f.rec.dump();
}

TEST(DirWatch, HiddenNamesAreIgnored) {
  Fixture f;
  auto w = f.start();
  make_dir(f.spool + "/.cache");
  write_file(f.spool + "/.cache/inner", "i");
  write_file(f.spool + "/.swp", "s");
  rename_or_fail(f.spool + "/.swp", f.spool + "/.swp2");
  ::unlink((f.spool + "/.swp2").c_str());
  write_file(f.spool + "/marker", "m");  // events come in order: after the hidden ones
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "marker"))) << f.rec.dump();
  EXPECT_EQ(w->watch_count(), 1u);
  for (const auto& e : f.rec.events) EXPECT_EQ(e.rel_path, "marker") << f.rec.dump();
}

TEST(DirWatch, RemovalsAreReportedAndTheirWatchesDropped) {
  Fixture f;
  make_dir(f.spool + "/sub");
  make_dir(f.spool + "/sub/inner");
  make_dir(f.spool + "/gone");
  write_file(f.spool + "/f", "f");
  write_file(f.spool + "/sub/g", "g");
  auto w = f.start();
  EXPECT_EQ(w->watch_count(), 4u);
  ASSERT_EQ(::unlink((f.spool + "/f").c_str()), 0);
  ASSERT_EQ(::rmdir((f.spool + "/gone").c_str()), 0);
  rename_or_fail(f.spool + "/sub/g", f.outside + "/g");
  ASSERT_TRUE(f.loop.run_until([&] {
    return f.rec.has(DirWatchKind::removed, "f") && f.rec.has(DirWatchKind::removed, "gone") &&
           f.rec.has(DirWatchKind::removed, "sub/g");
  })) << f.rec.dump();
  ASSERT_TRUE(f.loop.run_until([&] { return w->watch_count() == 3; })) << f.rec.dump();
  // A directory moved out of the spool is no longer watched, with its sub-directories.
  rename_or_fail(f.spool + "/sub", f.outside + "/sub");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::removed, "sub"))) << f.rec.dump();
  EXPECT_EQ(w->watch_count(), 1u);
  f.rec.events.clear();
  write_file(f.outside + "/sub/inner/late", "l");
  write_file(f.spool + "/marker", "m");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "marker"))) << f.rec.dump();
  EXPECT_FALSE(f.rec.any_about("late")) << f.rec.dump();
}

TEST(DirWatch, DirectoryMovedWithinTheSpoolIsKnownByItsNewName) {
  Fixture f;
  make_dir(f.spool + "/old");
  make_dir(f.spool + "/old/deep");
  auto w = f.start();
  rename_or_fail(f.spool + "/old", f.spool + "/new");
  ASSERT_TRUE(f.loop.run_until([&] { return f.rec.has(DirWatchKind::removed, "old") && w->watch_count() == 3; }))
      << f.rec.dump();
  f.rec.events.clear();
  write_file(f.spool + "/new/deep/f", "f");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "new/deep/f"))) << f.rec.dump();
  EXPECT_FALSE(f.rec.any_about("old")) << f.rec.dump();
}

// Past max_watches a directory is not watched: one `failed`, delivered on the loop
// (never from inside start()), naming the limit; the others still work.
TEST(DirWatch, WatchLimitIsReportedNotFatal) {
  Fixture f;
  for (const char* d : {"/a", "/b", "/c"}) make_dir(f.spool + d);
  DirWatch::Limits lim;
  lim.max_watches = 2;
  auto w = f.start(lim);
  EXPECT_TRUE(f.rec.events.empty()) << f.rec.dump();
  EXPECT_EQ(w->watch_count(), 2u);
  ASSERT_TRUE(f.loop.run_until([&] { return !f.rec.events.empty(); })) << f.rec.dump();
  ASSERT_EQ(f.rec.events.size(), 1u) << f.rec.dump();
  const auto& e = f.rec.events[0];
  EXPECT_EQ(e.kind, DirWatchKind::failed);
  ASSERT_TRUE(e.error.has_value());
  EXPECT_NE(e.error->message().find("watch limit (2 directories)"), std::string::npos) << e.error->message();
  write_file(f.spool + "/top", "t");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "top"))) << f.rec.dump();
}

// DIR may be named through a symlink, as scan_spool allows; below it nothing is followed.
TEST(DirWatch, SpoolNamedThroughASymlink) {
  Fixture f;
  make_dir(f.spool + "/sub");
  make_dir(f.outside + "/target");
  ASSERT_EQ(::symlink((f.outside + "/target").c_str(), (f.spool + "/linked").c_str()), 0);
  const std::string alias = f.t.path() + "/alias";
  ASSERT_EQ(::symlink(f.spool.c_str(), alias.c_str()), 0);
  auto w = DirWatch::start(f.loop.get(), alias, f.rec.callback());
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ((*w)->watch_count(), 2u);  // alias (the spool) and sub, not linked
  write_file(f.outside + "/target/not-ours", "x");
  write_file(f.spool + "/sub/f", "f");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "sub/f"))) << f.rec.dump();
  EXPECT_FALSE(f.rec.any_about("not-ours")) << f.rec.dump();
}

TEST(DirWatch, StartFailsWhenTheSpoolCannotBeWatched) {
  TempDir t;
  Loop loop;
  write_file(t.path() + "/file", "f");
  for (const std::string& dir : {t.path() + "/missing", t.path() + "/file"}) {
    auto w = DirWatch::start(loop.get(), dir, [](const DirWatchEvent&) {});
    ASSERT_FALSE(w) << dir;
    EXPECT_EQ(w.error().code, Errc::local_io);
    EXPECT_NE(w.error().message().find(dir), std::string::npos) << w.error().message();
  }
}

// More events than the kernel queues (fs.inotify.max_queued_events) before the loop
// reads any: `overflow`, after which the watch still works.
TEST(DirWatch, QueueOverflowIsReported) {
  Fixture f;
  long max_queued = 16384;
  if (std::ifstream q("/proc/sys/fs/inotify/max_queued_events"); q) q >> max_queued;
  if (max_queued > 100'000) GTEST_SKIP() << "max_queued_events is " << max_queued << ": too many files to create";
  auto w = f.start();
  // Each file gives IN_CREATE and IN_CLOSE_WRITE.
  for (long i = 0; i < max_queued / 2 + 100; ++i) {
    int fd = ::open((f.spool + "/" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::overflow, ""))) << "no overflow";
  f.rec.events.clear();
  write_file(f.spool + "/after", "a");
  ASSERT_TRUE(f.loop.run_until(f.rec.waits_for(DirWatchKind::written, "after")));
}

TEST(DirWatch, NoCallbackAfterDestruction) {
  Fixture f;
  auto w = f.start();
  for (int i = 0; i < 5; ++i) write_file(f.spool + "/f" + std::to_string(i), "x");  // queued, unread
  w.reset();
  f.loop.run_for(50ms);
  EXPECT_TRUE(f.rec.events.empty()) << f.rec.dump();
}

TEST(DirWatch, CallbackMayDestroyTheWatch) {
  Fixture f;
  std::unique_ptr<DirWatch> w;
  int calls = 0;
  auto started = DirWatch::start(f.loop.get(), f.spool, [&](const DirWatchEvent&) {
    ++calls;
    w.reset();  // many more events of this read are still unhandled
  });
  ASSERT_TRUE(started) << started.error().message();
  w = std::move(*started);
  for (int i = 0; i < 5; ++i) write_file(f.spool + "/f" + std::to_string(i), "x");
  ASSERT_TRUE(f.loop.run_until([&] { return calls > 0; }));
  f.loop.run_for(50ms);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(w, nullptr);
}

}  // namespace
}  // namespace ferry
