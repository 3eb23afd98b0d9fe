#include "lib/ui/event_sinks.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

namespace ferry {

namespace {

// "schema" in every JSON event (docs/EVENTS.md): raised when a field changes meaning
// or goes away; new events and fields do not raise it.
constexpr int kEventSchemaVersion = 1;
constexpr auto kProgressInterval = std::chrono::milliseconds(250);
constexpr unsigned kDefaultWidth = 80;
constexpr std::size_t kMinPathColumns = 12;  // below this, drop other fields first
// Figures that change between redraws are padded to their widest, so that the layout
// and the cut of the path do not jump from one redraw to the next.
// (Only a rare "1023.9 KiB" or an ETA of hours is wider and shifts the end of the line.)
constexpr std::size_t kBytesColumns = 9;    // "100.0 MiB"
constexpr std::size_t kPercentColumns = 4;  // "100%"
constexpr std::size_t kEtaColumns = 9;      // "ETA 59:59"

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
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
std::string human_bytes(std::uint64_t b) { return human_bytes(static_cast<double>(b)); }

// "M:SS", or "H:MM:SS" from an hour on.
std::string clock_text(double secs) {
  auto s = static_cast<std::uint64_t>(std::max(0.0, secs) + 0.5);
  char buf[48];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 ":%02u:%02u", s / 3600, static_cast<unsigned>(s / 60 % 60),
                  static_cast<unsigned>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%u:%02u", static_cast<unsigned>(s / 60), static_cast<unsigned>(s % 60));
  }
  return buf;
}

std::size_t columns(std::string_view s);
std::string pad_left(const std::string& s, std::size_t width) {
  const std::size_t c = columns(s);
  return c >= width ? s : std::string(width - c, ' ') + s;
}

std::string percent(std::uint64_t done, std::uint64_t total) {
  const double p = total == 0 ? 100.0 : 100.0 * static_cast<double>(std::min(done, total)) / static_cast<double>(total);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", p);
  return buf;
}

// Paths, notes and the peer's software name come from the peer: C0 controls and DEL
// become '?', so nothing it sends is an escape sequence on our terminal.
std::string printable(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

// Columns of UTF-8 text, one per code point (wide characters are rare in paths; a
// line that is one column too long only wraps).
std::size_t columns(std::string_view s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}
// Byte offset where column `n` starts (s.size() when s is shorter).
std::size_t byte_of_column(std::string_view s, std::size_t n) {
  std::size_t col = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (col == n) return i;
      ++col;
    }
  }
  return s.size();
}
std::string head_columns(std::string_view s, std::size_t n) { return std::string(s.substr(0, byte_of_column(s, n))); }
std::string tail_columns(std::string_view s, std::size_t n) {
  const std::size_t c = columns(s);
  return c <= n ? std::string(s) : std::string(s.substr(byte_of_column(s, c - n)));
}
// At most n columns: the middle of s becomes "..." (the start and the file name stay).
std::string middle_truncate(std::string_view s, std::size_t n) {
  if (columns(s) <= n) return std::string(s);
  if (n <= 3) return std::string(n, '.');
  const std::size_t keep = n - 3, tail = (keep + 1) / 2;
  return head_columns(s, keep - tail) + "..." + tail_columns(s, tail);
}

