// Harness for the fault tests: the real ferry-send and ferry-recv, ferry-fault-proxy
// between them, libfiu's fiu-run / fiu-ctrl around them, with hard time limits.
//
//   Scratch s;                                   // mkdtemp, removed afterwards
//   auto src = s.random_file("src.bin", 3 << 20, 42);
//   auto recv = start_receiver(s, {"--once"});   // listens on 127.0.0.1:0, dest = s/dest
//   auto proxy = start_proxy(s, recv.address, {"--up", "close-after=1M"});
//   auto sent = run_sender(s, proxy.address, {"--stall-timeout", "1"}, src);
//   EXPECT_EQ(sent.exit_code, 0) << sent.diagnostics();
//   expect_delivered(s, "src.bin", src);
//
// Every child runs in its own process group and is killed (SIGKILL to the group) and
// reaped when its Process goes away, so a failed ASSERT never leaves one behind;
// every wait has a deadline, after which the child is killed and the test fails.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::fault {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

// Executables under test (compile definitions from tests/fault/CMakeLists.txt).
std::string send_bin();
std::string recv_bin();
std::string proxy_bin();
// fiu-run and fiu-ctrl (Debian fiu-utils; libfiu-dev provides the preload libraries).
// Empty when missing: call require_libfiu() first, which fails the test loudly.
std::string fiu_run_bin();
std::string fiu_ctrl_bin();
// Fails the current test (not a skip) when fiu-run, fiu-ctrl or the POSIX preload
// library is missing; returns whether they are all there.
[[nodiscard]] bool require_libfiu();

// Hard limits, generous because the suite also runs under ASan with ctest -j2.
inline constexpr auto kStartLimit = 15s;     // a listener to print its address
inline constexpr auto kTransferLimit = 60s;  // any one ferry run

// A scratch directory (mkdtemp under /tmp), removed with everything in it.
class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }
  std::string at(const std::string& name) const { return path_ + "/" + name; }
  std::string dest() const { return at("dest"); }
  // Writes `size` seeded random bytes to path()/name and returns its path.
  std::string random_file(const std::string& name, std::uint64_t size, std::uint64_t seed) const;

 private:
  std::string path_;
};

