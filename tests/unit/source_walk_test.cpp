// Tests lib/fs/source_walk: the incremental walk yields the entries walk_sources lists,
// in the same order (sorted, a directory before its contents, empty directories, links
// with and without --links and -L), one at a time; notes arrive as they are met; it
// holds only the open directories' names; a directory that cannot be listed is an
// entry with a note; count_sources counts what the walk then yields, and a file that
// appears between the two passes shows in the walk, not in the count.
#include "lib/fs/source_walk.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "lib/fs/source_tree.hpp"
#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using protocol::EntryKind;
using test::TempDir;
using test::write_file;

// What a walk yields and notes, in the order it did: "+path" per entry, "!note" per note.
std::vector<std::string> drain(SourceWalk& walk, std::vector<std::string>& log) {
  std::vector<std::string> paths;
  while (auto e = walk.next()) {
    paths.push_back(e->wire_path);
    log.push_back("+" + e->wire_path);
  }
  return paths;
}

Result<SourceWalk> open_logged(const std::vector<std::string>& paths, std::vector<std::string>& log,
                               bool copy_links = false, bool links = false) {
  return SourceWalk::open(paths, copy_links, links,
                          [&log](WalkNote, std::string why) { log.push_back("!" + std::move(why)); });
}

// base/ a/ {x, y/ {deep}}, b (file), empty/, l -> a/x, m -> a (a link to a directory)
std::string make_tree(const TempDir& t) {
  const std::string base = t.path() + "/base";
  for (const char* d : {"", "/a", "/a/y", "/empty"}) ::mkdir((base + d).c_str(), 0755);
  write_file(base + "/a/x", "xx");
  write_file(base + "/a/y/deep", "deep");
  write_file(base + "/b", "bbb");
  EXPECT_EQ(::symlink("a/x", (base + "/l").c_str()), 0);
  EXPECT_EQ(::symlink("a", (base + "/m").c_str()), 0);
  return base;
}

TEST(SourceWalk, SameSequenceAsTheWholeListInEveryLinkMode) {
  TempDir t;
  const std::string base = make_tree(t);
  for (auto [copy_links, links] : {std::pair{false, false}, {false, true}, {true, false}, {true, true}}) {
    SCOPED_TRACE("copy_links=" + std::to_string(copy_links) + " links=" + std::to_string(links));
    auto tree = walk_sources({base}, copy_links, links);
    ASSERT_TRUE(tree.ok());
    std::vector<std::string> log;
    auto walk = open_logged({base}, log, copy_links, links);
    ASSERT_TRUE(walk.ok());
    std::vector<SourceEntry> one_by_one;
    while (auto e = walk->next()) one_by_one.push_back(std::move(*e));
    ASSERT_EQ(one_by_one.size(), tree->entries.size());
    for (std::size_t i = 0; i < one_by_one.size(); ++i) {
      EXPECT_EQ(one_by_one[i].wire_path, tree->entries[i].wire_path);
      EXPECT_EQ(one_by_one[i].kind, tree->entries[i].kind);
      EXPECT_EQ(one_by_one[i].size, tree->entries[i].size);
      EXPECT_EQ(one_by_one[i].link_target, tree->entries[i].link_target);
    }
  }
  // The sequence itself, without link options: sorted, a directory before its contents,
  // the empty directory too, links left out.
  std::vector<std::string> log;
  auto walk = open_logged({base}, log);
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(drain(*walk, log), (std::vector<std::string>{"base", "base/a", "base/a/x", "base/a/y", "base/a/y/deep",
                                                          "base/b", "base/empty"}));
  // -L: l is the file, m the directory a again under its own name (a was listed first,
  // so m is not: a directory is sent once).
  auto followed = walk_sources({base}, true, false);
  ASSERT_TRUE(followed.ok());
  std::vector<std::string> paths;
  for (const auto& e : followed->entries) paths.push_back(e.wire_path);
  EXPECT_EQ(paths, (std::vector<std::string>{"base", "base/a", "base/a/x", "base/a/y", "base/a/y/deep", "base/b",
                                             "base/empty", "base/l"}));
  // --links: l and m are symlink entries with their targets, in name order.
  auto linked = walk_sources({base}, false, true);
  ASSERT_TRUE(linked.ok());
  ASSERT_EQ(linked->entries.size(), 9u);
  EXPECT_EQ(linked->entries[7].wire_path, "base/l");
  EXPECT_EQ(linked->entries[7].kind, EntryKind::symlink);
  EXPECT_EQ(linked->entries[7].link_target, "a/x");
  EXPECT_EQ(linked->entries[8].link_target, "a");
}

TEST(SourceWalk, NotesArriveAsTheyAreMet) {
  TempDir t;
  const std::string base = make_tree(t);
  std::vector<std::string> log;
  auto walk = open_logged({base}, log);
  ASSERT_TRUE(walk.ok());
  drain(*walk, log);
  // The two links are ignored with a note where the walk meets them: after base/empty.
  ASSERT_EQ(log.size(), 9u);
  EXPECT_EQ(log[6], "+base/empty");
  EXPECT_EQ(log[7].rfind("!" + base + "/l: symlink", 0), 0u) << log[7];
  EXPECT_EQ(log[8].rfind("!" + base + "/m: symlink", 0), 0u) << log[8];
}

