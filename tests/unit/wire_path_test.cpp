// Tests protocol/wire_path: which relative paths an OFFER may carry, and splitting.
#include "protocol/wire_path.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ferry::protocol {
namespace {

// 17 components of 240 bytes and 16 slashes: exactly kMaxPathBytes.
std::string longest_path() {
  std::string p;
  for (int i = 0; i < 17; ++i) {
    if (i) p += '/';
    p += std::string(240, static_cast<char>('a' + i));
  }
  return p;
}

TEST(WirePath, Accepted) {
  const std::vector<std::string> good = {
      "a",
      "a/b/c",
      "file.txt",
      ".hidden",
      "..a",
      "a..",
      "...",
      "a/.b/c.",
      "with space/and\ttab",
      "caf\xc3\xa9/\xe2\x82\xac",
      "raw\xff\xfe bytes",
      "back\\slash",
      std::string(kMaxComponentBytes, 'c'),
      "d/" + std::string(kMaxComponentBytes, 'c'),
      longest_path(),
  };
  ASSERT_EQ(longest_path().size(), kMaxPathBytes);
  for (const auto& p : good) {
    auto why = wire_path_problem(p);
    EXPECT_FALSE(why.has_value()) << "'" << p.substr(0, 40) << "': " << why.value_or("");
  }
}

TEST(WirePath, Refused) {
  const std::vector<std::string> bad = {
      "",
      "/",
      "/a",
      "/a/b",
      "..",
      "../a",
      "a/..",
      "a/../b",
      ".",
      "./a",
      "a/.",
      "a/./b",
      "a//b",
      "//",
      "a/",
      "a/b/",
      std::string("a\0b", 3),
      std::string("\0", 1),
      std::string("a/\0", 3),
      longest_path() + "x",
      std::string(kMaxPathBytes + 1, 'a'),
      std::string(kMaxComponentBytes + 1, 'c'),
      "d/" + std::string(kMaxComponentBytes + 1, 'c') + "/e",
  };
  for (const auto& p : bad) {
    auto why = wire_path_problem(p);
    ASSERT_TRUE(why.has_value()) << "accepted '" << p.substr(0, 40) << "' (" << p.size() << " bytes)";
    EXPECT_FALSE(why->empty());
  }
}

TEST(WirePath, ReasonsNameTheProblem) {
  EXPECT_NE(wire_path_problem("")->find("empty"), std::string::npos);
  EXPECT_NE(wire_path_problem("/etc/passwd")->find("absolute"), std::string::npos);
  EXPECT_NE(wire_path_problem("a/../b")->find(".."), std::string::npos);
  EXPECT_NE(wire_path_problem(std::string("a\0b", 3))->find("NUL"), std::string::npos);
  EXPECT_NE(wire_path_problem(std::string(5000, 'a'))->find("longer"), std::string::npos);
}

TEST(WirePath, Split) {
  EXPECT_EQ(split_wire_path("a"), (std::vector<std::string>{"a"}));
  EXPECT_EQ(split_wire_path("a/b/c"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_wire_path(".x/y z"), (std::vector<std::string>{".x", "y z"}));
  auto parts = split_wire_path(longest_path());
  ASSERT_EQ(parts.size(), 17u);
  for (const auto& c : parts) EXPECT_EQ(c.size(), 240u);
}

}  // namespace
}  // namespace ferry::protocol
