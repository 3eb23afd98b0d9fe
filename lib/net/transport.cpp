#include "lib/net/transport.hpp"

#include <utility>

namespace ferry {

void release(BorrowedFd& b) {
  if (auto hook = std::exchange(b.on_released, nullptr)) hook();
}

std::string Transport::describe() const {
  switch (kind) {
    case TransportKind::listen:
    case TransportKind::connect:
      return address.to_string();
    case TransportKind::stdio:
      return "stdio";
    case TransportKind::command:
      return "command '" + command + "'";
    case TransportKind::dial:
      return "the caller's dial function";
    case TransportKind::provided:
      return "connections from the caller";
  }
  return "?";
}

}  // namespace ferry
