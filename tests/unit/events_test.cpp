// Tests lib/events: HumanSink rendered into a temporary file with a fake terminal width
// and clock (the live line's fields, rate and ETA, unknown totals, truncation to the
// width, the redraw limit, control characters, quiet / verbose / not a terminal), and
// JsonSink's "transfer" object.
#include "lib/ui/event_sinks.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ferry {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

// A sink writing to a temporary file, with a clock the test moves.
class Rendered {
 public:
  explicit Rendered(HumanSinkOptions o) : f_(std::tmpfile()) {
    o.out = f_;
    o.clock = [this] { return now; };
    sink_ = make_human_sink(std::move(o));
  }
  ~Rendered() { std::fclose(f_); }
  Rendered(const Rendered&) = delete;
  Rendered& operator=(const Rendered&) = delete;

  void emit(const Event& e) { sink_->emit(e); }
  // Everything written so far.
  std::string text() const {
    std::fflush(f_);
    std::string out;
    std::rewind(f_);
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f_)) > 0;) out.append(buf, n);
    return out;
  }
  // The live lines drawn, in order (each "\r...\033[K"; clears are not draws).
  std::vector<std::string> draws() const {
    std::vector<std::string> out;
    const std::string t = text();
    for (std::size_t at = t.find('\r'); at != std::string::npos; at = t.find('\r', at + 1)) {
      const std::size_t end = t.find("\033[K", at);
      if (end == std::string::npos) break;
      if (end > at + 1) out.push_back(t.substr(at + 1, end - at - 1));
    }
    return out;
  }
  // The lines ending in '\n', with any live-line drawing before them removed.
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    const std::string t = text();
    std::size_t start = 0;
    for (std::size_t nl = t.find('\n'); nl != std::string::npos; nl = t.find('\n', start)) {
      std::string l = t.substr(start, nl - start);
      if (auto k = l.rfind("\033[K"); k != std::string::npos) l = l.substr(k + 3);
      out.push_back(l);
      start = nl + 1;
    }
    return out;
  }

  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);

 private:
  std::FILE* f_;
  std::unique_ptr<EventSink> sink_;
};

Event ev(EventType t, std::string path, std::uint64_t size, std::uint64_t offset, TransferProgress x,
         std::string detail = {}) {
  Event e;
  e.type = t;
  e.path = std::move(path);
  e.size = size;
  e.offset = offset;
  e.detail = std::move(detail);
  e.transfer = x;
  return e;
}

std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

HumanSinkOptions live(unsigned width = 200, std::string role = "send") {
  HumanSinkOptions o;
  o.role = std::move(role);
  o.live = true;
  o.width = width;
  return o;
}

// --- the live line ----------------------------------------------------------------------------

TEST(HumanSinkLive, ShowsTheCurrentFileAndTheWholeTransfer) {
  Rendered r(live());
  const std::uint64_t total = 1228 * kMiB;  // 1.2 GiB
  r.emit(ev(EventType::file_start, "photos/b.jpg", 40 * kMiB, 0, {2, 10, 88 * kMiB, total}));
  r.now += std::chrono::seconds(2);
  r.emit(ev(EventType::progress, "photos/b.jpg", 40 * kMiB, 12 * kMiB, {2, 10, 100 * kMiB, total}));
  auto d = r.draws();
  ASSERT_EQ(d.size(), 2u);
  const std::string& l = d.back();
  // Figures that change are padded to their widest, so that nothing jumps between redraws.
  // 12 MiB moved in 2 s; 1128 MiB left at 6 MiB/s = 188 s.
  EXPECT_EQ(l,
            "ferry-send: [ 3/10] photos/b.jpg   12.0 MiB/40.0 MiB   30%  |  total 100.0 MiB/1.2 GiB    8%  "
            "  6.0 MiB/s  ETA 3:08");
  EXPECT_LE(columns(l), 199u);
}

