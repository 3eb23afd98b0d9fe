#include "sender/send_app.hpp"

#include <cstdio>
#include <functional>
#include <memory>

#include "lib/core/events.hpp"
#include "sender/sender.hpp"
#include "sender/spool/spool.hpp"

namespace ferry::sender {

namespace {

int report(const Outcome& out) {
  if (out.error) std::fprintf(stderr, "ferry-send: error: %s\n", out.error->message().c_str());
  return out.exit_code;
}

// --watch: the spool.
int run_watch(const SendOptions& o, std::function<void(const Event&)> on_event) {
  if (!o.paths.empty()) return report(Outcome{2, make_error(Errc::usage, "--watch takes no PATH arguments"), {}});
  if (!(o.settle_s >= 0 && o.settle_s <= 86400)) {
    return report(Outcome{2, make_error(Errc::usage, "--settle must be between 0 and 86400 seconds"), {}});
  }
  SpoolOptions so;
  so.dir = o.watch_dir;
  so.transport = transport_from(o.common);
  so.settle = std::chrono::milliseconds(static_cast<std::int64_t>(o.settle_s * 1000));
  if (!o.on_sent.empty()) {
    auto p = parse_on_sent(o.on_sent, o.watch_dir);
    if (!p) return report(Outcome{2, p.error(), {}});
    so.on_sent = *p;
  }
  so.retries = o.retries;  // unset: forever
  so.chunk_size = o.common.chunk_size;
  so.window = o.common.window;
  so.stall_timeout = o.common.stall_timeout;
  so.key = o.common.key;
  so.rate_limit = o.common.rate_limit;
  so.on_event = std::move(on_event);
  return report(run_spool(std::move(so)));
}

}  // namespace

int run_send(const SendOptions& o) {
  auto on_event = cli_event_printer(o.common, "send");
  if (!o.watch_dir.empty() && (o.check || o.dry_run)) {
    return report(Outcome{2, make_error(Errc::usage, "--check and --dry-run do not go with --watch"), {}});
  }
  if (!o.watch_dir.empty()) return run_watch(o, on_event);
  if (!o.on_sent.empty()) return report(Outcome{2, make_error(Errc::usage, "--on-sent needs --watch"), {}});
  if (o.check && o.dry_run) {
    return report(Outcome{2, make_error(Errc::usage, "--check and --dry-run exclude each other"), {}});
  }
  if (o.check_extra && !o.check) return report(Outcome{2, make_error(Errc::usage, "--check-extra needs --check"), {}});
  if (o.paths.empty())
    return report(Outcome{2, make_error(Errc::usage, "give at least one PATH to send, or --watch DIR"), {}});
  SenderOptions so;
  so.transport = transport_from(o.common);
  so.paths = o.paths;
  so.chunk_size = o.common.chunk_size;
  so.window = o.common.window;
  so.stall_timeout = o.common.stall_timeout;
  so.retries = o.retries.value_or(20);
  so.key = o.common.key;
  so.first_connection_wait = o.wait_for_receiver;
  so.copy_links = o.copy_links;
  so.links = o.links;
  so.mode = o.check     ? SenderOptions::Mode::check
            : o.dry_run ? SenderOptions::Mode::dry_run
                        : SenderOptions::Mode::transfer;
  so.check_extra = o.check_extra;
  so.rate_limit = o.common.rate_limit;
  so.on_event = on_event;
  Sender sender(std::move(so));
  return report(sender.run());
}

}  // namespace ferry::sender