// A child process with stdout and stderr in files.
class Process {
 public:
  struct Spec {
    std::vector<std::string> argv;
    std::string out_path, err_path;  // empty: /dev/null
    int stdin_fd = -1;               // -1: /dev/null
    int stdout_fd = -1;              // overrides out_path
    std::vector<std::string> env;    // NAME=VALUE added to (or replacing in) the environment
  };
  explicit Process(Spec spec);
  ~Process();
  Process(Process&& o) noexcept;
  Process& operator=(Process&&) = delete;
  Process(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Exit code, or 128 + signal. nullopt when `limit` passed: the child is then killed
  // and reaped.
  std::optional<int> wait(std::chrono::milliseconds limit);
  void signal(int sig);  // to the process only
  void kill_and_reap();  // SIGKILL to the whole group
  std::string out() const;
  std::string err() const;
  const Spec& spec() const { return spec_; }

 private:
  Spec spec_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

std::string read_text(const std::string& path);
bool same_content(const std::string& a, const std::string& b);
std::vector<std::string> list_dir(const std::string& dir);
// Waits until `path` contains a match of `re`; returns the first group (or the match).
// nullopt when `limit` passes or `watch` exits first.
std::optional<std::string> wait_for_match(const std::string& path, const std::regex& re,
                                          std::chrono::milliseconds limit, Process* watch = nullptr);
// Lines of `path` that parse as JSON objects.
std::vector<Json> json_lines(const std::string& path);
// The session_end event in a --json output file; null JSON when absent.
Json session_end(const std::string& path);
// Highest acknowledged offset in the progress events of a --json output file.
std::uint64_t last_progress(const std::string& path);
// Waits until a ferry --json output shows at least `offset` bytes acknowledged.
bool wait_for_progress(const std::string& path, std::uint64_t offset, std::chrono::milliseconds limit,
                       Process* watch);

// A listener started by the harness, with the address it printed.
struct Listening {
  Process proc;
  std::string address;
};

// Options around a ferry process.
// With either field set, the process runs under `fiu-run -x` (libfiu's POSIX wrappers).
struct Wrap {
  std::vector<std::string> fiu;  // fiu-run -c commands, enabled from the start
  std::string fiu_ctrl;          // remote-control fifo prefix, for fiu_ctrl() later
};

// ferry-recv --listen ADDR --json [args] DEST (dest defaults to s.dest()); its JSON
// events go to s/NAME.out, stderr to s/NAME.err.
Listening start_receiver(const Scratch& s, const std::vector<std::string>& args, const Wrap& wrap = {},
                         const std::string& name = "recv", const std::string& listen = "127.0.0.1:0");
// ferry-fault-proxy --listen LISTEN --target TARGET --log s/NAME.log [args].
Listening start_proxy(const Scratch& s, const std::string& target, const std::vector<std::string>& args,
                      const std::string& name = "proxy", const std::string& listen = "127.0.0.1:0");
// Process::Spec for ferry-send --connect ADDR --json [args] PATHS with output in s/NAME.*.
Process::Spec sender_spec(const Scratch& s, const std::string& address, const std::vector<std::string>& args,
                          const std::vector<std::string>& paths, const Wrap& wrap = {},
                          const std::string& name = "send");
// Adds the fiu-run prefix to a spec (no-op for an empty Wrap).
void apply_wrap(Process::Spec& spec, const Wrap& wrap);

struct SendResult {
  int exit_code = -1;  // -1: timed out (killed)
  Json end;            // session_end event, null if none
  std::string out, err;
  std::uint64_t total(const char* key) const;
  // Everything a failure message needs.
  std::string diagnostics() const;
};
SendResult finish_sender(Process& p, std::chrono::milliseconds limit = kTransferLimit);
SendResult run_sender(const Scratch& s, const std::string& address, const std::vector<std::string>& args,
                      const std::string& path, const Wrap& wrap = {}, const std::string& name = "send");

// Proxy log (JSON lines, one per ended connection).
struct ProxyLog {
  std::vector<Json> conns;
  std::uint64_t up_in() const;     // bytes the clients wrote, all connections
  std::size_t fired(const std::string& needle) const;  // "fired" entries containing needle
  std::string dump() const;
};
// Stops the proxy (SIGTERM: it ends every connection and writes their lines) and reads its log.
ProxyLog stop_proxy(Listening& proxy, const Scratch& s, const std::string& name = "proxy");

// Enables a libfiu failure point in a running process started with Wrap::fiu_ctrl.
[[nodiscard]] bool fiu_ctrl(const std::string& ctrl_prefix, pid_t pid, const std::string& command);

// Checks, as gtest expectations: DEST holds exactly `name` (no partial, no journal)
// and it equals `src`.
void expect_delivered(const Scratch& s, const std::string& name, const std::string& src);
// Checks: nothing under the final name `name` in DEST.
void expect_not_delivered(const Scratch& s, const std::string& name);

// The bound the issue sets on what the sender writes: payload bytes (DATA, re-sends
// included) <= size + (reconnects + rejected chunks) x (window + chunk) + one chunk.
void expect_payload_bound(const SendResult& r, std::uint64_t size, std::uint64_t window, std::uint64_t chunk);

// Sizes used by most tests.
inline constexpr std::uint64_t kChunk = 64 * 1024;
inline constexpr std::uint64_t kWindow = 256 * 1024;
std::vector<std::string> flow_args(std::uint64_t window = kWindow, std::uint64_t chunk = kChunk,
                                   const char* stall_timeout = "1");

}  // namespace ferry::fault