TEST(HumanSinkLive, ResumedBytesAreDoneButNotPartOfTheRate) {
  Rendered r(live());
  const std::uint64_t size = 100 * kMiB;
  r.emit(ev(EventType::file_start, "big", size, 0, {0, 1, 0, size}));
  r.emit(ev(EventType::resume, "big", size, 90 * kMiB, {0, 1, 90 * kMiB, size}));
  r.now += std::chrono::seconds(1);
  r.emit(ev(EventType::progress, "big", size, 92 * kMiB, {0, 1, 92 * kMiB, size}));
  const std::string l = r.draws().back();
  EXPECT_TRUE(contains(l, "92%")) << l;
  EXPECT_TRUE(contains(l, "2.0 MiB/s")) << "only the 2 MiB sent count: " << l;
  EXPECT_TRUE(l.ends_with("ETA 0:04")) << l;
  ASSERT_FALSE(r.lines().empty());
  EXPECT_EQ(r.lines()[0], "ferry-send: resuming big at 90.0 MiB");
}

TEST(HumanSinkLive, UnknownTotalsAreShownAsSuch) {
  Rendered r(live(200, "recv"));
  r.emit(ev(EventType::file_start, "a", 10 * kMiB, 0, {4, 0, 7 * kMiB, 0}));
  const std::string l = r.draws().back();
  EXPECT_EQ(l, "ferry-recv: [5/?] a        0 B/10.0 MiB    0%  |  total   7.0 MiB/?         --/s  ETA -:--");
}

TEST(HumanSinkLive, EmptyFilesOfAKnownListAreNotUnknown) {
  Rendered r(live());
  r.emit(ev(EventType::file_verified, "e", 0, 0, {1, 1, 0, 0}));
  const std::string l = r.draws().back();
  EXPECT_EQ(l, "ferry-send: [1/1] e        0 B/0 B  100%  |  total       0 B/0 B  100%         --/s  ETA 0:00");
}

TEST(HumanSinkLive, FitsTheWidthByCuttingThePathInTheMiddle) {
  const std::string path = "a-rather-long-directory-name/another-level/and-more/final-name.bin";
  for (unsigned width : {200u, 120u, 100u, 80u, 60u, 40u, 20u, 5u, 1u}) {
    SCOPED_TRACE("width " + std::to_string(width));
    Rendered r(live(width));
    r.emit(ev(EventType::file_start, path, 3 * kMiB, kMiB, {0, 2, kMiB, 4 * kMiB}));
    const std::string l = r.draws().back();
    EXPECT_LE(columns(l), width > 1 ? width - 1 : 1) << l;
    if (width >= 120) {
      EXPECT_TRUE(contains(l, "1.0 MiB/3.0 MiB   33%")) << "the file's bytes stay: " << l;
      EXPECT_TRUE(l.starts_with("ferry-send: [1/2] ")) << l;
    }
    if (width >= 80) {
      EXPECT_TRUE(contains(l, "total   1.0 MiB/4.0 MiB")) << "the transfer's bytes stay: " << l;
    }
    if (width >= 40) {
      EXPECT_TRUE(contains(l, "[1/2] ")) << l;
      EXPECT_LT(l.find("33%"), l.find("|")) << l;
      EXPECT_LT(l.find("|"), l.find("25%")) << l;
      EXPECT_TRUE(l.ends_with("ETA -:--")) << l;
    }
    if (width >= 20 && width < 200) {
      EXPECT_TRUE(contains(l, "...")) << l;
    }
    if (width >= 40 && width < 200) {
      EXPECT_TRUE(contains(l, ".bin")) << "the end of the name stays: " << l;
    }
  }
}

TEST(HumanSinkLive, TheLayoutDoesNotJumpBetweenRedraws) {
  Rendered r(live(80));
  const std::uint64_t size = 900 * kMiB;
  for (std::uint64_t off : {std::uint64_t{0}, std::uint64_t{1000}, 5 * kMiB, 120 * kMiB, size}) {
    r.now += std::chrono::seconds(1);
    r.emit(ev(EventType::progress, "some/dir/with/a/long/name/file.iso", size, off, {0, 3, off, 3 * size}));
  }
  const auto d = r.draws();
  ASSERT_EQ(d.size(), 5u);
  for (const auto& l : d) {
    EXPECT_EQ(l.find('|'), d.front().find('|')) << l << "\n" << d.front();
    EXPECT_EQ(l.substr(0, l.find(".iso")), d.front().substr(0, d.front().find(".iso"))) << "the same cut of the path";
  }
}

