// End-to-end trees of many files with the real executables (issue #10, "Tests"): what
// ferry promises for a tree, whatever the mechanism that moves it.
//
// - A tree of kSmallFiles small files (0..8 KiB of random bytes, in ~110 directories,
//   some nested 3 deep, empty directories among them, varied modes and mtimes) and three
//   large files arrives identical: the same paths (directories, empty ones too), bytes,
//   file modes and file mtimes (to the nanosecond), and nothing else.
// - kill -9 of the receiver, or of the sender, in the middle of such a tree: a rerun
//   completes it and sends no file twice in full. From the first run's `file_verified`
//   events (both sides) we know which files were already in place; the rerun's
//   `session_end` totals.bytes_payload must not exceed the bytes of the others plus
//   one small file in flight.
// - kill -9 of the receiver at several moments of a transfer of kCrashTreeFiles files:
//   after each, every regular file under a final name in DEST is byte-identical to its
//   source (no short, empty or mixed file is ever visible under its real name); then a
//   rerun completes the tree.
//
// Directory modes and mtimes are not compared: the receiver creates directories with
// mode 0755 and does not apply a directory OFFER's mode or mtime (docs/PROTOCOL.md,
// section 8).
//
// The counts are single constants below: today's ferry moves about 750 small files/s;
// a faster ferry may raise kSmallFiles. A rate-limited relay stretches the runs that are
// killed so the kill lands mid-tree however fast ferry becomes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/process.hpp"
#include "tests/e2e/relay.hpp"

namespace ferry::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;

// The tree of the identity and kill tests: 10,000 small files, as issue #10 asks
// (protocol version 3 sends them eagerly and commits them in batches; version 2 took
// 129 s for them on a loaded 2-core machine). Under ASan both ends and the test itself
// run many times slower (a case took 235-300 s on a loaded machine), so the sanitizer
// build checks the same promises on 2,000.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kSmallFiles = 2'000;
#else
constexpr int kSmallFiles = 10'000;
#endif
// The tree of the crash-visibility test, and when each run is killed: once the
// receiver's file_verified count of regular files (a rerun's includes the files it finds
// already in place; directories are not counted) has grown by this share of the files not yet in place (at least 1), each after
// a short extra delay so that some kills land between events. Relative, because a
// receiver commits small files in batches of up to 512: the count moves in jumps, and a
// loaded machine makes them larger.
constexpr int kCrashTreeFiles = 2000;
constexpr double kCrashShares[] = {0.025, 0.15, 0.35};
constexpr Millis kCrashDelays[] = {0ms, 4ms, 15ms};

constexpr std::uint64_t kMaxSmallSize = 8 * kKiB;
constexpr int kTopDirs = 10;                     // tree/d00 .. d09
constexpr int kSubDirs = 8;                      // tree/dNN/s0 .. s7
constexpr std::uint64_t kRelayRate = 32 * kMiB;  // bytes/s, for the runs that are killed
constexpr Millis kRunLimit = 150s;               // any one ferry process in these tests

// What the tree holds, by wire path ("tree/d00/s1/f00042.txt").
struct Tree {
  std::string src_root;  // DIR/src/tree: the sender's PATH argument
  std::string src, dest;
  std::map<std::string, std::uint64_t> files;  // regular files and their sizes
  std::size_t entries = 0;                     // files and directories, tree itself included
  std::uint64_t bytes = 0;
};

struct FileMeta {
  mode_t mode = 0644;
  timespec mtime{};
};

// Writes `size` bytes of `rng` to a new file, then sets its mode and mtime.
void write_small_file(const std::string& path, std::uint64_t size, const FileMeta& meta, std::mt19937_64& rng) {
  std::vector<std::uint64_t> words((size + 7) / 8);
  for (auto& w : words) w = rng();
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw std::runtime_error("cannot create " + path);
  const char* p = reinterpret_cast<const char*>(words.data());
  for (std::uint64_t done = 0; done < size;) {
    const ssize_t n = ::write(fd.get(), p + done, size - done);
    if (n <= 0) throw std::runtime_error("cannot write " + path);
    done += static_cast<std::uint64_t>(n);
  }
  const timespec times[2] = {meta.mtime, meta.mtime};
  if (::fchmod(fd.get(), meta.mode) != 0 || ::futimens(fd.get(), times) != 0) {
    throw std::runtime_error("cannot set mode or mtime of " + path);
  }
}

