#include "lib/ui/remote_target.hpp"

namespace ferry {

std::optional<RemoteTarget> parse_remote_target(const std::string& arg) {
  const auto colon = arg.find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  if (arg.find('/') < colon) return std::nullopt;  // a '/' before the ':': a local path
  RemoteTarget t;
  t.host = arg.substr(0, colon);
  t.dir = arg.substr(colon + 1);
  if (t.host.back() == '@') return std::nullopt;  // "user@:dir" names no host
  if (t.host[0] == '-') return std::nullopt;      // never an option to ssh
  if (t.dir.empty()) t.dir = ".";
  return t;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string remote_command(const std::string& rsh, const RemoteTarget& target, const std::string& remote_recv,
                           bool inspect_only) {
  const std::string remote =
      shell_quote(remote_recv) + (inspect_only ? " --stdio --inspect-only -- " : " --stdio -- ") + shell_quote(target.dir);
  return rsh + " " + shell_quote(target.host) + " " + shell_quote(remote);
}

}  // namespace ferry
