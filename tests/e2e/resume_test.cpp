// End-to-end resume with the real executables: a 64 MiB transfer through a
// rate-limited relay is interrupted mid-file by kill -9 of the sender or of the
// receiver; a second ferry-send resumes from the receiver's verified offset and the
// file arrives identical. Also a partial cut short or damaged in its middle between
// the runs: the receiver detects it, cuts back to the last good block, and reports it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"
#include "tests/e2e/relay.hpp"

namespace ferry::e2e {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kBigSize = 64 * kMiB;
constexpr std::uint64_t kRelayRate = 16 * kMiB;  // bytes/s: the 64 MiB take about 4 s
constexpr std::uint64_t kWindow = 4 * kMiB;      // ferry-send's default --window
constexpr std::uint64_t kChunk = 256 * 1024;     // ferry-send's default --chunk-size
constexpr Millis kProgressLimit = 30s;           // for the relay to reach a mark

struct BigFile {
  explicit BigFile(const TempDir& t)
      : src(t / "src/big.bin"),
        dest(t / "dest"),
        final_name(dest + "/big.bin"),
        part(dest + "/.big.bin.ferry-part"),
        journal(dest + "/.big.bin.ferry-journal") {
    write_random_file(src, kBigSize, 7);
  }
  std::string src, dest, final_name, part, journal;
};

// The "verified" count of a journal (documented JSON), or nullopt when unreadable.
std::optional<std::uint64_t> journal_verified(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  auto j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("verified") || !j["verified"].is_number_unsigned()) {
    return std::nullopt;
  }
  return j["verified"].get<std::uint64_t>();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Starts ferry-send through `relay` and kills it with SIGKILL once the relay has
// forwarded at least `mark` bytes to the receiver. Fails the test when the sender
// ended by itself first.
void kill_sender_after(const TempDir& t, const BigFile& f, Relay& relay, std::uint64_t mark) {
  auto send = Process::start({kSendBin, "--connect", relay.address(), "--retries", "0", "--json", f.src}, t.path(),
                             "send-killed");
  const bool reached = wait_until([&] { return relay.to_target() >= mark || !send->running(); }, kProgressLimit);
  ASSERT_TRUE(reached) << "the relay forwarded only " << relay.to_target() << " bytes\n" << send->describe();
  ASSERT_TRUE(send->running()) << "ferry-send ended before it could be killed\n" << send->describe();
  ASSERT_EQ(send->kill_now(), ExitStatus::killed_by(SIGKILL));
}

// Waits until the receiver (with --json) reports the lost connection: by then it has
// closed the partial and saved its journal.
void await_connection_lost(Receiver& r) {
  ASSERT_TRUE(
      wait_until([&] { return find_event(r.proc->json_events(), "connection_lost") != nullptr || !r.proc->running(); },
                 kProgressLimit))
      << "the receiver did not notice the sender's death\n"
      << r.proc->describe();
}

// The journal's `verified`, or nullopt when there is no readable journal.
std::optional<std::uint64_t> journal_verified(const BigFile& f) {
  std::ifstream in(f.journal);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("verified") || !j["verified"].is_number_unsigned()) return std::nullopt;
  return j["verified"].get<std::uint64_t>();
}

// A receiver that stays up reports the lost connection before the block writes in
// flight for it complete and the partial is closed (its journal saved): wait, bounded,
// until the journal records the whole partial, so that its size is what a rerun meets.
void await_partial_closed(const BigFile& f) {
  EXPECT_TRUE(wait_until([&] { return exists_nofollow(f.part) && journal_verified(f) == file_size(f.part); }, 10s))
      << "the journal never recorded the whole partial: " << testing::PrintToString(list_dir(f.dest));
}

// Partial and journal present, nothing under the final name; returns the partial's size.
std::uint64_t expect_interrupted_state(const BigFile& f) {
  EXPECT_TRUE(exists_nofollow(f.part)) << "no partial in DEST: " << testing::PrintToString(list_dir(f.dest));
  EXPECT_TRUE(exists_nofollow(f.journal)) << "no journal in DEST: " << testing::PrintToString(list_dir(f.dest));
  EXPECT_FALSE(exists_nofollow(f.final_name)) << "an unverified file appeared under its final name";
  return exists_nofollow(f.part) ? file_size(f.part) : 0;
}

struct Rerun {
  std::unique_ptr<Process> proc;
  std::uint64_t payload = 0;                   // session_end totals.bytes_payload
  std::optional<std::uint64_t> resume_offset;  // the resume event's offset
};

// A second ferry-send, straight to the receiver; must exit 0.
Rerun rerun_sender(const TempDir& t, const BigFile& f, const std::string& address) {
  Rerun r;
  r.proc = Process::start({kSendBin, "--connect", address, "--json", f.src}, t.path(), "send-rerun");
  EXPECT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  auto events = r.proc->json_events();
  if (const auto* end = find_event(events, "session_end")) {
    r.payload = (*end)["totals"].value("bytes_payload", std::uint64_t{0});
  } else {
    ADD_FAILURE() << "no session_end event\n" << r.proc->describe();
  }
  if (const auto* resume = find_event(events, "resume", "big.bin")) {
    r.resume_offset = resume->value("offset", std::uint64_t{0});
  }
  return r;
}

void expect_delivered(const TempDir& t) {
  EXPECT_EQ(ferry_leftovers(t / "dest"), std::vector<std::string>{});
  EXPECT_EQ(compare_trees(t / "src", t / "dest"), "");
}

