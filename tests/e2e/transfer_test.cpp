// End-to-end transfers with the real ferry-send and ferry-recv over each transport:
// loopback TCP, a unix socket, stdin/stdout pipes (--stdio on both sides) and a
// spawned command (-e 'exec ferry-recv --stdio DEST'). Files of 0 B, 1 B, chunk-1,
// chunk and chunk+1 (64 KiB and the default 256 KiB chunks), 64 MiB of random bytes,
// and a tree with nested and empty directories must arrive byte for byte, both sides
// must exit 0 (the --once receiver included), and DEST must hold nothing else.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e/process.hpp"

namespace ferry::e2e {
namespace {

enum class Transport { tcp, unix_socket, stdio, rsh };

std::string transport_name(Transport t) {
  switch (t) {
    case Transport::tcp:
      return "tcp";
    case Transport::unix_socket:
      return "unix";
    case Transport::stdio:
      return "stdio";
    case Transport::rsh:
      return "rsh";
  }
  return "?";
}

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Outcome {
  std::unique_ptr<Process> sender, receiver;  // receiver is null for -e (the sender's child)
  ExitStatus send_status, recv_status;
};

// Sends `paths` from the sources in t/"src" into t/"dest" over `transport`, with
// `send_args` added to ferry-send's options (always --json). Waits for both sides.
Outcome transfer(Transport transport, const TempDir& t, const std::vector<std::string>& paths,
                 const std::vector<std::string>& send_args) {
  Outcome o;
  const std::string dest = t / "dest";
  std::vector<std::string> send_argv{kSendBin, "--json"};
  send_argv.insert(send_argv.end(), send_args.begin(), send_args.end());
  auto with_paths = [&](std::vector<std::string> argv) {
    argv.insert(argv.end(), paths.begin(), paths.end());
    return argv;
  };
  switch (transport) {
    case Transport::tcp:
    case Transport::unix_socket: {
      const std::string listen = transport == Transport::tcp ? "127.0.0.1:0" : "unix:" + (t / "sock");
      Receiver r = start_receiver(t.path(), "recv", listen, {"--once", dest});
      o.receiver = std::move(r.proc);
      auto argv = send_argv;
      argv.insert(argv.end(), {"--connect", r.address});
      o.sender = Process::start(with_paths(argv), t.path(), "send");
      break;
    }
    case Transport::stdio: {
      Pipe to_recv = make_pipe(), to_send = make_pipe();
      SpawnOptions recv_io, send_io;
      recv_io.stdin_fd = to_recv.read_end.get();
      recv_io.stdout_fd = to_send.write_end.get();
      send_io.stdin_fd = to_send.read_end.get();
      send_io.stdout_fd = to_recv.write_end.get();
      o.receiver = Process::start({kRecvBin, "--stdio", dest}, t.path(), "recv", recv_io);
      auto argv = send_argv;
      argv.push_back("--stdio");
      o.sender = Process::start(with_paths(argv), t.path(), "send", send_io);
      // The pipes' ends close here: each child holds the only copies of its ends, so
      // each side sees EOF when the other exits.
      break;
    }
    case Transport::rsh: {
      auto argv = send_argv;
      argv.insert(argv.end(), {"-e", "exec " + sh_quote(kRecvBin) + " --stdio " + sh_quote(dest)});
      o.sender = Process::start(with_paths(argv), t.path(), "send");
      break;
    }
  }
  o.send_status = o.sender->wait();
  o.recv_status = o.receiver ? o.receiver->wait() : ExitStatus::exited_with(0);
  return o;
}

// The sender's JSON events: stdout, or stderr with --stdio (stdout carries the protocol).
std::vector<nlohmann::json> sender_events(Transport transport, const Process& p) {
  return p.json_events(transport == Transport::stdio);
}

class TransferTest : public ::testing::TestWithParam<Transport> {
 protected:
  // Runs the transfer and checks: both exit 0, the sender's session_end says done with
  // `bytes` verified, DEST equals t/"src" exactly (no ferry leftovers).
  void run_and_check(const std::vector<std::string>& paths, const std::vector<std::string>& send_args,
                     std::uint64_t bytes) {
    const Transport tr = GetParam();
    Outcome o = transfer(tr, t_, paths, send_args);
    ASSERT_EQ(o.send_status, ExitStatus::exited_with(0)) << o.sender->describe();
    ASSERT_EQ(o.recv_status, ExitStatus::exited_with(0)) << o.receiver->describe();
    auto events = sender_events(tr, *o.sender);
    const auto* end = find_event(events, "session_end");
    ASSERT_NE(end, nullptr) << o.sender->describe();
    EXPECT_EQ(end->value("exit_code", -1), 0);
    EXPECT_EQ((*end)["totals"].value("bytes_verified", std::uint64_t{0}), bytes) << o.sender->describe();
    EXPECT_EQ((*end)["totals"].value("files_failed", std::uint64_t{1}), 0u);
    EXPECT_EQ(ferry_leftovers(t_ / "dest"), std::vector<std::string>{});
    EXPECT_EQ(compare_trees(t_ / "src", t_ / "dest"), "") << "DEST differs from the source";
  }

  // Files of 0, 1, chunk-1, chunk, chunk+1 bytes; returns their paths and total size.
  std::vector<std::string> edge_files(std::uint64_t chunk, std::uint64_t& total) {
    std::vector<std::string> paths;
    total = 0;
    std::uint64_t seed = 1;
    for (std::uint64_t size : {std::uint64_t{0}, std::uint64_t{1}, chunk - 1, chunk, chunk + 1}) {
      std::string p = t_ / ("src/f" + std::to_string(size));
      write_random_file(p, size, seed++);
      paths.push_back(p);
      total += size;
    }
    return paths;
  }

