// Helpers for the end-to-end tests of the real ferry-send and ferry-recv executables:
// child processes with hard timeouts, a receiver started on port 0, temp directories,
// seeded random files and byte-for-byte tree comparison.
//
//   TempDir t;
//   write_random_file(t.path() + "/src/a", 1 << 20, 42);
//   auto recv = start_receiver(t.path(), {"--once", t.path() + "/dest"});
//   auto send = Process::start({kSendBin, "--connect", recv.address, t.path() + "/src/a"}, t.path(), "send");
//   EXPECT_EQ(send->wait(kLimit), ExitStatus::exited_with(0));
//   EXPECT_EQ(compare_trees(t.path() + "/src", t.path() + "/dest"), "");
//
// Every Process is reaped: wait() kills it with SIGKILL when its limit passes (and
// records a test failure), and the destructor kills and reaps one still running, so a
// failed ASSERT never leaves a child behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::e2e {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// Paths of the executables under test (compile definitions from CMake).
inline const std::string kSendBin = FERRY_SEND_BIN;
inline const std::string kRecvBin = FERRY_RECV_BIN;

// Hard limits. Generous, because the suite also runs under ASan with ctest -j2.
inline constexpr Millis kProcessLimit = 60s;  // any one ferry process
inline constexpr Millis kStartLimit = 15s;    // a receiver to print its address

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// A pipe whose ends are close-on-exec (only the child that gets an end dup2'ed keeps it).
struct Pipe {
  Fd read_end, write_end;
};
Pipe make_pipe();

// How a child ended.
struct ExitStatus {
  enum class How { exited, signalled, timed_out };
  How how = How::timed_out;
  int value = -1;  // exit code, or signal number

  static ExitStatus exited_with(int code) { return {How::exited, code}; }
  static ExitStatus killed_by(int sig) { return {How::signalled, sig}; }
  bool operator==(const ExitStatus&) const = default;
};
std::ostream& operator<<(std::ostream& os, const ExitStatus& s);

struct SpawnOptions {
  int stdin_fd = -1;        // dup2'ed onto fd 0
  int stdout_fd = -1;       // dup2'ed onto fd 1
  std::string stdin_file;   // else read from this file; else /dev/null
  std::string stdout_file;  // else written to this file; else captured (stdout_text())
};

class Process {
 public:
  // Starts argv[0] (a path) with argv; stderr (and stdout unless redirected) are
  // captured into files named after `name` in `capture_dir`. Throws std::runtime_error
  // when the process cannot be started.
  static std::unique_ptr<Process> start(const std::vector<std::string>& argv, const std::string& capture_dir,
                                        const std::string& name, SpawnOptions opts = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  // Waits for the child to end. After `limit` it is killed with SIGKILL, reaped, and
  // a test failure is recorded (with its stderr); the result is then How::timed_out.
  ExitStatus wait(Millis limit = kProcessLimit);
  // Non-blocking: the status if the child has ended (it is then reaped).
  std::optional<ExitStatus> poll();
  bool running() { return !poll().has_value(); }
  // Sends `sig` (no-op once reaped).
  void signal(int sig);
  // SIGKILL and reap; returns how it ended.
  ExitStatus kill_now();

  // The child's peak resident set in KiB (getrusage's ru_maxrss, from wait4), once
  // poll() or wait() reaped it; 0 before, or after kill_now().
  std::uint64_t peak_rss_kib() const { return peak_rss_kib_; }

  std::string stdout_text() const;
  std::string stderr_text() const;
  // The file stdout is captured into ("" when it went to a descriptor), for a test
  // that follows a long event stream without re-reading all of it.
  const std::string& stdout_path() const { return stdout_path_; }
  // Non-empty lines of stdout (or stderr) that parse as JSON objects.
  std::vector<nlohmann::json> json_events(bool from_stderr = false) const;
  // The command line, for failure messages.
  std::string command_line() const;
  // Command line and captured output, for failure messages.
  std::string describe() const;

 private:
  Process() = default;
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
  std::uint64_t peak_rss_kib_ = 0;
  std::string name_, stdout_path_, stderr_path_;
  std::vector<std::string> argv_;
};

// Polls `cond` every few milliseconds until it holds or `limit` passes.
bool wait_until(const std::function<bool()>& cond, Millis limit);

// A ferry-recv listening on a real address.
struct Receiver {
  std::unique_ptr<Process> proc;
  std::string address;     // as printed: "tcp:127.0.0.1:PORT", "unix:/path" or "vsock:any:PORT"
  std::uint16_t port = 0;  // tcp only
};
// Starts `ferry-recv --listen LISTEN ARGS...` and waits (bounded) for its line
// `ferry-recv: listening on ADDR` on stderr (or, with --json, the "listening on"
// warning event on stdout). Throws when it does not appear in time (the process is
// killed and reaped first).
Receiver start_receiver(const std::string& capture_dir, const std::string& name, const std::string& listen,
                        const std::vector<std::string>& args);

// A fresh directory under /tmp, removed with all it holds on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// Creates parent directories as needed. The bytes are a function of (size, seed).
void write_random_file(const std::string& path, std::uint64_t size, std::uint64_t seed);
void write_text_file(const std::string& path, const std::string& text);
void make_dirs(const std::string& path);
std::uint64_t file_size(const std::string& path);  // throws when missing
bool exists_nofollow(const std::string& path);
// Names in `dir`, sorted, without "." and "..".
std::vector<std::string> list_dir(const std::string& dir);

// Compares two trees entry by entry, without following symlinks: the same relative
// paths, the same kinds (file, directory, symlink, other), for files the same size and
// bytes, directories included (empty ones too). Returns "" when equal, else a
// description of the first differences. So an extra entry in `actual` (a leftover
// .NAME.ferry-part or .NAME.ferry-journal) is a difference.
std::string compare_trees(const std::string& expected, const std::string& actual);

// Compares two regular files byte for byte: "" when equal, else where they differ.
std::string compare_files(const std::string& expected, const std::string& actual);

// ferry's own temporary names (".NAME.ferry-part", ".NAME.ferry-journal", ...) found
// anywhere below `dir`, relative to it.
std::vector<std::string> ferry_leftovers(const std::string& dir);

// The first event named `type` in `events` (optionally for `path`), or nullptr.
const nlohmann::json* find_event(const std::vector<nlohmann::json>& events, const std::string& type,
                                 const std::string& path = {});

}  // namespace ferry::e2e