void set_meta(const std::string& path, const FileMeta& meta) {
  const timespec times[2] = {meta.mtime, meta.mtime};
  if (::chmod(path.c_str(), meta.mode) != 0 || ::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
    throw std::runtime_error("cannot set mode or mtime of " + path);
  }
}

// Varied modes (all readable by their owner) and mtimes between 2001 and 2025 with
// nanoseconds (some whole seconds).
FileMeta random_meta(int i, std::mt19937_64& rng) {
  static constexpr mode_t kModes[] = {0644, 0600, 0755, 0700, 0640, 0444, 0555, 0604, 0750, 0664};
  FileMeta m;
  m.mode = kModes[static_cast<std::size_t>(i) % std::size(kModes)];
  m.mtime.tv_sec = static_cast<time_t>(1000000000 + rng() % 750000000);
  m.mtime.tv_nsec = i % 5 == 0 ? 0 : static_cast<long>(rng() % 1000000000);
  return m;
}

// Sizes 0..8 KiB, with the edges (0, 1, 4095, 4096, 8192) among them.
std::uint64_t small_size(int i, std::mt19937_64& rng) {
  static constexpr std::uint64_t kEdges[] = {0, 1, 4095, 4096, kMaxSmallSize};
  if (i % 50 < static_cast<int>(std::size(kEdges))) return kEdges[i % 50];
  return rng() % (kMaxSmallSize + 1);
}

// The directories that receive files (relative to tree/): dNN, dNN/sK, dNN/s0/n,
// dNN/s0/n/nn. Creates them, and the empty ones, with varied modes.
std::vector<std::string> make_directories(Tree& tree) {
  std::vector<std::string> with_files;
  for (int d = 0; d < kTopDirs; ++d) {
    const std::string top = "d0" + std::to_string(d);
    with_files.push_back(top);
    for (int s = 0; s < kSubDirs; ++s) with_files.push_back(top + "/s" + std::to_string(s));
    with_files.push_back(top + "/s0/n");
    with_files.push_back(top + "/s0/n/nn");
  }
  const std::vector<std::string> empty{"d00/empty", "d03/s2/empty", "d07/s5/hollow", "d07/s5/hollow/void",
                                       "zz-empty"};
  make_dirs(tree.src_root);
  for (const auto& rel : with_files) make_dirs(tree.src_root + "/" + rel);
  for (const auto& rel : empty) make_dirs(tree.src_root + "/" + rel);
  // Source directory modes vary too (they are not carried, see the top of this file).
  for (int d = 0; d < kTopDirs; ++d) {
    const std::string top = tree.src_root + "/d0" + std::to_string(d);
    if (::chmod((top + "/s1").c_str(), 0700) != 0 || ::chmod((top + "/s2").c_str(), 0750) != 0) {
      throw std::runtime_error("cannot chmod the directories of " + top);
    }
  }
  tree.entries += 1 + with_files.size() + empty.size();
  return with_files;
}

void add_large_files(Tree& tree, std::mt19937_64& rng) {
  const std::pair<std::string, std::uint64_t> large[] = {
      {"d02/large-3M.bin", 3 * kMiB}, {"d04/s3/large-8M.bin", 8 * kMiB}, {"d08/large-20M.bin", 20 * kMiB + 12345}};
  int i = 0;
  for (const auto& [rel, size] : large) {
    const std::string path = tree.src_root + "/" + rel;
    write_random_file(path, size, 1000 + static_cast<std::uint64_t>(i));
    set_meta(path, random_meta(++i, rng));
    tree.files["tree/" + rel] = size;
    tree.bytes += size;
    ++tree.entries;
  }
}

