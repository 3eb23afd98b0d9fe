// Fuzz target: a whole SenderSession over a fixed set of entries (tests/fuzz/
// session_harness.hpp), fed arbitrary receiver bytes (HELLO, ANSWER, ACK, RPOS,
// VERDICT, END, PING, ERROR in any order and split), time steps (stalls, keepalives),
// and reads, prefix hashes and source checks completing in any order, failing, coming
// back short or finding the source changed. Contract under test as for the receiver's
// target. libFuzzer with -DFERRY_FUZZ=ON under clang; else a corpus replayer.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/session_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ferry::fuzz::SenderHarness h;
  ferry::fuzz::run_script(h, std::span<const std::uint8_t>(data, size));
  return 0;
}
