// ferry-send: send files and directories over a byte stream, verified and resumable.
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "sender/send_app.hpp"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed peer is an EPIPE error value, not a death
  CLI::App app{"ferry-send: send files over an untrusted byte stream; each arrives whole and verified, or not at all"};
  ferry::sender::SendOptions o;
  ferry::add_common_options(app, o.common);
  app.add_option("PATH", o.paths, "Files and directories to send");
  unsigned retries = 20;
  auto* retries_opt = app.add_option("--retries", retries,
                                     "Reconnect attempts in a row without progress (default 20, with --watch: "
                                     "unlimited; 0 = never)");
  app.add_option("--watch", o.watch_dir,
                 "Spool mode: send every complete file that appears in DIR (and below), then move it to DIR/.sent");
  app.add_option("--settle", o.settle_s,
                 "With --watch: seconds a file must stay unchanged before it is sent (default 1)");
  app.add_option(
      "--on-sent", o.on_sent,
      "With --watch: after a file is verified, 'move:DIR' (default move:WATCHDIR/.sent), 'remove' or 'keep'");
  app.set_version_flag("--version", "ferry-send " FERRY_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(ferry::Errc::usage);
  }
  if (retries_opt->count() > 0) o.retries = retries;
  if (!o.common.generate_key.empty()) return ferry::generate_key_command(o.common.generate_key, "ferry-send");
  auto ok = ferry::finish_common_options(o.common);
  if (!ok) {
    std::fprintf(stderr, "ferry-send: error: %s\n", ok.error().message().c_str());
    return ok.error().exit_code();
  }
  return ferry::sender::run_send(o);
}
