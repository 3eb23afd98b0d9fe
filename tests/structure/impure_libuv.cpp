// Planted for tests/structure: a "session" that includes libuv must fail the sans-I/O check.
#include "sender/sender_session.hpp"

#include <uv.h>
