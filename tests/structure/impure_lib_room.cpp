// Planted for tests/structure: a "session" that includes a lib/ room other than lib/core
// (here the network room, which itself pulls in libuv) must fail the sans-I/O check.
#include "lib/net/connection.hpp"