class JsonSink final : public EventSink {
 public:
  explicit JsonSink(std::FILE* out) : out_(out), t0_(Clock::now()) {}
  void emit(const Event& e) override {
    auto now = Clock::now();
    if (e.type == EventType::progress) {
      if (now - last_progress_ < kProgressInterval && e.offset != e.size) return;
      last_progress_ = now;
    }
    nlohmann::json j{{"event", event_type_name(e.type)}, {"schema", kEventSchemaVersion}, {"t", seconds_between(t0_, now)}};
    if (!e.path.empty()) j["path"] = e.path;
    if (e.type != EventType::session_start && e.type != EventType::session_end && !e.path.empty()) {
      j["size"] = e.size;
      j["offset"] = e.offset;
    }
    if (carries_transfer(e.type)) {
      const TransferProgress& x = e.transfer;
      j["transfer"] = {{"files_done", x.files_done},
                       {"files_total", x.files_total},
                       {"bytes_done", x.bytes_done},
                       {"bytes_total", x.bytes_total}};
    }
    if (!e.detail.empty()) j["detail"] = e.detail;
    if (e.type == EventType::listening) j["address"] = e.detail;
    if (e.type == EventType::session_end || e.type == EventType::transfer_end) {
      const Totals& t = e.totals;
      j["exit_code"] = e.exit_code;
      if (!e.error.empty()) j["error"] = e.error;
      j["totals"] = {{"files_verified", t.files_verified}, {"files_failed", t.files_failed},
                     {"files_skipped", t.files_skipped},   {"bytes_verified", t.bytes_verified},
                     {"bytes_payload", t.bytes_payload},   {"bytes_resent", t.bytes_resent},
                     {"chunks_rejected", t.chunks_rejected}, {"reconnects", t.reconnects},
                     {"stall_timeouts", t.stall_timeouts}, {"write_retries", t.write_retries}};
      if (t.checked) {
        j["check"] = {{"identical", t.check_identical}, {"different", t.check_different},
                      {"missing", t.check_missing},     {"partial", t.check_partial},
                      {"extra", t.check_extra}};
      }
      if (t.planned) {
        j["dry_run"] = {{"send", t.plan_send},         {"resume", t.plan_resume}, {"bytes", t.plan_bytes},
                        {"complete", t.plan_complete}, {"create_dirs", t.plan_dirs}};
      }
    }
    if (e.type == EventType::entry_checked && !e.reason.empty()) j["reason"] = e.reason;
    std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  Clock::time_point t0_;
  Clock::time_point last_progress_{};
};

// What the live line and the per-file lines are computed from. Rates count only
// bytes seen moving (offset advances on progress and file_verified), so resumed
// bytes, refused files and a reconnect's new starting point never inflate them.
class HumanSink final : public EventSink {
 public:
  explicit HumanSink(HumanSinkOptions o)
      : o_(std::move(o)),
        live_(!o_.quiet && o_.live.value_or(::isatty(::fileno(o_.out)) == 1)),
        t0_(now()) {}

  void emit(const Event& e) override {
    switch (e.type) {
      case EventType::file_start:
        started_ = true;
        start_file(e);
        return show(e);
      case EventType::resume:
        started_ = true;
        if (e.path != file_path_) start_file(e);
        file_offset_ = e.offset;
        if (!o_.quiet) line("resuming " + e.path + " at " + human_bytes(e.offset) + (e.detail.empty() ? "" : " (" + e.detail + ")"));
        return show(e, /*now=*/true);  // the resumed offset at once, not the 0 B of file_start
      case EventType::progress:
        moved(e);
        return show(e);
      case EventType::file_verified:
        moved(e);
        if (live_) latest_ = e;  // the live line drawn again below the note shows it
        if (o_.verbose) line("verified " + e.path + " (" + (e.detail.empty() ? file_figures(e) : e.detail) + ")");
        return show(e);
      case EventType::file_failed:
        return failed(e);
      case EventType::file_skipped: return line("skipped " + e.detail, true);
      case EventType::warning:
        if (!o_.quiet) line((e.path.empty() ? "" : e.path + ": ") + e.detail);
        return;
      case EventType::connection_lost:
        if (!o_.quiet) line("connection lost: " + e.detail);
        return;
      case EventType::reconnect:
        return reconnecting(e);
      case EventType::session_start:
        started_ = true;
        if (o_.verbose) line("connected (" + e.detail + ")");
        return;
      case EventType::listening:
        if (!o_.quiet) line("listening on " + e.detail);
        return;
      case EventType::carrier_message:
        return raw_line(e.detail);
      case EventType::session_end:
        return ended(e);
      case EventType::file_sent:
        if (!o_.quiet) line("sent " + e.path + " (" + human_bytes(e.size) + "): " + e.detail);
        return;
      case EventType::transfer_end:
        if (o_.verbose) summary(e);
        return;
      case EventType::entry_checked:
        return checked(e);
      case EventType::entry_planned:
        return planned(e);
    }
  }

  void failed(const Event& e) {
    if (live_) latest_ = e;
    line("failed " + (e.path.empty() ? "" : e.path + (o_.verbose ? " (" + file_figures(e) + ")" : "") + ": ") + e.detail,
         true);
    show(e);
  }

  void ended(const Event& e) {
    clear_live();
    latest_.reset();  // nothing to restore after the summary
    summary(e);
  }

  // --check: one line per entry that is not identical (all of them with -v).
  void checked(const Event& e) {
    started_ = true;
    if (e.detail != "identical" || o_.verbose) {
      line(pad_right(e.detail, 10) + printable(e.path) + (e.reason.empty() ? "" : " (" + e.reason + ")"), true);
    }
  }