TEST(HumanSinkLive, WithoutAWidthItAsksTheTerminalAndFallsBackTo80) {
  Rendered r(live(/*width=*/0));  // a temporary file is no terminal
  r.emit(ev(EventType::file_start, std::string(200, 'p'), 1, 0, {0, 1, 0, 1}));
  EXPECT_LE(columns(r.draws().back()), 79u) << r.draws().back();
  EXPECT_GE(columns(r.draws().back()), 70u) << "the path fills the rest: " << r.draws().back();
}

TEST(HumanSinkLive, TruncationKeepsUtf8Whole) {
  std::string path;
  for (int i = 0; i < 40; ++i) path += "\xc3\xa9";  // é
  Rendered r(live(50));
  r.emit(ev(EventType::file_start, path, 1, 0, {0, 1, 0, 1}));
  const std::string l = r.draws().back();
  EXPECT_LE(columns(l), 49u) << l;
  // Every lead byte of é is followed by its continuation byte.
  for (std::size_t i = 0; i < l.size(); ++i) {
    if (static_cast<unsigned char>(l[i]) == 0xc3) {
      ASSERT_LT(i + 1, l.size());
      EXPECT_EQ(static_cast<unsigned char>(l[i + 1]), 0xa9u);
    }
    if (static_cast<unsigned char>(l[i]) == 0xa9) {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(static_cast<unsigned char>(l[i - 1]), 0xc3u);
    }
  }
}

TEST(HumanSinkLive, RedrawnAtMostFourTimesASecond) {
  Rendered r(live());
  r.emit(ev(EventType::file_start, "f", 100, 0, {0, 1, 0, 100}));
  for (int i = 1; i <= 9; ++i) {
    r.now += std::chrono::milliseconds(100);
    r.emit(
        ev(EventType::progress, "f", 100, static_cast<std::uint64_t>(i), {0, 1, static_cast<std::uint64_t>(i), 100}));
  }
  // At 0, then at >= 250 ms after each draw: 300, 600, 900 ms.
  EXPECT_EQ(r.draws().size(), 4u);
  // The end of the transfer is always drawn.
  r.now += std::chrono::milliseconds(1);
  r.emit(ev(EventType::file_verified, "f", 100, 100, {1, 1, 100, 100}));
  ASSERT_EQ(r.draws().size(), 5u);
  EXPECT_TRUE(contains(r.draws().back(), "[1/1] f      100 B/100 B  100%")) << r.draws().back();
}

TEST(HumanSinkLive, ControlCharactersFromThePeerAreNotPrinted) {
  Rendered r(live(200, "recv"));
  r.emit(ev(EventType::file_start, "evil\033]0;title\007\n.txt", 1, 0, {0, 1, 0, 1}));
  r.emit(ev(EventType::warning, "x\033[2J", 1, 0, {}, "note\rover"));
  const std::string t = r.text();
  EXPECT_FALSE(contains(t, "\033]")) << "no escape from the path";
  EXPECT_FALSE(contains(t, "\033[2J"));
  EXPECT_FALSE(contains(t, "\007"));
  EXPECT_TRUE(contains(r.draws().front(), "evil?]0;title??.txt")) << r.draws().front();
  EXPECT_TRUE(contains(t, "ferry-recv: x?[2J: note?over\n")) << t;
}

TEST(HumanSinkLive, NotesGoAboveTheLiveLineWhichIsDrawnAgain) {
  Rendered r(live());
  r.emit(ev(EventType::file_start, "f", 100, 0, {0, 1, 0, 100}));
  r.emit(ev(EventType::warning, "", 0, 0, {}, "a note"));
  const std::string t = r.text();
  // draw, clear, the note, draw again.
  const std::string first = r.draws().front();
  EXPECT_TRUE(t.ends_with("\r\033[Kferry-send: a note\n\r" + first + "\033[K")) << t;
  // A redraw skipped by the limit is not lost: the next note brings the newest figures.
  r.now += std::chrono::milliseconds(10);
  r.emit(ev(EventType::progress, "f", 100, 60, {0, 1, 60, 100}));
  EXPECT_EQ(r.draws().size(), 2u) << "within 250 ms: not drawn";
  r.emit(ev(EventType::warning, "", 0, 0, {}, "another note"));
  ASSERT_EQ(r.draws().size(), 3u);
  EXPECT_TRUE(contains(r.draws().back(), "60 B/100 B   60%")) << r.draws().back();
  // The summary clears it for good.
  Event end;
  end.type = EventType::session_end;
  end.detail = "done";
  r.emit(end);
  EXPECT_TRUE(
      r.text().ends_with("\033[Kferry-send: 0 files, 0 B verified in 0.0 s (0 B/s)\n"))
      << r.text();
}

