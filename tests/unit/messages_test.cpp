// Tests protocol/messages: to_json/parse_* round trips for every JSON body, rejection
// (Errc::protocol) of invalid JSON, non-objects, missing fields, wrong types, negative
// or oversized numbers, bad enums, bad hex and oversized strings; negotiate_version;
// HELLO's optional transfer totals (absent, present, out of range, done > total); OFFER
// and COMMIT bodies written directly are the bytes nlohmann::json dumps; which OFFERs may
// be eager (a file of at most one block, a directory).
#include "protocol/messages.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ferry::protocol {
namespace {

using json = nlohmann::json;

const std::string kSession = "00112233445566778899aabbccddeeff";

Bytes b(const std::string& s) {
  return as_bytes(s);
}

template <class T>
void expect_protocol_error(const Result<T>& r, const std::string& what) {
  ASSERT_FALSE(r) << "accepted: " << what;
  EXPECT_EQ(r.error().code, Errc::protocol) << what;
  EXPECT_FALSE(r.error().message().empty());
}

// Applies every parser to `body` and expects all of them to refuse it.
void expect_all_refuse(const std::string& body) {
  expect_protocol_error(parse_hello(b(body)), "hello " + body);
  expect_protocol_error(parse_offer(b(body)), "offer " + body);
  expect_protocol_error(parse_answer(b(body)), "answer " + body);
  expect_protocol_error(parse_commit(b(body)), "commit " + body);
  expect_protocol_error(parse_verdict(b(body)), "verdict " + body);
  expect_protocol_error(parse_error(b(body)), "error " + body);
  expect_protocol_error(parse_end(b(body)), "end " + body);
}

// ---------------------------------------------------------------------------
// Round trips

TEST(Messages, HelloRoundTrip) {
  for (Role role : {Role::sender, Role::receiver}) {
    Hello m{1, 7, role, kSession, "ferry 0.1.0 \"quoted\" \xc3\xa9"};
    auto p = parse_hello(b(to_json(m)));
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p->min_version, m.min_version);
    EXPECT_EQ(p->max_version, m.max_version);
    EXPECT_EQ(p->role, m.role);
    EXPECT_EQ(p->session, m.session);
    EXPECT_EQ(p->software, m.software);
  }
}

Hello hello_with_totals() {
  Hello m{1, 1, Role::sender, kSession, "sw"};
  m.files_total = 10;
  m.bytes_total = 1000;
  m.files_done = 3;
  m.bytes_done = 250;
  return m;
}

TEST(Messages, HelloTotalsRoundTrip) {
  auto p = parse_hello(b(to_json(hello_with_totals())));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->files_total, std::optional<std::uint64_t>(10));
  EXPECT_EQ(p->bytes_total, std::optional<std::uint64_t>(1000));
  EXPECT_EQ(p->files_done, std::optional<std::uint64_t>(3));
  EXPECT_EQ(p->bytes_done, std::optional<std::uint64_t>(250));
  // The largest legal values.
  Hello big{1, 1, Role::sender, kSession, "sw"};
  big.files_total = big.files_done = std::uint64_t{1} << 32;
  big.bytes_total = big.bytes_done = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  auto q = parse_hello(b(to_json(big)));
  ASSERT_TRUE(q) << q.error().message();
  EXPECT_EQ(q->files_done, big.files_done);
  EXPECT_EQ(q->bytes_done, big.bytes_done);
}

TEST(Messages, HelloWithoutTotalsIsTheOriginalBody) {
  // Not set, not written: the body is byte for byte version 1's (the KAT vectors).
  Hello m{1, 1, Role::sender, kSession, "ferry-send 0.1.0"};
  EXPECT_EQ(to_json(m), std::string(R"({"max_version":1,"min_version":1,"role":"sender","session":")") + kSession +
                            R"(","software":"ferry-send 0.1.0"})");
  auto p = parse_hello(b(to_json(m)));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_FALSE(p->files_total || p->bytes_total || p->files_done || p->bytes_done);
  // Any subset may be present; done without its total is fine.
  auto only_done = parse_hello(b(std::string(R"({"min_version":1,"max_version":1,"role":"sender","session":")") +
                                 kSession + R"(","software":"","files_done":4,"bytes_done":5})"));
  ASSERT_TRUE(only_done) << only_done.error().message();
  EXPECT_EQ(only_done->files_done, std::optional<std::uint64_t>(4));
  EXPECT_FALSE(only_done->files_total.has_value());
}

