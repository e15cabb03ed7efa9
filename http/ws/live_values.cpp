#include "http/ws/live_values.hpp"

#include <unordered_set>

#include <pqxx/pqxx>

#include "http/codec.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http::ws {
namespace {

std::string uuid_array(const std::vector<live_item>& items) {
  std::string s = "{";
  for (const auto& item : items) {
    if (s.size() > 1) {
      s.push_back(',');
    }
    s += item.uuid();
  }
  s.push_back('}');
  return s;
}

// A product without an inventory row has nothing available (version 0: any change is newer).
constexpr const char* stock_sql =
    "SELECT p.id::text, COALESCE(i.on_hand - i.reserved, 0)::bigint, "
    "  COALESCE(i.low_stock_threshold, p.low_stock_threshold)::bigint, COALESCE(i.version, 0)::bigint "
    "FROM products p LEFT JOIN inventory i ON i.product_id = p.id "
    "WHERE p.id = ANY($1::uuid[]) AND p.status = 'active'";
constexpr const char* price_sql =
    "SELECT id::text, (current_price * 100)::bigint, currency, version::bigint FROM products "
    "WHERE id = ANY($1::uuid[]) AND status = 'active'";
// A customer's newest orders through idx_orders_customer (customer_id, created_at DESC, id DESC): the
// column compared as itself. (Compared as text, `customer_id::text = $1`, no index applied, and every
// subscription read the orders table newest first until it found the customer's `max_orders`, which for
// a customer with fewer orders than that is the whole table: the soak's PostgreSQL CPU grew with it.)
constexpr const char* customer_orders_sql =
    "SELECT o.id::text, o.status, o.version::bigint FROM orders o WHERE o.customer_id = $1::uuid "
    "ORDER BY o.created_at DESC, o.id DESC LIMIT $2";
// Support and admins: the newest orders of all (idx_orders_created). Both order by the uuid column `o.id`:
// a bare `id` would name the output column, the id as text, which no index is sorted by.
constexpr const char* all_orders_sql =
    "SELECT o.id::text, o.status, o.version::bigint FROM orders o ORDER BY o.created_at DESC, o.id DESC LIMIT $1";

load_result read_values(pqxx::connection& conn, topic t, const std::vector<live_item>& items,
                        const std::string& customer, std::size_t max_orders) {
  load_result out;
  pqxx::read_transaction tx{conn};
  if (t == topic::orders) {
    const auto limit = static_cast<long long>(max_orders);
    if (!customer.empty() && !is_uuid(customer)) {
      return out;  // not a user id: no orders are theirs
    }
    const pqxx::result rows = customer.empty() ? tx.exec_params(all_orders_sql, limit)
                                               : tx.exec_params(customer_orders_sql, customer, limit);
    for (const auto& row : rows) {
      auto item = live_item::from_uuid(topic::orders, row[0].c_str());
      if (!item) {
        continue;
      }
      const auto version = row[2].as<std::int64_t>();
      out.values.push_back(live_update{*item, {version, 0}, order_message(row[0].c_str(), row[1].c_str(), version),
                                       customer});
    }
    return out;
  }
  const auto rows = tx.exec_params(t == topic::stock ? stock_sql : price_sql, uuid_array(items));
  std::unordered_set<live_item, live_item_hash> found;
  for (const auto& row : rows) {
    auto item = live_item::from_uuid(t, row[0].c_str());
    if (!item) {
      continue;
    }
    found.insert(*item);
    const auto version = row[3].as<std::int64_t>();
    if (t == topic::stock) {
      const auto available = row[1].as<std::int64_t>();
      out.values.push_back(live_update{
          *item, {version, 0},
          stock_message(row[0].c_str(), available, stock_status(available, row[2].as<std::int64_t>()), version),
          {}});
    } else {
      out.values.push_back(live_update{
          *item, {version, 0}, price_message(row[0].c_str(), row[1].as<std::int64_t>(), row[2].c_str(), version), {}});
    }
  }
  for (const auto& item : items) {
    if (found.count(item) == 0) {
      out.missing.push_back(item);
    }
  }
  return out;
}

}  // namespace

value_loader database_loader(persistence::pg_pool& pool, std::size_t max_orders) {
  return [&pool, max_orders](topic t, std::vector<live_item> items, std::string customer,
                             std::function<void(load_result)> done) {
    auto shared_done = std::make_shared<std::function<void(load_result)>>(std::move(done));
    const bool queued = pool.submit(
        [t, items = std::move(items), customer = std::move(customer), max_orders, shared_done](pqxx::connection& conn) {
          (*shared_done)(read_values(conn, t, items, customer, max_orders));
        },
        [shared_done](const persistence::db_error&) { (*shared_done)(load_result{false, {}, {}}); });
    if (!queued) {
      (*shared_done)(load_result{false, {}, {}});
    }
  };
}

}  // namespace mercato::http::ws