// --- quiet, verbose, not a terminal -----------------------------------------------------------

void play_transfer(Rendered& r) {
  Event start;
  start.type = EventType::session_start;
  start.detail = "ferry-recv 0.1.0";
  r.emit(start);
  r.emit(ev(EventType::file_start, "a", 8 * kMiB, 0, {0, 2, 0, 9 * kMiB}));
  r.now += std::chrono::seconds(2);
  r.emit(ev(EventType::progress, "a", 8 * kMiB, 8 * kMiB, {0, 2, 8 * kMiB, 9 * kMiB}));
  r.emit(ev(EventType::file_verified, "a", 8 * kMiB, 8 * kMiB, {1, 2, 8 * kMiB, 9 * kMiB}));
  r.emit(ev(EventType::warning, "", 0, 0, {}, "a warning"));
  r.emit(ev(EventType::file_start, "b", kMiB, 0, {1, 2, 8 * kMiB, 9 * kMiB}));
  r.emit(ev(EventType::file_failed, "b", kMiB, 0, {2, 2, 9 * kMiB, 9 * kMiB}, "refused by receiver: no"));
  Event end;
  end.type = EventType::session_end;
  end.detail = "failed";
  end.totals.files_verified = 1;
  end.totals.files_failed = 1;
  end.totals.bytes_verified = 8 * kMiB;
  end.totals.bytes_payload = 8 * kMiB;
  r.emit(end);
}

TEST(HumanSinkModes, QuietPrintsOnlyFailures) {
  HumanSinkOptions o = live();
  o.quiet = true;  // even when asked for a live line
  Rendered r(o);
  play_transfer(r);
  EXPECT_TRUE(r.draws().empty());
  EXPECT_EQ(r.lines(), std::vector<std::string>{"ferry-send: failed b: refused by receiver: no"});
}

TEST(HumanSinkModes, VerboseAddsALinePerFinishedFile) {
  HumanSinkOptions o = live();
  o.verbose = true;
  Rendered r(o);
  play_transfer(r);
  const auto l = r.lines();
  ASSERT_EQ(l.size(), 5u) << r.text();
  EXPECT_EQ(l[0], "ferry-send: connected (ferry-recv 0.1.0)");
  EXPECT_EQ(l[1], "ferry-send: verified a (8.0 MiB, 4.0 MiB/s)");
  EXPECT_EQ(l[2], "ferry-send: a warning");
  EXPECT_EQ(l[3], "ferry-send: failed b (1.0 MiB): refused by receiver: no");
  EXPECT_EQ(l[4], "ferry-send: failed: 1 file, 8.0 MiB verified in 2.0 s (4.0 MiB/s); 1 failed");
  EXPECT_FALSE(r.draws().empty());
}

TEST(HumanSinkModes, NotATerminalGetsNotesAndTheSummaryButNoLiveLine) {
  HumanSinkOptions o;
  o.live = false;
  Rendered r(o);
  play_transfer(r);
  EXPECT_EQ(r.text().find('\r'), std::string::npos) << r.text();
  const auto l = r.lines();
  ASSERT_EQ(l.size(), 3u) << r.text();
  EXPECT_EQ(l[0], "ferry-send: a warning");
  EXPECT_EQ(l[1], "ferry-send: failed b: refused by receiver: no");
  EXPECT_TRUE(l[2].starts_with("ferry-send: failed: 1 file, 8.0 MiB verified")) << l[2];
}

TEST(HumanSinkModes, TheOriginalFactoryStillWorks) {
  auto s = make_human_sink(/*quiet=*/true, /*verbose=*/false, "send");
  ASSERT_NE(s, nullptr);
  s->emit(ev(EventType::progress, "f", 1, 1, {0, 1, 1, 1}));  // quiet: nothing on stderr
}

