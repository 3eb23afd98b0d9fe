// Whole-session fuzzing: a ReceiverSession or a SenderSession driven by a script of
// operations (feed these bytes, let time pass, answer the oldest file action, answer
// that one with a failure, end the input batch, drop the connection), with every file
// action answered by an in-memory fake driver. The fuzz targets
// (fuzz_receiver_session.cpp, fuzz_sender_session.cpp) read the script from the fuzz
// input; ferry-make-session-corpus writes real scripts by running both harnesses
// against each other and recording what each one was fed.
//
// Script format (little-endian), one operation after the other until the input ends:
//   0 LEN16 BYTES   feed the next min(LEN16, rest) bytes as connection input
//   1 MS16          let MS16 milliseconds pass (the next feeds carry the new time)
//   2               answer the oldest pending file action with success
//   3 IDX ARG       answer pending action IDX % count; ARG bit 0 set: with a failure,
//                   other bits: the variant of a success (a resume offset, a changed
//                   source, a short read)
//   4               end of an input batch (receiver: on_input_drained; sender:
//                   on_timeout at the current time)
//   5               the connection is lost (the script ends there)
// Any other opcode is taken modulo 6. At the end of the script every pending action is
// answered with success, once, so the completion paths run.
//
// Answering actions lives in one place per harness: the Perform visitor
// (ReceiverHarness::perform, SenderHarness::perform) files each action as a Pending
// item and answer() completes it; a new action type is one more overload there.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <variant>
#include <vector>

#include "receiver/receiver_session.hpp"
#include "sender/sender_session.hpp"

namespace ferry::fuzz {

using Clock = std::chrono::steady_clock;

enum class Op : std::uint8_t { feed = 0, advance = 1, answer_oldest = 2, answer = 3, drained = 4, disconnect = 5 };
inline constexpr unsigned kOpCount = 6;

// The operations every harness offers (what a script is made of).
class Harness {
 public:
  virtual ~Harness() = default;
  virtual void feed(std::span<const std::byte> bytes) = 0;
  void advance(std::chrono::milliseconds ms) { now_ += ms; }
  // Answers pending action `index` (< pending()); `arg` as in the script format.
  virtual void answer(std::size_t index, std::uint8_t arg) = 0;
  virtual std::size_t pending() const = 0;
  virtual void drained() = 0;
  virtual void disconnect() = 0;
  // Whether the session ended (END exchanged, failed, or the connection is closed).
  virtual bool over() const = 0;
  // The bytes of every frame sent since the last call.
  std::vector<std::byte> take_output() { return std::exchange(output_, {}); }

 protected:
  Clock::time_point now_ = Clock::time_point(std::chrono::hours(1000));
  std::vector<std::byte> output_;
};

// Runs a script (the format above) against `h`.
void run_script(Harness& h, std::span<const std::uint8_t> script);

// Appends operations to a script, for the corpus writer.
class ScriptWriter {
 public:
  void feed(std::span<const std::byte> bytes);
  void advance(std::uint16_t ms);
  void answer_oldest() { out_.push_back(static_cast<std::uint8_t>(Op::answer_oldest)); }
  void answer(std::uint8_t index, std::uint8_t arg);
  void drained() { out_.push_back(static_cast<std::uint8_t>(Op::drained)); }
  void disconnect() { out_.push_back(static_cast<std::uint8_t>(Op::disconnect)); }
  const std::vector<std::uint8_t>& bytes() const { return out_; }

 private:
  std::vector<std::uint8_t> out_;
};

// A ReceiverSession with a fake file system: opens, writes and commits wait in a
// queue until the script answers them.
class ReceiverHarness final : public Harness {
 public:
  ReceiverHarness();
  void feed(std::span<const std::byte> bytes) override;
  void answer(std::size_t index, std::uint8_t arg) override;
  std::size_t pending() const override { return pending_.size(); }
  void drained() override;
  void disconnect() override;
  bool over() const override { return closed_ || session_.ended() || session_.failed(); }

 private:
  struct Open {
    std::uint32_t file_id;
    protocol::Offer offer;
  };
  struct Write {
    std::uint32_t file_id;
    std::uint64_t offset, length;
  };
  struct Commit {
    std::uint32_t file_id;
  };
  struct Digest {  // check sessions (version 4)
    std::uint32_t file_id;
    protocol::Offer offer;
  };
  struct Probe {  // dry-run sessions (version 4)
    std::uint32_t file_id;
    protocol::Offer offer;
  };
  using Pending = std::variant<Open, Write, Commit, Digest, Probe>;
  // The one place actions are answered or filed (see the header comment).
  struct Perform {
    ReceiverHarness& h;
    void operator()(SendFrame& f) const;
    void operator()(CloseConnection&) const { h.closed_ = true; }
    // A writing action in a check or dry-run session is a bug the fuzzer reports.
    void must_write() const;
    void operator()(receiver::OpenFile& o) const {
      must_write();
      h.pending_.push_back(Open{o.file_id, o.offer});
    }
    void operator()(receiver::WriteChunk& w) const {
      must_write();
      h.pending_.push_back(Write{w.file_id, w.offset, w.data.size()});
    }
    void operator()(receiver::CommitFile& c) const {
      must_write();
      h.pending_.push_back(Commit{c.file_id});
    }
    void operator()(receiver::CloseFile&) const { must_write(); }
    void operator()(receiver::CommitSmallFile& c) const {
      must_write();
      h.pending_.push_back(Commit{c.file_id});
    }
    void operator()(receiver::DigestFinalFile& d) const { h.pending_.push_back(Digest{d.file_id, d.offer}); }
    void operator()(receiver::ProbeFile& p) const { h.pending_.push_back(Probe{p.file_id, p.offer}); }
  };
  void complete(Pending& p, std::uint8_t arg);
  void complete_inspection(Pending& p, std::uint8_t arg);
  void run();

  receiver::ReceiverSession session_;
  std::deque<Pending> pending_;
  bool closed_ = false;
};

// A SenderSession over a fixed set of entries (files of a few blocks, an empty file, a
// directory, a symlink) whose bytes are a function of (entry, offset); reads, prefix hashes and
// source checks wait in a queue until the script answers them.
class SenderHarness final : public Harness {
 public:
  // `purpose`: the corpus writer's check and dry-run exchanges (the fuzz target uses a
  // transfer).
  explicit SenderHarness(protocol::Purpose purpose = protocol::Purpose::transfer);
  void feed(std::span<const std::byte> bytes) override;
  void answer(std::size_t index, std::uint8_t arg) override;
  std::size_t pending() const override { return pending_.size(); }
  void drained() override;
  void disconnect() override;
  bool over() const override { return closed_ || session_.finished(); }

  static constexpr std::size_t kChunk = protocol::kMinChunkSize;

 private:
  using Pending = std::variant<sender::ReadChunk, sender::HashPrefix, sender::CheckSource>;
  struct Perform {
    SenderHarness& h;
    void operator()(SendFrame& f) const;
    void operator()(CloseConnection&) const { h.closed_ = true; }
    void operator()(sender::ReadChunk& r) const { h.pending_.push_back(r); }
    void operator()(sender::HashPrefix& p) const { h.pending_.push_back(p); }
    void operator()(sender::CheckSource& c) const { h.pending_.push_back(c); }
  };
  void complete(Pending& p, std::uint8_t arg);
  void complete_inspection(Pending& p, std::uint8_t arg);
  void run();

  std::vector<SourceEntry> entries_;
  sender::SenderSession session_;
  std::deque<Pending> pending_;
  bool closed_ = false;
};

}  // namespace ferry::fuzz
