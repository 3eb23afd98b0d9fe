// ferry-recv: receive files into DEST_DIR; each appears whole and verified, or not at all.
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "protocol/frame.hpp"
#include "receiver/recv_app.hpp"

namespace {

// "30", "30s", "90m", "12h", "7d" (a whole number of seconds, minutes, hours or days)
// as seconds; nullopt when malformed or over ten years.
std::optional<std::chrono::seconds> parse_age(const std::string& text) {
  std::size_t used = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (text.empty() || text[0] == '-' || used + 1 < text.size()) return std::nullopt;
  const char unit = used < text.size() ? text[used] : 's';
  const unsigned long long scale = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : 0;
  if (scale == 0 || n > 3650ull * 86400 / scale) return std::nullopt;
  return std::chrono::seconds(static_cast<long long>(n * scale));
}

constexpr const char* kFooter = R"(Examples:
  ferry-recv --listen 0.0.0.0:5000 /srv/in      serve senders (run from a ferry-send)
  ferry-recv --listen unix:/run/ferry.sock --once /tmp/in
  ferry-recv --stdio /srv/in                     as started by ferry-send HOST:DIR over ssh

Exit codes: 0 delivered and verified (--once or one connection); 2 usage;
3 connection lost or --idle-timeout; 4 protocol; 5 local I/O (DEST not
writable, a failed write); 6 verification; 7 partial; 8 authentication;
9 never connected (--connect/-e only); 70 internal; 128+N stopped by signal N.)";
}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed peer is an EPIPE error value, not a death
  CLI::App app{"ferry-recv: receive files into DEST_DIR; each appears whole and verified, or not at all"};
  ferry::receiver::RecvOptions o;
  ferry::add_common_options(app, o.common);
  double idle_s = -1;
  app.footer(kFooter);
  // Required, except with --generate-key (checked after parsing).
  app.add_option("DEST_DIR", o.dest, "Directory to write into (created if missing)")->type_name("DIR");
  app.add_flag("--once", o.once, "Exit 0 after one sender's transfer is delivered and verified in full");
  app.add_flag("--no-fsync", o.no_fsync,
               "Do not fsync files, directories or journals (scratch copies: verification is unchanged, "
               "durability against power loss is given up)");
  app.add_flag("--no-links", o.no_links,
               "Refuse every symlink a sender offers with --links (each is answered 'refused'; files are unaffected)");
  app.add_flag("--safe-links", o.safe_links,
               "Refuse offered symlinks whose target is absolute or climbs out of DEST_DIR (others are made as sent)");
  app.add_flag("--inspect-only", o.inspect_only,
               "Answer only --check and --dry-run (a transfer is refused); DEST_DIR must exist and nothing in it "
               "changes: not created, no stale partial removed (ferry-send HOST:DIR adds this for those)");
  app.add_option("--idle-timeout", idle_s,
                 "Exit non-zero after this many seconds with no sender connected (default 300 with --once, else never)")
      ->type_name("SECONDS");
  std::string stale_age = "7d";
  app.add_option("--stale-partial-age", stale_age,
                 "Remove partials and journals not modified for this long when met (at a file's open, and in "
                 "DEST_DIR's top level at the start): N[s|m|h|d], 0 never (default 7d)")
      ->type_name("AGE");
  app.add_option("--retries", o.retries, "Reconnect attempts in a row without progress with --connect/-e (default 20)")
      ->type_name("N");
  ferry::receiver::LimitOptions limits;
  ferry::receiver::add_limit_options(app, limits);
  app.set_version_flag("--version", std::string("ferry-recv " FERRY_VERSION " (protocol version ") +
                                        std::to_string(ferry::protocol::kProtocolVersion) + ")");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(ferry::Errc::usage);
  }
  if (!o.common.generate_key.empty()) return ferry::generate_key_command(o.common.generate_key, "ferry-recv");
  auto ok = o.dest.empty() ? ferry::Result<void>(ferry::make_error(ferry::Errc::usage, "DEST_DIR is required"))
                           : ferry::finish_common_options(o.common);
  if (ok && idle_s > 86400 * 365) ok = ferry::make_error(ferry::Errc::usage, "--idle-timeout too large");
  const auto age = parse_age(stale_age);
  if (ok && !age) ok = ferry::make_error(ferry::Errc::usage, "--stale-partial-age: not a duration: " + stale_age);
  if (ok) ok = ferry::receiver::finish_limit_options(limits, o);
  if (!ok) {
    std::fprintf(stderr, "ferry-recv: error: %s\n", ok.error().message().c_str());
    return ok.error().exit_code();
  }
  o.stale_partial_age = *age;
  if (idle_s < 0) idle_s = o.once ? 300 : 0;
  o.idle_timeout = std::chrono::milliseconds(static_cast<long long>(idle_s * 1000));
  return ferry::receiver::run_recv(o);
}
