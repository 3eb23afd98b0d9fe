#include "receiver/recv_app.hpp"

#include <cstdio>

#include "lib/core/events.hpp"
#include "lib/uv/own_loop.hpp"
#include "receiver/receiver.hpp"

namespace ferry::receiver {

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
  ro.first_connection_wait = std::chrono::milliseconds(0);  // a first connection that fails ends it (exit 8)
  ro.window = o.common.window;
  ro.rate_limit = o.common.rate_limit;
  ro.no_fsync = o.no_fsync;
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
