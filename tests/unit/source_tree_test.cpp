// Tests lib/source_tree: files, nested and empty directories become entries in sorted
// order with wire paths "base/..."; symlinks and FIFOs are listed in `ignored` and
// not sent (-L: links are followed, without looping); a PATH that is a FIFO or missing, or two PATHs with one base name, is
// a usage error; restat_source sees a changed or vanished file.
#include "lib/fs/source_tree.hpp"

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>

#include <string>
#include <vector>

#include "protocol/wire_path.hpp"
#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using protocol::EntryKind;
using test::TempDir;
using test::write_file;

std::vector<std::string> wire_paths(const SourceTree& t) {
  std::vector<std::string> out;
  for (const auto& e : t.entries) out.push_back(e.wire_path);
  return out;
}

const SourceEntry* find(const SourceTree& t, const std::string& wire) {
  for (const auto& e : t.entries)
    if (e.wire_path == wire) return &e;
  return nullptr;
}

bool ignored_mentions(const SourceTree& t, const std::string& local) {
  for (const auto& s : t.ignored)
    if (s.find(local) != std::string::npos) return true;
  return false;
}

bool skipped_mentions(const SourceTree& t, const std::string& local) {
  for (const auto& s : t.skipped)
    if (s.find(local) != std::string::npos) return true;
  return false;
}