TEST(Messages, HelloTotalsOutOfRangeOrOfWrongTypeAreRefused) {
  const std::string head = std::string(R"({"min_version":1,"max_version":1,"role":"sender","session":")") + kSession +
                           R"(","software":"")";
  for (const char* tail : {
           R"(,"files_total":4294967297})", R"(,"files_done":4294967297})",
           R"(,"bytes_total":9223372036854775808})", R"(,"bytes_done":18446744073709551615})",
           R"(,"files_total":-1})", R"(,"bytes_done":-1})", R"(,"bytes_total":1.5})", R"(,"files_total":1e3})",
           R"(,"files_done":"3"})", R"(,"bytes_total":null})", R"(,"files_total":true})", R"(,"bytes_done":[1]})",
           R"(,"files_total":2,"files_done":3})", R"(,"bytes_total":10,"bytes_done":11})"}) {
    expect_protocol_error(parse_hello(b(head + tail)), tail);
  }
  EXPECT_TRUE(parse_hello(b(head + R"(,"files_total":3,"files_done":3,"bytes_total":0,"bytes_done":0})")));
}

// Version 4: HELLO's purpose (absent = transfer, not written for a transfer) and
// list_extra; the CHECK body.
TEST(Messages, HelloPurposeRoundTripAndDefaults) {
  Hello m{4, 4, Role::sender, kSession, "ferry-send"};
  EXPECT_EQ(to_json(m).find("purpose"), std::string::npos);
  for (Purpose p : {Purpose::check, Purpose::dry_run}) {
    m.purpose = p;
    m.list_extra = p == Purpose::check;
    auto r = parse_hello(b(to_json(m)));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->purpose, p);
    EXPECT_EQ(r->list_extra, p == Purpose::check);
  }
  const std::string head = std::string(R"({"min_version":4,"max_version":4,"role":"sender","session":")") + kSession +
                           R"(","software":"")";
  auto absent = parse_hello(b(head + "}"));
  ASSERT_TRUE(absent);
  EXPECT_EQ(absent->purpose, Purpose::transfer);
  EXPECT_FALSE(parse_hello(b(head + R"(,"purpose":"delete"})")));
  EXPECT_FALSE(parse_hello(b(head + R"(,"purpose":3})")));
  EXPECT_FALSE(parse_hello(b(head + R"(,"list_extra":"yes"})")));
}

TEST(Messages, CheckRoundTripAndLimits) {
  CheckReply c;
  c.file_id = 3;
  c.result = CheckResult::different;
  c.reason = "size";
  auto r = parse_check(b(to_json(c)));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->result, CheckResult::different);
  EXPECT_EQ(r->reason, "size");
  c.result = CheckResult::identical;
  c.reason.clear();
  c.names = {"a", "b c"};
  c.truncated = true;
  r = parse_check(b(to_json(c)));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->names, c.names);
  EXPECT_TRUE(r->truncated);
  EXPECT_FALSE(parse_check(b(R"({"file":1,"result":"same"})")));
  EXPECT_FALSE(parse_check(b(R"({"file":1,"result":"different","reason":"mood"})")));
  for (const char* name : {"", ".", "..", "a/b"}) {
    json j{{"file", 1}, {"result", "identical"}, {"names", {name}}};
    EXPECT_FALSE(parse_check(b(j.dump()))) << name;
  }
  json many{{"file", 1}, {"result", "identical"}, {"names", json::array()}};
  for (std::size_t i = 0; i <= kMaxCheckNames; ++i) many["names"].push_back("n" + std::to_string(i));
  EXPECT_FALSE(parse_check(b(many.dump()))) << "more names than kMaxCheckNames";
  json big{{"file", 1}, {"result", "identical"}, {"names", json::array()}};
  for (int i = 0; i < 250; ++i) {
    big["names"].push_back(std::string(200, static_cast<char>('a' + i % 26)) + std::to_string(i));
  }
  EXPECT_FALSE(parse_check(b(big.dump()))) << "more bytes of names than kMaxCheckNameBytes";
}

