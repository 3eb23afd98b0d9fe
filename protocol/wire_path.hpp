// Rules for the relative paths carried in OFFER frames.
//
// A wire path is a byte string (no encoding is imposed), components separated by '/'.
// It must be non-empty, at most kMaxPathBytes long, relative (no leading '/'), free of
// NUL, with no empty, "." or ".." component and no component over kMaxComponentBytes.
// The receiver additionally refuses any path that passes through a symlink on disk.
//
//   if (auto why = wire_path_problem(offer.path)) refuse(*why);
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::protocol {

inline constexpr std::size_t kMaxPathBytes = 4096;
inline constexpr std::size_t kMaxComponentBytes = 255;

// nullopt when `path` is acceptable, else a one-line reason.
std::optional<std::string> wire_path_problem(std::string_view path);

// Components of a path that passed wire_path_problem.
std::vector<std::string> split_wire_path(std::string_view path);

}  // namespace ferry::protocol