// A directory that cannot be listed is still an entry; the note follows it at once and
// the walk goes on. Removing it after its entry was yielded makes opendir fail even as
// root; a mode of 000 does too where the tests do not run as root.
TEST(SourceWalk, DirectoryThatCannotBeListedIsAnEntryWithANote) {
  TempDir t;
  const std::string base = make_tree(t);
  std::vector<std::string> log;
  auto walk = open_logged({base}, log);
  ASSERT_TRUE(walk.ok());
  std::vector<std::string> paths;
  while (auto e = walk->next()) {
    paths.push_back(e->wire_path);
    log.push_back("+" + e->wire_path);
    if (e->wire_path == "base/empty") {
      ASSERT_EQ(::rmdir((base + "/empty").c_str()), 0);
    }
  }
  const auto at = std::find(log.begin(), log.end(), "+base/empty");
  ASSERT_NE(at, log.end());
  ASSERT_NE(at + 1, log.end());
  EXPECT_EQ(*(at + 1), "!" + base + "/empty: opendir: No such file or directory");
  EXPECT_EQ(paths.back(), "base/empty");
}

TEST(SourceWalk, DirectoryOfMode000IsSkippedWithANote) {
  TempDir t;
  const std::string base = make_tree(t);
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: a directory of mode 000 can still be read";
  ASSERT_EQ(::chmod((base + "/a/y").c_str(), 0), 0);
  auto tree = walk_sources({base});
  ::chmod((base + "/a/y").c_str(), 0755);
  ASSERT_TRUE(tree.ok());
  ASSERT_EQ(tree->skipped.size(), 1u);
  EXPECT_NE(tree->skipped[0].find("a/y: opendir"), std::string::npos);
}

// Only the open directories are held: the names of the deepest path's directories, not
// the tree's. 20 directories of 50 files: never more than 20 + 50 names at once.
TEST(SourceWalk, HoldsOnlyTheOpenDirectoriesNames) {
  TempDir t;
  const std::string base = t.path() + "/wide";
  ::mkdir(base.c_str(), 0755);
  for (int d = 0; d < 20; ++d) {
    const std::string dir = base + "/d" + std::to_string(d);
    ::mkdir(dir.c_str(), 0755);
    for (int f = 0; f < 50; ++f) write_file(dir + "/f" + std::to_string(f), "");
  }
  auto walk = SourceWalk::open({base}, false, false);
  ASSERT_TRUE(walk.ok());
  std::size_t n = 0, deepest = 0;
  while (walk->next()) {
    ++n;
    deepest = std::max(deepest, walk->open_directories());
  }
  EXPECT_EQ(n, 1u + 20u + 20u * 50u);
  EXPECT_EQ(deepest, 2u);
  EXPECT_LE(walk->peak_names_held(), 20u + 50u);
  EXPECT_EQ(walk->open_directories(), 0u) << "every directory closed at the end";
}

TEST(SourceWalk, AFileAppearingBetweenCountAndWalkShowsInTheWalk) {
  TempDir t;
  const std::string base = make_tree(t);
  auto counted = count_sources({base}, false, false);
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(counted->files, 7u);
  EXPECT_EQ(counted->bytes, 2u + 4u + 3u);
  write_file(base + "/a/new", "12345");
  auto walk = SourceWalk::open({base}, false, false);
  ASSERT_TRUE(walk.ok());
  WalkEntrySource source(std::move(*walk), {}, *counted);
  EXPECT_EQ(source.expected().files, 7u) << "the count, until the walk says otherwise";
  std::uint64_t files = 0, bytes = 0;
  while (auto e = source.next()) {
    ++files;
    bytes += e->size;
  }
  EXPECT_EQ(files, 8u);
  EXPECT_EQ(bytes, 2u + 4u + 3u + 5u);
}

TEST(SourceWalk, ExplicitFilesComeAfterTheWalk) {
  TempDir t;
  const std::string base = make_tree(t);
  write_file(t.path() + "/extra", "e");
  auto walk = SourceWalk::open({base + "/a"}, false, false);
  ASSERT_TRUE(walk.ok());
  auto extra = source_file_entry(t.path() + "/extra", "sub/extra");
  ASSERT_TRUE(extra.ok());
  WalkEntrySource source(std::move(*walk), {*extra}, EntryCounts{5, 7});
  std::vector<std::string> paths;
  while (auto e = source.next()) paths.push_back(e->wire_path);
  EXPECT_EQ(paths, (std::vector<std::string>{"a", "a/x", "a/y", "a/y/deep", "sub/extra"}));
  EXPECT_FALSE(source.next().has_value()) << "and nothing after the end";
}

TEST(SourceWalk, PathProblemsAreUsageErrorsUpFront) {
  TempDir t;
  const std::string base = make_tree(t);
  auto missing = SourceWalk::open({base, t.path() + "/nope"}, false, false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::usage);
  auto twice = SourceWalk::open({base + "/a", base + "/a/y/../../a"}, false, false);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, Errc::usage);
}

}  // namespace
}  // namespace ferry