TEST(Messages, OfferRoundTrip) {
  std::vector<Offer> offers = {
      {0, "a", EntryKind::file, 0, 0, 0, "", kMinChunkSize},
      {std::numeric_limits<std::uint32_t>::max(), "d/e/f \xe2\x82\xac.txt", EntryKind::file,
       static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()), std::numeric_limits<std::int64_t>::max(),
       07777, std::string(256, 'i'), kMaxChunkSize},
      {5, "dir", EntryKind::directory, 0, std::numeric_limits<std::int64_t>::min(), 0755, "dir"},
      {6, std::string(4096, 'p'), EntryKind::file, 1, -1, 0644, "x", 256 * 1024},
  };
  for (const auto& m : offers) {
    auto p = parse_offer(b(to_json(m)));
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p->file_id, m.file_id);
    EXPECT_EQ(p->path, m.path);
    EXPECT_EQ(p->kind, m.kind);
    EXPECT_EQ(p->size, m.size);
    EXPECT_EQ(p->mtime_ns, m.mtime_ns);
    EXPECT_EQ(p->mode, m.mode);
    EXPECT_EQ(p->identity, m.identity);
    EXPECT_EQ(p->block_size, m.block_size);
  }
}

TEST(Messages, OfferBlockSizeOutOfRangeIsRefused) {
  for (std::uint32_t bs : {0u, 1u, 1023u, static_cast<std::uint32_t>(kMaxChunkSize) + 1}) {
    expect_protocol_error(parse_offer(b(to_json(Offer{1, "p", EntryKind::file, 3, 4, 0644, "id", bs}))),
                          std::to_string(bs));
  }
  // A directory has no block size: none is written, none is needed.
  auto dir = json::parse(to_json(Offer{1, "d", EntryKind::directory, 0, 4, 0755, "dir"}));
  EXPECT_FALSE(dir.contains("block_size"));
  EXPECT_TRUE(parse_offer(b(dir.dump())));
}

TEST(Messages, AnswerHeldRanges) {
  Answer a{1, AnswerStatus::accept, 1024, "", {{2048, 1024}, {4096, 100}}};
  auto p = parse_answer(b(to_json(a)));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->held, a.held);
  EXPECT_FALSE(json::parse(to_json(Answer{1, AnswerStatus::accept, 0, ""})).contains("held"));
  const std::string head = R"({"file":1,"status":"accept","offset":1024,"note":"","held":)";
  for (const char* bad : {R"([[0,10]])", R"([[2048,0]])", R"([[4096,10],[2048,10]])", R"([[2048,10],[2050,10]])",
                          R"([[2048]])", R"([["2048",1]])", R"({"a":1})", R"([[9223372036854775807,2]])"}) {
    expect_protocol_error(parse_answer(b(head + bad + "}")), bad);
  }
  std::string many = "[";
  for (std::size_t i = 0; i <= kMaxHeldRanges; ++i) many += (i ? "," : "") + std::string("[") + std::to_string(2048 + 10 * i) + ",1]";
  expect_protocol_error(parse_answer(b(head + many + "]}")), "65 ranges");
}

TEST(Messages, AnswerRoundTrip) {
  for (const Answer& m : {Answer{1, AnswerStatus::accept, 0, ""}, Answer{2, AnswerStatus::accept, 1ull << 40, "resume"},
                          Answer{3, AnswerStatus::refuse, 0, std::string(1024, 'n')}}) {
    auto p = parse_answer(b(to_json(m)));
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p->file_id, m.file_id);
    EXPECT_EQ(p->status, m.status);
    EXPECT_EQ(p->offset, m.offset);
    EXPECT_EQ(p->note, m.note);
  }
}

TEST(Messages, CommitRoundTrip) {
  Commit m{9, 12345, "85ca3a0dfcfe59849331f43fcdbd2eb8"};
  auto p = parse_commit(b(to_json(m)));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->file_id, 9u);
  EXPECT_EQ(p->size, 12345u);
  EXPECT_EQ(p->xxh3_128, m.xxh3_128);
  // upper-case hex is accepted and normalised to lower case
  Commit upper{9, 1, "85CA3A0DFCFE59849331F43FCDBD2EB8"};
  auto q = parse_commit(b(to_json(upper)));
  ASSERT_TRUE(q) << q.error().message();
  EXPECT_EQ(q->xxh3_128, m.xxh3_128);
}

