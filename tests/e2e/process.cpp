// Child processes, temp directories and tree comparison for the end-to-end tests.
#include "tests/e2e/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace ferry::e2e {

namespace fs = std::filesystem;

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

std::ostream& operator<<(std::ostream& os, const ExitStatus& s) {
  switch (s.how) {
    case ExitStatus::How::exited:
      return os << "exit code " << s.value;
    case ExitStatus::How::signalled:
      return os << "killed by signal " << s.value;
    case ExitStatus::How::timed_out:
      return os << "timed out (killed)";
  }
  return os;
}

namespace {

std::string read_whole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

ExitStatus decode_status(int st) {
  if (WIFEXITED(st)) return ExitStatus::exited_with(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return ExitStatus::killed_by(WTERMSIG(st));
  return {};
}

std::string tail(const std::string& s, std::size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

}  // namespace

std::unique_ptr<Process> Process::start(const std::vector<std::string>& argv, const std::string& capture_dir,
                                        const std::string& name, SpawnOptions opts) {
  if (argv.empty()) throw std::runtime_error("Process::start: empty argv");
  std::unique_ptr<Process> p(new Process());
  p->name_ = name;
  p->argv_ = argv;
  p->stderr_path_ = capture_dir + "/" + name + ".stderr";
  if (opts.stdout_fd < 0) {
    p->stdout_path_ = opts.stdout_file.empty() ? capture_dir + "/" + name + ".stdout" : opts.stdout_file;
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (opts.stdin_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, opts.stdin_fd, 0);
  } else {
    const char* in = opts.stdin_file.empty() ? "/dev/null" : opts.stdin_file.c_str();
    posix_spawn_file_actions_addopen(&fa, 0, in, O_RDONLY, 0);
  }
  if (opts.stdout_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, opts.stdout_fd, 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, p->stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  posix_spawn_file_actions_addopen(&fa, 2, p->stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);

  // Its own process group (so a timeout also kills what it spawned, e.g. the shell of
  // -e), default signal dispositions and an empty mask.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("posix_spawn(" + argv[0] + "): " + std::strerror(rc));
  p->pid_ = pid;
  return p;
}

Process::~Process() {
  if (!status_) (void)kill_now();
}

std::optional<ExitStatus> Process::poll() {
  if (status_) return status_;
  int st = 0;
  struct rusage usage{};
  pid_t r;
  do {
    r = ::wait4(pid_, &st, WNOHANG, &usage);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = decode_status(st);
    peak_rss_kib_ = static_cast<std::uint64_t>(usage.ru_maxrss);  // KiB on Linux
  }
  if (r < 0) status_ = ExitStatus{};  // not our child any more: nothing to wait for
  return status_;
}

ExitStatus Process::wait(Millis limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!poll()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      (void)kill_now();
      status_ = ExitStatus{};  // timed_out
      ADD_FAILURE() << name_ << " did not exit within " << limit.count() << " ms and was killed\n" << describe();
      return *status_;
    }
    std::this_thread::sleep_for(2ms);
  }
  return *status_;
}

void Process::signal(int sig) {
  if (!poll()) ::kill(pid_, sig);
}

ExitStatus Process::kill_now() {
  if (poll()) return *status_;
  // The group first (the pid is not reaped yet, so the group id cannot be reused).
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, 0);
  } while (r < 0 && errno == EINTR);
  status_ = r == pid_ ? decode_status(st) : ExitStatus{};
  return *status_;
}

std::string Process::stdout_text() const {
  return stdout_path_.empty() ? std::string() : read_whole(stdout_path_);
}
std::string Process::stderr_text() const {
  return read_whole(stderr_path_);
}

std::vector<nlohmann::json> Process::json_events(bool from_stderr) const {
  std::vector<nlohmann::json> out;
  std::istringstream in(from_stderr ? stderr_text() : stdout_text());
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

std::string Process::command_line() const {
  std::string s;
  for (const auto& a : argv_) {
    if (!s.empty()) s += ' ';
    const bool quote = a.empty() || a.find_first_of(" \t'\"$;&|<>*?") != std::string::npos;
    s += quote ? "'" + a + "'" : a;
  }
  return s;
}

std::string Process::describe() const {
  std::ostringstream os;
  os << "  command: " << command_line() << "\n";
  if (status_) os << "  status: " << *status_ << "\n";
  os << "  stderr: " << tail(stderr_text(), 3000) << "\n";
  if (!stdout_path_.empty()) os << "  stdout: " << tail(stdout_text(), 3000) << "\n";
  return os.str();
}

bool wait_until(const std::function<bool()>& cond, Millis limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(3ms);
  }
}

