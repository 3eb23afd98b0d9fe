// Actions both sessions return to their drivers.
//
//   SendFrame        write head then body to the connection, in order
//   CloseConnection  close the connection and never write to it again
#pragma once

#include <cstddef>
#include <vector>

#include "lib/core/byte_buffer.hpp"
#include "protocol/result.hpp"

namespace ferry {

struct SendFrame {
  std::vector<std::byte> head;  // a whole control frame, or a DATA frame's head
  ByteBuffer body;  // a DATA frame's block (from the sender's pool); empty for other frames
};

struct CloseConnection {
  Error reason;  // why, for the log; Errc::connection with "transfer complete" on success
  // true: let queued frames (a final END or ERROR) reach the peer first; false: the
  // connection is presumed dead (stall, corrupt stream), drop it at once.
  bool flush = true;
};

}  // namespace ferry