  TempDir t_;
};

TEST_P(TransferTest, EdgeSizesWith64KChunks) {
  std::uint64_t total = 0;
  auto paths = edge_files(64 * 1024, total);
  run_and_check(paths, {"--chunk-size", "64K"}, total);
}

TEST_P(TransferTest, EdgeSizesWithDefaultChunks) {
  std::uint64_t total = 0;
  auto paths = edge_files(256 * 1024, total);
  run_and_check(paths, {}, total);
}

TEST_P(TransferTest, Random64MiB) {
  const std::uint64_t size = 64ull << 20;
  write_random_file(t_ / "src/big.bin", size, 64);
  run_and_check({t_ / "src/big.bin"}, {}, size);
}

TEST_P(TransferTest, TreeWithNestedAndEmptyDirectories) {
  std::uint64_t total = 0;
  auto add = [&](const std::string& rel, std::uint64_t size, std::uint64_t seed) {
    write_random_file(t_ / ("src/tree/" + rel), size, seed);
    total += size;
  };
  add("a.txt", 12, 1);
  add("nested/b.bin", 300 * 1024 + 7, 2);
  add("nested/empty-file", 0, 3);
  add("nested/deeper/deepest/c.bin", 1 << 20, 4);
  add("nested/deeper/d.bin", 65537, 5);
  add("other/e", 1, 6);
  make_dirs(t_ / "src/tree/empty");
  make_dirs(t_ / "src/tree/nested/empty-too");
  make_dirs(t_ / "src/tree/nested/deeper/empty/inside-empty");
  run_and_check({t_ / "src/tree"}, {"--chunk-size", "64K"}, total);
}

INSTANTIATE_TEST_SUITE_P(Transports, TransferTest,
                         ::testing::Values(Transport::tcp, Transport::unix_socket, Transport::stdio, Transport::rsh),
                         [](const ::testing::TestParamInfo<Transport>& i) { return transport_name(i.param); });

// -e through a shell that reports ferry-recv's own exit code (the `exec` form above
// hides it): the receiver at the far end of the command must exit 0 too.
TEST(RshTransfer, ReceiverBehindTheCommandExitsZero) {
  TempDir t;
  write_random_file(t / "src/tree/x/y.bin", 700 * 1024, 9);
  make_dirs(t / "src/tree/empty");
  const std::string rc_file = t / "recv.rc";
  const std::string cmd = sh_quote(kRecvBin) + " --stdio " + sh_quote(t / "dest") + "; echo $? > " + sh_quote(rc_file);
  auto send = Process::start({kSendBin, "-e", cmd, t / "src/tree"}, t.path(), "send");
  ASSERT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
  std::string rc;
  // The shell writes the code once ferry-recv has exited, possibly after ferry-send.
  ASSERT_TRUE(wait_until(
      [&] {
        std::ifstream f(rc_file);
        return std::getline(f, rc) && !rc.empty();
      },
      kStartLimit))
      << "the shell did not record ferry-recv's exit code\n"
      << send->describe();
  EXPECT_EQ(rc, "0") << send->describe();
  EXPECT_EQ(compare_trees(t / "src", t / "dest"), "");
}

// Both ends of a --stdio transfer exit promptly once the transfer is done: each side's
// half-close must reach the other as EOF (the original fd 1 must not keep the pipe
// open, which made both sides wait for Connection::close_after_flush's 2 s limit).
// Timing is the only way to see such a linger; the bound is generous: a 1000-byte
// transfer takes some 10 ms.
TEST(StdioTransfer, BothSidesExitPromptly) {
  TempDir t;
  write_random_file(t / "src/small.bin", 1000, 11);
  const auto t0 = std::chrono::steady_clock::now();
  Outcome o = transfer(Transport::stdio, t, {t / "src/small.bin"}, {});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(o.send_status, ExitStatus::exited_with(0)) << o.sender->describe();
  ASSERT_EQ(o.recv_status, ExitStatus::exited_with(0)) << o.receiver->describe();
  EXPECT_EQ(compare_trees(t / "src", t / "dest"), "");
  EXPECT_LT(secs, 1.5) << "a --stdio side lingered after the transfer\n"
                       << o.sender->describe() << o.receiver->describe();
}

// A --once receiver exits 0 after one complete transfer, also when it was a tree.
TEST(OnceReceiver, ExitsZeroAfterTheTransfer) {
  TempDir t;
  write_random_file(t / "src/one.bin", 100000, 3);
  Receiver r = start_receiver(t.path(), "recv", "127.0.0.1:0", {"--once", "--json", t / "dest"});
  auto send = Process::start({kSendBin, "--connect", r.address, t / "src/one.bin"}, t.path(), "send");
  ASSERT_EQ(send->wait(), ExitStatus::exited_with(0)) << send->describe();
  ASSERT_EQ(r.proc->wait(), ExitStatus::exited_with(0)) << r.proc->describe();
  const auto events = r.proc->json_events();
  const auto* end = find_event(events, "session_end");
  ASSERT_NE(end, nullptr) << r.proc->describe();
  EXPECT_EQ((*end)["totals"].value("files_verified", std::uint64_t{0}), 1u);
  EXPECT_EQ(compare_trees(t / "src", t / "dest"), "");
}

}  // namespace
}  // namespace ferry::e2e
