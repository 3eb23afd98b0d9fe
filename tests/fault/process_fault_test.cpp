// Fault catalogue entries 7 and 10 (issue 3, docs/RELIABILITY.md): either process
// SIGKILLed at a seeded random point of a rate-limited transfer, then restarted, must
// resume to an identical file; and a source file that changes during the transfer
// (appended to, rewritten in place, rewritten with its old mtime put back) must never
// leave a mix of old and new bytes, or the old bytes, under the final name.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tests/fault/fault_harness.hpp"

namespace ferry::fault {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

// A seeded point between lo% and hi% of size.
std::uint64_t random_point(std::uint64_t seed, std::uint64_t size, unsigned lo, unsigned hi) {
  std::mt19937_64 rng(seed);
  return size * (lo + rng() % (hi - lo + 1)) / 100;
}

// ---------------------------------------------------------------------------
// 7. SIGKILL of either process at a random point; restart; resume.

TEST(Kill, SenderAtRandomPointRerunResumes) {
  for (std::uint64_t seed : {1u, 2u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Scratch s;
    const std::uint64_t size = 4 * kMiB;
    const auto src = s.random_file("src.bin", size, 200 + seed);
    auto recv = start_receiver(s, {"--once", "--idle-timeout", "60"});
    ASSERT_FALSE(recv.address.empty());
    auto proxy = start_proxy(s, recv.address, {"--up", "rate=4M"});
    ASSERT_FALSE(proxy.address.empty());
    Process send1(sender_spec(s, proxy.address, flow_args(), {src}, {}, "send1"));
    ASSERT_TRUE(wait_for_progress(s.at("send1.out"), random_point(seed, size, 20, 80), 30s, &send1)) << send1.err();
    send1.signal(SIGKILL);
    ASSERT_EQ(send1.wait(5s), std::optional<int>(128 + SIGKILL));
    const std::uint64_t acked = last_progress(s.at("send1.out"));
    // Rerun (straight to the receiver): it resumes from the receiver's verified offset,
    // which is at least what the first run saw acknowledged.
    auto r = run_sender(s, recv.address, flow_args(), src, {}, "send2");
    ASSERT_EQ(r.exit_code, 0) << r.diagnostics();
    ASSERT_EQ(recv.proc.wait(15s), std::optional<int>(0)) << recv.proc.err();
    stop_proxy(proxy, s);
    expect_delivered(s, "src.bin", src);
    EXPECT_GT(acked, 0u);
    EXPECT_LE(r.total("bytes_payload"), size - acked) << "acknowledged bytes were sent again\n" << r.diagnostics();
  }
}

TEST(Kill, ReceiverAtRandomPointRestartResumes) {
  for (std::uint64_t seed : {1u, 2u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Scratch s;
    const std::uint64_t size = 6 * kMiB;
    const auto src = s.random_file("src.bin", size, 210 + seed);
    auto recv1 = start_receiver(s, {}, {}, "recv1");
    ASSERT_FALSE(recv1.address.empty());
    auto proxy = start_proxy(s, recv1.address, {"--up", "rate=3M"});
    ASSERT_FALSE(proxy.address.empty());
    Process send(sender_spec(s, proxy.address, flow_args(kWindow, kChunk, "2"), {src}));
    // After the receiver's first journal save (once a second), before the end.
    ASSERT_TRUE(wait_for_progress(s.at("send.out"), random_point(seed, size, 60, 85), 30s, &send)) << send.err();
    recv1.proc.signal(SIGKILL);
    ASSERT_EQ(recv1.proc.wait(5s), std::optional<int>(128 + SIGKILL));
    // Restarted on the same address and DEST; the running sender redials and resumes.
    auto recv2 = start_receiver(s, {"--once", "--idle-timeout", "60"}, {}, "recv2", recv1.address);
    ASSERT_FALSE(recv2.address.empty());
    auto r = finish_sender(send);
    ASSERT_EQ(r.exit_code, 0) << r.diagnostics();
    ASSERT_EQ(recv2.proc.wait(15s), std::optional<int>(0)) << recv2.proc.err();
    stop_proxy(proxy, s);
    expect_delivered(s, "src.bin", src);
    EXPECT_GE(r.total("reconnects"), 1u) << r.diagnostics();
    std::uint64_t resumed_at = 0;
    for (const auto& j : json_lines(s.at("send.out"))) {
      if (j.value("event", "") == "resume") resumed_at = std::max(resumed_at, j.value("offset", std::uint64_t{0}));
    }
    EXPECT_GT(resumed_at, 0u) << "the restarted receiver should resume from its journal\n" << r.diagnostics();
    // Re-sent: at most what the killed receiver had written since its last journal save.
    EXPECT_LE(r.total("bytes_payload"), 2 * size) << r.diagnostics();
  }
}

// ---------------------------------------------------------------------------
// 10. The source changes during the transfer: never a mix under the final name.

class SourceChange : public ::testing::TestWithParam<const char*> {};

TEST_P(SourceChange, NeverAMixUnderTheFinalName) {
  const std::string how = GetParam();
  Scratch s;
  const std::uint64_t size = 2 * kMiB;
  const auto src = s.random_file("src.bin", size, 300);
  const auto fresh = s.random_file("fresh.bin", size, 301);  // the new content
  auto recv = start_receiver(s, {"--once", "--idle-timeout", "60"});
  ASSERT_FALSE(recv.address.empty());
  auto proxy = start_proxy(s, recv.address, {"--up", "rate=1M"});
  ASSERT_FALSE(proxy.address.empty());
  Process send(sender_spec(s, proxy.address, flow_args(kWindow, kChunk, "5"), {src}));
  ASSERT_TRUE(wait_for_progress(s.at("send.out"), size / 3, 30s, &send)) << send.err();
  {
    // Change it in place (same inode, which the sender holds open).
    struct stat before{};
    ASSERT_EQ(::stat(src.c_str(), &before), 0);
    const std::string bytes = read_text(fresh);
    int fd = ::open(src.c_str(), how == "append" ? O_WRONLY | O_APPEND : O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string data = how == "append" ? bytes.substr(0, 100 * 1024) : bytes;
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    if (how == "rewrite_keep_mtime") {
      // Same size, and the old mtime put back (as `touch -r` or an in-place copy
      // that preserves times would): only the ctime tells.
      const timespec times[2] = {before.st_atim, before.st_mtim};
      ASSERT_EQ(::futimens(fd, times), 0);
    }
    ::close(fd);
  }
  auto r = finish_sender(send);
  ASSERT_NE(r.exit_code, -1) << r.diagnostics();
  const std::string final_path = s.dest() + "/src.bin";
  if (::access(final_path.c_str(), F_OK) == 0) {
    EXPECT_TRUE(same_content(final_path, src))
        << "the file under the final name is not the source's new content (a mix, or the old one)\n"
        << r.diagnostics();
  }
  if (r.exit_code == 0) {
    EXPECT_EQ(recv.proc.wait(15s), std::optional<int>(0)) << recv.proc.err();
    expect_delivered(s, "src.bin", src);
  } else {
    expect_not_delivered(s, "src.bin");
    EXPECT_NE(r.err.find("src.bin"), std::string::npos) << "the failure should name the file\n" << r.diagnostics();
  }
  stop_proxy(proxy, s);
}

INSTANTIATE_TEST_SUITE_P(Fault, SourceChange, ::testing::Values("append", "rewrite", "rewrite_keep_mtime"),
                         [](const auto& p) { return std::string(p.param); });

}  // namespace
}  // namespace ferry::fault
