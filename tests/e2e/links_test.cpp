// End-to-end: `ferry-send --links` (issue #12, protocol version 4) against the real
// executables. A tree with relative, absolute and dangling links and a link to a
// directory arrives as links with the very same targets (readlink), exit 0; a second
// run finds them in place; a symlink PATH is sent as a link; -L wins over --links; a
// file in DEST at a link's name is replaced by the link, a directory is not (that
// entry is refused); `ferry-recv --no-links` refuses every link and `--safe-links` the
// absolute and escaping ones, the files still arriving (exit 7: partial). Without
// --links links are skipped (tests/e2e/ux_test.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

// The text of the symlink at `path`, or "" when it is not a symlink.
std::string read_link(const std::string& path) {
  char buf[8192];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<std::size_t>(n));
}

bool is_link(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class Links : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text_file(t_ / "src/tree/a", "aaa");
    write_text_file(t_ / "src/tree/sub/b", "bb");
    link("a", "src/tree/rel");
    link(t_ / "src/tree/a", "src/tree/abs");
    link("/nonexistent/nowhere", "src/tree/sub/dangling");
    link("sub", "src/tree/dirlink");
    link("../../../x/./y//z", "src/tree/sub/odd");
  }
  void link(const std::string& target, const std::string& rel) {
    ASSERT_EQ(::symlink(target.c_str(), (t_ / rel).c_str()), 0) << rel;
  }
  // Sends `args` to a --once receiver started with `recv_args` before DEST; returns
  // the sender, ended.
  std::unique_ptr<Process> send(const std::vector<std::string>& args, const std::vector<std::string>& recv_args = {},
                                int recv_exit = 0) {
    std::vector<std::string> ra = recv_args;
    ra.insert(ra.end(), {"--once", t_ / "dest"});
    Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", ra);
    std::vector<std::string> argv{kSendBin, "--connect", r.address};
    argv.insert(argv.end(), args.begin(), args.end());
    auto s = Process::start(argv, t_.path(), "send");
    (void)s->wait();
    if (recv_exit == 0) {
      EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
    } else {
      r.proc->signal(SIGTERM);  // a partial transfer does not end a --once receiver
      (void)r.proc->wait();
    }
    return s;
  }
  void expect_links_as_sent() {
    for (const char* rel : {"tree/rel", "tree/abs", "tree/sub/dangling", "tree/dirlink", "tree/sub/odd"}) {
      SCOPED_TRACE(rel);
      EXPECT_TRUE(is_link(t_ / "dest/" + rel));
      EXPECT_EQ(read_link(t_ / "dest/" + rel), read_link(t_ / "src/" + rel));
    }
  }
  TempDir t_;
};

TEST_F(Links, ATreeArrivesWithItsLinksAsLinksAndASecondRunChangesNothing) {
  auto s = send({"--links", t_ / "src/tree"});
  ASSERT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  expect_links_as_sent();
  EXPECT_EQ(compare_files(t_ / "src/tree/a", t_ / "dest/tree/a"), "");
  EXPECT_EQ(compare_files(t_ / "src/tree/sub/b", t_ / "dest/tree/sub/b"), "");
  EXPECT_EQ(ferry_leftovers(t_ / "dest"), std::vector<std::string>{});
  EXPECT_FALSE(contains(s->stderr_text(), "skipped")) << s->describe();

  struct stat before{};
  ASSERT_EQ(::lstat((t_ / "dest/tree/rel").c_str(), &before), 0);
  auto again = send({"--links", t_ / "src/tree"});
  ASSERT_EQ(again->wait(), ExitStatus::exited_with(0)) << again->describe();
  struct stat after{};
  ASSERT_EQ(::lstat((t_ / "dest/tree/rel").c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino) << "an identical link is left in place";
  expect_links_as_sent();
}

TEST_F(Links, ASymlinkPathIsSentAsALinkAndCopyLinksWins) {
  auto s = send({"-l", t_ / "src/tree/rel", t_ / "src/tree/sub/dangling"});
  ASSERT_EQ(s->wait(), ExitStatus::exited_with(0)) << s->describe();
  EXPECT_EQ(read_link(t_ / "dest/rel"), "a");
  EXPECT_EQ(read_link(t_ / "dest/dangling"), "/nonexistent/nowhere");

  auto both = send({"--links", "-L", t_ / "src/tree/abs"});
  ASSERT_EQ(both->wait(), ExitStatus::exited_with(0)) << both->describe();
  EXPECT_FALSE(is_link(t_ / "dest/abs")) << "-L wins: what the link points to is sent";
  EXPECT_EQ(compare_files(t_ / "src/tree/a", t_ / "dest/abs"), "");
}

TEST_F(Links, AFileInTheWayIsReplacedADirectoryIsNot) {
  write_text_file(t_ / "dest/tree/rel", "an older file");
  make_dirs(t_ / "dest/tree/abs/inside");
  auto s = send({"--links", t_ / "src/tree"}, {}, 7);
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(7)) << s->describe();
  EXPECT_EQ(read_link(t_ / "dest/tree/rel"), "a") << "the file at the name was replaced";
  EXPECT_FALSE(is_link(t_ / "dest/tree/abs"));
  EXPECT_TRUE(exists_nofollow(t_ / "dest/tree/abs/inside")) << "a directory in the way is left alone";
  EXPECT_TRUE(contains(s->stderr_text(), "directory is in the way")) << s->describe();
  EXPECT_EQ(read_link(t_ / "dest/tree/dirlink"), "sub");
  EXPECT_EQ(ferry_leftovers(t_ / "dest"), std::vector<std::string>{});
}

TEST_F(Links, NoLinksRefusesEveryLinkAndSafeLinksTheEscapingOnes) {
  auto s = send({"--links", t_ / "src/tree"}, {"--no-links"}, 7);
  EXPECT_EQ(s->wait(), ExitStatus::exited_with(7)) << s->describe();
  EXPECT_TRUE(contains(s->stderr_text(), "--no-links")) << s->describe();
  EXPECT_EQ(compare_files(t_ / "src/tree/sub/b", t_ / "dest/tree/sub/b"), "");
  for (const char* rel : {"tree/rel", "tree/abs", "tree/sub/dangling", "tree/dirlink", "tree/sub/odd"}) {
    EXPECT_FALSE(exists_nofollow(t_ / "dest/" + rel)) << rel;
  }

  auto safe = send({"--links", t_ / "src/tree"}, {"--safe-links"}, 7);
  EXPECT_EQ(safe->wait(), ExitStatus::exited_with(7)) << safe->describe();
  EXPECT_EQ(read_link(t_ / "dest/tree/rel"), "a");
  EXPECT_EQ(read_link(t_ / "dest/tree/dirlink"), "sub");
  EXPECT_FALSE(exists_nofollow(t_ / "dest/tree/abs")) << "absolute";
  EXPECT_FALSE(exists_nofollow(t_ / "dest/tree/sub/dangling")) << "absolute";
  EXPECT_FALSE(exists_nofollow(t_ / "dest/tree/sub/odd")) << "climbs out of DEST";
}

}  // namespace
}  // namespace ferry::e2e