// --- JSON -----------------------------------------------------------------------------------------

TEST(JsonSink, TransferFiguresOnFileEventsOnly) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  auto sink = make_json_sink(f);
  const TransferProgress x{3, 10, 12345, 99999};
  for (EventType t : {EventType::session_start, EventType::file_start, EventType::resume, EventType::progress,
                      EventType::file_verified, EventType::file_failed, EventType::file_skipped,
                      EventType::connection_lost, EventType::reconnect, EventType::warning, EventType::session_end}) {
    // offset == size: a progress event is never dropped by the rate limit.
    sink->emit(ev(t, "p", 7, 7, x, "d"));
  }
  std::rewind(f);
  std::vector<nlohmann::json> got;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, f)) got.push_back(nlohmann::json::parse(buf));
  std::fclose(f);
  ASSERT_EQ(got.size(), 11u);
  for (const auto& j : got) {
    const std::string name = j.at("event");
    const bool file_event = name == "file_start" || name == "resume" || name == "progress" || name == "file_verified" ||
                            name == "file_failed";
    ASSERT_EQ(j.contains("transfer"), file_event) << j.dump();
    if (!file_event) continue;
    EXPECT_EQ(j["transfer"],
              (nlohmann::json{{"files_done", 3}, {"files_total", 10}, {"bytes_done", 12345}, {"bytes_total", 99999}}))
        << j.dump();
    EXPECT_EQ(j["offset"], 7);
    EXPECT_EQ(j["size"], 7);
  }
  for (EventType t : {EventType::file_start, EventType::resume, EventType::progress, EventType::file_verified,
                      EventType::file_failed}) {
    EXPECT_TRUE(carries_transfer(t)) << event_type_name(t);
  }
  EXPECT_FALSE(carries_transfer(EventType::session_end));
}

// --- issue #12: short honest output -----------------------------------------------------------

Event session_end(int exit_code, Totals t) {
  Event e;
  e.type = EventType::session_end;
  e.detail = exit_code == 0 ? "done" : "failed";
  e.exit_code = exit_code;
  e.totals = t;
  return e;
}

TEST(HumanSinkSummary, FitsEightyColumnsAndListsOnlyCountersThatAreNotZero) {
  HumanSinkOptions o;
  o.live = false;
  Rendered r(o);
  r.emit(ev(EventType::file_start, "a", kMiB, 0, {0, 3, 0, 3 * kMiB}));
  r.now += std::chrono::seconds(3);
  Totals t;
  t.files_verified = 3;
  t.bytes_verified = 1024 * kMiB;
  t.bytes_payload = 1024 * kMiB;
  r.emit(session_end(0, t));
  ASSERT_EQ(r.lines().size(), 1u) << r.text();
  EXPECT_EQ(r.lines()[0], "ferry-send: 3 files, 1.0 GiB verified in 3.0 s (341.3 MiB/s)");

  Rendered all(o);
  all.emit(ev(EventType::file_start, "a", kMiB, 0, {0, 3, 0, 3 * kMiB}));
  t.files_failed = 2;
  t.files_skipped = 4;
  t.reconnects = 12;
  t.bytes_resent = 3 * kMiB;
  t.chunks_rejected = 7;
  t.stall_timeouts = 1;
  t.write_retries = 1234;
  all.emit(session_end(7, t));
  const auto l = all.lines();
  ASSERT_EQ(l.size(), 3u) << all.text();
  for (const auto& line : l) EXPECT_LT(columns(line), 80u) << line;
  EXPECT_TRUE(l[0].starts_with("ferry-send: failed: 3 files, 1.0 GiB verified")) << l[0];
  std::string joined;
  for (const auto& line : l) joined += line + "\n";
  for (const char* c : {"2 failed", "4 skipped", "12 reconnects", "3.0 MiB re-sent", "7 chunks rejected",
                        "1 stall timeout", "1234 write retries"}) {
    EXPECT_TRUE(contains(joined, c)) << c;
  }
}