// Builds DIR/src/tree: `small_files` small files spread over the directories, and the
// three large files when asked. A function of the arguments only.
Tree build_tree(const TempDir& t, int small_files, bool with_large) {
  Tree tree;
  tree.src = t / "src";
  tree.dest = t / "dest";
  tree.src_root = t / "src/tree";
  std::mt19937_64 rng(20261205);
  const std::vector<std::string> dirs = make_directories(tree);
  static const char* const kExtensions[] = {".txt", ".bin", "", ".jpg", ".c"};
  for (int i = 0; i < small_files; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "f%05d%s", i, kExtensions[i % std::size(kExtensions)]);
    const std::string rel = dirs[static_cast<std::size_t>(i) % dirs.size()] + "/" + name;
    const std::uint64_t size = small_size(i, rng);
    write_small_file(tree.src_root + "/" + rel, size, random_meta(i, rng), rng);
    tree.files["tree/" + rel] = size;
    tree.bytes += size;
  }
  tree.entries += static_cast<std::size_t>(small_files);
  if (with_large) add_large_files(tree, rng);
  return tree;
}

// The umask the receivers started by this test inherit (the receiver applies it to every
// offered mode, as a new file's mode: docs/SECURITY.md).
mode_t inherited_umask() {
  const mode_t u = ::umask(0);
  ::umask(u);
  return u;
}

// The permission bits (the source's through the receiver's umask) and mtime (to the
// nanosecond) of `dest` against `src`: "" when they match, else both.
std::string metadata_difference(const std::string& src, const std::string& dest) {
  struct stat want {}, have {};
  if (::lstat(src.c_str(), &want) != 0 || ::lstat(dest.c_str(), &have) != 0) return "cannot stat";
  want.st_mode = (want.st_mode & 0777) & ~inherited_umask();
  const bool mode_ok = (want.st_mode & 07777) == (have.st_mode & 07777);
  const bool mtime_ok = want.st_mtim.tv_sec == have.st_mtim.tv_sec && want.st_mtim.tv_nsec == have.st_mtim.tv_nsec;
  if (mode_ok && mtime_ok) return {};
  std::ostringstream diff;
  diff << "mode " << std::oct << (want.st_mode & 07777) << " -> " << (have.st_mode & 07777) << std::dec << ", mtime "
       << want.st_mtim.tv_sec << "." << want.st_mtim.tv_nsec << " -> " << have.st_mtim.tv_sec << "."
       << have.st_mtim.tv_nsec;
  return diff.str();
}

// Modes and mtimes of every file of the tree in DEST against its source: "" when all
// match, else the first differences.
std::string compare_file_metadata(const Tree& tree) {
  std::ostringstream diff;
  int problems = 0;
  for (const auto& [wire, size] : tree.files) {
    const std::string d = metadata_difference(tree.src + "/" + wire, tree.dest + "/" + wire);
    if (!d.empty() && ++problems <= 20) diff << "  " << wire << ": " << d << "\n";
  }
  if (problems > 20) diff << "  ... " << problems - 20 << " more\n";
  return diff.str();
}

void expect_identical(const Tree& tree) {
  EXPECT_EQ(compare_trees(tree.src, tree.dest), "") << "DEST differs from the source (paths, kinds or bytes)";
  EXPECT_EQ(compare_file_metadata(tree), "") << "file modes or mtimes differ";
}

// Follows a process's --json stdout as it grows, reading only what was appended since
// the last poll (a tree's stream is megabytes; re-reading it every few milliseconds
// would load the machine).
class EventTail {
 public:
  explicit EventTail(std::string path) : path_(std::move(path)) {}

  void poll() {
    std::ifstream f(path_, std::ios::binary);
    if (!f) return;
    f.seekg(static_cast<std::streamoff>(offset_));
    std::string fresh{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    offset_ += fresh.size();
    pending_ += fresh;
    std::size_t start = 0;
    for (std::size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
      take_line(pending_.substr(start, nl - start));
    }
    pending_.erase(0, start);
  }
  const std::set<std::string>& verified() const { return verified_; }
  // How many of `files` (wire paths) were verified: directories, verified as soon as
  // they are made, are not counted.
  std::size_t files_verified(const std::map<std::string, std::uint64_t>& files) const {
    std::size_t n = 0;
    for (const auto& path : verified_) n += files.count(path);
    return n;
  }
  bool seen(const std::string& type) const { return types_.count(type) != 0; }

 private:
  void take_line(const std::string& line) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    const std::string type = j.value("event", "");
    types_.insert(type);
    if (type == "file_verified") verified_.insert(j.value("path", ""));
  }

