#include "receiver/recv_app.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "lib/core/events.hpp"
#include "lib/uv/own_loop.hpp"
#include "receiver/receiver.hpp"

namespace ferry::receiver {

void add_limit_options(CLI::App& app, LimitOptions& l) {
  app.add_option("--handshake-timeout", l.handshake_timeout_s,
                 "Close a connection whose handshake is not complete after SECONDS (default 10)")
      ->type_name("SECONDS");
  app.add_option("--peer-timeout", l.peer_timeout_s,
                 "Close a connection whose sender makes no progress for SECONDS (default 60)")
      ->type_name("SECONDS");
  app.add_option("--busy-timeout", l.busy_timeout_s,
                 "Refuse a file another connection is receiving after waiting SECONDS for it (default 120)")
      ->type_name("SECONDS");
  app.add_option("--max-connections", l.max_connections, "Serve at most N connections at once (default 256)")
      ->type_name("N");
  app.add_option("--max-per-address", l.max_per_address,
                 "Serve at most N connections from one TCP peer address, 0 for no limit (default 16)")
      ->type_name("N");
}

namespace {
Result<std::chrono::milliseconds> timeout_option(const char* name, double seconds) {
  if (!(seconds > 0) || seconds > 86400.0 * 365) {
    return make_error(Errc::usage, std::string(name) + " must be more than 0 and at most a year of seconds");
  }
  return std::chrono::milliseconds(std::max<long long>(1, static_cast<long long>(seconds * 1000)));
}
}  // namespace

Result<void> finish_limit_options(const LimitOptions& l, RecvOptions& o) {
  auto handshake = timeout_option("--handshake-timeout", l.handshake_timeout_s);
  if (!handshake) return handshake.error();
  auto peer = timeout_option("--peer-timeout", l.peer_timeout_s);
  if (!peer) return peer.error();
  auto busy = timeout_option("--busy-timeout", l.busy_timeout_s);
  if (!busy) return busy.error();
  if (l.max_connections == 0) return make_error(Errc::usage, "--max-connections must be at least 1");
  o.handshake_timeout = *handshake;
  o.peer_timeout = *peer;
  o.busy_timeout = *busy;
  o.max_connections = l.max_connections;
  o.max_per_address = l.max_per_address;
  return {};
}

int run_recv(const RecvOptions& o) {
  OwnLoop loop;
  if (loop.error()) {
    std::fprintf(stderr, "ferry-recv: error: %s\n", loop.error()->message().c_str());
    return loop.error()->exit_code();
  }
  ReceiverOptions ro;
  ro.transport = transport_from(o.common);
  ro.dest = o.dest;
  ro.once = o.once;
  ro.idle_timeout = o.idle_timeout;
  ro.retries = o.retries;
  ro.first_connection_wait = std::chrono::milliseconds(0);  // a first connection that fails ends it (exit 9)
  ro.window = o.common.window;
  ro.rate_limit = o.common.rate_limit;
  ro.no_fsync = o.no_fsync;
  ro.no_links = o.no_links;
  ro.safe_links = o.safe_links;
  ro.inspect_only = o.inspect_only;
  ro.stale_partial_age = o.stale_partial_age;
  ro.key = o.common.key;
  ro.max_senders = o.max_connections;
  ro.max_per_address = o.max_per_address;
  ro.handshake_timeout = o.handshake_timeout;
  ro.peer_timeout = o.peer_timeout;
  ro.busy_timeout = o.busy_timeout;
  ro.on_event = [print = cli_event_printer(o.common, "recv"), &loop](const Event& e) {
    print(e);
    if (e.type == EventType::session_end) loop.drop_signals();  // let the loop end
  };
  Outcome out;
  {
    Receiver receiver(std::move(ro));
    loop.on_signals([&receiver](int code, const std::string& why) { receiver.stop(code, why); });
    receiver.start(loop.get());
    loop.run();
    out = ended_outcome(receiver.outcome());
  }
  if (out.error) std::fprintf(stderr, "ferry-recv: error: %s\n", out.error->message().c_str());
  return out.exit_code;
}

}  // namespace ferry::receiver
