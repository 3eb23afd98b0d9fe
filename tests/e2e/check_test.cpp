// ferry-send --check and --dry-run (protocol version 4) against the real executables:
// what they report for identical trees, a changed byte, a missing file, an extra one
// (--check-extra) and a receiver holding a partial, their exit codes, and that the
// receiver's DEST is left exactly as it was in every case (every entry's path, size,
// mtime and inode, compared before and after).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

namespace fs = std::filesystem;

constexpr Millis kRunLimit = 60s;

// Every entry below `dir` (hidden ones too): size, mtime in nanoseconds, inode.
using Snapshot = std::map<std::string, std::tuple<std::uint64_t, std::int64_t, std::uint64_t>>;
Snapshot snapshot(const std::string& dir) {
  Snapshot out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0) continue;
    out[fs::relative(e.path(), dir).string()] = {static_cast<std::uint64_t>(st.st_size),
                                                 st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
                                                 static_cast<std::uint64_t>(st.st_ino)};
  }
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The journal's contiguous verified point (0 when absent or unreadable yet).
std::uint64_t journal_verified(const std::string& path) {
  const auto j = nlohmann::json::parse(read_all(path), nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("verified") && j["verified"].is_number_unsigned()
             ? j["verified"].get<std::uint64_t>()
             : 0;
}

struct SendRun {
  std::unique_ptr<Process> send;
  std::vector<nlohmann::json> events;
};

class Check : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text_file(t_ / "src/tree/a.txt", "alpha\n");
    write_random_file(t_ / "src/tree/sub/b.bin", 300'000, 7);
    make_dirs(t_ / "src/tree/empty");
    make_dirs(t_ / "dest");
  }

  // A plain transfer of src/tree into dest.
  void copy(const std::vector<std::string>& args = {}) {
    Receiver r = start_receiver(t_.path(), "recv-copy", "127.0.0.1:0", {"--once", t_ / "dest"});
    std::vector<std::string> argv{kSendBin, "--connect", r.address};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(t_ / "src/tree");
    auto send = Process::start(argv, t_.path(), "send-copy");
    ASSERT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(0)) << send->describe();
    ASSERT_EQ(r.proc->wait(kRunLimit), ExitStatus::exited_with(0)) << r.proc->describe();
  }

  // ferry-send with `args` (--check or --dry-run ...) and --json against a fresh
  // receiver on dest; DEST must be unchanged afterwards.
  SendRun inspect(const std::vector<std::string>& args, int expected_exit) {
    const Snapshot before = snapshot(t_ / "dest");
    Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", t_ / "dest"});
    std::vector<std::string> argv{kSendBin, "--json", "--connect", r.address};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(t_ / "src/tree");
    SendRun run{Process::start(argv, t_.path(), "send"), {}};
    EXPECT_EQ(run.send->wait(kRunLimit), ExitStatus::exited_with(expected_exit)) << run.send->describe();
    EXPECT_EQ(r.proc->wait(kRunLimit), ExitStatus::exited_with(0)) << r.proc->describe();
    run.events = run.send->json_events();
    EXPECT_EQ(snapshot(t_ / "dest"), before) << "DEST changed\n" << r.proc->describe();
    return run;
  }

  // The result each entry_checked (or entry_planned) event gives, by path.
  static std::map<std::string, std::string> results(const SendRun& run, const std::string& type) {
    std::map<std::string, std::string> out;
    for (const auto& e : run.events) {
      if (e.value("event", "") == type) out[e.value("path", "")] = e.value("detail", "");
    }
    return out;
  }

  TempDir t_;
};