TEST(SourceTree, SingleFile) {
  TempDir t;
  const std::string p = t.path() + "/hello.txt";
  write_file(p, "hello");
  ASSERT_EQ(::chmod(p.c_str(), 0640), 0);
  const timespec times[2] = {{0, UTIME_OMIT}, {1'600'000'000, 987'654'321}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, 0), 0);
  auto tree = walk_sources({p});
  ASSERT_TRUE(tree) << tree.error().message();
  ASSERT_EQ(tree->entries.size(), 1u);
  const auto& e = tree->entries[0];
  EXPECT_EQ(e.wire_path, "hello.txt");
  EXPECT_EQ(e.local_path, p);
  EXPECT_EQ(e.kind, EntryKind::file);
  EXPECT_EQ(e.size, 5u);
  EXPECT_EQ(e.mtime_ns, 1'600'000'000'987'654'321);
  EXPECT_EQ(e.mode, 0640u);
  EXPECT_EQ(e.identity, source_identity(5, 1'600'000'000'987'654'321));
  EXPECT_TRUE(tree->skipped.empty());
}

TEST(SourceTree, TreeInSortedOrderWithEmptyDirs) {
  TempDir t;
  const std::string base = t.path() + "/base";
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  for (const char* d : {"/zdir", "/adir", "/adir/inner", "/empty", "/adir/inner/deepempty"}) {
    ASSERT_EQ(::mkdir((base + d).c_str(), 0755), 0) << d;
  }
  write_file(base + "/b.txt", "bb");
  write_file(base + "/a.txt", "a");
  write_file(base + "/zdir/z", "");
  write_file(base + "/adir/inner/f", "ffff");
  write_file(base + "/adir/g", "g");
  write_file(base + "/.hidden", "h");

  auto tree = walk_sources({base});
  ASSERT_TRUE(tree) << tree.error().message();
  EXPECT_EQ(wire_paths(*tree), (std::vector<std::string>{
                                   "base",
                                   "base/.hidden",
                                   "base/a.txt",
                                   "base/adir",
                                   "base/adir/g",
                                   "base/adir/inner",
                                   "base/adir/inner/deepempty",
                                   "base/adir/inner/f",
                                   "base/b.txt",
                                   "base/empty",
                                   "base/zdir",
                                   "base/zdir/z",
                               }));
  EXPECT_TRUE(tree->skipped.empty());
  for (const auto& e : tree->entries) {
    EXPECT_FALSE(protocol::wire_path_problem(e.wire_path).has_value()) << e.wire_path;
    EXPECT_EQ(e.local_path, t.path() + "/" + e.wire_path);
    if (e.kind == EntryKind::directory) {
      EXPECT_EQ(e.size, 0u) << e.wire_path;
    }
  }
  ASSERT_NE(find(*tree, "base/empty"), nullptr);
  EXPECT_EQ(find(*tree, "base/empty")->kind, EntryKind::directory);
  EXPECT_EQ(find(*tree, "base/adir/inner/f")->kind, EntryKind::file);
  EXPECT_EQ(find(*tree, "base/adir/inner/f")->size, 4u);
  EXPECT_EQ(find(*tree, "base/zdir/z")->size, 0u);
}

TEST(SourceTree, TrailingSlashAndSeveralPaths) {
  TempDir t;
  ASSERT_EQ(::mkdir((t.path() + "/d").c_str(), 0755), 0);
  write_file(t.path() + "/d/x", "x");
  write_file(t.path() + "/single", "s");
  auto tree = walk_sources({t.path() + "/d/", t.path() + "/single"});
  ASSERT_TRUE(tree) << tree.error().message();
  EXPECT_EQ(wire_paths(*tree), (std::vector<std::string>{"d", "d/x", "single"}));
}

TEST(SourceTree, SymlinksAndFifosAreIgnored) {
  TempDir t;
  const std::string base = t.path() + "/base";
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  write_file(base + "/real", "r");
  ASSERT_EQ(::mkdir((base + "/sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("real", (base + "/link_to_file").c_str()), 0);
  ASSERT_EQ(::symlink("sub", (base + "/link_to_dir").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/nowhere", (base + "/dangling").c_str()), 0);
  ASSERT_EQ(::mkfifo((base + "/sub/fifo").c_str(), 0600), 0);

  auto tree = walk_sources({base + "/"});  // a trailing slash: no "base//x" in what is shown
  ASSERT_TRUE(tree) << tree.error().message();
  EXPECT_EQ(wire_paths(*tree), (std::vector<std::string>{"base", "base/real", "base/sub"}));
  EXPECT_TRUE(tree->skipped.empty());  // left out by rule: not errors
  ASSERT_EQ(tree->ignored.size(), 4u);
  for (const char* s : {"/link_to_file", "/link_to_dir", "/dangling", "/sub/fifo"}) {
    EXPECT_TRUE(ignored_mentions(*tree, base + s)) << s;
  }
  for (const auto& s : tree->ignored) EXPECT_EQ(s.find("//"), std::string::npos) << s;
  EXPECT_TRUE(ignored_mentions(*tree, "symlink"));
  EXPECT_TRUE(ignored_mentions(*tree, "FIFO"));
}

// -L: a link is sent as what it points to, under the link's name; a dangling one and
// one that leads back to a directory already listed are ignored.
TEST(SourceTree, CopyLinksFollowsThemWithoutLooping) {
  TempDir t;
  const std::string base = t.path() + "/base";
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((t.path() + "/elsewhere").c_str(), 0755), 0);
  write_file(base + "/real", "r");
  write_file(t.path() + "/elsewhere/e", "ee");
  ASSERT_EQ(::symlink("real", (base + "/link_to_file").c_str()), 0);
  ASSERT_EQ(::symlink("../elsewhere", (base + "/link_to_dir").c_str()), 0);
  ASSERT_EQ(::symlink("..", (base + "/loop").c_str()), 0);
  ASSERT_EQ(::symlink(".", (base + "/self").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/nowhere", (base + "/dangling").c_str()), 0);

  auto tree = walk_sources({base}, /*copy_links=*/true);
  ASSERT_TRUE(tree) << tree.error().message();
  // "loop" points at t.path(), which was never listed: it is walked, and the "base"
  // inside it is not listed again.
  const auto paths = wire_paths(*tree);
  for (const char* want : {"base/link_to_file", "base/link_to_dir", "base/link_to_dir/e", "base/real"}) {
    EXPECT_NE(std::find(paths.begin(), paths.end(), want), paths.end()) << want;
  }
  EXPECT_EQ(std::count(paths.begin(), paths.end(), "base/loop/base"), 0);
  EXPECT_EQ(find(*tree, "base/link_to_file")->kind, EntryKind::file);
  EXPECT_EQ(find(*tree, "base/link_to_file")->size, 1u);
  EXPECT_EQ(find(*tree, "base/link_to_dir/e")->size, 2u);
  EXPECT_TRUE(ignored_mentions(*tree, base + "/dangling"));
  EXPECT_TRUE(ignored_mentions(*tree, base + "/self"));
  EXPECT_TRUE(tree->skipped.empty());
  EXPECT_LT(paths.size(), 20u);  // bounded: no loop
}

// JSON carries only UTF-8: such a name would be mangled and could collide with
// another ("a\xff" and "a\xfe" both becoming "a\uFFFD"), so it is skipped, not sent.
TEST(SourceTree, NonUtf8NamesAreSkipped) {
  TempDir t;
  const std::string base = t.path() + "/base";
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  write_file(base + "/a\xff", "x");
  write_file(base + "/a\xfe", "y");
  write_file(base + "/caf\xc3\xa9", "z");  // valid UTF-8: sent
  auto tree = walk_sources({base});
  ASSERT_TRUE(tree) << tree.error().message();
  EXPECT_EQ(wire_paths(*tree), (std::vector<std::string>{"base", "base/caf\xc3\xa9"}));
  ASSERT_EQ(tree->skipped.size(), 2u);
  EXPECT_TRUE(skipped_mentions(*tree, "not valid UTF-8"));
}

// A PATH that is a symlink is ignored with a note (as rsync does), or followed with
// -L; a FIFO PATH is a usage error.
TEST(SourceTree, PathThatIsASymlinkIsIgnoredOrFollowed) {
  TempDir t;
  write_file(t.path() + "/real", "r");
  ASSERT_EQ(::mkdir((t.path() + "/dir").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("real", (t.path() + "/l").c_str()), 0);
  ASSERT_EQ(::symlink("dir", (t.path() + "/ld").c_str()), 0);
  for (const char* name : {"/l", "/ld"}) {
    auto tree = walk_sources({t.path() + "/real", t.path() + name});
    ASSERT_TRUE(tree) << name;
    EXPECT_EQ(wire_paths(*tree), (std::vector<std::string>{"real"}));
    EXPECT_TRUE(ignored_mentions(*tree, t.path() + name)) << name;
    auto followed = walk_sources({t.path() + name}, /*copy_links=*/true);
    ASSERT_TRUE(followed) << name;
    EXPECT_EQ(wire_paths(*followed), (std::vector<std::string>{std::string(name + 1)}));
  }
  ASSERT_EQ(::mkfifo((t.path() + "/fifo").c_str(), 0600), 0);
  auto fifo = walk_sources({t.path() + "/fifo"});
  ASSERT_FALSE(fifo);
  EXPECT_EQ(fifo.error().code, Errc::usage);
}

// --links: each symlink is an entry of its own with its target text, never followed
// (a link to a directory is not walked); a target that is not UTF-8 is skipped; -L wins.
TEST(SourceTree, LinksAreEntriesWithTheirTargetsAndCopyLinksWins) {
  TempDir t;
  const std::string base = t.path() + "/base";
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((base + "/sub").c_str(), 0755), 0);
  write_file(base + "/sub/f", "ff");
  ASSERT_EQ(::symlink("sub", (base + "/to_dir").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/nowhere", (base + "/dangling").c_str()), 0);
  ASSERT_EQ(::symlink("bad\xff", (base + "/non_utf8").c_str()), 0);
  auto tree = walk_sources({base}, /*copy_links=*/false, /*links=*/true);
  ASSERT_TRUE(tree) << tree.error().message();
  EXPECT_EQ(wire_paths(*tree),
            (std::vector<std::string>{"base", "base/dangling", "base/sub", "base/sub/f", "base/to_dir"}));
  const SourceEntry* to_dir = find(*tree, "base/to_dir");
  ASSERT_NE(to_dir, nullptr);
  EXPECT_EQ(to_dir->kind, EntryKind::symlink);
  EXPECT_EQ(to_dir->link_target, "sub");
  EXPECT_EQ(to_dir->size, 0u);
  EXPECT_EQ(find(*tree, "base/dangling")->link_target, "/nonexistent/nowhere");
  ASSERT_EQ(tree->skipped.size(), 1u);
  EXPECT_TRUE(skipped_mentions(*tree, "target is not valid UTF-8"));
  EXPECT_TRUE(tree->ignored.empty());
  // A symlink PATH is a link too; with -L as well, it is followed.
  auto path = walk_sources({base + "/to_dir"}, false, true);
  ASSERT_TRUE(path);
  ASSERT_EQ(path->entries.size(), 1u);
  EXPECT_EQ(path->entries[0].kind, EntryKind::symlink);
  auto both = walk_sources({base + "/to_dir"}, true, true);
  ASSERT_TRUE(both);
  EXPECT_EQ(wire_paths(*both), (std::vector<std::string>{"to_dir", "to_dir/f"}));
}

TEST(SourceTree, MissingPathIsAUsageError) {
  TempDir t;
  auto tree = walk_sources({t.path() + "/does-not-exist"});
  ASSERT_FALSE(tree);
  EXPECT_EQ(tree.error().code, Errc::usage);
  EXPECT_EQ(tree.error().sys_errno, ENOENT);
  EXPECT_NE(tree.error().message().find("does-not-exist"), std::string::npos);
}

TEST(SourceTree, UnnameablePathsAreUsageErrors) {
  TempDir t;
  for (std::string p : {std::string("/"), t.path() + "/.", t.path() + "/.."}) {
    auto tree = walk_sources({p});
    ASSERT_FALSE(tree) << p;
    EXPECT_EQ(tree.error().code, Errc::usage) << p;
  }
}

// Two PATHs with the same base name would land on one name on the receiver, the second
// silently replacing the first: refused up front.
TEST(SourceTree, SameBaseNameTwiceIsAUsageError) {
  TempDir t;
  for (const char* d : {"/x", "/y", "/y/f"}) ASSERT_EQ(::mkdir((t.path() + d).c_str(), 0755), 0);
  write_file(t.path() + "/x/f", "1");
  write_file(t.path() + "/x/g", "2");
  for (std::vector<std::string> paths : {std::vector<std::string>{t.path() + "/x/f", t.path() + "/y/f"},
                                         std::vector<std::string>{t.path() + "/x/f", t.path() + "/x/f"},
                                         std::vector<std::string>{t.path() + "/x", t.path() + "/x/"}}) {
    auto tree = walk_sources(paths);
    ASSERT_FALSE(tree) << paths[0] << " " << paths[1];
    EXPECT_EQ(tree.error().code, Errc::usage);
  }
  auto ok = walk_sources({t.path() + "/x/f", t.path() + "/x/g"});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(wire_paths(*ok), (std::vector<std::string>{"f", "g"}));
}

TEST(SourceTree, RestatSeesAChange) {
  TempDir t;
  const std::string p = t.path() + "/f";
  write_file(p, "abc");
  const timespec old_times[2] = {{0, UTIME_OMIT}, {1'500'000'000, 1}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), old_times, 0), 0);
  auto tree = walk_sources({p});
  ASSERT_TRUE(tree);
  const SourceEntry& e = tree->entries.at(0);
  auto same = restat_source(e);
  ASSERT_TRUE(same) << same.error().message();
  EXPECT_EQ(same->identity, e.identity);
  write_file(p, "abcd");
  auto changed = restat_source(e);
  ASSERT_TRUE(changed) << changed.error().message();
  EXPECT_EQ(changed->size, 4u);
  EXPECT_NE(changed->identity, e.identity);
  EXPECT_EQ(changed->wire_path, e.wire_path);
  ASSERT_EQ(::unlink(p.c_str()), 0);
  ASSERT_EQ(::symlink("/etc/passwd", p.c_str()), 0);
  auto link = restat_source(e);
  ASSERT_FALSE(link);
  EXPECT_EQ(link.error().code, Errc::local_io);
  ASSERT_EQ(::unlink(p.c_str()), 0);
  auto gone = restat_source(e);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::local_io);
}

TEST(SourceTree, IdentityChangesWithSizeAndMtime) {
  EXPECT_NE(source_identity(1, 2), source_identity(1, 3));
  EXPECT_NE(source_identity(1, 2), source_identity(2, 2));
  EXPECT_EQ(source_identity(1, 2), source_identity(1, 2));
}

}  // namespace
}  // namespace ferry
