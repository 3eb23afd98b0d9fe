// Writes the seed corpora of the whole-session fuzz targets from real exchanges: a
// SenderHarness and a ReceiverHarness (session_harness.hpp) talk to each other, and
// what each is fed (the other's frames, the answers to its file actions, time, the
// ends of input batches) is recorded as its script. Scenarios: a complete transfer,
// failed writes, opens that resume (with a prefix that then fails the verdict, or
// with held blocks), a short read, a changed source, a connection lost midway; check and
// dry-run sessions (version 4).
// Run: build/tests/fuzz/ferry-make-session-corpus tests/fuzz/corpus
//      (writes DIR/receiver_session/NAME and DIR/sender_session/NAME)
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "tests/fuzz/session_harness.hpp"

namespace {

using ferry::fuzz::ReceiverHarness;
using ferry::fuzz::ScriptWriter;
using ferry::fuzz::SenderHarness;

struct Scenario {
  const char* name;
  // The answer argument for the n-th receiver / sender file action.
  std::function<std::uint8_t(unsigned)> receiver_arg = [](unsigned) { return 0; };
  std::function<std::uint8_t(unsigned)> sender_arg = [](unsigned) { return 0; };
  unsigned lose_connection_at = 0;  // step at which the connection is lost; 0: never
  ferry::protocol::Purpose purpose = ferry::protocol::Purpose::transfer;  // version 4: check, dry run
};

struct Recorded {
  ScriptWriter receiver, sender;
  bool receiver_over = false, sender_over = false;  // how the exchange ended, for the summary
};

// One step of the exchange: each side's output to the other, one file action of each
// answered. True when anything happened.
bool step(ReceiverHarness& r, SenderHarness& s, Recorded& rec, const Scenario& sc, unsigned& rn, unsigned& sn) {
  bool moved = false;
  if (auto out = s.take_output(); !out.empty()) {
    rec.receiver.feed(out);
    r.feed(out);
    rec.receiver.drained();
    r.drained();
    moved = true;
  }
  if (auto back = r.take_output(); !back.empty()) {
    rec.sender.feed(back);
    s.feed(back);
    moved = true;
  }
  if (r.pending() > 0) {
    const auto arg = sc.receiver_arg(rn++);
    rec.receiver.answer(0, arg);
    r.answer(0, arg);
    rec.receiver.drained();
    r.drained();
    moved = true;
  }
  if (s.pending() > 0) {
    const auto arg = sc.sender_arg(sn++);
    rec.sender.answer(0, arg);
    s.answer(0, arg);
    moved = true;
  }
  return moved;
}

Recorded record(const Scenario& sc) {
  ReceiverHarness r;
  SenderHarness s(sc.purpose);
  Recorded rec;
  unsigned rn = 0, sn = 0, idle = 0;
  for (unsigned i = 1; i < 20000 && idle < 5 && !(r.over() && s.over()); ++i) {
    if (i == sc.lose_connection_at) {
      rec.receiver.disconnect();
      rec.sender.disconnect();
      break;
    }
    if (step(r, s, rec, sc, rn, sn)) {
      idle = 0;
      continue;
    }
    ++idle;  // nothing moved: let time pass (stall timers, keepalives)
    rec.receiver.advance(1000);
    rec.sender.advance(1000);
    r.advance(std::chrono::milliseconds(1000));
    s.advance(std::chrono::milliseconds(1000));
    rec.sender.drained();
    s.drained();
  }
  rec.receiver_over = r.over();
  rec.sender_over = s.over();
  return rec;
}

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) std::fprintf(stderr, "cannot write %s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const Scenario scenarios[] = {
      {"transfer"},
      {"write_fails", [](unsigned n) { return static_cast<std::uint8_t>(n == 1 ? 1 : 0); }},
      {"open_fails", [](unsigned n) { return static_cast<std::uint8_t>(n == 0 ? 1 : 0); }},
      {"resume_bad_prefix", [](unsigned n) { return static_cast<std::uint8_t>(n == 0 ? 2 : 0); }},
      {"resume_held", [](unsigned n) { return static_cast<std::uint8_t>(n == 0 ? 4 : 0); }},
      {"commit_fails", [](unsigned n) { return static_cast<std::uint8_t>(n == 7 ? 1 : 0); }},
      {"short_read", [](unsigned) { return std::uint8_t{0}; }, [](unsigned n) { return std::uint8_t(n == 2 ? 2 : 0); }},
      {"read_fails", [](unsigned) { return std::uint8_t{0}; }, [](unsigned n) { return std::uint8_t(n == 1 ? 1 : 0); }},
      {"source_changed", [](unsigned) { return std::uint8_t{0}; },
       [](unsigned n) { return std::uint8_t(n == 6 ? 2 : 0); }},
      {"lost_midway", [](unsigned) { return std::uint8_t{0}; }, [](unsigned) { return std::uint8_t{0}; }, 6},
      // Version 4: DEST holds files of the offered size (digests compared), or files
      // of another size, a partial, nothing; a dry run.
      {"check", [](unsigned n) { return std::uint8_t(n % 2 == 0 ? 2 : 6); }, [](unsigned) { return std::uint8_t{0}; },
       0, ferry::protocol::Purpose::check},
      {"check_missing", [](unsigned n) { return std::uint8_t(n % 2 == 0 ? 8 : 4); },
       [](unsigned) { return std::uint8_t{0}; }, 0, ferry::protocol::Purpose::check},
      {"dry_run", [](unsigned n) { return std::uint8_t(n % 3 == 0 ? 4 : 2); }, [](unsigned) { return std::uint8_t{0}; },
       0, ferry::protocol::Purpose::dry_run},
  };
  for (const auto& sc : scenarios) {
    const Recorded rec = record(sc);
    write_file(dir + "/receiver_session/" + sc.name, rec.receiver.bytes());
    write_file(dir + "/sender_session/" + sc.name, rec.sender.bytes());
    std::printf("%-18s receiver script %6zu bytes%s, sender script %5zu bytes%s\n", sc.name, rec.receiver.bytes().size(),
                rec.receiver_over ? " (ended)" : "", rec.sender.bytes().size(), rec.sender_over ? " (ended)" : "");
  }
  return 0;
}
