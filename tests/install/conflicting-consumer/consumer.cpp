// A program of its own whose include path (include/, put FIRST) has folders named like
// ferry's: lib/events.hpp, lib/core/events.hpp, protocol/result.hpp and
// protocol/auth_key.hpp. It includes its own headers by those names and ferry's by
// <ferry/...>; each must get its own (tests/install/install_test.sh builds it with
// find_package(ferry), once per library kind, and with pkg-config, and runs it).
//
//   consumer              prints which headers it got and one address ferry parsed; 0
#include <cstdio>
#include <string>

#include "lib/core/events.hpp"
#include "lib/events.hpp"
#include "protocol/auth_key.hpp"
#include "protocol/result.hpp"

#include <ferry/receiver/receiver.hpp>
#include <ferry/sender/sender.hpp>

int main() {
  consumer::Result own{7};  // ours: ferry::Result is a template, this is a plain struct
  std::printf("%s, %s, %s, %s (code %d)\n", consumer::events_owner(), consumer::core_events_owner(),
              consumer::result_owner(), consumer::auth_key_owner(), own.code);

  // ferry's: types from its events.hpp and outcome.hpp, and a call into the library.
  ferry::Outcome outcome;
  ferry::EventType type = ferry::EventType::session_end;
  ferry::Result<ferry::Address> address = ferry::parse_address("tcp:127.0.0.1:7000", ferry::AddressUse::connect);
  if (!address) {
    std::fprintf(stderr, "consumer: parse_address: %s\n", address.error().message().c_str());
    return 1;
  }
  std::printf("ferry: %s, exit code %d, event %d\n", address->to_string().c_str(), outcome.exit_code,
              static_cast<int>(type));
  return 0;
}