  std::string path_;
  std::uint64_t offset_ = 0;
  std::string pending_;
  std::set<std::string> verified_;
  std::set<std::string> types_;
};

std::unique_ptr<Process> start_sender(const TempDir& t, const std::string& name, const std::string& address,
                                      const Tree& tree, bool retries_zero, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{kSendBin, "--connect", address, "--json"};
  if (retries_zero) argv.insert(argv.end(), {"--retries", "0"});
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(tree.src_root);
  return Process::start(argv, t.path(), name);
}

// The totals of the process's session_end event; fails the test when there is none.
nlohmann::json session_totals(const Process& p) {
  const auto events = p.json_events();
  const auto* end = find_event(events, "session_end");
  if (end == nullptr || !end->contains("totals")) {
    ADD_FAILURE() << p.name() << " reported no session_end\n" << p.describe();
    return nlohmann::json::object();
  }
  return (*end)["totals"];
}

// A complete run: a --once receiver on DEST and a sender straight to it; both exit 0.
// Returns the sender's session_end totals.
nlohmann::json complete_run(const TempDir& t, const Tree& tree, const std::string& tag) {
  Receiver r = start_receiver(t.path(), "recv-" + tag, "127.0.0.1:0", {"--once", "--json", tree.dest});
  auto send = start_sender(t, "send-" + tag, r.address, tree, false);
  EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(0)) << send->describe();
  EXPECT_EQ(r.proc->wait(kRunLimit), ExitStatus::exited_with(0)) << r.proc->describe();
  return session_totals(*send);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(Tree, ManySmallFilesAndThreeLargeArriveIdentical) {
  TempDir t;
  auto phase = std::chrono::steady_clock::now();
  const Tree tree = build_tree(t, kSmallFiles, true);
  const double build_s = seconds_since(phase);
  phase = std::chrono::steady_clock::now();
  const nlohmann::json totals = complete_run(t, tree, "whole");
  const double run_s = seconds_since(phase);
  phase = std::chrono::steady_clock::now();
  expect_identical(tree);
  EXPECT_EQ(totals.value("files_verified", std::uint64_t{0}), tree.entries) << totals.dump();
  EXPECT_EQ(totals.value("bytes_verified", std::uint64_t{0}), tree.bytes) << totals.dump();
  EXPECT_EQ(totals.value("bytes_payload", std::uint64_t{0}), tree.bytes) << "a clean run sent bytes twice";
  EXPECT_EQ(totals.value("files_failed", std::uint64_t{1}), 0u) << totals.dump();
  // For whoever tunes kSmallFiles: where the time goes.
  std::cout << "[ tree ] " << tree.entries << " entries, " << tree.bytes << " bytes: built in " << build_s
            << " s, sent in " << run_s << " s, compared in " << seconds_since(phase) << " s\n";
}

enum class Victim { receiver, sender };

// The first run, killed: ferry-send through a rate-limited relay to a --once receiver,
// and kill -9 of `victim` once `mark` entries were verified (by the receiver's count
// when the receiver dies, else by the sender's). Returns the paths both sides reported
// verified before the kill.
std::set<std::string> killed_run(const TempDir& t, const Tree& tree, Receiver& r, Victim victim, std::size_t mark) {
  Relay relay(r.port, kRelayRate);
  auto send = start_sender(t, "send-killed", relay.address(), tree, true);
  EventTail sender_events(send->stdout_path()), receiver_events(r.proc->stdout_path());
  EventTail& watched = victim == Victim::receiver ? receiver_events : sender_events;
  const bool reached = wait_until(
      [&] {
        watched.poll();
        return watched.verified().size() >= mark || !send->running() || !r.proc->running();
      },
      kRunLimit);
  EXPECT_TRUE(reached) << "fewer than " << mark << " entries verified in time\n" << send->describe();
  EXPECT_TRUE(send->running() && r.proc->running()) << "the transfer ended before the kill (a faster ferry needs a "
                                                    << "larger tree or a slower relay)\n"
                                                    << send->describe() << r.proc->describe();
  if (victim == Victim::receiver) {
    EXPECT_EQ(r.proc->kill_now(), ExitStatus::killed_by(SIGKILL));
    EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(3)) << "--retries 0 after losing the receiver\n"
                                                                 << send->describe();
  } else {
    EXPECT_EQ(send->kill_now(), ExitStatus::killed_by(SIGKILL));
    const bool lost = wait_until(
        [&] {
          receiver_events.poll();
          return receiver_events.seen("connection_lost") || !r.proc->running();
        },
        30s);
    EXPECT_TRUE(lost) << "the receiver did not notice the sender's death\n" << r.proc->describe();
    EXPECT_TRUE(r.proc->running()) << "--once ended when the first sender died\n" << r.proc->describe();
  }
  sender_events.poll();
  receiver_events.poll();
  std::set<std::string> verified = sender_events.verified();
  verified.insert(receiver_events.verified().begin(), receiver_events.verified().end());
  return verified;
}

