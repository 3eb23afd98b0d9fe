// The receiver's destination: DEST_DIR, partial files, and the commit into place.
//
// Safety: every path is resolved component by component with openat(O_NOFOLLOW), so
// nothing is created or written outside DEST_DIR and no path passes through a
// symlink. Data goes to a hidden partial (".NAME.ferry-part") beside a journal
// (".NAME.ferry-journal"); only commit() renames it to NAME, after fsync.
//
//   auto dest = DestDir::open("/srv/in");
//   PartialState st;
//   auto part = (*dest)->open_partial(offer, st);     // slow: hashes what is held
//   (*part)->write(st.offset, bytes);                 // in order
//   (*part)->commit(offer);                           // fsync, rename, fsync dir
//
// Threading: DestDir's methods may run on any thread (they only use *at() calls on
// the directory fd). One PartialFile is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <xxhash.h>

#include "lib/fs/fd_io.hpp"
#include "lib/fs/journal.hpp"
#include "protocol/digest.hpp"
#include "protocol/messages.hpp"
#include "protocol/result.hpp"

namespace ferry {

// What a partial already holds, verified.
struct PartialState {
  std::uint64_t offset = 0;     // verified bytes already held
  protocol::Digest128 prefix;   // digest of [0, offset)
  std::string note;             // why it starts over or was cut back; empty otherwise
};

class PartialFile;

class DestDir {
 public:
  // Opens (creating if missing, one level) the destination directory.
  static Result<std::shared_ptr<DestDir>> open(const std::string& path);

  // Creates the directory `offer.path` (and missing parents). Errc::protocol for an
  // unsafe path (through a symlink, or over a non-directory), Errc::local_io else.
  Result<void> make_directory(const protocol::Offer& offer);
  // Opens or creates the partial for `offer`, checks its journal and contents, and
  // fills `state`. A final file with the offered size and mtime counts as complete
  // (state.offset == size; commit() then only re-verifies).
  Result<std::unique_ptr<PartialFile>> open_partial(const protocol::Offer& offer, PartialState& state);
  const std::string& path() const { return path_; }

 private:
  DestDir() = default;
  // Opens the parent directory of `wire_path` (creating missing ones); returns its
  // fd and sets `leaf` to the last component.
  Result<UniqueFd> open_parent(const std::string& wire_path, std::string& leaf, bool create);
  UniqueFd fd_;
  std::string path_;
};

class PartialFile {
 public:
  ~PartialFile();
  // Writes `data` at `offset`; offset must equal written(). Saves the journal about
  // once a second. Errc::local_io on failure (nothing recorded for these bytes).
  Result<void> write(std::uint64_t offset, protocol::Bytes data);
  // fsync, set mode and mtime, rename to the final name, fsync the directory, remove
  // the journal. Errc::local_io on failure.
  Result<void> commit();
  // Saves the journal and closes (a later open resumes).
  void close_keep();
  // Removes partial and journal.
  void close_discard();
  std::uint64_t written() const { return written_; }
  const std::string& display_path() const { return display_; }

 private:
  friend class DestDir;
  PartialFile() = default;
  Result<void> save_journal();
  void add_block_bytes(protocol::Bytes data);

  // The steps of DestDir::open_partial, in order.
  // The journal beside the partial; nullopt when there is none or it is unreadable
  // (state.note then says so).
  std::optional<Journal> load_journal(PartialState& state);
  // True when the final name already holds the offered file (same size and mtime) and
  // its digest is in `state`: commit() then only re-verifies. Errc::local_io when a
  // directory is in the way or reading fails.
  Result<bool> reuse_final(PartialState& state);
  // Opens (creating) the partial, `shown` in errors; returns its size.
  Result<std::uint64_t> open_part(const std::string& shown);
  // How many bytes of the partial the journal vouches for, re-checked block by block;
  // the digest of those bytes goes to `state`, and state.note says why any were lost.
  Result<std::uint64_t> check_journal(const std::optional<Journal>& journal, std::uint64_t part_size,
                                      PartialState& state);
  Result<std::uint64_t> check_blocks(const Journal& j, std::vector<std::byte>& buf, PartialState& state);
  Result<std::uint64_t> check_tail(const Journal& j, std::uint64_t good, std::vector<std::byte>& buf,
                                   PartialState& state);
  // Cuts the partial back to `good` bytes, records that in the journal and `state`.
  Result<void> resume_at(std::uint64_t good, std::uint64_t part_size, PartialState& state);

  UniqueFd dirfd_;
  UniqueFd fd_;
  bool already_final_ = false;  // the final file is there already; commit re-verifies only
  std::string leaf_, part_name_, journal_name_, display_;
  protocol::Offer offer_;
  Journal journal_;
  std::uint64_t written_ = 0;
  XXH3_state_t block_state_{};
  std::uint64_t block_fill_ = 0;
  std::chrono::steady_clock::time_point last_save_{};
  std::uint64_t synced_upto_ = 0;
};

// The hidden names used for `leaf`'s partial and journal.
std::string partial_name(const std::string& leaf);
std::string journal_name(const std::string& leaf);
// True for names ferry uses for its own files (refused as wire path leaves).
bool is_ferry_temp_name(const std::string& leaf);

}  // namespace ferry
