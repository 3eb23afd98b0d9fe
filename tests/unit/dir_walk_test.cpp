// Tests lib/fs/dir_walk: sorted depth-first order with rel paths and depths, hidden
// names skipped when asked, unbuffered (readdir order) walks seeing the same entries,
// no descent through a symlink, entering() vetoes, failed() for an unreadable
// directory, stop, and the name budget (out_of_names, no descent once spent).
#include "lib/fs/dir_walk.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using test::TempDir;
using test::write_file;

// Records what the walk shows it; descends into every directory unless told otherwise.
struct Recorder : DirVisitor {
  std::vector<std::string> seen;  // "rel@depth", with a trailing '/' for directories
  std::vector<std::string> events;
  std::function<WalkStep(const DirEntry&)> override_step;
  std::function<bool(const DirEntry&)> enter = [](const DirEntry&) { return true; };

  WalkStep visit(const DirEntry& e) override {
    struct stat st {};
    const bool is_dir = e.lstat(st) == 0 && S_ISDIR(st.st_mode);
    seen.push_back(e.rel + (is_dir ? "/" : "") + "@" + std::to_string(e.depth));
    if (override_step) return override_step(e);
    return is_dir ? WalkStep::descend : WalkStep::next;
  }
  bool entering(const DirEntry& dir, int fd) override {
    EXPECT_GE(fd, 0);
    return enter(dir);
  }
  void failed(const DirEntry& dir, DirOp op, int err) override {
    events.push_back(std::string(dir_op_name(op)) + " " + dir.rel + " " + std::to_string(err));
  }
  void out_of_names(const std::string& rel) override { events.push_back("out of names at '" + rel + "'"); }
};

class DirWalk : public ::testing::Test {
 protected:
  void SetUp() override {
    mkdir("b");
    mkdir("b/sub");
    mkdir(".hidden");
    write_file(t.path() + "/c", "c");
    write_file(t.path() + "/a", "a");
    write_file(t.path() + "/b/z", "z");
    write_file(t.path() + "/b/sub/y", "y");
    write_file(t.path() + "/.hidden/x", "x");
    ASSERT_EQ(::symlink("b", (t.path() + "/link").c_str()), 0);
  }
  void mkdir(const std::string& rel) { ASSERT_EQ(::mkdir((t.path() + "/" + rel).c_str(), 0755), 0); }
  UniqueDir root() { return open_dir_stream(open_dir_fd(AT_FDCWD, t.path(), Symlinks::refuse)); }

  TempDir t;
};

TEST_F(DirWalk, SortedDepthFirstWithHiddenNames) {
  Recorder r;
  EXPECT_EQ(walk_dir(root(), r), 0);
  EXPECT_EQ(r.seen, (std::vector<std::string>{".hidden/@1", ".hidden/x@2", "a@1", "b/@1", "b/sub/@2", "b/sub/y@3",
                                              "b/z@2", "c@1", "link@1"}));
  EXPECT_TRUE(r.events.empty());
}

TEST_F(DirWalk, SkipsHiddenNamesWhenAsked) {
  Recorder r;
  EXPECT_EQ(walk_dir(root(), r, {.skip_hidden = true}), 0);
  EXPECT_EQ(r.seen, (std::vector<std::string>{"a@1", "b/@1", "b/sub/@2", "b/sub/y@3", "b/z@2", "c@1", "link@1"}));
}

TEST_F(DirWalk, UnsortedWalkSeesTheSameEntriesParentsFirst) {
  Recorder r;
  EXPECT_EQ(walk_dir(root(), r, {.skip_hidden = true, .sorted = false}), 0);
  auto pos = [&](const std::string& s) { return std::find(r.seen.begin(), r.seen.end(), s) - r.seen.begin(); };
  EXPECT_LT(pos("b/@1"), pos("b/sub/@2"));
  EXPECT_LT(pos("b/sub/@2"), pos("b/sub/y@3"));
  std::sort(r.seen.begin(), r.seen.end());
  EXPECT_EQ(r.seen, (std::vector<std::string>{"a@1", "b/@1", "b/sub/@2", "b/sub/y@3", "b/z@2", "c@1", "link@1"}));
}

