#include "lib/fs/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "lib/fs/fd_io.hpp"
#include "protocol/digest.hpp"

namespace ferry {

using json = nlohmann::json;

namespace {
constexpr std::size_t kMaxJournalBytes = 64u << 20;
}  // namespace

std::string Journal::to_json() const {
  json blocks_json = json::array();
  for (auto b : blocks) blocks_json.push_back(protocol::hex64(b));
  json j{{"ferry_journal", 1}, {"path", path},         {"identity", identity},
         {"size", size},       {"block_size", kJournalBlock}, {"verified", verified},
         {"blocks", blocks_json}};
  if (tail) j["tail"] = protocol::hex64(*tail);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Journal> Journal::from_json(const std::string& text) {
  auto bad = [](const std::string& why) { return make_error(Errc::local_io, "invalid journal: " + why); };
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  try {
    // nlohmann converts booleans and negative numbers to uint64_t silently: check types first.
    for (const char* key : {"ferry_journal", "block_size", "size", "verified"}) {
      if (!j.at(key).is_number_unsigned()) return bad(std::string("'") + key + "' is not an unsigned integer");
    }
    if (!j.at("blocks").is_array()) return bad("'blocks' is not an array");
    if (j.at("ferry_journal").get<std::uint64_t>() != 1) return bad("unknown journal version");
    if (j.at("block_size").get<std::uint64_t>() != kJournalBlock) return bad("different block size");
    Journal out;
    out.path = j.at("path").get<std::string>();
    out.identity = j.at("identity").get<std::string>();
    out.size = j.at("size").get<std::uint64_t>();
    out.verified = j.at("verified").get<std::uint64_t>();
    for (const auto& b : j.at("blocks")) {
      auto v = protocol::parse_hex64(b.get<std::string>());
      if (!v) return bad("block hash is not 16 hex digits");
      out.blocks.push_back(*v);
    }
    if (j.contains("tail")) {
      auto v = protocol::parse_hex64(j.at("tail").get<std::string>());
      if (!v) return bad("tail hash is not 16 hex digits");
      out.tail = *v;
    }
    if (out.verified > out.size || out.blocks.size() != out.verified / kJournalBlock ||
        out.tail.has_value() != (out.verified % kJournalBlock != 0)) {
      return bad("counts do not agree");
    }
    return out;
  } catch (const json::exception& e) {
    return bad(e.what());
  }
}

Result<void> Journal::save(int dirfd, const std::string& name) const {
  const std::string tmp = name + ".tmp";
  UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return make_error(Errc::local_io, "open(" + tmp + ")", errno);
  auto w = write_all(fd.get(), to_json(), tmp);
  if (w && ::fsync(fd.get()) != 0) w = make_error(Errc::local_io, "fsync(" + tmp + ")", errno);
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
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<Journal>{};
    return make_error(Errc::local_io, "open(" + name + ")", errno);
  }
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
