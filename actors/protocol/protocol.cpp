#include "actors/protocol/protocol.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <caf/all.hpp>

#include "actors/protocol/clock.hpp"

#include "actors/protocol/errors.hpp"
#include "actors/protocol/type_ids.hpp"

namespace mercato::protocol {

std::string now_rfc3339() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto secs = time_point_cast<seconds>(now);
  const auto micros = static_cast<long>(duration_cast<microseconds>(now - secs).count());
  const std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf;
}

const char* to_string(errc e) {
  switch (e) {
    case errc::entity_failed: return "entity_failed";
    case errc::overloaded: return "overloaded";
    case errc::unavailable: return "unavailable";
    case errc::fenced: return "fenced";
    case errc::not_found: return "not_found";
    case errc::invalid: return "invalid";
    case errc::conflict: return "conflict";
    case errc::insufficient_stock: return "insufficient_stock";
    case errc::timeout: return "timeout";
    case errc::crashed: return "crashed";
    case errc::restart_limit: return "restart_limit";
    case errc::shutting_down: return "shutting_down";
    case errc::outcome_unknown: return "outcome_unknown";
    case errc::entity_restarting: return "entity_restarting";
    case errc::precondition_failed: return "precondition_failed";
    case errc::invalid_transition: return "invalid_transition";
  }
  return "unknown";
}

void register_protocol(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::mercato>();
  // CAF 0.17.6's add_error_category<T>() does not compile (its renderer signature is stale), so the
  // renderer is spelled out: "mercato:overloaded (detail)".
  cfg.add_error_category(caf::atom("mercato"), [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    std::string out = "mercato:";
    out += to_string(static_cast<errc>(code));
    if (ctx.match_elements<std::string>()) {
      out += " (" + ctx.get_as<std::string>(0) + ")";
    } else if (!ctx.empty()) {
      out += " " + caf::to_string(ctx);
    }
    return out;
  });
}

}  // namespace mercato::protocol
