#include "lib/fs/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "lib/fs/fd_io.hpp"
#include "lib/fs/owned_file.hpp"
#include "protocol/digest.hpp"
#include "protocol/frame.hpp"

namespace ferry {

using json = nlohmann::json;

namespace {
constexpr std::size_t kMaxJournalBytes = 64u << 20;

Error invalid(const std::string& why) { return make_error(Errc::local_io, "invalid journal: " + why); }

// The format checks that need no parsing of the digests: version, types, block size.
Result<void> check_shape(const json& j) {
  if (!j.at("ferry_journal").is_number_unsigned()) return invalid("'ferry_journal' is not an unsigned integer");
  const auto format = j.at("ferry_journal").get<std::uint64_t>();
  if (format == 1) return invalid("format 1 from an older ferry");
  if (format != kJournalFormat) return invalid("unknown journal version");
  // nlohmann converts booleans and negative numbers to uint64_t silently: check types first.
  for (const char* key : {"block_size", "size", "verified"}) {
    if (!j.at(key).is_number_unsigned()) return invalid(std::string("'") + key + "' is not an unsigned integer");
  }
  if (!j.at("blocks").is_array()) return invalid("'blocks' is not an array");
  if (!j.at("held").is_array()) return invalid("'held' is not an array");
  const auto bs = j.at("block_size").get<std::uint64_t>();
  if (bs < protocol::kMinChunkSize || bs > protocol::kMaxChunkSize) return invalid("block size out of range");
  return {};
}

Result<std::uint64_t> digest_of(const json& v) {
  if (!v.is_string()) return invalid("a block digest is not a string");
  auto d = protocol::parse_hex64(v.get<std::string>());
  if (!d) return invalid("a block digest is not 16 hex digits");
  return *d;
}

// `held`: [[offset, "digest"], ...], increasing block-aligned offsets above `verified`
// and below `size`, at most kMaxHeldBlocks.
Result<void> parse_held(const json& arr, Journal& out) {
  if (arr.size() > kMaxHeldBlocks) return invalid("too many held blocks");
  for (const auto& e : arr) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned()) return invalid("a held entry is not [offset, digest]");
    auto d = digest_of(e[1]);
    if (!d) return d.error();
    const auto off = e[0].get<std::uint64_t>();
    const bool ordered = out.held.empty() ? off > out.verified : off > out.held.back().offset;
    if (off % out.block_size != 0 || off >= out.size || !ordered) return invalid("a held block is out of place");
    out.held.push_back({off, *d});
  }
  return {};
}

std::uint64_t blocks_below(std::uint64_t verified, std::uint64_t block_size) {
  return (verified + block_size - 1) / block_size;
}
}  // namespace

std::string Journal::to_json() const {
  json blocks_json = json::array();
  for (auto b : blocks) blocks_json.push_back(protocol::hex64(b));
  json held_json = json::array();
  for (const auto& h : held) held_json.push_back(json::array({h.offset, protocol::hex64(h.digest)}));
  json j{{"ferry_journal", kJournalFormat}, {"path", path},   {"identity", identity},   {"size", size},
         {"block_size", block_size},       {"verified", verified}, {"blocks", blocks_json}, {"held", held_json}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Journal> Journal::from_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid("not a JSON object");
  try {
    auto shape = check_shape(j);
    if (!shape) return shape.error();
    Journal out;
    out.path = j.at("path").get<std::string>();
    out.identity = j.at("identity").get<std::string>();
    out.size = j.at("size").get<std::uint64_t>();
    out.block_size = j.at("block_size").get<std::uint64_t>();
    out.verified = j.at("verified").get<std::uint64_t>();
    if (out.verified > out.size || (out.verified % out.block_size != 0 && out.verified != out.size) ||
        j.at("blocks").size() != blocks_below(out.verified, out.block_size)) {
      return invalid("counts do not agree");
    }
    out.blocks.reserve(j.at("blocks").size());
    for (const auto& b : j.at("blocks")) {
      auto d = digest_of(b);
      if (!d) return d.error();
      out.blocks.push_back(*d);
    }
    auto held = parse_held(j.at("held"), out);
    if (!held) return held.error();
    return out;
  } catch (const json::exception& e) {
    return invalid(e.what());
  }
}

void Journal::remove(int dirfd, const std::string& name) {
  ::unlinkat(dirfd, name.c_str(), 0);
  ::unlinkat(dirfd, (name + ".tmp").c_str(), 0);
}

Result<void> Journal::save(int dirfd, const std::string& name, bool durable) const {
  const std::string tmp = name + ".tmp";
  // Created exclusively: whatever is at the temp name (a crash's leftover, or a FIFO
  // or a symlink planted there) is removed first, never opened.
  if (::unlinkat(dirfd, tmp.c_str(), 0) != 0 && errno != ENOENT) {
    return make_error(Errc::local_io, "unlink(" + tmp + ")", errno);
  }
  UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return make_error(Errc::local_io, "open(" + tmp + ")", errno);
  auto w = write_all(fd.get(), to_json(), tmp);
  if (w && durable && ::fsync(fd.get()) != 0) w = make_error(Errc::local_io, "fsync(" + tmp + ")", errno);
  fd.reset();
  if (!w) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return w;
  }
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int e = errno;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return make_error(Errc::local_io, "rename(" + tmp + ", " + name + ")", e);
  }
  return {};
}

Result<std::optional<Journal>> Journal::load(int dirfd, const std::string& name) {
  auto owned = open_owned(dirfd, name, O_RDONLY, name);
  if (!owned) return owned.error();
  if (!owned->why.empty()) return make_error(Errc::local_io, "untrusted journal " + name + ": " + owned->why);
  if (!owned->fd) return std::optional<Journal>{};
  UniqueFd fd = std::move(owned->fd);
  std::string text;
  std::byte buf[65536];
  for (;;) {
    auto n = read_some(fd.get(), buf, name);
    if (!n) return n.error();
    if (*n == 0) break;
    text.append(reinterpret_cast<const char*>(buf), *n);
    if (text.size() > kMaxJournalBytes) return make_error(Errc::local_io, "journal too large: " + name);
  }
  auto j = from_json(text);
  if (!j) return j.error();
  return std::optional<Journal>(std::move(*j));
}

}  // namespace ferry