Receiver start_receiver(const std::string& capture_dir, const std::string& name, const std::string& listen,
                        const std::vector<std::string>& args) {
  std::vector<std::string> argv{kRecvBin, "--listen", listen};
  argv.insert(argv.end(), args.begin(), args.end());
  Receiver r;
  r.proc = Process::start(argv, capture_dir, name);
  // Human: "ferry-recv: listening on ADDR"; --json: {"event":"listening","address":"ADDR",...}.
  static const std::regex listening(R"((?:listening on |"address":")((tcp|unix|vsock):[^\s"]+))");
  std::smatch m;
  std::string text;
  const bool seen = wait_until(
      [&] {
        text = r.proc->stderr_text() + "\n" + r.proc->stdout_text();
        return std::regex_search(text, m, listening) || !r.proc->running();
      },
      kStartLimit);
  if (!seen || m.empty()) {
    (void)r.proc->kill_now();
    throw std::runtime_error("ferry-recv did not report its address\n" + r.proc->describe());
  }
  r.address = m[1].str();
  if (m[2].str() == "tcp") r.port = static_cast<std::uint16_t>(std::stoi(r.address.substr(r.address.rfind(':') + 1)));
  return r;
}

TempDir::TempDir() {
  std::string templ = "/tmp/ferry-e2e-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);  // does not follow symlinks
}

void make_dirs(const std::string& path) {
  fs::create_directories(path);
}

void write_random_file(const std::string& path, std::uint64_t size, std::uint64_t seed) {
  make_dirs(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot create " + path);
  // splitmix64: fast, and the bytes depend only on (seed, size).
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + size;
  std::vector<std::uint64_t> buf(1 << 17);  // 1 MiB
  std::uint64_t left = size;
  while (left > 0) {
    for (auto& w : buf) {
      std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      w = z ^ (z >> 31);
    }
    const std::uint64_t n = std::min<std::uint64_t>(left, buf.size() * sizeof(std::uint64_t));
    f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
  if (!f) throw std::runtime_error("cannot write " + path);
}

void write_text_file(const std::string& path, const std::string& text) {
  make_dirs(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::uint64_t file_size(const std::string& path) {
  return fs::file_size(path);
}

bool exists_nofollow(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

struct TreeEntry {
  char kind;  // 'f' file, 'd' directory, 'l' symlink, '?' other
  std::uint64_t size;
};

std::map<std::string, TreeEntry> scan(const std::string& root) {
  std::map<std::string, TreeEntry> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const auto st = it->symlink_status();
    TreeEntry e{'?', 0};
    if (fs::is_symlink(st)) {
      e.kind = 'l';
    } else if (fs::is_directory(st)) {
      e.kind = 'd';
    } else if (fs::is_regular_file(st)) {
      e.kind = 'f';
      e.size = it->file_size();
    }
    out[fs::relative(it->path(), root).string()] = e;
  }
  return out;
}

// Offset of the first differing byte, or nullopt when the contents are equal.
std::optional<std::uint64_t> first_difference(const std::string& a, const std::string& b) {
  Fd fa(::open(a.c_str(), O_RDONLY | O_CLOEXEC)), fb(::open(b.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fa || !fb) return 0;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  std::uint64_t off = 0;
  for (;;) {
    ssize_t na = ::read(fa.get(), ba.data(), ba.size());
    ssize_t nb = ::read(fb.get(), bb.data(), bb.size());
    if (na < 0 || nb < 0) return off;
    const auto n = static_cast<std::size_t>(std::min(na, nb));
    for (std::size_t i = 0; i < n; ++i) {
      if (ba[i] != bb[i]) return off + i;
    }
    if (na != nb) return off + n;
    if (na == 0) return std::nullopt;
    off += n;
  }
}

}  // namespace

std::string compare_trees(const std::string& expected, const std::string& actual) {
  std::ostringstream diff;
  int problems = 0;
  auto note = [&](const std::string& s) {
    if (++problems <= 20) diff << "  " << s << "\n";
  };
  std::map<std::string, TreeEntry> want, have;
  try {
    want = scan(expected);
    have = scan(actual);
  } catch (const fs::filesystem_error& e) {
    return std::string("cannot scan: ") + e.what();
  }
  for (const auto& [rel, w] : want) {
    auto it = have.find(rel);
    if (it == have.end()) {
      note("missing: " + rel);
      continue;
    }
    const TreeEntry& h = it->second;
    if (h.kind != w.kind) {
      note(std::string("kind differs: ") + rel + " (expected " + w.kind + ", got " + h.kind + ")");
    } else if (w.kind == 'f' && h.size != w.size) {
      note("size differs: " + rel + " (expected " + std::to_string(w.size) + ", got " + std::to_string(h.size) + ")");
    } else if (w.kind == 'f') {
      if (auto off = first_difference(expected + "/" + rel, actual + "/" + rel)) {
        note("content differs: " + rel + " at byte " + std::to_string(*off));
      }
    }
  }
  for (const auto& [rel, h] : have) {
    if (!want.count(rel)) note(std::string("unexpected: ") + rel + " (" + h.kind + ")");
  }
  if (problems > 20) diff << "  ... " << problems - 20 << " more\n";
  return diff.str();
}

std::string compare_files(const std::string& expected, const std::string& actual) {
  if (!exists_nofollow(actual)) return "missing: " + actual;
  if (file_size(expected) != file_size(actual)) {
    return "size differs: expected " + std::to_string(file_size(expected)) + ", got " +
           std::to_string(file_size(actual));
  }
  if (auto off = first_difference(expected, actual)) return "content differs at byte " + std::to_string(*off);
  return {};
}

std::vector<std::string> ferry_leftovers(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string leaf = it->path().filename().string();
    if (!leaf.empty() && leaf[0] == '.' && leaf.find(".ferry-") != std::string::npos) {
      out.push_back(fs::relative(it->path(), dir).string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

const nlohmann::json* find_event(const std::vector<nlohmann::json>& events, const std::string& type,
                                 const std::string& path) {
  for (const auto& e : events) {
    if (e.value("event", "") != type) continue;
    if (!path.empty() && e.value("path", "") != path) continue;
    return &e;
  }
  return nullptr;
}

}  // namespace ferry::e2e
