// Files the receiver keeps in DEST under its own names (partials, journals) and the
// final names it may adopt as already complete: which of them it may trust.
//
// DEST may be writable by other local users. Anything found at one of ferry's names
// is opened without following a symlink and without blocking (a FIFO or a device is
// never opened: its lstat is checked first) and is trusted only when it is a regular
// file with one link owned by the receiver's effective user. Anything else is
// "untrusted": the caller sets it aside (removes it) and starts the file over.
//
//   auto e = open_owned(dirfd, ".a.ferry-part", O_RDWR, "/srv/in/.a.ferry-part");
//   if (!e) fail(e.error());               // a local failure (EMFILE, EIO)
//   else if (!e->why.empty()) remove_it(); // there, but not ours: e->why says why
//   else if (e->fd) resume(e->fd);         // ours; e->st is its fstat
//   else create_it();                      // absent
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "lib/fs/fd_io.hpp"
#include "protocol/result.hpp"

namespace ferry {

struct OwnedFile {
  UniqueFd fd;       // open and trusted; empty when absent or untrusted
  std::string why;   // why it is not trusted; empty when trusted or absent
  struct stat st {}; // fstat of `fd` when open
};

// Why `st` is no file of ours to trust (not a regular file, more than one link, owned
// by another user), or empty.
std::string untrusted_why(const struct stat& st);

// Opens `name` in `dirfd` with `access` (O_RDONLY or O_RDWR) as described above.
// Errc::local_io (naming `shown`) only for failures that say nothing about the file.
Result<OwnedFile> open_owned(int dirfd, const std::string& name, int access, const std::string& shown);

// The process's file mode creation mask, read once without changing it where the
// kernel reports it (/proc/self/status "Umask:"), else by setting and restoring it.
mode_t read_umask();

// Whether a file last modified at `mtime_ns` (wall clock) is older than `age`; an age
// of 0 means never.
bool older_than(std::int64_t mtime_ns, std::chrono::seconds age);

}  // namespace ferry