// The rerun after a kill: a sender straight to the receiver (the first one, still
// waiting, after the sender died; a new one on the same DEST after the receiver died).
// Both exit 0; returns the sender's session_end totals.
nlohmann::json rerun_after_kill(const TempDir& t, const Tree& tree, Receiver& first, Victim victim) {
  std::optional<Receiver> second;
  if (victim == Victim::receiver) {
    second = start_receiver(t.path(), "recv-second", "127.0.0.1:0", {"--once", "--json", tree.dest});
  }
  Receiver& r = second ? *second : first;
  auto rerun = start_sender(t, "send-rerun", r.address, tree, false);
  EXPECT_EQ(rerun->wait(kRunLimit), ExitStatus::exited_with(0)) << rerun->describe();
  EXPECT_EQ(r.proc->wait(kRunLimit), ExitStatus::exited_with(0)) << r.proc->describe();
  return session_totals(*rerun);
}

// kill -9 of `victim` mid-tree, then a rerun: the tree arrives identical, and the rerun
// sends at most the files not verified before the kill (plus one small file in flight).
void kill_mid_tree_and_rerun(Victim victim) {
  TempDir t;
  const Tree tree = build_tree(t, kSmallFiles, true);
  const std::size_t mark = tree.entries * 2 / 5;
  Receiver first = start_receiver(t.path(), "recv-first", "127.0.0.1:0", {"--once", "--json", tree.dest});
  auto phase = std::chrono::steady_clock::now();
  const std::set<std::string> verified = killed_run(t, tree, first, victim, mark);
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_GE(verified.size(), mark);
  const double first_s = seconds_since(phase);

  std::uint64_t unverified_bytes = 0;
  for (const auto& [wire, size] : tree.files) {
    if (!verified.count(wire)) unverified_bytes += size;
  }
  phase = std::chrono::steady_clock::now();
  const nlohmann::json totals = rerun_after_kill(t, tree, first, victim);
  const double rerun_s = seconds_since(phase);
  expect_identical(tree);
  EXPECT_EQ(totals.value("files_verified", std::uint64_t{0}), tree.entries) << totals.dump();
  const std::uint64_t payload = totals.value("bytes_payload", ~std::uint64_t{0});
  EXPECT_LE(payload, unverified_bytes + kMaxSmallSize)
      << "the rerun sent files it had already delivered: " << verified.size() << " of " << tree.entries
      << " entries were verified before the kill, the others hold " << unverified_bytes << " bytes\n"
      << totals.dump();
  std::cout << "[ tree ] killed after " << verified.size() << " of " << tree.entries << " entries verified ("
            << first_s << " s); the rerun sent " << payload << " payload bytes, the files not verified hold "
            << unverified_bytes << " (" << rerun_s << " s)\n";
}

TEST(Tree, ReceiverKilledMidTreeRerunSendsNoFileTwice) {
  kill_mid_tree_and_rerun(Victim::receiver);
}

TEST(Tree, SenderKilledMidTreeRerunSendsNoFileTwice) {
  kill_mid_tree_and_rerun(Victim::sender);
}

