#pragma once
// Wall-clock time as entities write it into their state and events.

#include <string>

namespace mercato::protocol {

// Now, RFC 3339 UTC with microseconds: 2024-05-01T12:00:00.123456Z.
std::string now_rfc3339();

}  // namespace mercato::protocol