TEST(Messages, VerdictRoundTrip) {
  for (const Verdict& m : {Verdict{1, VerdictStatus::verified, ""}, Verdict{2, VerdictStatus::failed, "mismatch"}}) {
    auto p = parse_verdict(b(to_json(m)));
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p->file_id, m.file_id);
    EXPECT_EQ(p->status, m.status);
    EXPECT_EQ(p->reason, m.reason);
  }
}

TEST(Messages, ErrorRoundTrip) {
  ErrorBody m{"protocol", "line one\nstill one field"};
  auto p = parse_error(b(to_json(m)));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->code, m.code);
  EXPECT_EQ(p->message, m.message);
}

TEST(Messages, EndRoundTrip) {
  End m{std::numeric_limits<std::uint64_t>::max(), 0};
  auto p = parse_end(b(to_json(m)));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->files, m.files);
  EXPECT_EQ(p->bytes, m.bytes);
}

TEST(Messages, OptionalTextFieldsMayBeAbsent) {
  auto a = parse_answer(b(R"({"file":1,"status":"accept","offset":5})"));
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->note, "");
  auto v = parse_verdict(b(R"({"file":1,"status":"verified"})"));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->reason, "");
}

TEST(Messages, UnknownFieldsAreIgnored) {
  auto e = parse_end(b(R"({"files":1,"bytes":2,"future":{"x":[1,2]}})"));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->files, 1u);
}

TEST(Messages, InvalidUtf8IsNotAnException) {
  // JSON text is UTF-8: an invalid byte in a name must not throw out of to_json.
  Offer m{1,
          std::string("bad\xff"
                      "name"),
          EntryKind::file,
          1,
          1,
          0644,
          "id",
          4096};
  std::string body;
  EXPECT_NO_THROW(body = to_json(m));
  auto p = parse_offer(b(body));
  EXPECT_TRUE(p) << p.error().message();
  EXPECT_NO_THROW((void)to_json(Answer{1, AnswerStatus::refuse, 0, "\xc3"}));
  EXPECT_NO_THROW((void)to_json(Verdict{1, VerdictStatus::failed, "\xff"}));
  EXPECT_NO_THROW((void)to_json(ErrorBody{"x", "\xfe"}));
}

TEST(Messages, FrameOfIsAnEncodedFrame) {
  std::string body = to_json(End{1, 2});
  auto wire = frame_of(FrameType::end, body);
  auto r = decode_frame(wire);
  ASSERT_TRUE(std::holds_alternative<DecodedFrame>(r));
  const auto& f = std::get<DecodedFrame>(r);
  EXPECT_EQ(f.header.type, FrameType::end);
  EXPECT_TRUE(f.payload_ok);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.payload.data()), f.payload.size()), body);
}

// ---------------------------------------------------------------------------
// Rejections

TEST(Messages, InvalidJsonAndNonObjectsAreRefused) {
  for (std::string body :
       {std::string(""), std::string("{"), std::string("nul"), std::string("{\"files\":1,}"),
        std::string("{\"files\":1,\"bytes\":2} trailing"), std::string("\xff\xfe"), std::string("{'files':1}"),
        std::string("[]"), std::string("[{\"files\":1,\"bytes\":2}]"), std::string("1"), std::string("\"text\""),
        std::string("null"), std::string("true"), std::string("{\"files\":1,\"bytes\":2}\0", 22),
        std::string("{\"files\":1,\"bytes\":2}\0junk", 26), std::string("{\"files\":1,\0\"bytes\":2}", 22)}) {
    expect_all_refuse(body);
  }
}

// For each valid body: dropping any field, or giving any field a value of a wrong type,
// must be refused.
struct BodyCase {
  const char* name;
  json valid;
  std::function<bool(const std::string&)> parses;
  std::vector<std::string> optional;
};

