#include "lib/ui/options.hpp"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <random>

#include "lib/fs/key_file.hpp"
#include "lib/ui/event_sinks.hpp"
#include "protocol/digest.hpp"
#include "protocol/frame.hpp"

namespace ferry {

Result<std::uint64_t> parse_size(const std::string& text) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    std::uint64_t d = static_cast<std::uint64_t>(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return make_error(Errc::usage, "size too large: '" + text + "'");
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return make_error(Errc::usage, "not a size: '" + text + "' (want e.g. 256K, 4M, 1G)");
  std::string suffix = text.substr(i);
  for (auto& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B")
    shift = 0;
  else if (suffix == "K" || suffix == "KB" || suffix == "KIB")
    shift = 10;
  else if (suffix == "M" || suffix == "MB" || suffix == "MIB")
    shift = 20;
  else if (suffix == "G" || suffix == "GB" || suffix == "GIB")
    shift = 30;
  else if (suffix == "T" || suffix == "TB" || suffix == "TIB")
    shift = 40;
  else
    return make_error(Errc::usage, "unknown size suffix in '" + text + "' (use K, M, G or T)");
  if (shift && v > (UINT64_MAX >> shift)) return make_error(Errc::usage, "size too large: '" + text + "'");
  return v << shift;
}

Result<std::chrono::milliseconds> parse_duration(const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1000;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  if (used == 0 || scale == 0 || !(v >= 0) || v * scale > 366.0 * 86'400'000) {
    return make_error(Errc::usage, "not a duration: '" + text + "' (want e.g. 30, 30s, 500ms, 5m, 1h; at most a year)");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(v * scale));
}

void add_common_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--listen", o.listen,
                 "Listen on ADDR (tcp:HOST:PORT, HOST:PORT, [IPv6]:PORT, unix:PATH, vsock:CID:PORT)")
      ->type_name("ADDR");
  app.add_option("--connect", o.connect, "Connect to ADDR (as for --listen; vsock:host:PORT reaches the VM host)")
      ->type_name("ADDR");
  app.add_flag("--stdio", o.stdio, "Speak the protocol on stdin/stdout");
  app.add_option("-e,--rsh", o.rsh, "Run CMD with /bin/sh -c and speak over its stdin/stdout")->type_name("CMD");
  app.add_option("--chunk-size", o.chunk_size_text, "DATA chunk size (1K..16M, default 256K)")->type_name("SIZE");
  app.add_option("--window", o.window_text, "Most unacknowledged bytes in flight (default 16M)")->type_name("SIZE");
  app.add_option("--stall-timeout", o.stall_timeout_s,
                 "Seconds without progress before a connection is presumed dead (default 10)")
      ->type_name("SECONDS");
  app.add_option("--bwlimit", o.bwlimit_text,
                 "Move at most RATE bytes per second over the connection (e.g. 500K, 10M; both directions together)")
      ->type_name("RATE");
  app.add_flag("--json", o.json, "One JSON object per event on stdout (stderr with --stdio)");
  app.add_flag("--progress", o.progress, "Draw the live progress line even when stderr is not a terminal");
  app.add_flag("-q,--quiet", o.quiet, "No progress or summary; errors only");
  app.add_flag("-v,--verbose", o.verbose, "One line per file");
  app.add_option("--key-file", o.key_file,
                 "Shared secret key (64 hex digits, mode 0600) both sides must hold (default: $FERRY_KEY_FILE)")
      ->type_name("PATH");
  app.add_option("--generate-key", o.generate_key,
                 "Write a new random key to PATH (created 0600, never overwritten), exit")
      ->type_name("PATH");
  app.add_option("--allow", o.allow,
                 "With --listen: accept only peers in this prefix (10.0.0.0/8, fd00::/8) or vsock:CID; repeatable")
      ->type_name("PREFIX");
  app.add_flag("--no-auth-i-know-this-is-insecure", o.insecure_no_key,
               "With --listen: serve without a key on an address others can reach (warned about)");
}

