#include "lib/core/source_entry.hpp"

namespace ferry {

std::string source_identity(std::uint64_t size, std::int64_t mtime_ns) {
  return "size=" + std::to_string(size) + ",mtime_ns=" + std::to_string(mtime_ns);
}

bool same_version(const SourceEntry& a, const SourceEntry& b) {
  return a.size == b.size && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns && a.inode == b.inode;
}

}  // namespace ferry