  // --dry-run: one line per entry a transfer would act upon (complete files and
  // existing directories with -v only), like rsync -n.
  void planned(const Event& e) {
    started_ = true;
    std::string text;
    if (e.detail == "send") {
      text = "send      " + printable(e.path) + " (" + human_bytes(e.size) + ")";
    } else if (e.detail == "resume") {
      text = "resume    " + printable(e.path) + " at " + human_bytes(e.offset) + " (" +
             human_bytes(e.size - std::min(e.size, e.offset)) + " left)";
    } else if (e.detail == "create") {
      text = "create    " + printable(e.path) + "/";
    } else if (o_.verbose) {
      text = pad_right(e.detail, 10) + printable(e.path) + (e.detail == "exists" ? "/" : "");
    }
    if (!text.empty()) line(text, true);
  }

  static std::string pad_right(const std::string& s, std::size_t n) {
    return s.size() >= n ? s + " " : s + std::string(n - s.size(), ' ');
  }

  // --check and --dry-run end with their own summary line.
  bool inspection_summary(const Totals& t, bool failed) {
    std::string text;
    if (t.checked) {
      text = std::to_string(t.check_identical) + " identical, " + std::to_string(t.check_different) + " different, " +
             std::to_string(t.check_missing) + " missing";
      if (t.check_partial > 0) text += ", " + std::to_string(t.check_partial) + " partial";
      if (t.check_extra > 0) text += ", " + std::to_string(t.check_extra) + " extra";
    } else if (t.planned) {
      text = "dry run: " + count(t.plan_send, "file", "files") + " to send, " + std::to_string(t.plan_resume) +
             " to resume, " + human_bytes(t.plan_bytes) + " would move; " + std::to_string(t.plan_complete) +
             " complete, " + count(t.plan_dirs, "directory", "directories") + " to create";
    } else {
      return false;
    }
    if (t.files_failed > 0) text += "; " + std::to_string(t.files_failed) + " failed";
    if (failed && !started_) return true;
    line(text, true);
    return true;
  }

 private:
  Clock::time_point now() const { return o_.clock ? o_.clock() : Clock::now(); }

