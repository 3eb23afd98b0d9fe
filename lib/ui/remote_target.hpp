// The scp/rsync shape of a destination: `ferry-send PATH... [USER@]HOST:DIR` runs
// `ssh [USER@]HOST ferry-recv --stdio -- DIR` as the -e carrier.
//
// An argument names a remote directory when it has a ':' and no '/' before the first
// ':' (as scp and rsync decide): "host:dir", "me@host:/srv/in" and "host:" (the
// remote home) are remote; "./a:b", "/tmp/a:b" and "a" are local paths.
//
//   if (auto t = parse_remote_target(paths.back()))
//     rsh = remote_command("ssh -p 2222", *t, "ferry-recv");
#pragma once

#include <optional>
#include <string>

namespace ferry {

struct RemoteTarget {
  std::string host;  // "[USER@]HOST", as given
  std::string dir;   // "." when empty
};

std::optional<RemoteTarget> parse_remote_target(const std::string& arg);

// `text` quoted for /bin/sh: 'text', with each ' as '\''.
std::string shell_quote(const std::string& text);

// The carrier command: RSH HOST 'REMOTE_RECV --stdio -- DIR', each part quoted so that
// the local shell passes HOST and the remote command as one word each and the remote
// shell sees REMOTE_RECV and DIR as one word each. `rsh` is used as written (it may
// carry options: "ssh -p 2222 -i key").
// `inspect_only`: the remote ferry-recv is started with --inspect-only (for --check and
// --dry-run: DEST there is neither created nor changed).
std::string remote_command(const std::string& rsh, const RemoteTarget& target, const std::string& remote_recv,
                           bool inspect_only = false);

}  // namespace ferry
