#include "persistence/inventory_seed.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <pqxx/pqxx>

namespace mercato::persistence {

std::string initial_inventory_state(std::int64_t on_hand, std::int64_t low_stock_threshold) {
  return boost::json::serialize(boost::json::object{{"schema", 1},
                                                    {"on_hand", on_hand},
                                                    {"reserved", 0},
                                                    {"low_stock_threshold", low_stock_threshold},
                                                    {"reservations", boost::json::array{}},
                                                    {"low", on_hand <= low_stock_threshold}});
}

void seed_inventory(pqxx::work& tx, const std::string& product_id, std::int64_t on_hand,
                    std::int64_t low_stock_threshold) {
  tx.exec_params(
      "INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state, write_id) "
      "VALUES ('inventory', $1, 1, 0, $2::json, gen_random_uuid())",
      product_id, initial_inventory_state(on_hand, low_stock_threshold));
  tx.exec_params(
      "INSERT INTO inventory (product_id, on_hand, reserved, low_stock_threshold, version) "
      "VALUES ($1::uuid, $2, 0, $3, 1)",
      product_id, on_hand, low_stock_threshold);
}

}  // namespace mercato::persistence