  unsigned width() const {
    if (o_.width > 0) return o_.width;
    winsize ws{};
    if (::ioctl(::fileno(o_.out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return kDefaultWidth;
  }

  void start_file(const Event& e) {
    const auto t = now();
    // A new transfer (the last one completed, e.g. the next sender of a listening
    // receiver) starts the whole-transfer rate afresh.
    if (!xfer_t0_ || (last_.files_total > 0 && last_.files_done >= last_.files_total)) {
      xfer_t0_ = t;
      xfer_moved_ = 0;
    }
    file_path_ = e.path;
    file_t0_ = t;
    file_offset_ = e.offset;
    file_moved_ = 0;
  }

  // Counts the bytes an event shows moving for the current file. Acknowledged offsets
  // only grow within one attempt; a lower one is a re-send from the start (a resume
  // at a non-zero offset comes with its own resume event, which sets the base).
  void moved(const Event& e) {
    if (e.path != file_path_) start_file(e);
    if (e.offset < file_offset_) file_offset_ = 0;
    xfer_moved_ += e.offset - file_offset_;
    file_moved_ += e.offset - file_offset_;
    file_offset_ = e.offset;
  }

  // "40.0 MiB", and ", 12.0 MiB/s" when the file's bytes were seen moving.
  std::string file_figures(const Event& e) const {
    std::string s = human_bytes(e.size);
    const double secs = seconds_between(file_t0_, now());
    if (e.path == file_path_ && file_moved_ > 0 && secs > 0) {
      s += ", " + human_bytes(static_cast<double>(file_moved_) / secs) + "/s";
    }
    return s;
  }

  // The live line for `e`, at most `cols` columns.
  std::string live_text(const Event& e, std::size_t cols) const {
    const TransferProgress& x = e.transfer;
    const bool files_known = x.files_total > 0;
    // A sender that knows its files knows their bytes, even when they add up to 0.
    const bool bytes_known = x.bytes_total > 0 || files_known;
    const bool finished = e.type == EventType::file_verified || e.type == EventType::file_failed;
    std::uint64_t index = x.files_done + (finished ? 0 : 1);
    if (files_known) index = std::min(index, x.files_total);
    const std::string prefix = "ferry-" + o_.role + ": ";
    const std::string files_total = files_known ? std::to_string(x.files_total) : std::string("?");
    const std::string files =
        "[" + pad_left(std::to_string(index), files_known ? files_total.size() : 0) + "/" + files_total + "] ";
    const std::string file_bytes = pad_left(human_bytes(e.offset), kBytesColumns) + "/" + human_bytes(e.size);
    const std::string file_pct = pad_left(percent(e.offset, e.size), kPercentColumns);
    const std::string total_bytes = "total " + pad_left(human_bytes(x.bytes_done), kBytesColumns) + "/" +
                                    (bytes_known ? human_bytes(x.bytes_total) : std::string("?"));
    const std::string total_pct = bytes_known ? pad_left(percent(x.bytes_done, x.bytes_total), kPercentColumns) : "";
    const double secs = xfer_t0_ ? seconds_between(*xfer_t0_, now()) : 0;
    const double rate = secs > 0 ? static_cast<double>(xfer_moved_) / secs : 0;
    const std::string rate_text = pad_left(rate > 0 ? human_bytes(rate) : std::string("--"), kBytesColumns) + "/s";
    std::string eta = "ETA -:--";
    if (bytes_known && x.bytes_done >= x.bytes_total) {
      eta = "ETA 0:00";
    } else if (bytes_known && rate > 0) {
      const double left = static_cast<double>(x.bytes_total - x.bytes_done) / rate;
      eta = left < 100 * 3600 ? "ETA " + clock_text(left) : "ETA >99h";
    }
    // The ETA ends the line: not padded, but its widest is reserved.
    const std::size_t eta_reserve = kEtaColumns - std::min(kEtaColumns, columns(eta));
    const std::string path = printable(e.path);

    // Fields give way, least useful first, before the path is cut below kMinPathColumns.
    struct Layout {
      bool prefix, file_bytes, total_bytes, rate;
      const char* gap;
    };
    constexpr Layout kLayouts[] = {
        {true, true, true, true, "  "},   {true, false, true, true, "  "},   {true, false, true, true, " "},
        {false, false, true, true, " "},  {false, false, false, true, " "},  {false, false, false, false, " "},
    };
    std::string before, after;
    std::size_t fixed = 0;
    for (const Layout& l : kLayouts) {
      const std::string gap = l.gap;
      before = (l.prefix ? prefix : "") + files;
      after = gap;
      if (l.file_bytes) after += file_bytes + gap;
      after += file_pct + gap + "|" + gap;
      if (l.total_bytes) after += total_bytes + gap;
      if (!total_pct.empty()) after += total_pct + gap;
      if (l.rate) after += rate_text + gap;
      after += eta;
      fixed = columns(before) + columns(after) + eta_reserve;
      if (fixed < cols && cols - fixed >= std::min(columns(path), kMinPathColumns)) {
        return before + middle_truncate(path, cols - fixed) + after;
      }
    }
    // A very narrow terminal: the tersest layout, the path cut further, then the line.
    const std::size_t room = fixed < cols ? cols - fixed : 0;
    return head_columns(before + middle_truncate(path, std::max<std::size_t>(room, 3)) + after, cols);
  }

  void show(const Event& e, bool at_once = false) {
    last_ = e.transfer;
    if (!live_) return;
    latest_ = e;
    const auto t = now();
    const bool complete = e.transfer.files_total > 0 && e.transfer.files_done >= e.transfer.files_total;
    if (drawn_at_ && t - *drawn_at_ < kProgressInterval && !complete && !at_once) return;
    drawn_at_ = t;
    draw();
  }

  // Draws the live line for the latest event.
  void draw() {
    if (!latest_) return;
    const unsigned w = width();
    const std::string text = live_text(*latest_, w > 1 ? w - 1 : 1);  // never the last column: some terminals wrap there
    std::fprintf(o_.out, "\r%s\033[K", text.c_str());
    std::fflush(o_.out);
    shown_ = true;
  }

  void clear_live() {
    if (shown_) {
      std::fprintf(o_.out, "\r\033[K");
      shown_ = false;
    }
  }

  // One line above the live line, which is drawn again below it.
  void line(const std::string& s, bool always = false) {
    if (o_.quiet && !always) return;
    raw_line("ferry-" + o_.role + ": " + s);
  }

  // A line as it is (a carrier's stderr line: it names its own program), above the
  // live line. A run of identical reconnect notes before it is summed up first.
  void raw_line(const std::string& s) {
    if (repeats_ > 1) {
      const std::string note = "ferry-" + o_.role + ": reconnecting: " + repeat_key_ + " (x" + std::to_string(repeats_) + ")";
      repeats_ = 0;
      raw_line(note);
    }
    repeats_ = 0;
    repeat_key_.clear();
    const bool restore = shown_;
    clear_live();
    std::fprintf(o_.out, "%s\n", printable(s).c_str());
    if (restore) draw();
    std::fflush(o_.out);
  }

  // "reconnecting: WHY; retry N ..." once; the same WHY again is counted, and the run
  // is summed up as "reconnecting: WHY (xN)" before the next line.
  void reconnecting(const Event& e) {
    if (o_.quiet) return;
    const std::string key = e.detail.substr(0, e.detail.find("; retry"));
    if (repeats_ > 0 && key == repeat_key_) {
      ++repeats_;
      return;
    }
    line("reconnecting: " + e.detail);
    repeat_key_ = key;
    repeats_ = 1;
  }

  // "3 files, 1.0 GiB verified in 3.0 s (343 MiB/s)", then only the counters that are
  // not zero; a second line when they do not fit in 80 columns. The rate is over the
  // bytes that moved (a resumed part did not). A failure before anything started (a
  // startup error) gets no summary: main prints its one line.
  void summary(const Event& e) {
    if (o_.quiet) return;
    const bool failed = e.exit_code != 0 || e.detail == "failed";
    if (inspection_summary(e.totals, failed)) return;
    if (failed && !started_) return;
    const Totals& t = e.totals;
    const double secs = seconds_between(t0_, now());
    char secs_text[32];
    std::snprintf(secs_text, sizeof secs_text, "%.1f s", secs);
    std::string head = std::string(failed ? "failed: " : "") + count(t.files_verified, "file", "files") +
                       ", " + human_bytes(t.bytes_verified) + " verified in " + secs_text;
    const std::string rate = human_bytes(secs > 0 ? static_cast<double>(t.bytes_payload) / secs : 0) + "/s";
    if (t.bytes_payload == 0 && t.bytes_verified > 0)
      head += " (nothing moved)";
    else if (t.bytes_payload != t.bytes_verified)
      head += " (" + human_bytes(t.bytes_payload) + " moved, " + rate + ")";
    else
      head += " (" + rate + ")";
    std::vector<std::string> counters;
    auto add = [&counters](std::uint64_t n, const std::string& text) {
      if (n > 0) counters.push_back(std::to_string(n) + " " + text);
    };
    add(t.files_failed, "failed");
    add(t.files_skipped, "skipped");
    add(t.reconnects, t.reconnects == 1 ? "reconnect" : "reconnects");
    if (t.bytes_resent > 0) counters.push_back(human_bytes(t.bytes_resent) + " re-sent");
    add(t.chunks_rejected, t.chunks_rejected == 1 ? "chunk rejected" : "chunks rejected");
    add(t.stall_timeouts, t.stall_timeouts == 1 ? "stall timeout" : "stall timeouts");
    add(t.write_retries, t.write_retries == 1 ? "write retry" : "write retries");
    // Counters join the line while it stays under 80 columns, then start another.
    const std::size_t room = kDefaultWidth - 1 - columns("ferry-" + o_.role + ": ");
    std::string current = head;
    bool first = true;
    for (const auto& c : counters) {
      const std::string joined = current + (first ? "; " : ", ") + c;
      if (columns(joined) <= room) {
        current = joined;
      } else {
        line(current, true);
        current = c;
      }
      first = false;
    }
    line(current, true);
  }

  static std::string count(std::uint64_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
  }

  HumanSinkOptions o_;
  bool live_;
  Clock::time_point t0_;
  // The live line: the event it shows (the latest, also when a redraw was skipped),
  // when it was last drawn, whether it is on screen now.
  std::optional<Event> latest_;
  std::optional<Clock::time_point> drawn_at_;
  bool shown_ = false;
  bool started_ = false;  // a session started or a file event came: a summary is due
  // A run of reconnect notes with the same reason: the reason and how many so far.
  std::string repeat_key_;
  unsigned repeats_ = 0;
  TransferProgress last_;  // of the last transfer event
  // Rates.
  std::optional<Clock::time_point> xfer_t0_;  // first file_start of this transfer
  std::uint64_t xfer_moved_ = 0;
  std::string file_path_;
  Clock::time_point file_t0_{};
  std::uint64_t file_offset_ = 0;
  std::uint64_t file_moved_ = 0;
};

}  // namespace

std::unique_ptr<EventSink> make_json_sink(std::FILE* out) { return std::make_unique<JsonSink>(out); }
std::unique_ptr<EventSink> make_human_sink(HumanSinkOptions options) {
  return std::make_unique<HumanSink>(std::move(options));
}
std::unique_ptr<EventSink> make_human_sink(bool quiet, bool verbose, std::string role) {
  HumanSinkOptions o;
  o.quiet = quiet;
  o.verbose = verbose;
  o.role = std::move(role);
  return make_human_sink(std::move(o));
}

}  // namespace ferry
