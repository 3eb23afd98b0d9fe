#include "tests/fuzz/session_harness.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "lib/core/session_driver.hpp"
#include "protocol/codec.hpp"
#include "protocol/digest.hpp"

namespace ferry::fuzz {

namespace P = protocol;

namespace {

// Every frame a session sends must decode as exactly one whole, intact frame.
void check_frame(const std::vector<std::byte>& bytes) {
  auto r = P::decode_frame(P::Bytes(bytes));
  auto* f = std::get_if<P::DecodedFrame>(&r);
  if (!f || f->consumed != bytes.size() || !f->payload_ok) std::abort();
}

void append_frame(std::vector<std::byte>& out, SendFrame& f) {
  std::vector<std::byte> whole(f.head.begin(), f.head.end());
  whole.insert(whole.end(), f.body.span().begin(), f.body.span().end());
  check_frame(whole);
  out.insert(out.end(), whole.begin(), whole.end());
}

Error fake_failure(const char* what) { return make_error(Errc::local_io, what, 28 /* ENOSPC */); }

// The fake source's bytes: a function of (entry, offset).
std::byte source_byte(std::uint32_t entry, std::uint64_t offset) {
  return static_cast<std::byte>((offset * 131 + entry * 7 + (offset >> 8)) & 0xff);
}

std::vector<std::byte> source_bytes(std::uint32_t entry, std::uint64_t offset, std::size_t length) {
  std::vector<std::byte> out(length);
  for (std::size_t i = 0; i < length; ++i) out[i] = source_byte(entry, offset + i);
  return out;
}

// Reads a little-endian u16 at `at`, 0 for the part past the end.
std::uint16_t read_u16(std::span<const std::uint8_t> s, std::size_t at) {
  const unsigned lo = at < s.size() ? s[at] : 0;
  const unsigned hi = at + 1 < s.size() ? s[at + 1] : 0;
  return static_cast<std::uint16_t>(lo | (hi << 8));
}

}  // namespace

void run_script(Harness& h, std::span<const std::uint8_t> script) {
  std::size_t at = 0;
  while (at < script.size() && !h.over()) {
    const auto op = static_cast<Op>(script[at++] % kOpCount);
    if (op == Op::feed) {
      const std::size_t want = read_u16(script, at);
      at = std::min(script.size(), at + 2);
      const std::size_t n = std::min(want, script.size() - at);
      h.feed(std::as_bytes(script.subspan(at, n)));
      at += n;
    } else if (op == Op::advance) {
      h.advance(std::chrono::milliseconds(read_u16(script, at)));
      at = std::min(script.size(), at + 2);
    } else if (op == Op::answer_oldest) {
      if (h.pending() > 0) h.answer(0, 0);
    } else if (op == Op::answer) {
      const std::uint8_t index = at < script.size() ? script[at] : 0;
      const std::uint8_t arg = at + 1 < script.size() ? script[at + 1] : 0;
      at = std::min(script.size(), at + 2);
      if (h.pending() > 0) h.answer(index % h.pending(), arg);
    } else if (op == Op::drained) {
      h.drained();
    } else {
      h.disconnect();
    }
  }
  // Bounded: each answer may queue more actions, but a session's actions are bounded
  // by its window and by the script's input.
  for (std::size_t n = h.pending(); n > 0 && h.pending() > 0 && !h.over(); --n) h.answer(0, 0);
}

// ---------------------------------------------------------------------------
// ScriptWriter

void ScriptWriter::feed(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const std::size_t n = std::min<std::size_t>(bytes.size(), 0xffff);
    out_.push_back(static_cast<std::uint8_t>(Op::feed));
    out_.push_back(static_cast<std::uint8_t>(n & 0xff));
    out_.push_back(static_cast<std::uint8_t>(n >> 8));
    for (std::size_t i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(bytes[i]));
    bytes = bytes.subspan(n);
  }
}

void ScriptWriter::advance(std::uint16_t ms) {
  out_.push_back(static_cast<std::uint8_t>(Op::advance));
  out_.push_back(static_cast<std::uint8_t>(ms & 0xff));
  out_.push_back(static_cast<std::uint8_t>(ms >> 8));
}

void ScriptWriter::answer(std::uint8_t index, std::uint8_t arg) {
  out_.push_back(static_cast<std::uint8_t>(Op::answer));
  out_.push_back(index);
  out_.push_back(arg);
}

// ---------------------------------------------------------------------------
// ReceiverHarness