TEST_F(Check, IdenticalTreesExitZero) {
  copy();
  SendRun run = inspect({"--check"}, 0);
  const std::map<std::string, std::string> want{{"tree", "identical"},
                                                {"tree/a.txt", "identical"},
                                                {"tree/empty", "identical"},
                                                {"tree/sub", "identical"},
                                                {"tree/sub/b.bin", "identical"}};
  EXPECT_EQ(results(run, "entry_checked"), want) << run.send->describe();
  const auto* end = find_event(run.events, "session_end");
  ASSERT_NE(end, nullptr);
  EXPECT_EQ((*end)["check"]["identical"], 5);
  EXPECT_EQ((*end)["totals"]["bytes_payload"], 0) << "a check sends no file data";
}

TEST_F(Check, ChangedByteMissingFileAndExtraFile) {
  copy();
  // Same size, one byte changed, mtime as it was: only the digests tell.
  const std::string b = t_ / "dest/tree/sub/b.bin";
  struct stat st {};
  ASSERT_EQ(::stat(b.c_str(), &st), 0);
  {
    std::fstream f(b, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(150'000);
    f.put('\x5a' ^ static_cast<char>(read_all(b)[150'000]));
  }
  const timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, b.c_str(), times, 0), 0);
  fs::remove(t_ / "dest/tree/a.txt");
  write_text_file(t_ / "dest/tree/sub/only-here.txt", "extra\n");

  SendRun run = inspect({"--check", "--check-extra"}, 10);
  auto got = results(run, "entry_checked");
  EXPECT_EQ(got["tree/sub/b.bin"], "different") << run.send->describe();
  EXPECT_EQ(got["tree/a.txt"], "missing");
  EXPECT_EQ(got["tree/sub/only-here.txt"], "extra");
  EXPECT_EQ(got["tree/empty"], "identical");
  const auto* diff = find_event(run.events, "entry_checked", "tree/sub/b.bin");
  ASSERT_NE(diff, nullptr);
  EXPECT_EQ((*diff)["reason"], "content");

  // Without --check-extra the extra file is not looked for: the same run says 2.
  SendRun plain = inspect({"--check"}, 10);
  EXPECT_EQ(results(plain, "entry_checked").count("tree/sub/only-here.txt"), 0u);
}

TEST_F(Check, HumanOutputItemizesAndSums) {
  copy();
  fs::remove(t_ / "dest/tree/a.txt");
  Receiver r = start_receiver(t_.path(), "recv", "127.0.0.1:0", {"--once", t_ / "dest"});
  auto send = Process::start({kSendBin, "--check", "--connect", r.address, t_ / "src/tree"}, t_.path(), "send");
  EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(10)) << send->describe();
  EXPECT_EQ(r.proc->wait(kRunLimit), ExitStatus::exited_with(0)) << r.proc->describe();
  const std::string err = send->stderr_text();
  EXPECT_NE(err.find("ferry-send: missing   tree/a.txt\n"), std::string::npos) << err;
  EXPECT_NE(err.find("ferry-send: 4 identical, 0 different, 1 missing\n"), std::string::npos) << err;
  EXPECT_EQ(err.find("identical tree"), std::string::npos) << "identical entries are listed with -v only\n" << err;
}

// A receiver killed mid-file keeps a partial and its journal: --check says "partial"
// and --dry-run "resume" at a non-zero offset, and neither touches them.
TEST_F(Check, PartialOnTheReceiverIsNeverIdenticalAndIsLeftAlone) {
  write_random_file(t_ / "src/tree/big.bin", 24 * 1024 * 1024, 11);
  const std::string journal = t_ / "dest/tree/.big.bin.ferry-journal";
  {
    Receiver r = start_receiver(t_.path(), "recv-killed", "127.0.0.1:0", {"--once", t_ / "dest"});
    auto send = Process::start({kSendBin, "--connect", r.address, "--retries", "0", "--bwlimit", "4M", t_ / "src/tree"},
                               t_.path(), "send-cut");
    const bool journaled = wait_until([&] { return journal_verified(journal) > 0 || !send->running(); }, kRunLimit);
    ASSERT_TRUE(journaled && send->running()) << send->describe() << r.proc->describe();
    ASSERT_EQ(r.proc->kill_now(), ExitStatus::killed_by(SIGKILL));
    (void)send->wait(kRunLimit);
  }
  const std::string part = t_ / "dest/tree/.big.bin.ferry-part";
  ASSERT_TRUE(exists_nofollow(part));
  const std::string part_bytes = read_all(part), journal_bytes = read_all(journal);

  SendRun check = inspect({"--check"}, 10);
  EXPECT_EQ(results(check, "entry_checked")["tree/big.bin"], "partial") << check.send->describe();
  SendRun plan = inspect({"--dry-run"}, 0);
  const auto* big = find_event(plan.events, "entry_planned", "tree/big.bin");
  ASSERT_NE(big, nullptr) << plan.send->describe();
  EXPECT_EQ((*big)["detail"], "resume");
  EXPECT_GT((*big)["offset"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(read_all(part), part_bytes);
  EXPECT_EQ(read_all(journal), journal_bytes);
}

TEST_F(Check, DryRunOnAFreshDestSendsEverythingAndWritesNothing) {
  SendRun run = inspect({"--dry-run"}, 0);
  const std::map<std::string, std::string> want{{"tree", "create"},
                                                {"tree/a.txt", "send"},
                                                {"tree/empty", "create"},
                                                {"tree/sub", "create"},
                                                {"tree/sub/b.bin", "send"}};
  EXPECT_EQ(results(run, "entry_planned"), want) << run.send->describe();
  EXPECT_TRUE(list_dir(t_ / "dest").empty());
  const auto* end = find_event(run.events, "session_end");
  ASSERT_NE(end, nullptr);
  EXPECT_EQ((*end)["dry_run"]["bytes"], 300'006);
}

TEST_F(Check, DryRunOnACompleteCopySkipsEverything) {
  copy();
  SendRun run = inspect({"-n"}, 0);
  const std::map<std::string, std::string> want{{"tree", "exists"},
                                                {"tree/a.txt", "complete"},
                                                {"tree/empty", "exists"},
                                                {"tree/sub", "exists"},
                                                {"tree/sub/b.bin", "complete"}};
  EXPECT_EQ(results(run, "entry_planned"), want) << run.send->describe();
}

// --check --links compares a link by its text (never following it); -n --links says
// whether a transfer would make it.
TEST_F(Check, LinksAreComparedByTheirText) {
  ASSERT_EQ(::symlink("a.txt", (t_ / "src/tree/ln").c_str()), 0);
  copy({"--links"});
  SendRun same = inspect({"--check", "--links"}, 0);
  EXPECT_EQ(results(same, "entry_checked")["tree/ln"], "identical") << same.send->describe();
  EXPECT_EQ(results(inspect({"-n", "--links"}, 0), "entry_planned")["tree/ln"], "exists");
  ASSERT_EQ(::unlink((t_ / "dest/tree/ln").c_str()), 0);
  ASSERT_EQ(::symlink("sub/b.bin", (t_ / "dest/tree/ln").c_str()), 0);
  SendRun moved = inspect({"--check", "--links"}, 10);
  EXPECT_EQ(results(moved, "entry_checked")["tree/ln"], "different") << moved.send->describe();
  bool target_reason = false;
  for (const auto& e : moved.events) {
    target_reason |= e.value("path", "") == "tree/ln" && e.value("reason", "") == "target";
  }
  EXPECT_TRUE(target_reason) << moved.send->describe();
  EXPECT_EQ(results(inspect({"-n", "--links"}, 0), "entry_planned")["tree/ln"], "create");
}

TEST_F(Check, OverStdioCarrier) {
  copy();
  const std::string cmd = kRecvBin + " --stdio " + (t_ / "dest");
  auto send = Process::start({kSendBin, "--check", "--json", "-e", cmd, t_ / "src/tree"}, t_.path(), "send");
  EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(0)) << send->describe();
  EXPECT_EQ(results(SendRun{nullptr, send->json_events()}, "entry_checked").size(), 5u);
}

// HOST:DIR: through a stand-in ssh on PATH that runs the command here.
TEST_F(Check, OverHostDirThroughSsh) {
  copy();
  fs::remove(t_ / "dest/tree/a.txt");
  make_dirs(t_ / "bin");
  write_text_file(t_ / "bin/ssh", "#!/bin/sh\nshift\nexec /bin/sh -c \"$*\"\n");
  ASSERT_EQ(::chmod((t_ / "bin/ssh").c_str(), 0755), 0);
  const char* old = std::getenv("PATH");
  const Snapshot before = snapshot(t_ / "dest");
  auto send =
      Process::start({"/usr/bin/env", "PATH=" + t_ / "bin" + ":" + (old ? old : "/usr/bin:/bin"), kSendBin, "--check",
                      "--json", "--remote-ferry-recv", kRecvBin, t_ / "src/tree", "host:" + t_ / "dest"},
                     t_.path(), "send");
  EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(10)) << send->describe();
  auto got = results(SendRun{nullptr, send->json_events()}, "entry_checked");
  EXPECT_EQ(got["tree/a.txt"], "missing") << send->describe();
  EXPECT_EQ(got["tree/sub/b.bin"], "identical");
  EXPECT_EQ(snapshot(t_ / "dest"), before);
}

// The receiver HOST:DIR starts for a check runs with --inspect-only: a DEST that does
// not exist is not created, an old stale partial in DEST is not removed, and the same
// receiver started that way refuses a transfer.
TEST_F(Check, HostDirCheckLeavesDestAsItIs) {
  make_dirs(t_ / "bin");
  write_text_file(t_ / "bin/ssh", "#!/bin/sh\nshift\nexec /bin/sh -c \"$*\"\n");
  ASSERT_EQ(::chmod((t_ / "bin/ssh").c_str(), 0755), 0);
  const char* old = std::getenv("PATH");
  const std::string path = "PATH=" + t_ / "bin" + ":" + (old ? old : "/usr/bin:/bin");
  auto check = [&](const std::string& dest, int want) {
    auto send = Process::start({"/usr/bin/env", path, kSendBin, "--check", "--remote-ferry-recv", kRecvBin,
                                t_ / "src/tree", "host:" + dest},
                               t_.path(), "send");
    EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(want)) << send->describe();
  };
  check(t_ / "absent", 9);  // the receiver cannot start: DEST is not there
  EXPECT_FALSE(fs::exists(t_ / "absent")) << "a check created DEST";
  write_text_file(t_ / "dest/.old.ferry-part", "left from a week ago");
  const timespec old_times[2] = {{0, UTIME_OMIT}, {1'000'000'000, 0}};  // 2001
  ASSERT_EQ(::utimensat(AT_FDCWD, (t_ / "dest/.old.ferry-part").c_str(), old_times, 0), 0);
  const Snapshot before = snapshot(t_ / "dest");
  check(t_ / "dest", 10);  // all missing
  EXPECT_EQ(snapshot(t_ / "dest"), before) << "a check removed a stale partial";
  auto transfer = Process::start(
      {kSendBin, "-e", std::string(kRecvBin) + " --stdio --inspect-only " + (t_ / "dest"), t_ / "src/tree"}, t_.path(),
      "transfer");
  EXPECT_EQ(transfer->wait(kRunLimit), ExitStatus::exited_with(4)) << transfer->describe();
  EXPECT_NE(transfer->stderr_text().find("--inspect-only"), std::string::npos) << transfer->describe();
  EXPECT_EQ(snapshot(t_ / "dest"), before);
}

TEST_F(Check, CheckAndDryRunTogetherAreAUsageError) {
  auto send =
      Process::start({kSendBin, "--check", "-n", "--connect", "127.0.0.1:1", t_ / "src/tree"}, t_.path(), "send");
  EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(2)) << send->describe();
}

}  // namespace
}  // namespace ferry::e2e
