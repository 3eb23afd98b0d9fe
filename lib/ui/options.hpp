// Command-line pieces both executables share: sizes with K/M/G suffixes, durations,
// and the connection options (--listen, --connect, --stdio, -e/--rsh) with their checks.
//
//   CommonOptions o;
//   add_common_options(app, o);     // CLI11 app
//   app.parse(argc, argv);
//   auto ok = finish_common_options(o);   // Errc::usage with the reason
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lib/core/events.hpp"
#include "lib/core/limits.hpp"
#include "lib/net/address.hpp"
#include "lib/net/transport.hpp"
#include "protocol/auth_key.hpp"
#include "protocol/result.hpp"

namespace ferry {

// "4M" -> 4194304. Suffixes K, M, G, T (powers of 1024), optional "iB"/"B".
Result<std::uint64_t> parse_size(const std::string& text);

// "30", "30s", "500ms", "5m", "1h" (a bare number is seconds; at most a year).
Result<std::chrono::milliseconds> parse_duration(const std::string& text);

enum class ConnectMode { listen, connect, stdio, command };

struct CommonOptions {
  // raw
  std::string listen, connect, rsh, chunk_size_text = "256K", window_text = "16M";
  bool stdio = false, json = false, quiet = false, verbose = false;
  bool progress = false;  // --progress: the live line also without a terminal
  std::string bwlimit_text;  // --bwlimit RATE
  std::uint64_t rate_limit = 0;  // derived: bytes per second, 0 = none
  double stall_timeout_s = 10;
  // Authentication (docs/SECURITY.md): --key-file (else $FERRY_KEY_FILE), --generate-key,
  // --allow (repeatable, with --listen), --no-auth-i-know-this-is-insecure.
  std::string key_file, generate_key;
  std::vector<std::string> allow;
  bool insecure_no_key = false;
  // derived by finish_common_options
  ConnectMode mode = ConnectMode::connect;
  Address address;
  std::size_t chunk_size = 0;
  std::uint64_t window = 0;
  std::chrono::milliseconds stall_timeout{10'000};
  std::optional<protocol::AuthKey> key;  // loaded from key_file
};

void add_common_options(CLI::App& app, CommonOptions& o);
// Checks exactly one connection mode and the sizes, loads the key file (--key-file, else
// the environment's FERRY_KEY_FILE when set and not empty); fills the derived fields.
Result<void> finish_common_options(CommonOptions& o);
// --generate-key PATH: writes a new key file (lib/fs/key_file.hpp) and says so on stderr
// as `program`; returns the exit code.
int generate_key_command(const std::string& path, const char* program);
// The Transport the (finished) connection options ask for.
Transport transport_from(const CommonOptions& o);

// How the executables show events: --json lines on stdout (stderr with --stdio, whose
// stdout carries the protocol), else the human sink for `role` ("send", "recv"), which
// omits the summary of a usage or authentication error (nothing was attempted or may
// be; main prints the reason).
std::function<void(const Event&)> cli_event_printer(const CommonOptions& o, const std::string& role);

}  // namespace ferry