// The rate counts what moved: a file resumed at 90% moved only its last 10%.
TEST(HumanSinkSummary, TheRateIsOverBytesThatMoved) {
  HumanSinkOptions o;
  o.live = false;
  Rendered r(o);
  r.emit(ev(EventType::file_start, "big", 100 * kMiB, 0, {0, 1, 0, 100 * kMiB}));
  r.now += std::chrono::seconds(2);
  Totals t;
  t.files_verified = 1;
  t.bytes_verified = 100 * kMiB;
  t.bytes_payload = 10 * kMiB;
  r.emit(session_end(0, t));
  EXPECT_EQ(r.lines().back(), "ferry-send: 1 file, 100.0 MiB verified in 2.0 s (10.0 MiB moved, 5.0 MiB/s)");
}

// A failure before anything started is main's one line: no summary before it.
TEST(HumanSinkSummary, NoneForAStartupFailure) {
  HumanSinkOptions o;
  o.live = false;
  Rendered r(o);
  r.emit(ev(EventType::listening, "", 0, 0, {}, "tcp:127.0.0.1:5000"));
  r.emit(session_end(3, {}));
  EXPECT_EQ(r.lines(), std::vector<std::string>{"ferry-send: listening on tcp:127.0.0.1:5000"});
}

TEST(HumanSinkLive, TheResumedOffsetIsDrawnAtOnce) {
  Rendered r(live());
  const std::uint64_t size = 100 * kMiB;
  r.emit(ev(EventType::file_start, "big", size, 0, {0, 1, 0, size}));
  r.now += std::chrono::milliseconds(5);  // well within the redraw limit
  r.emit(ev(EventType::resume, "big", size, 90 * kMiB, {0, 1, 90 * kMiB, size}));
  EXPECT_TRUE(contains(r.draws().back(), "90.0 MiB/100.0 MiB   90%")) << r.draws().back();
}

TEST(HumanSinkLive, RepeatedReconnectNotesAreCollapsed) {
  HumanSinkOptions o;
  o.live = false;
  Rendered r(o);
  for (int i = 1; i <= 20; ++i) {
    r.emit(ev(EventType::reconnect, "", 0, 0, {},
              "connect(tcp:127.0.0.1:7): connection refused; retry " + std::to_string(i) + " in 50 ms"));
  }
  r.emit(ev(EventType::warning, "", 0, 0, {}, "something else"));
  EXPECT_EQ(r.lines(), (std::vector<std::string>{
                           "ferry-send: reconnecting: connect(tcp:127.0.0.1:7): connection refused; retry 1 in 50 ms",
                           "ferry-send: reconnecting: connect(tcp:127.0.0.1:7): connection refused (x20)",
                           "ferry-send: something else"}));
}

// The carrier's stderr (ssh, the remote ferry-recv) goes above the live line, as it came.
TEST(HumanSinkLive, CarrierMessagesGoAboveTheLiveLine) {
  Rendered r(live());
  r.emit(ev(EventType::file_start, "f", 100, 0, {0, 1, 0, 100}));
  r.emit(ev(EventType::carrier_message, "", 0, 0, {}, "ferry-recv: a remote note"));
  const std::string first = r.draws().front();
  EXPECT_TRUE(r.text().ends_with("\r\033[Kferry-recv: a remote note\n\r" + first + "\033[K")) << r.text();
}

TEST(JsonSink, ListeningAddressSchemaAndTheErrorOfAFailedEnd) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  auto sink = make_json_sink(f);
  sink->emit(ev(EventType::listening, "", 0, 0, {}, "tcp:127.0.0.1:5000"));
  Event end = session_end(8, {});
  end.error = "connect(tcp:127.0.0.1:7): connection refused";
  sink->emit(end);
  std::rewind(f);
  std::vector<nlohmann::json> got;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, f)) got.push_back(nlohmann::json::parse(buf));
  std::fclose(f);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["event"], "listening");
  EXPECT_EQ(got[0]["address"], "tcp:127.0.0.1:5000");
  EXPECT_EQ(got[1]["error"], "connect(tcp:127.0.0.1:7): connection refused");
  EXPECT_EQ(got[1]["exit_code"], 8);
  for (const auto& j : got) EXPECT_EQ(j["schema"], 1) << j.dump();
}

}  // namespace
}  // namespace ferry