int generate_key_command(const std::string& path, const char* program) {
  auto made = generate_key_file(path);
  if (!made) {
    std::fprintf(stderr, "%s: error: %s\n", program, made.error().message().c_str());
    return made.error().exit_code();
  }
  std::fprintf(stderr, "%s: wrote a new key to %s (mode 0600); give the peer a copy over a safe channel\n", program,
               path.c_str());
  return 0;
}

namespace {

// --key-file, else FERRY_KEY_FILE; --allow only with --listen.
Result<void> finish_auth_options(CommonOptions& o) {
  std::string path = o.key_file;
  if (path.empty()) {
    const char* env = std::getenv("FERRY_KEY_FILE");
    if (env) path = env;
  }
  if (!path.empty()) {
    auto key = load_key_file(path);
    if (!key) return key.error();
    o.key = std::move(*key);
  }
  if (!o.allow.empty() && o.mode != ConnectMode::listen) return make_error(Errc::usage, "--allow needs --listen");
  return {};
}

}  // namespace

Result<void> finish_common_options(CommonOptions& o) {
  int modes = !o.listen.empty() + !o.connect.empty() + o.stdio + !o.rsh.empty();
  if (modes != 1) return make_error(Errc::usage, "give exactly one of --listen, --connect, --stdio, -e/--rsh");
  if (!o.listen.empty()) {
    o.mode = ConnectMode::listen;
    auto a = parse_address(o.listen, AddressUse::listen);
    if (!a) return a.error();
    o.address = *a;
  } else if (!o.connect.empty()) {
    o.mode = ConnectMode::connect;
    auto a = parse_address(o.connect, AddressUse::connect);
    if (!a) return a.error();
    o.address = *a;
  } else if (o.stdio) {
    o.mode = ConnectMode::stdio;
  } else {
    o.mode = ConnectMode::command;
  }
  auto chunk = parse_size(o.chunk_size_text);
  if (!chunk) return chunk.error();
  auto window = parse_size(o.window_text);
  if (!window) return window.error();
  if (!(o.stall_timeout_s > 0 && o.stall_timeout_s <= 86400)) {
    return make_error(Errc::usage, "--stall-timeout must be between 0 and 86400 seconds");
  }
  if (*chunk > protocol::kMaxChunkSize) return make_error(Errc::usage, "--chunk-size must be between 1K and 16M");
  if (!o.bwlimit_text.empty()) {
    auto rate = parse_size(o.bwlimit_text);
    if (!rate) return rate.error();
    if (*rate < 1024) return make_error(Errc::usage, "--bwlimit must be at least 1K (bytes per second)");
    o.rate_limit = *rate;
  }
  o.chunk_size = static_cast<std::size_t>(*chunk);
  o.window = *window;
  o.stall_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.stall_timeout_s * 1000));
  auto limits = check_transfer_limits(o.chunk_size, o.window, o.stall_timeout);
  if (!limits) return limits;
  return finish_auth_options(o);
}

Transport transport_from(const CommonOptions& o) {
  switch (o.mode) {
    case ConnectMode::listen: {
      Transport t = Transport::listen_on(o.address);
      t.allow = o.allow;
      t.insecure_no_key = o.insecure_no_key;
      return t;
    }
    case ConnectMode::connect:
      return Transport::connect_to(o.address);
    case ConnectMode::stdio:
      return Transport::stdio();
    case ConnectMode::command:
      return Transport::run_command(o.rsh);
  }
  return Transport::provided_by_caller();
}

std::function<void(const Event&)> cli_event_printer(const CommonOptions& o, const std::string& role) {
  HumanSinkOptions human;
  human.quiet = o.quiet;
  human.verbose = o.verbose;
  human.role = role;
  if (o.progress) human.live = true;
  std::shared_ptr<EventSink> sink =
      o.json ? make_json_sink(o.mode == ConnectMode::stdio ? stderr : stdout) : make_human_sink(std::move(human));
  return [sink, human = !o.json](const Event& e) {
    // Nothing was attempted (usage) or nothing may be (authentication): main's one
    // error line says it all.
    const bool nothing_done =
        e.exit_code == static_cast<int>(Errc::usage) || e.exit_code == static_cast<int>(Errc::authentication);
    if (human && e.type == EventType::session_end && nothing_done) return;
    sink->emit(e);
  };
}

}  // namespace ferry