ReceiverHarness::ReceiverHarness() : session_(receiver::ReceiverConfig{}, now_) {}

void ReceiverHarness::Perform::operator()(SendFrame& f) const { append_frame(h.output_, f); }

void ReceiverHarness::Perform::must_write() const {
  if (h.session_.purpose() != P::Purpose::transfer) std::abort();
}

// Check and dry-run looks: arg bit 0 a failure; (arg >> 1) % 4 picks what DEST holds
// (missing, a file of the offered size, of another size, a directory); bit 3 a partial.
void ReceiverHarness::complete_inspection(Pending& p, std::uint8_t arg) {
  const bool fail = (arg & 1) != 0;
  if (auto* d = std::get_if<Digest>(&p)) {
    if (fail) return session_.on_final_digested(d->file_id, fake_failure("read"), now_);
    receiver::FinalFile f;
    f.kind = static_cast<receiver::FinalFile::Kind>((arg >> 1) % 4 == 3 ? 2 : (arg >> 1) % 4 == 0 ? 0 : 1);
    f.size = (arg >> 1) % 4 == 2 ? d->offer.size + 1 : d->offer.size;
    f.partial = (arg & 8) != 0;
    if (f.kind == receiver::FinalFile::Kind::file && f.size == d->offer.size) f.digest = P::FileDigest();
    return session_.on_final_digested(d->file_id, std::move(f), now_);
  }
  if (auto* pr = std::get_if<Probe>(&p)) {
    if (fail) return session_.on_file_probed(pr->file_id, fake_failure("probe"), now_);
    receiver::OpenedFile o;
    o.created = (arg & 2) != 0;
    if ((arg & 4) != 0 && pr->offer.kind == P::EntryKind::file) o.offset = pr->offer.size;
    return session_.on_file_probed(pr->file_id, std::move(o), now_);
  }
}

void ReceiverHarness::run() {
  drive(
      session_, [this](receiver::Action& a) { std::visit(Perform{*this}, a); }, [](const Event&) {});
}

void ReceiverHarness::feed(std::span<const std::byte> bytes) {
  if (closed_) return;
  session_.on_bytes(P::Bytes(bytes), now_);
  run();
}

void ReceiverHarness::drained() {
  if (closed_) return;
  session_.on_input_drained(now_);
  run();
}

void ReceiverHarness::disconnect() {
  if (closed_) return;
  closed_ = true;
  session_.on_disconnected(make_error(Errc::connection, "connection lost"), now_);
  run();
}

void ReceiverHarness::answer(std::size_t index, std::uint8_t arg) {
  Pending p = std::move(pending_[index]);
  pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(index));
  complete(p, arg);
  run();
}

// arg bit 0: a failure. A successful open with (arg >> 1) % 3 == 1 resumes after the
// first block (with a prefix digest that does not match: the verdict fails), == 2
// reports a held block and a note.
void ReceiverHarness::complete(Pending& p, std::uint8_t arg) {
  if (std::holds_alternative<Digest>(p) || std::holds_alternative<Probe>(p)) return complete_inspection(p, arg);
  const bool fail = (arg & 1) != 0;
  if (auto* o = std::get_if<Open>(&p)) {
    if (fail) return session_.on_file_opened(o->file_id, fake_failure("open"), now_);
    receiver::OpenedFile opened;
    opened.created = o->offer.kind == P::EntryKind::directory && (arg & 2) != 0;
    const std::uint64_t bs = std::max<std::uint64_t>(o->offer.block_size, 1);
    const unsigned variant = (arg >> 1) % 3;
    if (variant == 1) opened.offset = std::min<std::uint64_t>(o->offer.size, bs);
    if (variant == 2 && o->offer.size > 3 * bs) {
      opened.note = "resumed";
      opened.held.push_back({2 * bs, bs, 0});
    }
    return session_.on_file_opened(o->file_id, std::move(opened), now_);
  }
  if (auto* w = std::get_if<Write>(&p)) {
    return session_.on_chunk_written(w->file_id, w->offset, w->length,
                                     fail ? Result<void>(fake_failure("write")) : Result<void>(), now_);
  }
  const auto& c = std::get<Commit>(p);
  session_.on_file_committed(c.file_id, fail ? Result<void>(fake_failure("commit")) : Result<void>(), now_);
}

// ---------------------------------------------------------------------------
// SenderHarness

