// Tests lib/fs/fd_io: the owners close what they hold (and only that), keep errno when
// they close, move ownership; open_dir_fd refuses a symlink when asked; write_all,
// read_some and pread_full move every byte and name the file in their errors; the stat
// times are nanoseconds.
#include "lib/fs/fd_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace ferry {
namespace {

using test::read_file;
using test::TempDir;
using test::write_file;

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

TEST(UniqueFd, ClosesOnceAndKeepsErrno) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(fd);
    EXPECT_EQ(fd.get(), raw);
    errno = EACCES;
  }
  EXPECT_EQ(errno, EACCES);  // closing did not change it
  EXPECT_FALSE(is_open(raw));
  EXPECT_FALSE(UniqueFd());
}

TEST(UniqueFd, MovesReleasesAndResets) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw = a.get();
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(is_open(raw));
  const int other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  c.reset(other);  // closes the old one, holds the new one
  EXPECT_FALSE(is_open(raw));
  EXPECT_EQ(c.release(), other);
  EXPECT_FALSE(c);
  EXPECT_TRUE(is_open(other));  // released: the caller closes it
  ::close(other);
}

TEST(OpenDirFd, RefusesASymlinkWhenAsked) {
  TempDir t;
  ASSERT_EQ(::mkdir((t.path() + "/d").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("d", (t.path() + "/link").c_str()), 0);
  write_file(t.path() + "/file", "x");
  UniqueFd base = open_dir_fd(AT_FDCWD, t.path(), Symlinks::refuse);
  ASSERT_TRUE(base);
  EXPECT_TRUE(open_dir_fd(base.get(), "d", Symlinks::refuse));
  EXPECT_TRUE(open_dir_fd(base.get(), "link", Symlinks::follow));
  UniqueFd refused = open_dir_fd(base.get(), "link", Symlinks::refuse);
  EXPECT_FALSE(refused);
  EXPECT_TRUE(errno == ELOOP || errno == ENOTDIR) << errno;
  EXPECT_FALSE(open_dir_fd(base.get(), "file", Symlinks::follow));
  EXPECT_EQ(errno, ENOTDIR);
}

TEST(OpenDirStream, OwnsTheDescriptorOrClosesIt) {
  TempDir t;
  UniqueDir d = open_dir_stream(open_dir_fd(AT_FDCWD, t.path(), Symlinks::follow));
  ASSERT_TRUE(d);
  EXPECT_TRUE(is_open(d.fd()));
  const int raw = d.fd();
  d.reset();
  EXPECT_FALSE(is_open(raw));
  EXPECT_FALSE(open_dir_stream(UniqueFd()));  // fdopendir(-1): EBADF
  EXPECT_EQ(errno, EBADF);
}

TEST(WriteAll, WritesEveryByteAndReadsBack) {
  TempDir t;
  const std::string path = t.path() + "/f";
  std::string text(3 << 20, 'a');
  for (std::size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('0' + i % 10);
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(write_all(fd.get(), text, "f"));
  }
  EXPECT_EQ(read_file(path), text);

  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string back;
  std::vector<std::byte> buf(100'000);
  for (;;) {
    auto n = read_some(fd.get(), buf, "f");
    ASSERT_TRUE(n);
    if (*n == 0) break;
    back.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  EXPECT_EQ(back, text);

  auto at = pread_full(fd.get(), buf.data(), 10, text.size() - 4, "f");  // 4 bytes before the end
  ASSERT_TRUE(at);
  EXPECT_EQ(*at, 4u);
}

TEST(WriteAll, NamesTheFileInErrors) {
  UniqueFd ro(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto w = write_all(ro.get(), "x", "shown/name");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::local_io);
  EXPECT_EQ(w.error().what, "write(shown/name)");
  EXPECT_EQ(w.error().sys_errno, EBADF);
  std::byte b[4];
  UniqueFd wo(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  auto r = read_some(wo.get(), b, "other");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, "read(other)");
  auto p = pread_full(wo.get(), b, sizeof b, 0, "third");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().what, "read(third)");
  EXPECT_TRUE(write_all(-1, "", "nothing to write"));
}

TEST(StatTimes, AreNanosecondsSinceTheEpoch) {
  struct stat st {};
  st.st_mtim = {1'700'000'000, 123'456'789};
  st.st_ctim = {2, 5};
  EXPECT_EQ(mtime_ns(st), 1'700'000'000'123'456'789);
  EXPECT_EQ(ctime_ns(st), 2'000'000'005);
}

}  // namespace
}  // namespace ferry
