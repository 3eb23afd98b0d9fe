#include "protocol/messages.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <string_view>

#include "protocol/auth.hpp"
#include "protocol/digest.hpp"

namespace ferry::protocol {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxTextField = 1024;

Error bad(const char* frame, const std::string& why) {
  return make_error(Errc::protocol, std::string("malformed ") + frame + " body: " + why);
}

// Field readers: each returns false (and sets `why`) when absent or of the wrong type.
struct Reader {
  const json& j;
  std::string why;

  template <class U>
  bool uint(const char* key, U& out, std::uint64_t max = std::numeric_limits<U>::max()) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned()) {
      why = std::string("field '") + key + "' missing or not an unsigned integer";
      return false;
    }
    auto v = it->get<std::uint64_t>();
    if (v > max) {
      why = std::string("field '") + key + "' out of range";
      return false;
    }
    out = static_cast<U>(v);
    return true;
  }
  // An optional unsigned field: absent leaves `out` nullopt; present, it must be an
  // unsigned integer <= max.
  bool opt_uint(const char* key, std::optional<std::uint64_t>& out, std::uint64_t max) {
    if (!j.contains(key)) return true;
    std::uint64_t v = 0;
    if (!uint(key, v, max)) return false;
    out = v;
    return true;
  }
  // An optional boolean field: absent leaves `out` unchanged.
  bool opt_bool(const char* key, bool& out) {
    auto it = j.find(key);
    if (it == j.end()) return true;
    if (!it->is_boolean()) {
      why = std::string("field '") + key + "' not a boolean";
      return false;
    }
    out = it->get<bool>();
    return true;
  }
  bool int64(const char* key, std::int64_t& out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) {
      why = std::string("field '") + key + "' missing or not an integer";
      return false;
    }
    if (it->is_number_unsigned() &&
        it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      why = std::string("field '") + key + "' out of range";
      return false;
    }
    out = it->get<std::int64_t>();
    return true;
  }
  bool text(const char* key, std::string& out, std::size_t max = kMaxTextField, bool optional = false) {
    auto it = j.find(key);
    if (it == j.end()) {
      if (optional) return true;
      why = std::string("field '") + key + "' missing";
      return false;
    }
    if (!it->is_string()) {
      why = std::string("field '") + key + "' not a string";
      return false;
    }
    out = it->get<std::string>();
    if (out.size() > max) {
      why = std::string("field '") + key + "' too long";
      return false;
    }
    return true;
  }
};

Result<json> parse_object(Bytes payload, const char* frame) {
  auto begin = reinterpret_cast<const char*>(payload.data());
  // nlohmann stops at a NUL byte as if the input ended there; JSON text never holds one.
  if (std::find(begin, begin + payload.size(), '\0') != begin + payload.size()) return bad(frame, "NUL byte in JSON");
  json j = json::parse(begin, begin + payload.size(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad(frame, "not valid JSON");
  if (!j.is_object()) return bad(frame, "not a JSON object");
  return j;
}

// ANSWER's optional "held": [[offset, length], ...], sorted, disjoint, above `offset`,
// non-empty ranges, at most kMaxHeldRanges, ends within 2^63.
Result<std::vector<ByteRange>> parse_held(const json& j, std::uint64_t offset) {
  std::vector<ByteRange> out;
  auto it = j.find("held");
  if (it == j.end()) return out;
  if (!it->is_array() || it->size() > kMaxHeldRanges) {
    return make_error(Errc::protocol, "field 'held' must be an array of at most 64 ranges");
  }
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t floor = offset;
  for (const auto& e : *it) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned() || !e[1].is_number_unsigned()) {
      return make_error(Errc::protocol, "field 'held' must hold [offset, length] pairs");
    }
    ByteRange r{e[0].get<std::uint64_t>(), e[1].get<std::uint64_t>()};
    if (r.length == 0 || r.offset < floor || r.offset > kMax || r.length > kMax - r.offset) {
      return make_error(Errc::protocol, "field 'held' has an empty, overlapping or unsorted range");
    }
    floor = r.offset + r.length;
    out.push_back(r);
  }
  return out;
}

