#pragma once
// Structured logging over spdlog. In `json` format every line is one JSON object
// {ts, level, msg, ...fields}; in `text` format the fields follow the message as key=value.

#include <string_view>

#include <boost/json/object.hpp>
#include <spdlog/common.h>

#include "config/settings.hpp"

namespace mercato::telemetry {

// Installs the process-wide logger. Safe to call again (tests reconfigure it).
void configure_logging(const config::log_settings& s);

bool log_enabled(spdlog::level::level_enum lvl);

void log(spdlog::level::level_enum lvl, std::string_view msg, const boost::json::object& fields = {});

inline void log_info(std::string_view msg, const boost::json::object& fields = {}) {
  log(spdlog::level::info, msg, fields);
}
inline void log_warn(std::string_view msg, const boost::json::object& fields = {}) {
  log(spdlog::level::warn, msg, fields);
}
inline void log_error(std::string_view msg, const boost::json::object& fields = {}) {
  log(spdlog::level::err, msg, fields);
}
inline void log_debug(std::string_view msg, const boost::json::object& fields = {}) {
  log(spdlog::level::debug, msg, fields);
}

// The access log: one info line per answered request, in the same format and on the same stderr as every
// other line, but written by a background thread: the caller (an io thread) formats the line and queues it,
// and never waits on the pipe. The queue is bounded; when stderr cannot keep up, the oldest queued lines are
// dropped (counted in dropped_access_lines()) rather than stalling requests.
void log_access(std::string_view msg, const boost::json::object& fields);
// Access-log lines lost to a full queue since start.
std::size_t dropped_access_lines();
// Writes out every queued access-log line (the node calls it on shutdown; tests before reading the log).
void flush_logging();

// Renders one line exactly as it would be written (used by tests and by the sink).
std::string render_log_line(config::log_format fmt, spdlog::level::level_enum lvl, std::string_view msg,
                            const boost::json::object& fields);

}  // namespace mercato::telemetry
