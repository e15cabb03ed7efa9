#include "actors/protocol/protocol.hpp"

#include <caf/all.hpp>

#include "actors/protocol/errors.hpp"
#include "actors/protocol/type_ids.hpp"

namespace mercato::protocol {

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