// kill -9 of the sender mid-file; the --once receiver stays up; a rerun resumes and
// sends no more than what the receiver lacked plus one window and one chunk.
TEST(Resume, SenderKilledMidFile) {
  TempDir t;
  BigFile f(t);
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--once", "--json", f.dest});
  {
    Relay relay(r.port, kRelayRate);
    kill_sender_after(t, f, relay, 16 * kMiB);
    if (HasFatalFailure()) return;
    await_connection_lost(r);
    if (HasFatalFailure()) return;
  }
  ASSERT_TRUE(r.proc->running()) << "--once ended when the first sender died\n" << r.proc->describe();
  await_partial_closed(f);
  const std::uint64_t held = expect_interrupted_state(f);
  EXPECT_GT(held, 0u);
  EXPECT_LT(held, kBigSize);

  Rerun second = rerun_sender(t, f, r.address);
  ASSERT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  expect_delivered(t);
  ASSERT_TRUE(second.resume_offset.has_value()) << "no resume event\n" << second.proc->describe();
  EXPECT_EQ(*second.resume_offset, held) << "the rerun did not resume from what the partial held";
  EXPECT_GE(second.payload, kBigSize - held);
  EXPECT_LE(second.payload, kBigSize - held + kWindow + kChunk)
      << "the rerun sent " << second.payload << " payload bytes; the receiver held " << held;
}

// kill -9 of the receiver mid-file; a new receiver on the same DEST and a rerun of
// the sender resume from a non-zero offset.
TEST(Resume, ReceiverKilledMidFile) {
  TempDir t;
  BigFile f(t);
  Receiver r1 = start_receiver(t.path(), "recv-killed", "127.0.0.1:0", {"--once", f.dest});
  {
    Relay relay(r1.port, kRelayRate);
    auto send = Process::start({kSendBin, "--connect", relay.address(), "--retries", "0", "--json", f.src}, t.path(),
                               "send-first");
    // Kill once the receiver's journal records some verified bytes (it is saved about
    // once a second) and the transfer is still under way.
    const bool reached = wait_until(
        [&] {
          auto v = journal_verified(f.journal);
          return (v && *v >= 8 * kMiB) || !send->running();
        },
        kProgressLimit);
    ASSERT_TRUE(reached) << "the journal never recorded 8 MiB\n" << r1.proc->describe();
    ASSERT_TRUE(send->running()) << "ferry-send ended too early\n" << send->describe();
    ASSERT_LT(relay.to_target(), kBigSize);
    ASSERT_EQ(r1.proc->kill_now(), ExitStatus::killed_by(SIGKILL));
    // With --retries 0 the sender gives up: a connection error.
    EXPECT_EQ(send->wait(), ExitStatus::exited_with(3)) << send->describe();
  }
  const std::uint64_t held = expect_interrupted_state(f);
  EXPECT_GT(held, 0u);

  Receiver r2 = start_receiver(t.path(), "recv-restarted", "127.0.0.1:0", {"--once", "--json", f.dest});
  Rerun second = rerun_sender(t, f, r2.address);
  ASSERT_EQ(r2.proc->wait(), ExitStatus::exited_with(0)) << r2.proc->describe();
  expect_delivered(t);
  ASSERT_TRUE(second.resume_offset.has_value()) << "no resume event\n" << second.proc->describe();
  EXPECT_GT(*second.resume_offset, 0u);
  EXPECT_LE(*second.resume_offset, held);
  EXPECT_LE(second.payload, kBigSize - *second.resume_offset + kWindow + kChunk);
}

enum class Damage { truncate, overwrite_middle };

// An interrupted transfer, then damage to the partial, then a rerun.
void check_repair(Damage damage) {
  TempDir t;
  BigFile f(t);
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--once", "--json", f.dest});
  {
    Relay relay(r.port, kRelayRate);
    kill_sender_after(t, f, relay, 20 * kMiB);
    if (::testing::Test::HasFatalFailure()) return;
    await_connection_lost(r);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const std::uint64_t held = expect_interrupted_state(f);
  ASSERT_GE(held, 8 * kMiB) << "too little was written to damage it meaningfully";

  std::uint64_t bad_from = 0;  // the first byte that is no longer right
  if (damage == Damage::truncate) {
    bad_from = held - 3 * kMiB;
    ASSERT_EQ(::truncate(f.part.c_str(), static_cast<off_t>(bad_from)), 0);
  } else {
    bad_from = held / 2 + 12345;
    std::fstream io(f.part, std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> bytes(4096);
    io.seekg(static_cast<std::streamoff>(bad_from));
    io.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    for (char& c : bytes) c = static_cast<char>(~c);
    io.seekp(static_cast<std::streamoff>(bad_from));
    io.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(io.good());
  }

  Rerun second = rerun_sender(t, f, r.address);
  ASSERT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  expect_delivered(t);
  ASSERT_TRUE(second.resume_offset.has_value()) << "no resume event\n" << second.proc->describe();
  EXPECT_LE(*second.resume_offset, bad_from) << "resumed past the damage";
  EXPECT_GT(*second.resume_offset, 0u) << "the good part before the damage was not kept";

  // The receiver tells about the repair.
  bool reported = false;
  for (const auto& e : r.proc->json_events()) {
    const std::string d = lower(e.value("detail", ""));
    if (d.find("truncat") != std::string::npos || d.find("damag") != std::string::npos ||
        d.find("repair") != std::string::npos) {
      reported = true;
    }
  }
  EXPECT_TRUE(reported) << "the receiver did not report the repair\n" << r.proc->describe();
}

TEST(Resume, TruncatedPartialIsRepaired) {
  check_repair(Damage::truncate);
}

TEST(Resume, PartialDamagedInTheMiddleIsRepaired) {
  check_repair(Damage::overwrite_middle);
}

}  // namespace
}  // namespace ferry::e2e
