// Rules for the relative paths carried in OFFER frames.
//
// A wire path is a byte string (no encoding is imposed), components separated by '/'.
// It must be non-empty, at most kMaxPathBytes long, relative (no leading '/'), free of
// NUL, with no empty, "." or ".." component and no component over kMaxComponentBytes.
// The receiver additionally refuses any path that passes through a symlink on disk,
// and any component in the namespace of its own temporary files (reserved_name()).
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

// Suffixes of the names the receiver gives its own files in DEST: partials, journals,
// a journal being replaced, and the hashed base used for leaves too long to carry in
// a temporary name (".<hex>.ferry-long.ferry-part"). A sent component ending in one of
// them is refused by the receiver, so no sent name can produce, or be, a temporary
// name: the plain form "." + LEAF + SUFFIX and the hashed form "." + HEX + ".ferry-long"
// + SUFFIX never meet, since LEAF = HEX + ".ferry-long" is refused.
inline constexpr std::string_view kReservedSuffixes[] = {".ferry-part", ".ferry-journal", ".ferry-journal.tmp",
                                                         ".ferry-long", ".ferry-batch"};
// True when the path component `name` ends in one of kReservedSuffixes.
bool reserved_name(std::string_view name);

// Components of a path that passed wire_path_problem.
std::vector<std::string> split_wire_path(std::string_view path);

}  // namespace ferry::protocol
