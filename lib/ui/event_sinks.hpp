// Event sinks: render the events sessions and engines report (lib/core/events.hpp).
//
//   JsonSink   one JSON object per line (NDJSON) on a stream; schema in docs/EVENTS.md
//   HumanSink  an rsync-like live line on a terminal (the current file and the whole
//              transfer), one-line notes, failures and the summary on stderr
//
//   auto sink = opts.json ? make_json_sink(stdout) : make_human_sink(opts.quiet, opts.verbose, "send");
//   sink->emit(Event{EventType::file_verified, ...});
//
// Tests render a HumanSink into any FILE* with a fixed width and clock:
//   auto sink = make_human_sink(HumanSinkOptions{.role = "send", .out = f, .live = true, .width = 60});
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "lib/core/events.hpp"

namespace ferry {

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const Event& e) = 0;
};

// JSON lines on `out` (not owned). Progress events are limited to 4 per second
// (per sink, i.e. per process); the last one of a file is always written.
std::unique_ptr<EventSink> make_json_sink(std::FILE* out);

struct HumanSinkOptions {
  bool quiet = false;    // errors only: failures (and main's error line); no live line, no summary
  bool verbose = false;  // also "connected" and one line per finished file (size, the file's rate)
  std::string role = "send";  // lines start with "ferry-ROLE: "
  std::FILE* out = stderr;    // not owned
  // Draw the live line (redrawn in place with \r, at most 4 times a second, at most
  // `width` - 1 columns). nullopt: when `out` is a terminal. Never when quiet.
  std::optional<bool> live{};
  // Terminal width in columns; 0: ask `out` (TIOCGWINSZ) at every redraw, 80 when it
  // cannot say.
  unsigned width = 0;
  // The clock for the redraw limit, rates and ETA; empty: Clock::now.
  std::function<Clock::time_point()> clock{};
};

// Human output: the live line on a terminal, notes (resume, warnings, connection
// lost, reconnect) unless quiet, one line per finished file when verbose, failures
// always, the summary at session_end unless quiet.
std::unique_ptr<EventSink> make_human_sink(HumanSinkOptions options);
// Same, on stderr, live when stderr is a terminal.
std::unique_ptr<EventSink> make_human_sink(bool quiet, bool verbose, std::string role);

}  // namespace ferry
