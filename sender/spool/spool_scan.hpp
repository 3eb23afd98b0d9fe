// The spool directory of `ferry-send --watch DIR`: listing what is in it, and what to
// do with a file once the receiver verified it.
//
// scan_spool() lists every regular file below DIR (recursively, sorted by wire path,
// the wire path being the path relative to DIR). It never follows a symlink. Names
// starting with '.' are ignored silently at any depth: writers put in-progress files
// under hidden names and rename them when complete, ferry's own DIR/.sent is hidden,
// and so are editors' swap files. Directories in `exclude_dirs` (a `move:DIR` target
// inside the spool) are ignored too, compared by device and inode so that any
// spelling of their path works. What cannot be sent (symlinks, devices, FIFOs,
// sockets, names that are not UTF-8, unreadable sub-directories, paths too long for
// the protocol) is reported in `skipped`, one "REL: why" line each.
//
//   auto policy = parse_on_sent(opt, spool);            // "remove", "keep", "move:DIR"
//   auto listing = scan_spool(spool, on_sent_excludes(*policy));
//   ... send listing->files, and for each file verified:
//   auto done = apply_on_sent(*policy, spool, entry);   // log done->description
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "lib/fs/source_tree.hpp"
#include "protocol/result.hpp"

namespace ferry {

struct SpoolListing {
  std::vector<SourceEntry> files;    // regular files, sorted by wire_path
  std::vector<std::string> skipped;  // "REL: why", one per entry not listed (bounded)
};

// Bounds that keep a hostile tree from exhausting memory or descriptors. When one is
// reached the walk stops listing (what was listed so far is returned) and says so in
// one `skipped` line; the rest waits until files are sent and moved away.
struct SpoolLimits {
  unsigned max_depth = 64;                             // directory levels below DIR (one fd each)
  std::size_t max_entries = 200'000;                   // names read (files, directories, others)
  std::size_t max_files = 100'000;                     // files listed
  std::size_t max_path_bytes = std::size_t{64} << 20;  // sum of wire path lengths listed
  std::size_t max_skipped = 1000;                      // `skipped` lines, then one summary line
};

// Lists the spool. Files that vanish between readdir and stat (or directories between
// stat and open) are simply absent: a race, not an error. Errc::local_io only when DIR
// itself cannot be opened or read. An `exclude_dirs` entry that does not exist (yet)
// is ignored. Blocking: run it on the thread pool, not on the loop thread.
Result<SpoolListing> scan_spool(const std::string& dir, const std::vector<std::string>& exclude_dirs,
                                const SpoolLimits& limits = {});

// What happens to a file once the receiver verified it.
enum class OnSent {
  move,    // renamed to TARGET/REL (the default TARGET is SPOOL/.sent)
  remove,  // unlinked
  keep,    // left in place; the queue does not send it again until it changes
};

struct OnSentPolicy {
  OnSent action = OnSent::move;
  std::string target;  // absolute directory for OnSent::move, else empty
};

// The default: move to SPOOL/.sent (hidden, hence never listed).
OnSentPolicy default_on_sent(const std::string& spool_dir);

// Parses the --on-sent value: "remove", "keep" or "move:DIR" (a relative DIR is
// relative to the current directory, as on any command line; it is made absolute
// here). Errc::usage for anything else, an empty DIR, or a DIR that is the spool.
Result<OnSentPolicy> parse_on_sent(const std::string& text, const std::string& spool_dir);

// The exclude_dirs scan_spool needs for `policy`: the move target, else none.
std::vector<std::string> on_sent_excludes(const OnSentPolicy& policy);

enum class OnSentResult {
  applied,             // moved, removed or (keep) left alone, as the policy says
  changed_since_sent,  // the file's signature differs from the verified one: left in place
  gone,                // the file is no longer there: nothing to do
};

struct OnSentReport {
  OnSentResult result = OnSentResult::applied;
  std::string description;  // one line for the log, e.g. "moved a/b to /x/.sent/a/b.1"
};

// Applies `policy` to `sent` (an entry of a scan of `spool_dir`, whose wire_path is
// the path relative to it), once the receiver verified it. First checks that the file
// still has the signature that was verified (same_version: size, mtime, ctime,
// inode); if not it is left alone (changed_since_sent: the newer content is queued
// again by the next listing). move renames it to TARGET/REL, creating TARGET and the
// parents of REL (mode 0755, symlinks inside TARGET not followed); an existing
// TARGET/REL is never overwritten: REL.1, REL.2, ... REL.999 are tried. Across
// filesystems (EXDEV) the file is copied to a hidden temporary name in the target
// directory, fsynced, renamed into place, and then the source is unlinked.
// Errors: Errc::local_io naming the call, the errno and the file; the source file is
// then still in the spool. Blocking: run it on the thread pool.
Result<OnSentReport> apply_on_sent(const OnSentPolicy& policy, const std::string& spool_dir, const SourceEntry& sent);

}  // namespace ferry
