// Fuzz target: a whole ReceiverSession (HELLO, OFFER, DATA, COMMIT, END, PING, ERROR
// in any order and split, time passing, opens/writes/commits of a fake file system
// completing in any order or failing, the connection lost) driven by a script read
// from the fuzz input (tests/fuzz/session_harness.hpp). Contract under test: no crash,
// no undefined behaviour, no unbounded growth, and every frame the session sends
// decodes as one intact frame. libFuzzer with -DFERRY_FUZZ=ON under clang; else a
// corpus replayer run by ctest (replay_main.cpp).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/session_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ferry::fuzz::ReceiverHarness h;
  ferry::fuzz::run_script(h, std::span<const std::uint8_t>(data, size));
  return 0;
}