const char* kind_name(EntryKind k) {
  switch (k) {
    case EntryKind::file:
      return "file";
    case EntryKind::directory:
      return "dir";
    case EntryKind::symlink:
      return "symlink";
  }
  return "file";
}

// HELLO's optional "purpose" (version 4): absent means transfer.
Result<Purpose> parse_purpose(const json& j) {
  auto it = j.find("purpose");
  if (it == j.end()) return Purpose::transfer;
  if (it->is_string()) {
    for (Purpose p : {Purpose::transfer, Purpose::check, Purpose::dry_run}) {
      if (it->get<std::string>() == purpose_name(p)) return p;
    }
  }
  return make_error(Errc::protocol, "field 'purpose' must be \"transfer\", \"check\" or \"dry_run\"");
}

// CHECK's optional "names": an array of at most kMaxCheckNames strings, each a valid
// path component of at most 255 bytes, kMaxCheckNameBytes in all.
Result<std::vector<std::string>> parse_names(const json& j) {
  std::vector<std::string> out;
  auto it = j.find("names");
  if (it == j.end()) return out;
  if (!it->is_array() || it->size() > kMaxCheckNames) {
    return make_error(Errc::protocol, "field 'names' must be an array of at most " + std::to_string(kMaxCheckNames));
  }
  std::size_t bytes = 0;
  for (const auto& e : *it) {
    if (!e.is_string()) return make_error(Errc::protocol, "field 'names' must hold strings");
    std::string name = e.get<std::string>();
    bytes += name.size();
    if (name.empty() || name.size() > 255 || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos || bytes > kMaxCheckNameBytes) {
      return make_error(Errc::protocol, "field 'names' holds a name that is not one path component, or too many bytes");
    }
    out.push_back(std::move(name));
  }
  return out;
}

}  // namespace

const char* purpose_name(Purpose p) {
  switch (p) {
    case Purpose::transfer: return "transfer";
    case Purpose::check: return "check";
    case Purpose::dry_run: return "dry_run";
  }
  return "transfer";
}

const char* check_result_name(CheckResult r) {
  switch (r) {
    case CheckResult::identical: return "identical";
    case CheckResult::different: return "different";
    case CheckResult::missing: return "missing";
    case CheckResult::partial: return "partial";
  }
  return "different";
}

std::string to_json(const Hello& m) {
  json j{{"min_version", m.min_version},
         {"max_version", m.max_version},
         {"role", m.role == Role::sender ? "sender" : "receiver"},
         {"session", m.session},
         {"software", m.software}};
  // Written only when set, so a HELLO without them is byte-identical to version 1's
  // original form (the known-answer vectors).
  if (m.files_total) j["files_total"] = *m.files_total;
  if (m.bytes_total) j["bytes_total"] = *m.bytes_total;
  if (m.files_done) j["files_done"] = *m.files_done;
  if (m.bytes_done) j["bytes_done"] = *m.bytes_done;
  if (!m.nonce.empty()) {
    j["nonce"] = m.nonce;
    j["key"] = m.keyed;
  }
  if (m.purpose != Purpose::transfer) j["purpose"] = purpose_name(m.purpose);
  if (m.list_extra) j["list_extra"] = true;
  return j.dump();
}

