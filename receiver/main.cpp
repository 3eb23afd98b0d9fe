// ferry-recv: receive files into DEST_DIR; each appears whole and verified, or not at all.
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "receiver/recv_app.hpp"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed peer is an EPIPE error value, not a death
  CLI::App app{"ferry-recv: receive files into DEST_DIR; each appears whole and verified, or not at all"};
  ferry::receiver::RecvOptions o;
  ferry::add_common_options(app, o.common);
  double idle_s = -1;
  app.add_option("DEST_DIR", o.dest, "Directory to write into (created if missing)")->required();
  app.add_flag("--once", o.once, "Exit 0 after one sender's transfer is delivered and verified in full");
  app.add_flag("--no-fsync", o.no_fsync,
               "Do not fsync files, directories or journals (scratch copies: verification is unchanged, "
               "durability against power loss is given up)");
  app.add_option("--idle-timeout", idle_s,
                 "Exit non-zero after this many seconds with no sender connected (default 300 with --once, else never)");
  app.add_option("--retries", o.retries, "Reconnect attempts in a row without progress with --connect/-e (default 20)");
  ferry::receiver::LimitOptions limits;
  ferry::receiver::add_limit_options(app, limits);
  app.set_version_flag("--version", "ferry-recv " FERRY_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(ferry::Errc::usage);
  }
  auto ok = ferry::finish_common_options(o.common);
  if (ok && idle_s > 86400 * 365) ok = ferry::make_error(ferry::Errc::usage, "--idle-timeout too large");
  if (ok) ok = ferry::receiver::finish_limit_options(limits, o);
  if (!ok) {
    std::fprintf(stderr, "ferry-recv: error: %s\n", ok.error().message().c_str());
    return ok.error().exit_code();
  }
  if (idle_s < 0) idle_s = o.once ? 300 : 0;
  o.idle_timeout = std::chrono::milliseconds(static_cast<long long>(idle_s * 1000));
  return ferry::receiver::run_recv(o);
}