namespace {

std::vector<SourceEntry> fuzz_entries() {
  std::vector<SourceEntry> out;
  auto file = [&](std::string path, std::uint64_t size) {
    SourceEntry e;
    e.wire_path = path;
    e.local_path = "/fuzz/" + path;
    e.size = size;
    e.mtime_ns = 1'700'000'000;
    e.identity = source_identity(e.size, e.mtime_ns);
    out.push_back(std::move(e));
  };
  file("a.bin", 5 * SenderHarness::kChunk + 100);
  SourceEntry dir;
  dir.wire_path = "d";
  dir.local_path = "/fuzz/d";
  dir.kind = P::EntryKind::directory;
  dir.identity = "dir";
  out.push_back(std::move(dir));
  file("d/empty", 0);
  file("d/one", SenderHarness::kChunk);
  file("d/small", 100);  // with "d/empty" and "d/one": eager when the ANSWER says created
  SourceEntry link;       // version 4: a symlink, answered by an ANSWER alone
  link.wire_path = "d/link";
  link.local_path = "/fuzz/d/link";
  link.kind = P::EntryKind::symlink;
  link.identity = "symlink";
  link.link_target = "../a.bin";
  out.push_back(std::move(link));
  return out;
}

sender::SenderConfig fuzz_sender_config(P::Purpose purpose) {
  sender::SenderConfig c;
  c.purpose = purpose;
  c.list_extra = purpose == P::Purpose::check;
  c.chunk_size = SenderHarness::kChunk;
  c.window = 4 * SenderHarness::kChunk;
  c.max_reads_in_flight = 2;
  c.stall_timeout = std::chrono::milliseconds(2000);
  c.session_id = std::string(32, 'f');
  return c;
}

}  // namespace

SenderHarness::SenderHarness(P::Purpose purpose)
    : entries_(fuzz_entries()), session_(fuzz_sender_config(purpose), entries_, now_) {
  session_.on_connected(now_);
  run();
}

void SenderHarness::Perform::operator()(SendFrame& f) const { append_frame(h.output_, f); }

void SenderHarness::run() {
  drive(
      session_, [this](sender::Action& a) { std::visit(Perform{*this}, a); }, [](const Event&) {});
}

void SenderHarness::feed(std::span<const std::byte> bytes) {
  if (over()) return;
  session_.on_bytes(P::Bytes(bytes), now_);
  run();
}

void SenderHarness::drained() {
  if (over()) return;
  session_.on_timeout(now_);
  run();
}

void SenderHarness::disconnect() {
  if (closed_) return;
  closed_ = true;
  session_.on_disconnected(make_error(Errc::connection, "connection lost"), now_);
  run();
}

void SenderHarness::answer(std::size_t index, std::uint8_t arg) {
  Pending p = std::move(pending_[index]);
  pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(index));
  complete(p, arg);
  run();
}

// arg bit 0: a failure; bit 1: a read comes back short (the file shrank), a prefix
// hash is wrong, a source check finds the file changed.
void SenderHarness::complete(Pending& p, std::uint8_t arg) {
  const bool fail = (arg & 1) != 0;
  const bool odd = (arg & 2) != 0;
  if (auto* r = std::get_if<sender::ReadChunk>(&p)) {
    if (fail || r->entry >= entries_.size()) return session_.on_read_done(r->token, fake_failure("read"), now_);
    const std::size_t n = odd ? r->length / 2 : r->length;
    auto bytes = source_bytes(r->entry, r->offset, n);
    sender::ReadBlock block{ByteBuffer::copy_of(bytes), P::block_digest(bytes, r->offset)};
    return session_.on_read_done(r->token, std::move(block), now_);
  }
  if (auto* hp = std::get_if<sender::HashPrefix>(&p)) {
    if (fail || hp->entry >= entries_.size() || hp->length > (1u << 20) || hp->block_size == 0) {
      return session_.on_prefix_hashed(hp->token, fake_failure("hash"), now_);
    }
    P::FileDigest digest;
    if (!odd) P::add_blocks(digest, source_bytes(hp->entry, 0, hp->length), 0, hp->block_size);
    return session_.on_prefix_hashed(hp->token, digest, now_);
  }
  const auto& c = std::get<sender::CheckSource>(p);
  if (fail || c.entry >= entries_.size()) return session_.on_source_checked(c.token, fake_failure("stat"), now_);
  std::optional<SourceEntry> changed;
  if (odd) {
    changed = entries_[c.entry];
    changed->mtime_ns += 1;
    changed->identity = source_identity(changed->size, changed->mtime_ns);
  }
  session_.on_source_checked(c.token, std::move(changed), now_);
}

}  // namespace ferry::fuzz