// Every regular file in DEST under a final name (no component starting with '.': the
// source has none, so those are ferry's own) is byte-identical to its source, with its
// mode and mtime (set before the rename: docs/PROTOCOL.md, "match"), and every such
// directory is one of the source's. Counts the files in `complete`.
std::string check_final_names(const Tree& tree, std::size_t& complete) {
  std::ostringstream bad;
  complete = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(tree.dest, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string leaf = it->path().filename().string();
    if (!leaf.empty() && leaf[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    const std::string rel = fs::relative(it->path(), tree.dest).string();
    const auto st = it->symlink_status();
    if (fs::is_directory(st)) {
      if (!fs::is_directory(tree.src + "/" + rel)) bad << "  unexpected directory " << rel << "\n";
    } else if (!fs::is_regular_file(st)) {
      bad << "  unexpected entry " << rel << "\n";
    } else if (!tree.files.count(rel)) {
      bad << "  unexpected file " << rel << "\n";
    } else if (const std::string d = compare_files(tree.src + "/" + rel, it->path().string()); !d.empty()) {
      bad << "  " << rel << ": " << d << "\n";
    } else if (const std::string m = metadata_difference(tree.src + "/" + rel, it->path().string()); !m.empty()) {
      bad << "  " << rel << ": " << m << " (renamed before its mode and mtime were set)\n";
    } else {
      ++complete;
    }
  }
  if (ec) bad << "  cannot walk DEST: " << ec.message() << "\n";
  return bad.str();
}

TEST(Tree, NoPartialFileUnderAFinalNameAfterReceiverCrashes) {
  TempDir t;
  const Tree tree = build_tree(t, kCrashTreeFiles, false);
  const auto started = std::chrono::steady_clock::now();
  std::size_t complete_before = 0;
  std::ostringstream counts;
  std::size_t kills = 0;
  for (std::size_t i = 0; i < std::size(kCrashShares); ++i) {
    const std::string tag = std::to_string(i + 1);
    const auto run_started = std::chrono::steady_clock::now();
    Receiver r = start_receiver(t.path(), "recv-crash" + tag, "127.0.0.1:0", {"--once", "--json", tree.dest});
    Relay relay(r.port, kRelayRate);
    // A window of 4 MiB keeps about 1,000 of the tree's small files (4 KiB on average)
    // in flight (eager bytes stay within the window): with protocol version 7's 4,096
    // eager entries the whole tree could be in flight, and committed, before a kill.
    auto send = start_sender(t, "send-crash" + tag, relay.address(), tree, true, {"--window", "4M"});
    EventTail events(r.proc->stdout_path());
    const auto left = static_cast<double>(tree.files.size() - complete_before);
    const std::size_t mark = complete_before + std::max<std::size_t>(1, static_cast<std::size_t>(left * kCrashShares[i]));
    const bool reached = wait_until(
        [&] {
          events.poll();
          return events.files_verified(tree.files) >= mark || !send->running();
        },
        kRunLimit);
    std::this_thread::sleep_for(kCrashDelays[i]);
    ASSERT_TRUE(reached) << "run " << tag << " reached neither " << mark << " verified entries nor its end\n"
                         << send->describe() << r.proc->describe();
    if (!send->running() && i > 0) {
      // One batch took the rest of the tree: there is nothing left to kill a rerun in.
      EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(0)) << send->describe();
      counts << (i == 0 ? "" : ", ") << "run " << tag << " completed the tree";
      break;
    }
    ASSERT_TRUE(send->running()) << "run 1 ended before " << mark << " verified entries\n"
                                 << send->describe() << r.proc->describe();
    ASSERT_EQ(r.proc->kill_now(), ExitStatus::killed_by(SIGKILL));
    ++kills;
    EXPECT_EQ(send->wait(kRunLimit), ExitStatus::exited_with(3)) << send->describe();

    std::size_t complete = 0;
    EXPECT_EQ(check_final_names(tree, complete), "") << "after kill -9 number " << tag << " of the receiver";
    EXPECT_GT(complete, complete_before) << "run " << tag << " put no new file in place";
    complete_before = complete;
    counts << (i == 0 ? "" : ", ") << complete << " (" << seconds_since(run_started) << " s)";
  }
  EXPECT_GE(kills, 2u) << "a batch completed the tree after the first kill";
  const auto final_started = std::chrono::steady_clock::now();
  (void)complete_run(t, tree, "final");
  counts << "; the rerun took " << seconds_since(final_started) << " s";
  expect_identical(tree);
  std::cout << "[ tree ] files in place after each kill: " << counts.str() << " of " << tree.files.size()
            << "; all in " << seconds_since(started) << " s\n";
}

}  // namespace
}  // namespace ferry::e2e