std::vector<BodyCase> body_cases() {
  auto ok = [](auto parser) {
    return [parser](const std::string& s) { return static_cast<bool>(parser(as_bytes(s))); };
  };
  return {
      {"hello", json::parse(to_json(Hello{1, 1, Role::sender, kSession, "sw"})), ok(parse_hello), {}},
      {"hello with totals",
       json::parse(to_json(hello_with_totals())),
       ok(parse_hello),
       {"files_total", "bytes_total", "files_done", "bytes_done"}},
      {"offer", json::parse(to_json(Offer{1, "p", EntryKind::file, 3, 4, 0644, "id", 4096})), ok(parse_offer), {}},
      {"answer", json::parse(to_json(Answer{1, AnswerStatus::accept, 3, "n"})), ok(parse_answer), {"note"}},
      {"commit", json::parse(to_json(Commit{1, 3, std::string(32, 'a')})), ok(parse_commit), {}},
      {"verdict", json::parse(to_json(Verdict{1, VerdictStatus::failed, "r"})), ok(parse_verdict), {"reason"}},
      {"error", json::parse(to_json(ErrorBody{"c", "m"})), ok(parse_error), {}},
      {"end", json::parse(to_json(End{1, 2})), ok(parse_end), {}},
  };
}

TEST(Messages, MissingFieldsAreRefused) {
  for (const auto& c : body_cases()) {
    ASSERT_TRUE(c.parses(c.valid.dump())) << c.name;
    for (const auto& [key, value] : c.valid.items()) {
      json j = c.valid;
      j.erase(key);
      bool optional = std::find(c.optional.begin(), c.optional.end(), key) != c.optional.end();
      EXPECT_EQ(c.parses(j.dump()), optional) << c.name << " without '" << key << "'";
    }
    EXPECT_FALSE(c.parses("{}")) << c.name;
  }
}

TEST(Messages, WrongTypesAreRefused) {
  std::vector<json> wrong = {json(nullptr), json(true), json::array(), json::object(), json(1.5), json("7"), json(7)};
  for (const auto& c : body_cases()) {
    for (const auto& [key, value] : c.valid.items()) {
      for (const auto& w : wrong) {
        if (w.type() == value.type()) continue;
        if (value.is_number_integer() && w.is_number_integer()) continue;  // 7 is fine for any integer field
        json j = c.valid;
        j[key] = w;
        EXPECT_FALSE(c.parses(j.dump())) << c.name << " with '" << key << "' = " << w.dump();
      }
    }
  }
}

TEST(Messages, NegativeAndOversizedNumbersAreRefused) {
  const std::string o = R"("path":"p","kind":"file","mtime_ns":0,"mode":420,"identity":"i","block_size":4096)";
  std::vector<std::string> offers = {
      "{\"file\":-1,\"size\":1," + o + "}",
      "{\"file\":4294967296,\"size\":1," + o + "}",
      "{\"file\":1,\"size\":-1," + o + "}",
      "{\"file\":1,\"size\":9223372036854775808," + o + "}",
      "{\"file\":1,\"size\":18446744073709551615," + o + "}",
      "{\"file\":1,\"size\":18446744073709551616," + o + "}",
      "{\"file\":1,\"size\":1e3," + o + "}",
      R"({"file":1,"size":1,"path":"p","kind":"file","mtime_ns":9223372036854775808,"mode":420,"identity":"i","block_size":4096})",
      R"({"file":1,"size":1,"path":"p","kind":"file","mtime_ns":1.0,"mode":420,"identity":"i","block_size":4096})",
      R"({"file":1,"size":1,"path":"p","kind":"file","mtime_ns":0,"mode":4096,"identity":"i","block_size":4096})",
      R"({"file":1,"size":1,"path":"p","kind":"file","mtime_ns":0,"mode":-1,"identity":"i","block_size":4096})",
      R"({"file":1,"size":1,"path":"p","kind":"file","mtime_ns":0,"mode":4294967296,"identity":"i","block_size":4096})",
  };
  for (const auto& s : offers) expect_protocol_error(parse_offer(b(s)), s);
  // the largest legal values pass
  auto ok = parse_offer(b(
      R"({"file":4294967295,"size":9223372036854775807,"path":"p","kind":"file","mtime_ns":-9223372036854775808,"mode":4095,"identity":"i","block_size":16777216})"));
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->mode, 07777u);

  for (
      const char* s :
      {R"({"min_version":-1,"max_version":1,"role":"sender","session":"00112233445566778899aabbccddeeff","software":""})",
       R"({"min_version":1,"max_version":4294967296,"role":"sender","session":"00112233445566778899aabbccddeeff","software":""})"}) {
    expect_protocol_error(parse_hello(b(s)), s);
  }
  for (const char* s :
       {R"({"file":1,"status":"accept","offset":-5})", R"({"file":1,"status":"accept","offset":9223372036854775808})",
        R"({"file":-1,"status":"accept","offset":0})"}) {
    expect_protocol_error(parse_answer(b(s)), s);
  }
  for (const char* s : {R"({"file":1,"size":-1,"xxh3_128":"00112233445566778899aabbccddeeff"})",
                        R"({"file":1,"size":9223372036854775808,"xxh3_128":"00112233445566778899aabbccddeeff"})"}) {
    expect_protocol_error(parse_commit(b(s)), s);
  }
  expect_protocol_error(parse_verdict(b(R"({"file":4294967296,"status":"verified"})")), "verdict file id");
  expect_protocol_error(parse_end(b(R"({"files":-1,"bytes":0})")), "end files");
  expect_protocol_error(parse_end(b(R"({"files":0,"bytes":18446744073709551616})")), "end bytes");
}

