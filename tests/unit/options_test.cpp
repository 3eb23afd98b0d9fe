// Tests lib/options: parse_size (suffixes, overflow, junk), finish_common_options
// (exactly one connection mode, chunk and window ranges, window >= chunk, stall
// timeout) and the CLI11 wiring of add_common_options.
#include "lib/ui/options.hpp"
#include "lib/ui/remote_target.hpp"

#include <gtest/gtest.h>

#include <string>

#include "protocol/digest.hpp"
#include "protocol/frame.hpp"

namespace ferry {
namespace {

TEST(Options, ParseSizeSuffixes) {
  struct Case {
    const char* text;
    std::uint64_t want;
  };
  for (const Case& c : {Case{"0", 0},
                        Case{"1", 1},
                        Case{"4096", 4096},
                        Case{"10B", 10},
                        Case{"10b", 10},
                        Case{"1K", 1024},
                        Case{"1k", 1024},
                        Case{"256K", 256 * 1024},
                        Case{"1KB", 1024},
                        Case{"1KiB", 1024},
                        Case{"1kib", 1024},
                        Case{"4M", 4ull << 20},
                        Case{"4MiB", 4ull << 20},
                        Case{"4MB", 4ull << 20},
                        Case{"1G", 1ull << 30},
                        Case{"2GiB", 2ull << 30},
                        Case{"1T", 1ull << 40},
                        Case{"3TiB", 3ull << 40},
                        Case{"18446744073709551615", 18446744073709551615ull},
                        Case{"16777215T", 16777215ull << 40}}) {
    auto r = parse_size(c.text);
    ASSERT_TRUE(r) << c.text << ": " << r.error().message();
    EXPECT_EQ(*r, c.want) << c.text;
  }
}

TEST(Options, ParseSizeOverflow) {
  for (const char* text : {"18446744073709551616", "99999999999999999999", "17179869184G", "16777216T",
                           "18014398509481984K", "100000000000000000000000000000M"}) {
    auto r = parse_size(text);
    ASSERT_FALSE(r) << text << " = " << *r;
    EXPECT_EQ(r.error().code, Errc::usage);
  }
}

TEST(Options, ParseSizeJunk) {
  for (const char* text : {"", "K", "abc", "-1", "+1", " 1", "1 ", "1 K", "1.5M", "1X", "1KK", "1MiBs", "1iB", "0x10",
                           "4M4", "1E", "1P"}) {
    auto r = parse_size(text);
    ASSERT_FALSE(r) << "'" << text << "' = " << *r;
    EXPECT_EQ(r.error().code, Errc::usage);
    EXPECT_FALSE(r.error().message().empty());
  }
}

CommonOptions with_connect() {
  CommonOptions o;
  o.connect = "127.0.0.1:5000";
  return o;
}

TEST(Options, DefaultsAreValid) {
  auto o = with_connect();
  auto r = finish_common_options(o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(o.mode, ConnectMode::connect);
  EXPECT_EQ(o.address.host, "127.0.0.1");
  EXPECT_EQ(o.address.port, 5000);
  EXPECT_EQ(o.chunk_size, protocol::kDefaultChunkSize);
  EXPECT_EQ(o.window, protocol::kDefaultWindow);
  EXPECT_EQ(o.stall_timeout, std::chrono::seconds(10));
}

TEST(Options, ExactlyOneMode) {
  {
    CommonOptions o;
    auto r = finish_common_options(o);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::usage);
  }
  auto set = [](CommonOptions& o, int m) {
    if (m == 0) o.listen = "127.0.0.1:0";
    if (m == 1) o.connect = "127.0.0.1:5000";
    if (m == 2) o.stdio = true;
    if (m == 3) o.rsh = "ferry-recv --stdio /tmp/x";
  };
  const ConnectMode modes[] = {ConnectMode::listen, ConnectMode::connect, ConnectMode::stdio, ConnectMode::command};
  for (int a = 0; a < 4; ++a) {
    CommonOptions one;
    set(one, a);
    auto r = finish_common_options(one);
    ASSERT_TRUE(r) << a << ": " << r.error().message();
    EXPECT_EQ(one.mode, modes[a]);
    for (int b = 0; b < 4; ++b) {
      if (b == a) continue;
      CommonOptions two;
      set(two, a);
      set(two, b);
      auto r2 = finish_common_options(two);
      ASSERT_FALSE(r2) << a << " and " << b;
      EXPECT_EQ(r2.error().code, Errc::usage);
    }
  }
}

TEST(Options, BadAddressIsAUsageError) {
  CommonOptions o;
  o.connect = "nohost";
  auto r = finish_common_options(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::usage);
  CommonOptions l;
  l.listen = "vsock:nope:5";
  ASSERT_FALSE(finish_common_options(l));
}

TEST(Options, ListenAddress) {
  CommonOptions o;
  o.listen = ":7000";
  ASSERT_TRUE(finish_common_options(o));
  EXPECT_EQ(o.mode, ConnectMode::listen);
  EXPECT_EQ(o.address.host, "127.0.0.1");
  EXPECT_EQ(o.address.port, 7000);
}

TEST(Options, ChunkSizeRange) {
  for (const char* ok : {"1K", "1024", "256K", "1M", "4M"}) {
    auto o = with_connect();
    o.chunk_size_text = ok;
    auto r = finish_common_options(o);
    ASSERT_TRUE(r) << ok << ": " << r.error().message();
    EXPECT_EQ(o.chunk_size, *parse_size(ok));
  }
  {
    auto o = with_connect();
    o.chunk_size_text = "16M";
    o.window_text = "16M";
    ASSERT_TRUE(finish_common_options(o));
    EXPECT_EQ(o.chunk_size, protocol::kMaxChunkSize);
  }
  for (const char* bad : {"0", "1", "1023", "16777217", "17M", "1G", "junk"}) {
    auto o = with_connect();
    o.chunk_size_text = bad;
    o.window_text = "1G";
    auto r = finish_common_options(o);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::usage);
  }
}

TEST(Options, WindowRange) {
  for (const char* ok : {"256K", "4M", "1G"}) {
    auto o = with_connect();
    o.window_text = ok;
    auto r = finish_common_options(o);
    ASSERT_TRUE(r) << ok << ": " << r.error().message();
    EXPECT_EQ(o.window, *parse_size(ok));
  }
  {
    auto o = with_connect();
    o.chunk_size_text = "64K";
    o.window_text = "64K";
    ASSERT_TRUE(finish_common_options(o));
  }
  for (const char* bad : {"0", "65535", "63K", "1025M", "2G", "1T", "x"}) {
    auto o = with_connect();
    o.chunk_size_text = "1K";
    o.window_text = bad;
    auto r = finish_common_options(o);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::usage);
  }
}

