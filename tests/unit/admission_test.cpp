// Admission (lib/net/admission.hpp): the connection cap, the per-address share, and the
// rate-limited log of refusals, in virtual time.
#include "lib/net/admission.hpp"

#include <gtest/gtest.h>

#include <string>

namespace ferry {
namespace {

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);

TEST(Admission, PerAddressShareLeavesRoomForOthers) {
  Admission gate({.max_connections = 10, .max_per_address = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(gate.admit("10.0.0.2", kT0).admitted);
  auto refused = gate.admit("10.0.0.2", kT0);
  EXPECT_FALSE(refused.admitted);
  ASSERT_TRUE(refused.log_line.has_value());
  EXPECT_NE(refused.log_line->find("10.0.0.2"), std::string::npos) << *refused.log_line;
  EXPECT_NE(refused.log_line->find("--max-per-address"), std::string::npos) << *refused.log_line;
  EXPECT_TRUE(gate.admit("10.0.0.3", kT0).admitted);
  EXPECT_EQ(gate.connections(), 4u);
  EXPECT_EQ(gate.connections_from("10.0.0.2"), 3u);
  gate.release("10.0.0.2");
  EXPECT_TRUE(gate.admit("10.0.0.2", kT0).admitted) << "a released slot is free again";
}

TEST(Admission, TheTotalCapCountsPeersWithoutAnAddress) {
  Admission gate({.max_connections = 2, .max_per_address = 1});
  EXPECT_TRUE(gate.admit("", kT0).admitted);
  EXPECT_TRUE(gate.admit("", kT0).admitted) << "no share for local peers";
  auto refused = gate.admit("10.0.0.9", kT0);
  EXPECT_FALSE(refused.admitted);
  ASSERT_TRUE(refused.log_line.has_value());
  EXPECT_NE(refused.log_line->find("--max-connections"), std::string::npos) << *refused.log_line;
  gate.release("");
  EXPECT_TRUE(gate.admit("10.0.0.9", kT0).admitted);
}

TEST(Admission, ZeroPerAddressMeansNoShare) {
  Admission gate({.max_connections = 5, .max_per_address = 0});
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(gate.admit("10.0.0.2", kT0).admitted);
  EXPECT_FALSE(gate.admit("10.0.0.2", kT0).admitted);
}

TEST(Admission, RefusalsAreLoggedOncePerAddressPerIntervalWithTheCountSuppressed) {
  Admission gate({.max_connections = 100, .max_per_address = 1, .log_interval = std::chrono::seconds(10)});
  ASSERT_TRUE(gate.admit("10.0.0.2", kT0).admitted);
  ASSERT_TRUE(gate.admit("10.0.0.3", kT0).admitted);
  EXPECT_TRUE(gate.admit("10.0.0.2", kT0).log_line.has_value()) << "the first refusal is logged";
  for (int i = 0; i < 41; ++i) {
    auto v = gate.admit("10.0.0.2", kT0 + std::chrono::seconds(i % 10));
    EXPECT_FALSE(v.admitted);
    EXPECT_FALSE(v.log_line.has_value()) << "suppressed within the interval";
  }
  EXPECT_TRUE(gate.admit("10.0.0.3", kT0).log_line.has_value()) << "another address has its own line";
  auto next = gate.admit("10.0.0.2", kT0 + std::chrono::seconds(10));
  ASSERT_TRUE(next.log_line.has_value());
  EXPECT_NE(next.log_line->find("41 more refused from there"), std::string::npos) << *next.log_line;
  auto after = gate.admit("10.0.0.2", kT0 + std::chrono::seconds(20));
  ASSERT_TRUE(after.log_line.has_value());
  EXPECT_EQ(after.log_line->find("more refused"), std::string::npos) << "the count starts again: " << *after.log_line;
}

TEST(Admission, ManyRefusedAddressesShareOneLineBeyondTheTable) {
  Admission gate({.max_connections = 0, .max_per_address = 1});
  std::size_t lines = 0;
  const std::size_t addresses = Admission::kMaxLoggedAddresses + 500;
  for (std::size_t i = 0; i < addresses; ++i) {
    lines += gate.admit("a" + std::to_string(i), kT0).log_line.has_value() ? 1 : 0;
  }
  EXPECT_EQ(lines, Admission::kMaxLoggedAddresses + 1) << "one line each as far as the table goes, then one shared";
  // Once the interval passed, old entries make room again.
  auto later = gate.admit("b", kT0 + std::chrono::seconds(11));
  EXPECT_TRUE(later.log_line.has_value());
}

}  // namespace
}  // namespace ferry