TEST(Messages, BadEnumsAreRefused) {
  expect_protocol_error(
      parse_offer(b(R"({"file":1,"path":"p","kind":"symlink","size":0,"mtime_ns":0,"mode":0,"identity":""})")),
      "kind symlink");
  expect_protocol_error(
      parse_offer(b(R"({"file":1,"path":"p","kind":"FILE","size":0,"mtime_ns":0,"mode":0,"identity":""})")),
      "kind FILE");
  expect_protocol_error(
      parse_offer(b(R"({"file":1,"path":"p","kind":"","size":0,"mtime_ns":0,"mode":0,"identity":""})")), "kind empty");
  expect_protocol_error(
      parse_hello(b(
          R"({"min_version":1,"max_version":1,"role":"peer","session":"00112233445566778899aabbccddeeff","software":""})")),
      "role peer");
  expect_protocol_error(parse_answer(b(R"({"file":1,"status":"maybe","offset":0})")), "status maybe");
  expect_protocol_error(parse_verdict(b(R"({"file":1,"status":"ok"})")), "status ok");
}

TEST(Messages, DirectoryWithSizeIsRefused) {
  expect_protocol_error(
      parse_offer(b(R"({"file":1,"path":"d","kind":"dir","size":1,"mtime_ns":0,"mode":493,"identity":"dir"})")),
      "dir with size");
  auto ok = parse_offer(b(R"({"file":1,"path":"d","kind":"dir","size":0,"mtime_ns":0,"mode":493,"identity":"dir"})"));
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->kind, EntryKind::directory);
}

// Version 3: `eager` for a file of at most one block; version 6: for a directory too.
// Never for a symlink.
TEST(Messages, EagerIsForAFileOfAtMostOneBlockOrADirectory) {
  auto dir = parse_offer(
      b(R"({"file":1,"path":"t/s","kind":"dir","size":0,"mtime_ns":0,"mode":493,"identity":"dir","eager":true})"));
  ASSERT_TRUE(dir) << dir.error().message();
  EXPECT_EQ(dir->kind, EntryKind::directory);
  EXPECT_TRUE(dir->eager);
  Offer m{2, "t/s", EntryKind::directory, 0, 7, 0755, "dir"};
  m.eager = true;
  auto round = parse_offer(b(to_json(m)));
  ASSERT_TRUE(round) << round.error().message();
  EXPECT_TRUE(round->eager);
  EXPECT_EQ(round->block_size, 0u);

  Offer f{3, "t/f", EntryKind::file, 4096, 7, 0644, "id", 4096};
  f.eager = true;
  auto whole_block = parse_offer(b(to_json(f)));
  ASSERT_TRUE(whole_block) << whole_block.error().message();
  EXPECT_TRUE(whole_block->eager);
  f.size = 4097;
  expect_protocol_error(parse_offer(b(to_json(f))), "eager file larger than its block");
  f.eager = false;
  EXPECT_TRUE(parse_offer(b(to_json(f)))) << "the same file, not eager";

  Offer link{4, "t/l", EntryKind::symlink, 0, 7, 0777, "symlink"};
  link.target = "x";
  link.eager = true;
  expect_protocol_error(parse_offer(b(to_json(link))), "eager symlink");
  expect_protocol_error(
      parse_offer(
          b(R"({"file":1,"path":"d","kind":"dir","size":1,"mtime_ns":0,"mode":493,"identity":"dir","eager":true})")),
      "eager directory with a size");
}

