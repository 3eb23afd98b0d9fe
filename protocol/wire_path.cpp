#include "protocol/wire_path.hpp"

namespace ferry::protocol {

std::optional<std::string> wire_path_problem(std::string_view path) {
  if (path.empty()) return "empty path";
  if (path.size() > kMaxPathBytes) return "path longer than " + std::to_string(kMaxPathBytes) + " bytes";
  if (path.find('\0') != std::string_view::npos) return "path contains a NUL byte";
  if (path.front() == '/') return "absolute path";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view comp = path.substr(start, end - start);
    if (comp.empty()) return "empty path component";
    if (comp == ".") return "'.' path component";
    if (comp == "..") return "'..' path component";
    if (comp.size() > kMaxComponentBytes) return "path component longer than 255 bytes";
    start = end + 1;
  }
  return std::nullopt;
}

bool reserved_name(std::string_view name) {
  for (std::string_view suffix : kReservedSuffixes) {
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix) return true;
  }
  return false;
}

std::vector<std::string> split_wire_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    out.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace ferry::protocol
