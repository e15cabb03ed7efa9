#pragma once
// Catalog read model: products, categories and vendors as plain SQL over the projection tables.
// Runs on pg_pool threads; knows nothing about HTTP (cursors arrive decoded, results leave as structs).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/connection>

namespace mercato::persistence {

enum class product_sort { newest, name, price_asc, price_desc, relevance };

struct product_cursor {
  std::string key;  // the sort key of the last row, as text (timestamp, name, price in minor units, rank)
  std::string id;   // the last row's id: the tie-breaker
};

struct product_filter {
  std::optional<std::string> query;        // full-text over name and description
  std::optional<std::string> category_id;  // includes sub-categories
  std::optional<std::string> vendor_id;
  std::optional<std::int64_t> min_price;   // minor units, on current_price
  std::optional<std::int64_t> max_price;
  bool in_stock_only = false;
};

struct product_view {
  std::string id;
  std::string sku;
  std::string name;
  std::optional<std::string> description;
  std::optional<std::string> category_id;
  std::optional<std::string> vendor_id;
  std::int64_t base_price = 0;     // minor units
  std::int64_t current_price = 0;  // minor units
  std::string currency;
  std::int64_t on_hand = 0;
  std::int64_t reserved = 0;
  std::int64_t low_stock_threshold = 0;
  std::optional<std::string> weight;      // decimal text, kilograms
  std::optional<std::string> dimensions;  // JSON text
  std::optional<std::string> attributes;  // JSON text
  std::optional<std::string> images;      // JSON text
  std::string status;
  std::int64_t version = 0;
  std::string created_at;  // RFC 3339 UTC
  std::string updated_at;

  std::int64_t available() const { return on_hand > reserved ? on_hand - reserved : 0; }
  // in_stock, low_stock or out_of_stock
  const char* stock_status() const;
};

struct product_page {
  std::vector<product_view> items;
  std::optional<product_cursor> next;  // set when more rows follow
};

struct category_node {
  std::string id;
  std::string name;
  std::optional<std::string> parent_id;
  std::vector<category_node> children;
};

struct vendor_view {
  std::string id;
  std::string name;
  std::string status;
  std::int64_t version = 0;
  std::string created_at;
  std::string updated_at;
};

// Outcome of creating a catalog row: the row, or why not.
enum class create_outcome { created, duplicate, unknown_parent };

// A field a PATCH may set to a value or to null: absent (nullopt) leaves it as it is.
template <class T>
using nullable_change = std::optional<std::optional<T>>;

// The client-settable fields of a product. For a create, absent means "not given"; for an update,
// absent means "unchanged". Money is in minor units; JSON fields are minified JSON text; weight is a
// decimal text (kilograms). sku and vendor_id are fixed after the create.
struct product_fields {
  std::optional<std::string> sku;
  std::optional<std::string> name;
  nullable_change<std::string> description;
  nullable_change<std::string> category_id;
  std::optional<std::string> vendor_id;
  std::optional<std::int64_t> base_price;
  std::optional<std::int64_t> current_price;
  nullable_change<std::string> weight;
  nullable_change<std::string> dimensions;
  nullable_change<std::string> attributes;
  nullable_change<std::string> images;
};

// Who changed the catalog, for the metadata of the domain events (ARCHITECTURE.md event schema).
struct change_meta {
  std::string request_id;  // correlation_id and causation_id
  std::string trace_id;
  std::string user_id;
};

enum class product_write_outcome {
  done,
  not_found,         // no such product, archived, or not the caller's vendor's
  stale,             // the precondition (If-Match) did not hold
  duplicate_sku,
  unknown_category,
  unknown_vendor,
  price_out_of_range,  // current_price or base_price would not be > 0 after the change
};

struct product_write {
  product_write_outcome outcome = product_write_outcome::done;
  std::optional<product_view> product;  // the product as committed (done)
};

// Checks the stored version before a change (If-Match); empty: no precondition.
using version_precondition = std::function<bool(std::int64_t current_version)>;

class catalog_store {
 public:
  // limit is 1..100 (checked by the caller); one extra row is read to learn whether more follow.
  static product_page list_products(pqxx::connection& conn, const product_filter& filter, product_sort sort,
                                    const std::optional<product_cursor>& after, int limit);
  static std::optional<product_view> find_product(pqxx::connection& conn, const std::string& id);
  // Several products by id (any status; unknown ids are simply absent), in no particular order.
  static std::vector<product_view> find_products(pqxx::connection& conn, const std::vector<std::string>& ids);
  static std::vector<category_node> category_tree(pqxx::connection& conn);

  // The listing's SQL and its parameters, exactly as list_products runs it (plan tests EXPLAIN it).
  static std::pair<std::string, std::vector<std::string>> listing_query(const product_filter& filter,
                                                                        product_sort sort,
                                                                        const std::optional<product_cursor>& after,
                                                                        int limit);

  // Product writes. Each runs in one transaction with its domain event in the outbox (aggregate kind
  // "product"): ProductCreated, ProductUpdated (old and new prices), ProductArchived. `owner_vendor`
  // set: only that vendor's products are found (a vendor caller); archived products are never found.
  // create_product also seeds the product's inventory entity (initial_stock, low_stock_threshold).
  static product_write create_product(pqxx::connection& conn, const product_fields& fields,
                                      std::int64_t initial_stock, std::int64_t low_stock_threshold,
                                      const change_meta& meta);
  static product_write update_product(pqxx::connection& conn, const std::string& id, const product_fields& changes,
                                      const std::optional<std::string>& owner_vendor,
                                      const version_precondition& precondition, const change_meta& meta);
  static product_write archive_product(pqxx::connection& conn, const std::string& id,
                                       const std::optional<std::string>& owner_vendor,
                                       const version_precondition& precondition, const change_meta& meta);

  // A category under `parent_id` (root when empty); names are unique among siblings.
  static std::pair<create_outcome, std::optional<category_node>> create_category(
      pqxx::connection& conn, const std::string& name, const std::optional<std::string>& parent_id);
  // Vendor names are unique.
  static std::optional<vendor_view> create_vendor(pqxx::connection& conn, const std::string& name);
  static std::optional<vendor_view> find_vendor(pqxx::connection& conn, const std::string& id);
};

}  // namespace mercato::persistence
