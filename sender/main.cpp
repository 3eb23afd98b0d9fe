// ferry-send: send files and directories over a byte stream, verified and resumable.
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "lib/ui/remote_target.hpp"
#include "protocol/frame.hpp"
#include "sender/send_app.hpp"

namespace {

constexpr const char* kFooter = R"(Forms:
  ferry-send [OPTIONS] PATH... [USER@]HOST:DIR
  ferry-send [OPTIONS] (--connect ADDR | --listen ADDR | --stdio | -e CMD) PATH...
  ferry-send [OPTIONS] --watch DIR (--connect ADDR | -e CMD)

Examples:
  ferry-send big.iso user@host:/srv/in       over ssh (runs ferry-recv --stdio there)
  ferry-send --connect 10.0.0.2:5000 dir/    to a ferry-recv --listen 10.0.0.2:5000
  ferry-send -e 'ssh -p 2222' dir host:in    ssh with options
  ferry-send --watch /var/spool/out --connect vsock:host:5000

  ferry-send --check dir host:/srv/in        compare with the copy there, send nothing
  ferry-send -n dir host:/srv/in             what a transfer would send

Exit codes: 0 all verified (--check: all identical); 2 usage; 3 connection lost
(retries ran out); 4 protocol; 5 local I/O (also: nothing delivered because file
operations failed, here or there); 6 verification; 7 partial (some entries
failed); 8 authentication; 9 never connected (refused, unresolvable, or the
command ended before the handshake); 10 --check found entries not identical;
70 internal; 128+N stopped by signal N (--watch).)";

// `PATH... [USER@]HOST:DIR` without --connect/--listen/--stdio: the last PATH becomes
// the carrier `RSH HOST 'ferry-recv --stdio -- DIR'` (RSH: -e, else $FERRY_RSH, else ssh);
// for --check and --dry-run `ferry-recv --stdio --inspect-only -- DIR` (DIR untouched).
void apply_remote_target(ferry::sender::SendOptions& o, const std::string& remote_recv) {
  auto& c = o.common;
  if (!c.connect.empty() || !c.listen.empty() || c.stdio || o.paths.size() < 2 || !o.watch_dir.empty()) return;
  auto target = ferry::parse_remote_target(o.paths.back());
  if (!target) return;
  std::string rsh = c.rsh;
  if (rsh.empty()) {
    const char* env = std::getenv("FERRY_RSH");
    rsh = env && *env ? env : "ssh";
  }
  c.rsh = ferry::remote_command(rsh, *target, remote_recv, o.check || o.dry_run);
  o.paths.pop_back();
}

// --links, and the sessions that look without sending: --check, --check-extra, --dry-run.
void add_link_and_inspect_flags(CLI::App& app, ferry::sender::SendOptions& o) {
  app.add_flag("-l,--links", o.links,
               "Send symlinks as symlinks, their target text unchanged (the receiver needs protocol version 4; "
               "-L wins when both are given)");
  app.add_flag("--check", o.check,
               "Compare PATHs with what the receiver holds (identical, different, missing, partial), digests "
               "computed on both sides; no file data is sent and nothing is written there; exit 10 if any differs");
  app.add_flag("--check-extra", o.check_extra,
               "With --check: also report names only the receiver has in the offered directories");
  app.add_flag("-n,--dry-run", o.dry_run,
               "Say what a transfer would do (send, resume at OFFSET, complete, create), without sending or "
               "writing anything");
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed peer is an EPIPE error value, not a death
  CLI::App app{"ferry-send: send files over an untrusted byte stream; each arrives whole and verified, or not at all"};
  app.footer(kFooter);
  ferry::sender::SendOptions o;
  ferry::add_common_options(app, o.common);
  app.add_option("PATH", o.paths,
                 "Files and directories to send; the last one may be [USER@]HOST:DIR (sent over ssh, or -e/$FERRY_RSH)")
      ->type_name("PATH");
  std::string remote_recv = "ferry-recv";
  app.add_option("--remote-ferry-recv", remote_recv,
                 "With HOST:DIR: the ferry-recv program to run on the host (default ferry-recv)")
      ->type_name("PATH");
  app.add_flag("-L,--copy-links", o.copy_links,
               "Send what symlinks point to (by default they are skipped with a warning, as rsync does)");
  add_link_and_inspect_flags(app, o);
  unsigned retries = 20;
  auto* retries_opt = app.add_option("--retries", retries,
                                     "Reconnect attempts in a row without progress (default 20, with --watch: "
                                     "unlimited; 0 = never)")
                          ->type_name("N");
  app.add_option("--watch", o.watch_dir,
                 "Spool mode: send every complete file that appears in DIR (and below), then move it to DIR/.sent")
      ->type_name("DIR");
  app.add_option("--settle", o.settle_s,
                 "With --watch: seconds a file must stay unchanged before it is sent (default 1)")
      ->type_name("SECONDS");
  app.add_option(
         "--on-sent", o.on_sent,
         "With --watch: after a file is verified, 'move:DIR' (default move:WATCHDIR/.sent), 'remove' or 'keep'")
      ->type_name("ACTION");
  std::string wait_text;
  app.add_option("--wait-for-receiver", wait_text,
                 "Redial a first connection that fails (refused, unresolvable, or the -e command ended before the "
                 "handshake) for up to DURATION (e.g. 30s, 5m) instead of giving up at once with exit code 9")
      ->type_name("DURATION");
  app.set_version_flag("--version", std::string("ferry-send " FERRY_VERSION " (protocol version ") +
                                        std::to_string(ferry::protocol::kProtocolVersion) + ")");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(ferry::Errc::usage);
  }
  if (retries_opt->count() > 0) o.retries = retries;
  if (!o.common.generate_key.empty()) return ferry::generate_key_command(o.common.generate_key, "ferry-send");
  apply_remote_target(o, remote_recv);
  auto ok = ferry::finish_common_options(o.common);
  if (ok && !wait_text.empty()) {
    auto wait = ferry::parse_duration(wait_text);
    if (wait) o.wait_for_receiver = *wait;
    if (!wait) ok = wait.error();
  }
  if (!ok) {
    std::fprintf(stderr, "ferry-send: error: %s\n", ok.error().message().c_str());
    return ok.error().exit_code();
  }
  return ferry::sender::run_send(o);
}
