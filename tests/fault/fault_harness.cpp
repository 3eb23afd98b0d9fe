// Harness for the fault tests: processes with hard limits, ferry runners, the proxy's
// log, libfiu control, and the checks every fault test shares. See fault_harness.hpp.
#include "tests/fault/fault_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

extern char** environ;

namespace ferry::fault {

std::string send_bin() { return FERRY_SEND_BIN; }
std::string recv_bin() { return FERRY_RECV_BIN; }
std::string proxy_bin() { return FERRY_PROXY_BIN; }

namespace {
bool executable(const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; }
constexpr const char* kFiuPosixPreload = "/usr/lib/fiu/fiu_posix_preload.so";
}  // namespace

std::string fiu_run_bin() {
  const std::string p = FIU_RUN_BIN;
  return executable(p) ? p : std::string();
}
std::string fiu_ctrl_bin() {
  const std::string p = FIU_CTRL_BIN;
  return executable(p) ? p : std::string();
}

bool require_libfiu() {
  bool ok = true;
  if (fiu_run_bin().empty() || fiu_ctrl_bin().empty()) {
    ADD_FAILURE() << "libfiu's fiu-run/fiu-ctrl not found (configured as '" << FIU_RUN_BIN << "', '" << FIU_CTRL_BIN
                  << "'): install the Debian packages fiu-utils and libfiu-dev (bash scripts/setup-deps.sh) "
                     "and re-run cmake";
    ok = false;
  }
  if (::access(kFiuPosixPreload, R_OK) != 0) {
    ADD_FAILURE() << kFiuPosixPreload << " is missing: install the Debian package libfiu0 (with fiu-utils)";
    ok = false;
  }
  return ok;
}

// ---------------------------------------------------------------------------
// Scratch

Scratch::Scratch() {
  std::string templ = "/tmp/ferry-fault-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

Scratch::~Scratch() {
  if (std::getenv("FERRY_FAULT_KEEP")) return;  // for debugging: keep the logs
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string Scratch::random_file(const std::string& name, std::uint64_t size, std::uint64_t seed) const {
  const std::string p = at(name);
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> block(8192);
  std::uint64_t left = size;
  while (left > 0) {
    for (auto& w : block) w = rng();
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, block.size() * 8));
    f.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
  if (!f) throw std::runtime_error("cannot write " + p);
  return p;
}

// ---------------------------------------------------------------------------
// Process

Process::Process(Spec spec) : spec_(std::move(spec)) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (spec_.stdin_fd >= 0) posix_spawn_file_actions_adddup2(&fa, spec_.stdin_fd, 0);
  else posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (spec_.stdout_fd >= 0) posix_spawn_file_actions_adddup2(&fa, spec_.stdout_fd, 1);
  else posix_spawn_file_actions_addopen(&fa, 1, spec_.out_path.empty() ? "/dev/null" : spec_.out_path.c_str(),
                                        O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, spec_.err_path.empty() ? "/dev/null" : spec_.err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    const std::string name = kv.substr(0, kv.find('='));
    bool replaced = false;
    for (const auto& o : spec_.env) replaced = replaced || o.substr(0, o.find('=')) == name;
    if (!replaced) env.push_back(std::move(kv));
  }
  for (const auto& o : spec_.env) env.push_back(o);
  std::vector<char*> argv, envp;
  for (auto& a : spec_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  int rc = posix_spawn(&pid_, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("posix_spawn(" + spec_.argv[0] + "): " + std::strerror(rc));
  }
}

Process::Process(Process&& o) noexcept : spec_(std::move(o.spec_)), pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }

Process::~Process() { kill_and_reap(); }

namespace {
int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}
}  // namespace

bool Process::running() {
  if (pid_ < 0 || status_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(st);
    return false;
  }
  return r == 0;
}

std::optional<int> Process::wait(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (running()) {
    if (Clock::now() >= deadline) {
      kill_and_reap();
      return std::nullopt;
    }
    std::this_thread::sleep_for(5ms);
  }
  return status_;
}

void Process::signal(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

void Process::kill_and_reap() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);  // the group: children of an -e command too
  if (!status_) {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    status_ = decode_status(st);
  }
  pid_ = -1;
}

std::string Process::out() const { return spec_.out_path.empty() ? "" : read_text(spec_.out_path); }
std::string Process::err() const { return spec_.err_path.empty() ? "" : read_text(spec_.err_path); }