TEST_F(DirWalk, NeverDescendsThroughASymlink) {
  Recorder r;
  r.override_step = [](const DirEntry& e) { return e.name == "link" ? WalkStep::descend : WalkStep::next; };
  EXPECT_EQ(walk_dir(root(), r), 0);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_TRUE(r.events[0] == "open link " + std::to_string(ELOOP) ||
              r.events[0] == "open link " + std::to_string(ENOTDIR))
      << r.events[0];
  EXPECT_EQ(std::count(r.seen.begin(), r.seen.end(), "link/z@2"), 0);
}

TEST_F(DirWalk, EnteringCanLeaveADirectoryUnlisted) {
  Recorder r;
  r.enter = [](const DirEntry& e) { return e.rel != "b/sub"; };
  EXPECT_EQ(walk_dir(root(), r, {.skip_hidden = true}), 0);
  EXPECT_EQ(r.seen, (std::vector<std::string>{"a@1", "b/@1", "b/sub/@2", "b/z@2", "c@1", "link@1"}));
}

TEST_F(DirWalk, ReportsADirectoryThatCannotBeOpened) {
  Recorder r;  // as if `a` had been replaced by a file between the visit and the open
  r.override_step = [](const DirEntry& e) { return e.name == "a" ? WalkStep::descend : WalkStep::next; };
  EXPECT_EQ(walk_dir(root(), r, {.skip_hidden = true}), 0);
  EXPECT_EQ(r.events, (std::vector<std::string>{"open a " + std::to_string(ENOTDIR)}));
}

TEST_F(DirWalk, StopEndsTheWalk) {
  Recorder r;
  r.override_step = [](const DirEntry& e) {
    if (e.rel == "b/sub") return WalkStep::stop;
    return e.name == "b" ? WalkStep::descend : WalkStep::next;
  };
  EXPECT_EQ(walk_dir(root(), r, {.skip_hidden = true}), 0);
  EXPECT_EQ(r.seen, (std::vector<std::string>{"a@1", "b/@1", "b/sub/@2"}));
}

TEST_F(DirWalk, NameBudgetStopsListingAndDescending) {
  Recorder r;
  EXPECT_EQ(walk_dir(root(), r, {.skip_hidden = true, .max_names = 3}), 0);
  // Three of a, b, c and link are read (in readdir order), then sorted and visited;
  // the fourth is one too many, and b is not entered even when it was read.
  ASSERT_EQ(r.seen.size(), 3u);
  EXPECT_TRUE(std::is_sorted(r.seen.begin(), r.seen.end()));
  for (const auto& s : r.seen) EXPECT_EQ(s.substr(s.size() - 2), "@1") << s;
  EXPECT_EQ(r.events, (std::vector<std::string>{"out of names at ''"}));

  Recorder exact;  // exactly as many names as the budget: nothing is cut
  EXPECT_EQ(walk_dir(root(), exact, {.skip_hidden = true, .max_names = 7}), 0);
  EXPECT_EQ(exact.seen.size(), 7u);
  EXPECT_TRUE(exact.events.empty());
}

TEST_F(DirWalk, EntryStatDoesNotFollowSymlinks) {
  struct Stats : DirVisitor {
    mode_t link_mode = 0;
    WalkStep visit(const DirEntry& e) override {
      struct stat st {};
      if (e.name == "link" && e.lstat(st) == 0) link_mode = st.st_mode;
      return WalkStep::next;
    }
  } v;
  EXPECT_EQ(walk_dir(root(), v), 0);
  EXPECT_TRUE(S_ISLNK(v.link_mode));
}

}  // namespace
}  // namespace ferry
