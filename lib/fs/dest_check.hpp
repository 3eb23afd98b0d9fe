// Whether ferry-recv can create files in its destination, checked once at the start,
// so that a read-only mount or a directory without write permission is one line and
// exit code 5 before any sender connects, not a refusal per file at transfer time.
//
//   if (auto ok = check_dest_writable("/srv/inbox"); !ok) fail(ok.error());
#pragma once

#include <string>

#include "protocol/result.hpp"

namespace ferry {

// Creates an unnamed file in `dir` (O_TMPFILE; where the file system lacks it, a
// hidden probe name removed at once) and closes it: nothing is left behind.
// Errc::local_io "cannot create files in DIR" with the errno (EROFS, EACCES, ENOSPC...).
Result<void> check_dest_writable(const std::string& dir);

}  // namespace ferry