namespace {
// Text nlohmann::json dumps as itself between quotes: printable ASCII but '"' and '\\'.
bool plain_json_text(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

void append_key(std::string& out, std::string_view key) {
  out += '"';
  out += key;
  out += "\":";
}

// A file's or directory's OFFER whose path and identity are plain text, written directly
// (one per small file of a tree): the bytes nlohmann::json would dump (keys in byte
// order, no spaces; tested against it).
std::string plain_offer_json(const Offer& m) {
  std::string out;
  out.reserve(160 + m.path.size() + m.identity.size());
  out += '{';
  if (m.kind == EntryKind::file) {
    append_key(out, "block_size");
    out += std::to_string(m.block_size);
    out += ',';
  }
  if (m.eager) out += "\"eager\":true,";
  append_key(out, "file");
  out += std::to_string(m.file_id);
  out += ",\"identity\":\"";
  out += m.identity;
  out += "\",\"kind\":\"";
  out += kind_name(m.kind);
  out += "\",\"mode\":";
  out += std::to_string(m.mode);
  out += ",\"mtime_ns\":";
  out += std::to_string(m.mtime_ns);
  out += ",\"path\":\"";
  out += m.path;
  out += "\",\"size\":";
  out += std::to_string(m.size);
  out += '}';
  return out;
}
}  // namespace

std::string to_json(const Offer& m) {
  if (m.kind != EntryKind::symlink && plain_json_text(m.path) && plain_json_text(m.identity)) {
    return plain_offer_json(m);
  }
  json j{{"file", m.file_id},
         {"path", m.path},
         {"kind", kind_name(m.kind)},
         {"size", m.size},
         {"mtime_ns", m.mtime_ns},
         {"mode", m.mode},
         {"identity", m.identity}};
  if (m.kind == EntryKind::file) j["block_size"] = m.block_size;
  if (m.eager) j["eager"] = true;
  if (m.kind == EntryKind::symlink) j["target"] = m.target;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string to_json(const Answer& m) {
  json j{{"file", m.file_id},
         {"status", m.status == AnswerStatus::accept ? "accept" : "refuse"},
         {"offset", m.offset},
         {"note", m.note}};
  if (m.created) j["created"] = true;
  if (m.local_io) j["local_io"] = true;
  if (!m.held.empty()) {
    json held = json::array();
    for (const auto& r : m.held) held.push_back(json::array({r.offset, r.length}));
    j["held"] = std::move(held);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string to_json(const Commit& m) {
  if (!plain_json_text(m.xxh3_128)) {
    return json{{"file", m.file_id}, {"size", m.size}, {"xxh3_128", m.xxh3_128}}.dump();
  }
  // One per file: written directly, the bytes nlohmann::json would dump (tested).
  return "{\"file\":" + std::to_string(m.file_id) + ",\"size\":" + std::to_string(m.size) + ",\"xxh3_128\":\"" +
         m.xxh3_128 + "\"}";
}

std::string to_json(const Verdict& m) {
  return json{{"file", m.file_id},
              {"status", m.status == VerdictStatus::verified ? "verified" : "failed"},
              {"reason", m.reason}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string to_json(const ErrorBody& m) {
  return json{{"code", m.code}, {"message", m.message}}.dump(-1, ' ', false,
                                                             json::error_handler_t::replace);
}

std::string to_json(const End& m) { return json{{"files", m.files}, {"bytes", m.bytes}}.dump(); }

Result<Hello> parse_hello(Bytes payload) {
  auto j = parse_object(payload, "HELLO");
  if (!j) return j.error();
  Hello m;
  Reader r{*j, {}};
  std::string role;
  constexpr std::uint64_t kMaxFiles = std::uint64_t{1} << 32;  // file ids are 32-bit
  constexpr auto kMaxBytes = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (!r.uint("min_version", m.min_version) || !r.uint("max_version", m.max_version) ||
      !r.text("role", role) || !r.text("session", m.session, 64) || !r.text("software", m.software) ||
      !r.opt_uint("files_total", m.files_total, kMaxFiles) || !r.opt_uint("bytes_total", m.bytes_total, kMaxBytes) ||
      !r.opt_uint("files_done", m.files_done, kMaxFiles) || !r.opt_uint("bytes_done", m.bytes_done, kMaxBytes) ||
      !r.text("nonce", m.nonce, 64, /*optional=*/true) || !r.opt_bool("key", m.keyed)) {
    return bad("HELLO", r.why);
  }
  if (!m.nonce.empty() && !parse_nonce_hex(m.nonce)) return bad("HELLO", "field 'nonce' must be 64 hex digits");
  if (m.files_total && m.files_done && *m.files_done > *m.files_total) {
    return bad("HELLO", "field 'files_done' above 'files_total'");
  }
  if (m.bytes_total && m.bytes_done && *m.bytes_done > *m.bytes_total) {
    return bad("HELLO", "field 'bytes_done' above 'bytes_total'");
  }
  if (role == "sender") m.role = Role::sender;
  else if (role == "receiver") m.role = Role::receiver;
  else return bad("HELLO", "field 'role' must be \"sender\" or \"receiver\"");
  if (auto purpose = parse_purpose(*j); purpose) m.purpose = *purpose;
  else return bad("HELLO", purpose.error().what);
  if (!r.opt_bool("list_extra", m.list_extra)) return bad("HELLO", r.why);
  if (m.min_version > m.max_version) return bad("HELLO", "min_version > max_version");
  if (!is_hex128(m.session)) return bad("HELLO", "field 'session' must be 32 hex digits");
  return m;
}

namespace {

// A symlink OFFER (version 4): size 0, a target of 1..kMaxLinkTarget bytes without NUL
// (JSON's "\u0000" would carry one), not eager. Empty when fine, else why not.
std::string link_problem(Reader& r, Offer& m) {
  if (m.size != 0) return "symlink with a size";
  if (m.eager) return "'eager' only for a file of at most one block or a directory";
  if (!r.text("target", m.target, kMaxLinkTarget)) return r.why;
  if (m.target.empty()) return "field 'target' empty";
  if (m.target.find('\0') != std::string::npos) return "field 'target' holds a NUL byte";
  return {};
}

}  // namespace

Result<Offer> parse_offer(Bytes payload) {
  auto j = parse_object(payload, "OFFER");
  if (!j) return j.error();
  Offer m;
  Reader r{*j, {}};
  std::string kind;
  if (!r.uint("file", m.file_id) || !r.text("path", m.path, 4096 + 1) || !r.text("kind", kind) ||
      !r.uint("size", m.size, std::numeric_limits<std::int64_t>::max()) ||
      !r.int64("mtime_ns", m.mtime_ns) || !r.uint("mode", m.mode, 07777) ||
      !r.text("identity", m.identity, 256) || !r.opt_bool("eager", m.eager)) {
    return bad("OFFER", r.why);
  }
  if (kind == "file") m.kind = EntryKind::file;
  else if (kind == "dir") m.kind = EntryKind::directory;
  else if (kind == "symlink") m.kind = EntryKind::symlink;
  else return bad("OFFER", "field 'kind' must be \"file\", \"dir\" or \"symlink\"");
  if (m.kind == EntryKind::directory && m.size != 0) return bad("OFFER", "directory with a size");
  if (m.kind == EntryKind::symlink) {
    if (auto why = link_problem(r, m); !why.empty()) return bad("OFFER", why);
    return m;
  }
  if (m.kind == EntryKind::file &&
      (!r.uint("block_size", m.block_size, kMaxChunkSize) || m.block_size < kMinChunkSize)) {
    return bad("OFFER", r.why.empty() ? "field 'block_size' out of range" : r.why);
  }
  // Version 6: a directory may be eager too (its size is 0, checked above).
  if (m.eager && m.kind == EntryKind::file && m.size > m.block_size) {
    return bad("OFFER", "'eager' only for a file of at most one block or a directory");
  }
  return m;
}

Result<Answer> parse_answer(Bytes payload) {
  auto j = parse_object(payload, "ANSWER");
  if (!j) return j.error();
  Answer m;
  Reader r{*j, {}};
  std::string status;
  if (!r.uint("file", m.file_id) || !r.text("status", status) ||
      !r.uint("offset", m.offset, std::numeric_limits<std::int64_t>::max()) ||
      !r.text("note", m.note, kMaxTextField, true) || !r.opt_bool("created", m.created) ||
      !r.opt_bool("local_io", m.local_io)) {
    return bad("ANSWER", r.why);
  }
  if (status == "accept") m.status = AnswerStatus::accept;
  else if (status == "refuse") m.status = AnswerStatus::refuse;
  else return bad("ANSWER", "field 'status' must be \"accept\" or \"refuse\"");
  if (auto held = parse_held(*j, m.offset)) {
    m.held = std::move(*held);
  } else {
    return bad("ANSWER", held.error().message());
  }
  return m;
}

Result<Commit> parse_commit(Bytes payload) {
  auto j = parse_object(payload, "COMMIT");
  if (!j) return j.error();
  Commit m;
  Reader r{*j, {}};
  if (!r.uint("file", m.file_id) || !r.uint("size", m.size, std::numeric_limits<std::int64_t>::max()) ||
      !r.text("xxh3_128", m.xxh3_128, 32)) {
    return bad("COMMIT", r.why);
  }
  if (!is_hex128(m.xxh3_128)) return bad("COMMIT", "field 'xxh3_128' must be 32 hex digits");
  std::transform(m.xxh3_128.begin(), m.xxh3_128.end(), m.xxh3_128.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return m;
}

Result<Verdict> parse_verdict(Bytes payload) {
  auto j = parse_object(payload, "VERDICT");
  if (!j) return j.error();
  Verdict m;
  Reader r{*j, {}};
  std::string status;
  if (!r.uint("file", m.file_id) || !r.text("status", status) ||
      !r.text("reason", m.reason, kMaxTextField, true)) {
    return bad("VERDICT", r.why);
  }
  if (status == "verified") m.status = VerdictStatus::verified;
  else if (status == "failed") m.status = VerdictStatus::failed;
  else return bad("VERDICT", "field 'status' must be \"verified\" or \"failed\"");
  return m;
}

Result<ErrorBody> parse_error(Bytes payload) {
  auto j = parse_object(payload, "ERROR");
  if (!j) return j.error();
  ErrorBody m;
  Reader r{*j, {}};
  if (!r.text("code", m.code, 64) || !r.text("message", m.message)) return bad("ERROR", r.why);
  return m;
}

Result<End> parse_end(Bytes payload) {
  auto j = parse_object(payload, "END");
  if (!j) return j.error();
  End m;
  Reader r{*j, {}};
  if (!r.uint("files", m.files) || !r.uint("bytes", m.bytes)) return bad("END", r.why);
  return m;
}

std::string to_json(const CheckReply& m) {
  json j{{"file", m.file_id}, {"result", check_result_name(m.result)}};
  if (!m.reason.empty()) j["reason"] = m.reason;
  if (!m.names.empty()) j["names"] = m.names;
  if (m.truncated) j["truncated"] = true;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<CheckReply> parse_check(Bytes payload) {
  auto j = parse_object(payload, "CHECK");
  if (!j) return j.error();
  CheckReply m;
  Reader r{*j, {}};
  std::string result;
  if (!r.uint("file", m.file_id) || !r.text("result", result, 16) || !r.text("reason", m.reason, 16, true) ||
      !r.opt_bool("truncated", m.truncated)) {
    return bad("CHECK", r.why);
  }
  bool known = false;
  for (CheckResult c : {CheckResult::identical, CheckResult::different, CheckResult::missing, CheckResult::partial}) {
    if (result == check_result_name(c)) {
      m.result = c;
      known = true;
    }
  }
  if (!known) return bad("CHECK", "field 'result' must be identical, different, missing or partial");
  if (!m.reason.empty() && m.reason != "size" && m.reason != "content" && m.reason != "kind" && m.reason != "target") {
    return bad("CHECK", "field 'reason' must be size, content, kind or target");
  }
  auto names = parse_names(*j);
  if (!names) return bad("CHECK", names.error().what);
  m.names = std::move(*names);
  return m;
}

std::uint32_t negotiate_version(const Hello& a, const Hello& b) {
  std::uint32_t hi = std::min(a.max_version, b.max_version);
  std::uint32_t lo = std::max(a.min_version, b.min_version);
  return hi >= lo ? hi : 0;
}

std::vector<std::byte> frame_of(FrameType type, const std::string& json_body) {
  return encode_frame(type, json_body);
}

}  // namespace ferry::protocol