TEST(Options, WindowSmallerThanChunkIsRefused) {
  auto o = with_connect();
  o.chunk_size_text = "1M";
  o.window_text = "512K";
  auto r = finish_common_options(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::usage);
  EXPECT_NE(r.error().message().find("window"), std::string::npos);
  o.window_text = "1M";
  EXPECT_TRUE(finish_common_options(o));
}

TEST(Options, StallTimeoutRange) {
  for (double ok : {0.001, 0.5, 10.0, 86400.0}) {
    auto o = with_connect();
    o.stall_timeout_s = ok;
    ASSERT_TRUE(finish_common_options(o)) << ok;
  }
  {
    auto o = with_connect();
    o.stall_timeout_s = 2.5;
    ASSERT_TRUE(finish_common_options(o));
    EXPECT_EQ(o.stall_timeout, std::chrono::milliseconds(2500));
  }
  for (double bad :
       {0.0, -1.0, 86401.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    auto o = with_connect();
    o.stall_timeout_s = bad;
    auto r = finish_common_options(o);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::usage);
  }
}

TEST(Options, CommandLineWiring) {
  CLI::App app{"test"};
  CommonOptions o;
  add_common_options(app, o);
  ASSERT_NO_THROW(app.parse("--connect [::1]:9000 --chunk-size 1M --window 8M --stall-timeout 3 --json -q -v", false));
  auto r = finish_common_options(o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(o.mode, ConnectMode::connect);
  EXPECT_EQ(o.address.host, "::1");
  EXPECT_EQ(o.address.port, 9000);
  EXPECT_EQ(o.chunk_size, 1u << 20);
  EXPECT_EQ(o.window, 8u << 20);
  EXPECT_EQ(o.stall_timeout, std::chrono::seconds(3));
  EXPECT_TRUE(o.json);
  EXPECT_TRUE(o.quiet);
  EXPECT_TRUE(o.verbose);

  CLI::App app2{"test"};
  CommonOptions o2;
  add_common_options(app2, o2);
  ASSERT_NO_THROW(app2.parse("-e 'ssh host ferry-recv --stdio /d'", false));
  ASSERT_TRUE(finish_common_options(o2));
  EXPECT_EQ(o2.mode, ConnectMode::command);
  EXPECT_EQ(o2.rsh, "ssh host ferry-recv --stdio /d");
}

TEST(Options, RandomSessionId) {
  auto a = random_session_id();
  auto b = random_session_id();
  EXPECT_TRUE(protocol::is_hex128(a)) << a;
  EXPECT_TRUE(protocol::is_hex128(b)) << b;
  EXPECT_NE(a, b);
}

TEST(Duration, SecondsByDefaultAndUnits) {
  EXPECT_EQ(*parse_duration("30"), std::chrono::milliseconds(30'000));
  EXPECT_EQ(*parse_duration("1.5s"), std::chrono::milliseconds(1'500));
  EXPECT_EQ(*parse_duration("500ms"), std::chrono::milliseconds(500));
  EXPECT_EQ(*parse_duration("5m"), std::chrono::milliseconds(300'000));
  EXPECT_EQ(*parse_duration("1h"), std::chrono::milliseconds(3'600'000));
  for (const char* bad : {"", "s", "-1", "10x", "abc", "400d", "1e30"}) {
    auto d = parse_duration(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(d.error().code, Errc::usage) << bad;
  }
}

// scp/rsync rules: a ':' with no '/' before it names a host.
TEST(RemoteTarget, HostColonDirAndLocalPathsWithAColon) {
  auto t = parse_remote_target("me@far:/srv/in");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "me@far");
  EXPECT_EQ(t->dir, "/srv/in");
  t = parse_remote_target("far:");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->dir, ".");  // the remote home, as scp
  for (const char* local : {"a", "./a:b", "/tmp/a:b", "dir/x:y", ":x", "me@:x", "-oProxyCommand=x:y"}) {
    EXPECT_FALSE(parse_remote_target(local)) << local;
  }
}

TEST(RemoteTarget, TheCommandQuotesForBothShells) {
  EXPECT_EQ(shell_quote("it's"), R"('it'\''s')");
  const std::string cmd = remote_command("ssh -p 2222", RemoteTarget{"me@far", "/srv/my dir"}, "ferry-recv");
  EXPECT_EQ(cmd, R"(ssh -p 2222 'me@far' ''\''ferry-recv'\'' --stdio -- '\''/srv/my dir'\''')");
  // --check and --dry-run start the remote receiver read-only.
  EXPECT_EQ(remote_command("ssh", RemoteTarget{"h", "/d"}, "ferry-recv", true),
            R"(ssh 'h' ''\''ferry-recv'\'' --stdio --inspect-only -- '\''/d'\''')");
}

}  // namespace
}  // namespace ferry
