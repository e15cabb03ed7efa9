#include "telemetry/logging.hpp"

#include <atomic>
#include <chrono>
#include <ctime>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace mercato::telemetry {
namespace {

std::atomic<config::log_format> g_format{config::log_format::text};

std::string utc_timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = time_point_cast<seconds>(now);
  auto millis = duration_cast<milliseconds>(now - secs).count();
  std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

std::string_view level_name(spdlog::level::level_enum lvl) {
  auto sv = spdlog::level::to_string_view(lvl);
  return {sv.data(), sv.size()};
}

}  // namespace

void configure_logging(const config::log_settings& s) {
  g_format = s.format;
  // stderr keeps stdout free for command output (admin commands print there).
  auto logger = spdlog::get("mercato");
  if (!logger) {
    logger = spdlog::stderr_logger_mt("mercato");
  }
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::from_str(s.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

bool log_enabled(spdlog::level::level_enum lvl) {
  return spdlog::default_logger_raw()->should_log(lvl);
}

std::string render_log_line(config::log_format fmt, spdlog::level::level_enum lvl, std::string_view msg,
                            const boost::json::object& fields) {
  if (fmt == config::log_format::json) {
    boost::json::object line;
    line.reserve(fields.size() + 3);
    line["ts"] = utc_timestamp();
    line["level"] = level_name(lvl);
    line["msg"] = msg;
    for (const auto& kv : fields) {
      line[kv.key()] = kv.value();
    }
    return boost::json::serialize(line);
  }
  std::string out = utc_timestamp();
  out += ' ';
  out += level_name(lvl);
  out += ' ';
  out += msg;
  for (const auto& kv : fields) {
    out += ' ';
    out += kv.key();
    out += '=';
    if (kv.value().is_string()) {
      const auto& s = kv.value().get_string();
      out.append(s.data(), s.size());
    } else {
      out += boost::json::serialize(kv.value());
    }
  }
  return out;
}

void log(spdlog::level::level_enum lvl, std::string_view msg, const boost::json::object& fields) {
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(lvl)) {
    return;
  }
  logger->log(lvl, "{}", render_log_line(g_format.load(std::memory_order_relaxed), lvl, msg, fields));
}

}  // namespace mercato::telemetry
