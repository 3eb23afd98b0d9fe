// Key files: the shared secret of ferry's authentication (protocol/auth.hpp) on disk,
// as 64 hex digits and a newline, readable by its owner only (like an ssh private key).
//
//   auto key = load_key_file("/etc/ferry/key");        // --key-file, FERRY_KEY_FILE
//   if (!key) return fail(key.error());                // one line: what is wrong, the file
//   auto made = generate_key_file("/etc/ferry/key");   // --generate-key: 0600, never overwrites
#pragma once

#include <string>

#include "protocol/auth_key.hpp"
#include "protocol/result.hpp"

namespace ferry {

// Reads the key in `path` (symlinks are followed, as for ssh's keys). Errors, each one
// line naming the file: Errc::usage when it is missing or unreadable (with errno), not a
// regular file, readable or writable by its group or others ("chmod 600 it"), or
// malformed (not 64 hex digits and an optional newline).
Result<protocol::AuthKey> load_key_file(const std::string& path);

// Creates `path` exclusively (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600) and writes a
// fresh random key to it, fsynced. Errc::usage when the file exists (it is never
// overwritten); Errc::local_io for any other failure (the partly written file is removed);
// Errc::internal when no random numbers can be had.
Result<void> generate_key_file(const std::string& path);

}  // namespace ferry