// ---------------------------------------------------------------------------
// Files and output

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool same_content(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb) return false;
  std::vector<char> ba(1 << 16), bb(1 << 16);
  for (;;) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    if (fa.gcount() != fb.gcount()) return false;
    if (!std::equal(ba.begin(), ba.begin() + fa.gcount(), bb.begin())) return false;
    if (fa.gcount() == 0) return true;
  }
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> wait_for_match(const std::string& path, const std::regex& re,
                                          std::chrono::milliseconds limit, Process* watch) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const std::string text = read_text(path);
    std::smatch m;
    if (std::regex_search(text, m, re)) return m.size() > 1 ? m[1].str() : m[0].str();
    if (Clock::now() >= deadline) return std::nullopt;
    if (watch && !watch->running()) {
      // One last look: it may have written the line just before exiting.
      const std::string last = read_text(path);
      if (std::regex_search(last, m, re)) return m.size() > 1 ? m[1].str() : m[0].str();
      return std::nullopt;
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::vector<Json> json_lines(const std::string& path) {
  std::vector<Json> out;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line)) {
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

Json session_end(const std::string& path) {
  Json end;
  for (auto& j : json_lines(path)) {
    if (j.value("event", "") == "session_end") end = j;
  }
  return end;
}

std::uint64_t last_progress(const std::string& path) {
  std::uint64_t best = 0;
  for (auto& j : json_lines(path)) {
    const auto ev = j.value("event", "");
    if ((ev == "progress" || ev == "resume") && j.contains("offset") && j["offset"].is_number_unsigned()) {
      best = std::max(best, j["offset"].get<std::uint64_t>());
    }
  }
  return best;
}

bool wait_for_progress(const std::string& path, std::uint64_t offset, std::chrono::milliseconds limit,
                       Process* watch) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (last_progress(path) >= offset) return true;
    if (watch && !watch->running()) return false;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// ---------------------------------------------------------------------------
// ferry processes

void apply_wrap(Process::Spec& spec, const Wrap& wrap) {
  if (wrap.fiu.empty() && wrap.fiu_ctrl.empty()) return;
#ifdef FERRY_FAULT_ASAN_RUNTIME
  // fiu-run is a shell script that sets FIU_ENABLE (commands, one per line),
  // FIU_CTRL_FIFO and LD_PRELOAD (its two preload libraries), then execs the program.
  // Under ASan the sanitizer runtime must come first in LD_PRELOAD, so set the same
  // environment here with it in front.
  std::string enable;
  for (const auto& c : wrap.fiu) enable += c + "\n";
  spec.env.push_back("FIU_ENABLE=" + enable);
  spec.env.push_back("FIU_CTRL_FIFO=" + wrap.fiu_ctrl);
  spec.env.push_back(std::string("LD_PRELOAD=") + FERRY_FAULT_ASAN_RUNTIME + " /usr/lib/fiu/fiu_run_preload.so " +
                     kFiuPosixPreload);
  // libfiu's own allocation for the life of the process is not ferry's leak.
  const char* lsan = std::getenv("LSAN_OPTIONS");
  spec.env.push_back(std::string("LSAN_OPTIONS=") + (lsan && *lsan ? std::string(lsan) + ":" : "") +
                     "suppressions=" + FERRY_FAULT_LSAN_SUPPRESSIONS);
#else
  std::vector<std::string> argv{fiu_run_bin().empty() ? std::string("fiu-run") : fiu_run_bin(), "-x", "-f",
                                wrap.fiu_ctrl};
  for (const auto& c : wrap.fiu) {
    argv.push_back("-c");
    argv.push_back(c);
  }
  argv.insert(argv.end(), spec.argv.begin(), spec.argv.end());
  spec.argv = std::move(argv);
#endif
}

Listening start_receiver(const Scratch& s, const std::vector<std::string>& args, const Wrap& wrap,
                         const std::string& name, const std::string& listen) {
  Process::Spec spec;
  spec.argv = {recv_bin(), "--listen", listen, "--json"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.push_back(s.dest());
  spec.out_path = s.at(name + ".out");
  spec.err_path = s.at(name + ".err");
  apply_wrap(spec, wrap);
  Listening l{Process(std::move(spec)), {}};
  static const std::regex re(R"((?:listening on |"address":")((?:tcp|unix):[^"\s]+))");
  auto a = wait_for_match(l.proc.spec().out_path, re, kStartLimit, &l.proc);
  if (!a) {
    ADD_FAILURE() << "ferry-recv did not print its address; stderr:\n" << l.proc.err();
  } else {
    l.address = *a;
  }
  return l;
}

Listening start_proxy(const Scratch& s, const std::string& target, const std::vector<std::string>& args,
                      const std::string& name, const std::string& listen) {
  Process::Spec spec;
  spec.argv = {proxy_bin(), "--listen", listen, "--target", target, "--log", s.at(name + ".log")};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.out_path = s.at(name + ".out");
  spec.err_path = s.at(name + ".err");
  Listening l{Process(std::move(spec)), {}};
  static const std::regex re(R"(listening on (\S+))");
  auto a = wait_for_match(l.proc.spec().out_path, re, kStartLimit, &l.proc);
  if (!a) {
    ADD_FAILURE() << "ferry-fault-proxy did not print its address; stderr:\n" << l.proc.err();
  } else {
    l.address = *a;
  }
  return l;
}

Process::Spec sender_spec(const Scratch& s, const std::string& address, const std::vector<std::string>& args,
                          const std::vector<std::string>& paths, const Wrap& wrap, const std::string& name) {
  Process::Spec spec;
  spec.argv = {send_bin(), "--connect", address, "--json"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.insert(spec.argv.end(), paths.begin(), paths.end());
  spec.out_path = s.at(name + ".out");
  spec.err_path = s.at(name + ".err");
  apply_wrap(spec, wrap);
  return spec;
}

std::uint64_t SendResult::total(const char* key) const {
  if (!end.is_object() || !end.contains("totals") || !end["totals"].contains(key)) return 0;
  return end["totals"][key].get<std::uint64_t>();
}

std::string SendResult::diagnostics() const {
  std::ostringstream o;
  o << "ferry-send exit code " << exit_code << (exit_code == -1 ? " (timed out, killed)" : "") << "\nstderr:\n"
    << err << "\nevents (progress omitted):\n";
  std::istringstream in(out);
  std::string line;
  int n = 0;
  while (std::getline(in, line) && n < 60) {
    if (line.find("\"progress\"") != std::string::npos) continue;
    o << "  " << line << "\n";
    ++n;
  }
  return o.str();
}

SendResult finish_sender(Process& p, std::chrono::milliseconds limit) {
  SendResult r;
  auto code = p.wait(limit);
  r.exit_code = code ? *code : -1;
  r.out = p.out();
  r.err = p.err();
  r.end = session_end(p.spec().out_path);
  return r;
}

SendResult run_sender(const Scratch& s, const std::string& address, const std::vector<std::string>& args,
                      const std::string& path, const Wrap& wrap, const std::string& name) {
  Process p(sender_spec(s, address, args, {path}, wrap, name));
  return finish_sender(p);
}

// ---------------------------------------------------------------------------
// Proxy log

std::uint64_t ProxyLog::up_in() const {
  std::uint64_t sum = 0;
  for (const auto& c : conns) sum += c["up"]["in"].get<std::uint64_t>();
  return sum;
}

std::size_t ProxyLog::fired(const std::string& needle) const {
  std::size_t n = 0;
  for (const auto& c : conns) {
    for (const auto& f : c["fired"]) n += f.get<std::string>().find(needle) != std::string::npos;
  }
  return n;
}

std::string ProxyLog::dump() const {
  std::string s = "proxy log:\n";
  for (const auto& c : conns) s += "  " + c.dump() + "\n";
  return s;
}

ProxyLog stop_proxy(Listening& proxy, const Scratch& s, const std::string& name) {
  proxy.proc.signal(SIGTERM);
  auto code = proxy.proc.wait(10s);
  EXPECT_EQ(code, std::optional<int>(0)) << "ferry-fault-proxy did not stop cleanly; stderr:\n"
                                         << read_text(s.at(name + ".err"));
  ProxyLog log;
  log.conns = json_lines(s.at(name + ".log"));
  return log;
}

bool fiu_ctrl(const std::string& ctrl_prefix, pid_t pid, const std::string& command) {
  // fiu-run's preload creates PREFIX-PID.in when the process starts.
  const std::string fifo = ctrl_prefix + "-" + std::to_string(pid) + ".in";
  const auto deadline = Clock::now() + 10s;
  while (::access(fifo.c_str(), F_OK) != 0) {
    if (Clock::now() >= deadline) {
      ADD_FAILURE() << "libfiu remote control fifo " << fifo << " never appeared";
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
  Process::Spec spec;
  spec.argv = {fiu_ctrl_bin(), "-f", ctrl_prefix, "-c", command, std::to_string(pid)};
  Process p(std::move(spec));
  auto code = p.wait(10s);
  if (code != std::optional<int>(0)) {
    ADD_FAILURE() << "fiu-ctrl -c '" << command << "' " << pid << " failed";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Checks

void expect_delivered(const Scratch& s, const std::string& name, const std::string& src) {
  EXPECT_EQ(list_dir(s.dest()), std::vector<std::string>{name}) << "DEST should hold the file and nothing else";
  EXPECT_TRUE(same_content(s.dest() + "/" + name, src)) << "delivered file differs from its source";
}

void expect_not_delivered(const Scratch& s, const std::string& name) {
  struct stat st{};
  EXPECT_NE(::lstat((s.dest() + "/" + name).c_str(), &st), 0) << name << " appeared under its final name";
}

void expect_payload_bound(const SendResult& r, std::uint64_t size, std::uint64_t window, std::uint64_t chunk) {
  const std::uint64_t redo = r.total("reconnects") + r.total("chunks_rejected");
  const std::uint64_t bound = size + redo * (window + chunk) + chunk;
  EXPECT_LE(r.total("bytes_payload"), bound)
      << "the sender wrote more than size + (reconnects + rejected) x (window + chunk) + chunk\n"
      << r.diagnostics();
}

std::vector<std::string> flow_args(std::uint64_t window, std::uint64_t chunk, const char* stall_timeout) {
  return {"--window", std::to_string(window), "--chunk-size", std::to_string(chunk), "--stall-timeout",
          stall_timeout};
}

}  // namespace ferry::fault
