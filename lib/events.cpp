#include "lib/events.hpp"

#include <unistd.h>

#include <cinttypes>
#include <nlohmann/json.hpp>

namespace ferry {

const char* event_type_name(EventType t) {
  switch (t) {
    case EventType::session_start: return "session_start";
    case EventType::file_start: return "file_start";
    case EventType::resume: return "resume";
    case EventType::progress: return "progress";
    case EventType::file_verified: return "file_verified";
    case EventType::file_failed: return "file_failed";
    case EventType::file_skipped: return "file_skipped";
    case EventType::connection_lost: return "connection_lost";
    case EventType::reconnect: return "reconnect";
    case EventType::warning: return "warning";
    case EventType::session_end: return "session_end";
  }
  return "unknown";
}

namespace {

constexpr auto kProgressInterval = std::chrono::milliseconds(250);

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

class JsonSink final : public EventSink {
 public:
  explicit JsonSink(std::FILE* out) : out_(out), t0_(Clock::now()) {}
  void emit(const Event& e) override {
    if (e.type == EventType::progress) {
      auto now = Clock::now();
      if (now - last_progress_ < kProgressInterval && e.offset != e.size) return;
      last_progress_ = now;
    }
    nlohmann::json j{{"event", event_type_name(e.type)}, {"t", seconds_since(t0_)}};
    if (!e.path.empty()) j["path"] = e.path;
    if (e.type != EventType::session_start && e.type != EventType::session_end && !e.path.empty()) {
      j["size"] = e.size;
      j["offset"] = e.offset;
    }
    if (!e.detail.empty()) j["detail"] = e.detail;
    if (e.type == EventType::session_end) {
      const Totals& t = e.totals;
      j["exit_code"] = e.exit_code;
      j["totals"] = {{"files_verified", t.files_verified}, {"files_failed", t.files_failed},
                     {"files_skipped", t.files_skipped},   {"bytes_verified", t.bytes_verified},
                     {"bytes_payload", t.bytes_payload},   {"bytes_resent", t.bytes_resent},
                     {"chunks_rejected", t.chunks_rejected}, {"reconnects", t.reconnects},
                     {"stall_timeouts", t.stall_timeouts}, {"write_retries", t.write_retries}};
    }
    std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  Clock::time_point t0_;
  Clock::time_point last_progress_{};
};

class HumanSink final : public EventSink {
 public:
  HumanSink(bool quiet, bool verbose, std::string role)
      : quiet_(quiet), verbose_(verbose), live_(!quiet && ::isatty(2)), role_(std::move(role)), t0_(Clock::now()) {}

  void emit(const Event& e) override {
    switch (e.type) {
      case EventType::progress: return progress(e);
      case EventType::file_start:
        file_t0_ = Clock::now();
        file_base_ = e.offset;
        return progress(e);
      case EventType::resume:
        file_base_ = e.offset;
        if (!quiet_) line("resuming " + e.path + " at " + human_bytes(static_cast<double>(e.offset)) +
                          (e.detail.empty() ? "" : " (" + e.detail + ")"));
        return;
      case EventType::file_verified:
        if (verbose_ || (!quiet_ && live_)) {
          line("verified " + e.path + (e.detail.empty() ? " (" + human_bytes(static_cast<double>(e.size)) + ")"
                                                        : " (" + e.detail + ")"));
        }
        return;
      case EventType::file_failed: return line("failed " + (e.path.empty() ? "" : e.path + ": ") + e.detail, true);
      case EventType::file_skipped: return line("skipped " + e.detail, true);
      case EventType::warning:
        if (!quiet_) line((e.path.empty() ? "" : e.path + ": ") + e.detail);
        return;
      case EventType::connection_lost:
        if (!quiet_) line("connection lost: " + e.detail);
        return;
      case EventType::reconnect:
        if (!quiet_) line("reconnecting: " + e.detail);
        return;
      case EventType::session_start:
        if (verbose_) line("connected (" + e.detail + ")");
        return;
      case EventType::session_end: return summary(e);
    }
  }

 private:
  void clear_live() {
    if (shown_) {
      std::fprintf(stderr, "\r\033[K");
      shown_ = false;
    }
  }
  void line(const std::string& s, bool always = false) {
    if (quiet_ && !always) return;
    clear_live();
    std::fprintf(stderr, "ferry-%s: %s\n", role_.c_str(), s.c_str());
  }
  void progress(const Event& e) {
    if (!live_) return;
    auto now = Clock::now();
    if (now - last_ < kProgressInterval && e.offset != e.size) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - file_t0_).count();
    double rate = secs > 0 ? static_cast<double>(e.offset - std::min(e.offset, file_base_)) / secs : 0;
    double pct = e.size ? 100.0 * static_cast<double>(e.offset) / static_cast<double>(e.size) : 100.0;
    std::string eta = "--:--";
    if (rate > 0 && e.size >= e.offset) {
      auto left = static_cast<long>(static_cast<double>(e.size - e.offset) / rate);
      char b[48];
      std::snprintf(b, sizeof b, "%02ld:%02ld", left / 60, left % 60);
      eta = b;
    }
    std::fprintf(stderr, "\r\033[K%s  %s / %s  %5.1f%%  %s/s  ETA %s", e.path.c_str(),
                 human_bytes(static_cast<double>(e.offset)).c_str(), human_bytes(static_cast<double>(e.size)).c_str(),
                 pct, human_bytes(rate).c_str(), eta.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void summary(const Event& e) {
    if (quiet_) return;  // a failure still gets its one-line reason from main
    const Totals& t = e.totals;
    double secs = seconds_since(t0_);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "%s: %" PRIu64 " verified (%s) in %.1f s, %s/s; %" PRIu64 " failed, %" PRIu64
                  " skipped; %" PRIu64 " reconnects, %s re-sent, %" PRIu64 " chunks rejected, %" PRIu64
                  " stall timeouts, %" PRIu64 " write retries",
                  e.detail.c_str(), t.files_verified, human_bytes(static_cast<double>(t.bytes_verified)).c_str(), secs,
                  human_bytes(secs > 0 ? static_cast<double>(t.bytes_verified) / secs : 0).c_str(), t.files_failed,
                  t.files_skipped, t.reconnects, human_bytes(static_cast<double>(t.bytes_resent)).c_str(),
                  t.chunks_rejected, t.stall_timeouts, t.write_retries);
    line(buf, true);
  }

  bool quiet_, verbose_, live_;
  std::string role_;
  Clock::time_point t0_, last_{}, file_t0_{};
  std::uint64_t file_base_ = 0;
  bool shown_ = false;
};

}  // namespace

std::unique_ptr<EventSink> make_json_sink(std::FILE* out) { return std::make_unique<JsonSink>(out); }
std::unique_ptr<EventSink> make_human_sink(bool quiet, bool verbose, std::string role) {
  return std::make_unique<HumanSink>(quiet, verbose, std::move(role));
}

}  // namespace ferry
