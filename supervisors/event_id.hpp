#pragma once
// Random (version 4) UUIDs for domain events.

#include <string>

namespace mercato::supervisors {

std::string new_event_id();

}  // namespace mercato::supervisors