// Version 4: a symlink OFFER carries its target (verbatim, up to kMaxLinkTarget bytes),
// no block size, size 0; anything else is malformed.
TEST(Messages, SymlinkOfferRoundTripsItsTargetVerbatim) {
  for (const std::string& target : {std::string("a"), std::string("/etc/passwd"), std::string("../../x y/\xe2\x82\xac"),
                                    std::string("dangling/./nowhere//"), std::string(kMaxLinkTarget, 't')}) {
    Offer m{7, "dir/link", EntryKind::symlink, 0, -5, 0777, "symlink"};
    m.target = target;
    const std::string body = to_json(m);
    auto j = json::parse(body);
    EXPECT_EQ(j["kind"], "symlink");
    EXPECT_FALSE(j.contains("block_size"));
    auto p = parse_offer(b(body));
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p->kind, EntryKind::symlink);
    EXPECT_EQ(p->target, target);
    EXPECT_EQ(p->path, "dir/link");
    EXPECT_EQ(p->size, 0u);
  }
  // Other kinds carry no target.
  EXPECT_FALSE(json::parse(to_json(Offer{1, "f", EntryKind::file, 3, 4, 0644, "id", 4096})).contains("target"));
}

TEST(Messages, BadSymlinkOffersAreRefused) {
  const std::string head = R"({"file":1,"path":"l","kind":"symlink","mtime_ns":0,"mode":511,"identity":"symlink",)";
  const std::string too_long(kMaxLinkTarget + 1, 't');
  for (const std::string& tail : {
           std::string(R"("size":0})"),                                  // no target
           std::string(R"("size":0,"target":""})"),                      // empty
           std::string(R"("size":0,"target":5})"),                       // not a string
           std::string(R"("size":0,"target":"a\u0000b"})"),             // a NUL after unescaping
           std::string(R"("size":1,"target":"a"})"),                     // a size
           std::string(R"("size":0,"target":"a","eager":true})"),        // eager
           std::string(R"("size":0,"target":")") + too_long + R"("})",   // over PATH_MAX
       }) {
    expect_protocol_error(parse_offer(b(head + tail)), tail.substr(0, 60));
  }
  EXPECT_TRUE(parse_offer(b(head + R"("size":0,"target":"a"})")));
  expect_protocol_error(parse_offer(b(R"({"file":1,"path":"l","kind":"link","size":0,"mtime_ns":0,"mode":511,"identity":"x"})")),
                        "kind link");
}

TEST(Messages, BadSessionIdIsRefused) {
  for (std::string s :
       {std::string(""), std::string(31, 'a'), std::string(33, 'a'), std::string(64, 'a'), std::string(65, 'a'),
        std::string(31, 'a') + "g", std::string(31, 'a') + " ", std::string("0x") + std::string(30, 'a')}) {
    Hello m{1, 1, Role::sender, s, "sw"};
    expect_protocol_error(parse_hello(b(to_json(m))), "session '" + s + "'");
  }
  Hello upper{1, 1, Role::sender, "00112233445566778899AABBCCDDEEFF", "sw"};
  EXPECT_TRUE(parse_hello(b(to_json(upper))));
}

TEST(Messages, MinAboveMaxVersionIsRefused) {
  expect_protocol_error(parse_hello(b(to_json(Hello{3, 2, Role::sender, kSession, ""}))), "min > max");
}

TEST(Messages, BadCommitDigestIsRefused) {
  for (std::string h : {std::string(""), std::string(31, 'a'), std::string(33, 'a'), std::string(31, 'a') + "g",
                        std::string(16, 'a'), std::string(31, 'a') + "-"}) {
    expect_protocol_error(parse_commit(b(to_json(Commit{1, 1, h}))), "xxh3_128 '" + h + "'");
  }
}

TEST(Messages, OversizedStringsAreRefused) {
  expect_protocol_error(parse_hello(b(to_json(Hello{1, 1, Role::sender, kSession, std::string(1025, 's')}))),
                        "software 1025");
  EXPECT_TRUE(parse_hello(b(to_json(Hello{1, 1, Role::sender, kSession, std::string(1024, 's')}))));
  expect_protocol_error(parse_offer(b(to_json(Offer{1, std::string(5000, 'p'), EntryKind::file, 0, 0, 0, "", 4096}))),
                        "path 5000");
  expect_protocol_error(parse_offer(b(to_json(Offer{1, "p", EntryKind::file, 0, 0, 0, std::string(257, 'i'), 4096}))),
                        "identity 257");
  expect_protocol_error(parse_answer(b(to_json(Answer{1, AnswerStatus::refuse, 0, std::string(1025, 'n')}))),
                        "note 1025");
  expect_protocol_error(parse_verdict(b(to_json(Verdict{1, VerdictStatus::failed, std::string(1025, 'r')}))),
                        "reason 1025");
  expect_protocol_error(parse_error(b(to_json(ErrorBody{std::string(65, 'c'), "m"}))), "code 65");
  expect_protocol_error(parse_error(b(to_json(ErrorBody{"c", std::string(1025, 'm')}))), "message 1025");
}

// ---------------------------------------------------------------------------
// Version negotiation

TEST(Messages, NegotiateVersion) {
  auto h = [](std::uint32_t lo, std::uint32_t hi) { return Hello{lo, hi, Role::sender, kSession, ""}; };
  EXPECT_EQ(negotiate_version(h(1, 1), h(1, 1)), 1u);
  EXPECT_EQ(negotiate_version(h(1, 3), h(2, 5)), 3u);
  EXPECT_EQ(negotiate_version(h(2, 5), h(1, 3)), 3u);
  EXPECT_EQ(negotiate_version(h(1, 9), h(4, 4)), 4u);
  EXPECT_EQ(negotiate_version(h(1, 1), h(2, 2)), 0u);
  EXPECT_EQ(negotiate_version(h(3, 4), h(1, 2)), 0u);
  EXPECT_EQ(negotiate_version(h(kProtocolVersion, kProtocolVersion), h(1, 100)), kProtocolVersion);
}

// OFFER and COMMIT as nlohmann::json dumps them (to_json writes plain ones directly).
std::string reference_json(const Offer& m) {
  const char* kind = m.kind == EntryKind::file ? "file" : m.kind == EntryKind::directory ? "dir" : "symlink";
  nlohmann::json j{{"file", m.file_id}, {"path", m.path}, {"kind", kind},           {"size", m.size},
                   {"mtime_ns", m.mtime_ns}, {"mode", m.mode}, {"identity", m.identity}};
  if (m.kind == EntryKind::file) j["block_size"] = m.block_size;
  if (m.eager) j["eager"] = true;
  if (m.kind == EntryKind::symlink) j["target"] = m.target;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

TEST(Messages, OfferAndCommitBodiesAreWhatTheJsonLibraryDumps) {
  const std::vector<std::string> paths = {"a",           "src/d10/f10", "with space/and-dash_.x", "",
                                          "quote\"d",    "back\\slash",  "tab\tnewline\n",          "del\x7f",
                                          "caf\xc3\xa9", "bad\xff\xfeutf8"};
  int checked = 0;
  for (const auto& path : paths) {
    for (EntryKind kind : {EntryKind::file, EntryKind::directory, EntryKind::symlink}) {
      for (bool eager : {false, true}) {
        for (std::int64_t mtime : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                                   std::numeric_limits<std::int64_t>::max()}) {
          Offer o;
          o.file_id = std::numeric_limits<std::uint32_t>::max() - static_cast<std::uint32_t>(checked);
          o.path = path;
          o.kind = kind;
          o.size = checked % 2 ? std::numeric_limits<std::uint64_t>::max() : 1024;
          o.mtime_ns = mtime;
          o.mode = 0100644;
          o.identity = checked % 3 ? "1024:1700000000123456789" : path;
          o.target = kind == EntryKind::symlink ? path : "";
          o.block_size = 262144;
          o.eager = eager;
          ASSERT_EQ(to_json(o), reference_json(o)) << "path '" << path << "' case " << checked;
          ++checked;
        }
      }
    }
  }
  for (const std::string& digest : {std::string(32, 'a'), std::string("0123456789abcdef0123456789abcdef"),
                                    std::string("q\"x"), std::string()}) {
    Commit c{7, 1234567, digest};
    nlohmann::json j{{"file", c.file_id}, {"size", c.size}, {"xxh3_128", c.xxh3_128}};
    EXPECT_EQ(to_json(c), j.dump()) << digest;
  }
}

}  // namespace
}  // namespace ferry::protocol
