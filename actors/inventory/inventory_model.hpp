#pragma once
// The inventory entity: the stock of one product (entity id = the product's UUID). It holds on_hand,
// the open reservations of checkouts (their sum is `reserved`) and the low-stock flag; every change
// keeps available = on_hand - reserved >= 0. Reservations carry a deadline: every command first drops
// the expired ones (ReservationExpired), and inventory_expire does it without other traffic.
//
// State (schema 1; persistence/inventory_seed writes the first version):
//   {"schema":1,"on_hand":N,"reserved":R,"low_stock_threshold":T,"low":bool,
//    "reservations":[{"id":"<checkout id>","quantity":q,"expires_at":"<RFC 3339 UTC>","reserved_at":"..."}],
//    "settled":[{"id":"...","outcome":"committed|released|expired","quantity":q,"at":"..."}],
//    "updated_at":"..."}
// `reserved` is stored for readers of the JSON but recomputed from the reservations on decode;
// `settled` (the last 128 reservations that ended, oldest first) and `updated_at` may be absent (the seed).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/value.hpp>
#include <caf/message.hpp>

#include "actors/protocol/entity_context.hpp"
#include "actors/protocol/entity_records.hpp"
#include "actors/protocol/inventory_messages.hpp"

namespace mercato::actors {

struct inventory_model {
  static constexpr const char* kind = "inventory";
  static constexpr int schema_version = 1;
  static constexpr std::size_t settled_kept = 128;       // ended reservations remembered (idempotent repeats)
  static constexpr std::int64_t max_on_hand = 2'147'483'647;  // the projection column is an INTEGER
  static constexpr std::int32_t max_reserve_quantity = 1'000'000;
  static constexpr std::int64_t max_ttl_ms = 24LL * 3600 * 1000;

  using clock = std::chrono::system_clock;

  struct reservation {
    std::string id;  // the checkout id
    std::int64_t quantity = 0;
    clock::time_point expires_at;
    std::string reserved_at;  // RFC 3339
  };

  struct settled_reservation {
    std::string id;
    std::string outcome;  // committed, released, expired
    std::int64_t quantity = 0;
    std::string at;       // RFC 3339
  };

  struct state {
    std::int64_t on_hand = 0;
    std::int64_t reserved = 0;  // the sum of reservations[].quantity
    std::int64_t low_stock_threshold = 0;
    bool low = false;  // available <= threshold; LowStock is emitted when this turns true
    std::vector<reservation> reservations;
    std::vector<settled_reservation> settled;
    std::string updated_at;  // RFC 3339; empty: never changed by the entity (the seed)
  };

  static state empty(const std::string& id);
  static state decode(const boost::json::value& v);
  static boost::json::value encode(const state& s);
  // The `inventory` query table row (migration 0010).
  static std::vector<protocol::projection_row> project(const std::string& id, const state& s, std::int64_t version);
  static bool handle(protocol::entity_context<state>& ctx, const caf::message& msg);
  static const protocol::command_meta* meta_of(const caf::message& msg);
  static caf::message current(const std::string& id, const state& s, std::int64_t version);
  // Every caller is admitted: who may adjust a product's stock (its vendor, an admin) is decided at the
  // edge, which knows the product's vendor; reservations come from checkout inside the node.
  static caf::error admit(const state& s, std::int64_t version, const caf::message& msg,
                          const protocol::command_meta& meta);

  static protocol::inventory_view view(const std::string& id, const state& s, std::int64_t version);

  // RFC 3339 UTC with microseconds, and back (accepts what format_time writes, with or without a
  // fraction; throws std::invalid_argument otherwise).
  static std::string format_time(clock::time_point t);
  static clock::time_point parse_time(const std::string& s);
};

}  // namespace mercato::actors
