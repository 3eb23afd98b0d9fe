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
#include <optional>
#include <string>

#include "lib/address.hpp"
#include "protocol/result.hpp"

namespace ferry {

// "4M" -> 4194304. Suffixes K, M, G, T (powers of 1024), optional "iB"/"B".
Result<std::uint64_t> parse_size(const std::string& text);

enum class ConnectMode { listen, connect, stdio, command };

struct CommonOptions {
  // raw
  std::string listen, connect, rsh, chunk_size_text = "256K", window_text = "4M";
  bool stdio = false, json = false, quiet = false, verbose = false;
  double stall_timeout_s = 10;
  // derived by finish_common_options
  ConnectMode mode = ConnectMode::connect;
  Address address;
  std::size_t chunk_size = 0;
  std::uint64_t window = 0;
  std::chrono::milliseconds stall_timeout{10'000};
};

void add_common_options(CLI::App& app, CommonOptions& o);
// Checks exactly one connection mode and the sizes; fills the derived fields.
Result<void> finish_common_options(CommonOptions& o);

// 32 random hex digits (a session id).
std::string random_session_id();

}  // namespace ferry
