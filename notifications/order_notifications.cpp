#include "notifications/order_notifications.hpp"

#include <algorithm>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <utility>

#include <boost/json.hpp>

#include "telemetry/logging.hpp"

namespace mercato::notifications {

namespace json = boost::json;
using persistence::outbox_event;

namespace {

constexpr std::size_t max_title_chars = 200;  // notifications.title is VARCHAR(200)

[[noreturn]] void malformed(const std::string& why) { throw std::invalid_argument(why); }

json::object parse_data(const outbox_event& e) {
  boost::system::error_code ec;
  auto v = json::parse(e.data_json, ec);
  if (ec || !v.is_object()) {
    malformed("data is not a JSON object");
  }
  return std::move(v.as_object());
}

const json::value* field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it == o.end() || it->value().is_null() ? nullptr : &it->value();
}

std::string text(const json::object& o, std::string_view key) {
  const auto* v = field(o, key);
  if (!v || !v->is_string() || v->as_string().empty()) {
    malformed(std::string(key) + " is missing or not a string");
  }
  return std::string(v->as_string());
}

std::string text_or(const json::object& o, std::string_view key, std::string fallback) {
  const auto* v = field(o, key);
  return v && v->is_string() && !v->as_string().empty() ? std::string(v->as_string()) : std::move(fallback);
}

// An amount in minor units: an integer (the contract), or a Money object {"amount": n} tolerated.
std::optional<std::int64_t> amount_of(const json::value* v) {
  if (!v) {
    return std::nullopt;
  }
  if (v->is_int64()) {
    return v->as_int64();
  }
  if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v->as_uint64());
  }
  if (v->is_object()) {
    return amount_of(field(v->as_object(), "amount"));
  }
  return std::nullopt;
}

std::int64_t amount(const json::object& o, std::string_view key) {
  auto a = amount_of(field(o, key));
  if (!a) {
    malformed(std::string(key) + " is missing or not an integer amount in minor units");
  }
  return *a;
}

// Cuts at a character boundary (UTF-8), so the title fits its column.
std::string clip(std::string s, std::size_t max_chars) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == max_chars) {
        s.resize(i);
        return s;
      }
      ++chars;
    }
  }
  return s;
}

notification make(const outbox_event& e, std::string user_id, std::string kind, const std::string& title,
                  std::string body, json::object data) {
  return notification{std::move(user_id), std::move(kind), clip(title, max_title_chars), std::move(body),
                      json::serialize(data), e.id};
}

struct order_item {
  json::object view;  // as the vendor sees it (without vendor_id)
  std::string vendor_id;
  std::string name;
  std::string sku;
  std::int64_t quantity = 0;
  std::int64_t total_price = 0;
};

std::vector<order_item> items_of(const json::object& data) {
  const auto* v = field(data, "items");
  if (!v || !v->is_array()) {
    malformed("items is missing or not an array");
  }
  std::vector<order_item> out;
  for (std::size_t i = 0; i < v->as_array().size(); ++i) {
    const auto& it = v->as_array()[i];
    if (!it.is_object()) {
      malformed("items/" + std::to_string(i) + " is not an object");
    }
    const auto& o = it.as_object();
    order_item item;
    item.vendor_id = text_or(o, "vendor_id", "");
    item.name = text_or(o, "product_name", "");
    item.sku = text_or(o, "product_sku", "");
    item.quantity = amount_of(field(o, "quantity")).value_or(0);
    item.total_price = amount_of(field(o, "total_price")).value_or(0);
    for (const auto& [key, value] : o) {
      if (key != "vendor_id") {
        item.view.emplace(key, value);
      }
    }
    out.push_back(std::move(item));
  }
  return out;
}

std::string plural(std::int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Builds one kind's notifications for a batch and hands them over in one call. `build` throws
// std::invalid_argument for an event it cannot read: logged and skipped, the others go on.
persistence::outbox_dispatcher::handler batch_handler(
    std::shared_ptr<notifier> out, std::function<std::vector<notification>(const std::vector<outbox_event>&)> build) {
  return [out = std::move(out), build = std::move(build)](const std::vector<outbox_event>& batch) {
    auto notes = build(batch);
    if (!notes.empty()) {
      out->notify_all(notes);
    }
  };
}

void log_skipped(const std::string& subscriber, const outbox_event& e, const std::exception& why) {
  telemetry::log_error("notification handler skipped an event whose data does not follow the contract",
                       {{"subscriber", subscriber},
                        {"event_id", e.id},
                        {"event_type", e.event_type},
                        {"aggregate_id", e.aggregate_id},
                        {"error", why.what()}});
}

}  // namespace

std::string format_money(std::int64_t minor_units, const std::string& currency) {
  static const std::set<std::string> zero_decimals{"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
                                                   "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"};
  const bool negative = minor_units < 0;
  const std::uint64_t abs = negative ? static_cast<std::uint64_t>(-(minor_units + 1)) + 1
                                     : static_cast<std::uint64_t>(minor_units);
  std::string s;
  if (zero_decimals.count(currency) > 0) {
    s = std::to_string(abs);
  } else {
    const auto cents = abs % 100;
    s = std::to_string(abs / 100) + (cents < 10 ? ".0" : ".") + std::to_string(cents);
  }
  return (negative ? "-" : "") + s + (currency.empty() ? "" : " " + currency);
}

std::vector<std::string> order_placed_vendors(const outbox_event& e) {
  const auto data = parse_data(e);
  std::vector<std::string> out;
  for (const auto& item : items_of(data)) {
    if (!item.vendor_id.empty() && std::find(out.begin(), out.end(), item.vendor_id) == out.end()) {
      out.push_back(item.vendor_id);
    }
  }
  return out;
}

std::vector<notification> order_placed_notifications(const outbox_event& e, const vendor_users_map& vendor_users) {
  const auto data = parse_data(e);
  const auto order_id = text(data, "order_id");
  const auto customer_id = text(data, "customer_id");
  const auto order_number = text_or(data, "order_number", order_id);
  const auto currency = text(data, "currency");
  const auto total = amount(data, "total_amount");
  const auto items = items_of(data);

  std::vector<notification> out;
  std::int64_t units = 0;
  for (const auto& item : items) {
    units += item.quantity;
  }
  out.push_back(make(e, customer_id, "order_confirmation", "Order " + order_number + " confirmed",
                     "Thank you for your order " + order_number + ": " + plural(units, "item", "items") +
                         ", total " + format_money(total, currency) + ".",
                     json::object{{"order_id", order_id},
                                  {"order_number", order_number},
                                  {"currency", currency},
                                  {"total_amount", total},
                                  {"item_count", units}}));

  // Grouped by vendor, in the order the vendors first appear; each vendor sees its own lines only.
  std::vector<std::string> vendors;
  for (const auto& item : items) {
    if (!item.vendor_id.empty() && std::find(vendors.begin(), vendors.end(), item.vendor_id) == vendors.end()) {
      vendors.push_back(item.vendor_id);
    }
  }
  for (const auto& vendor : vendors) {
    auto users = vendor_users.find(vendor);
    if (users == vendor_users.end() || users->second.empty()) {
      continue;  // nobody to tell (a vendor without users yet)
    }
    json::array lines;
    std::string body;
    std::int64_t vendor_units = 0;
    std::int64_t vendor_total = 0;
    for (const auto& item : items) {
      if (item.vendor_id != vendor) {
        continue;
      }
      lines.push_back(item.view);
      vendor_units += item.quantity;
      vendor_total += item.total_price;
      body += (body.empty() ? "" : "\n") + std::to_string(item.quantity) + " x " +
              (item.name.empty() ? item.sku : item.name) + (item.sku.empty() ? "" : " (" + item.sku + ")") +
              ": " + format_money(item.total_price, currency);
    }
    const json::object vendor_data{{"order_id", order_id},     {"order_number", order_number},
                                   {"vendor_id", vendor},      {"currency", currency},
                                   {"items", std::move(lines)}, {"items_total", vendor_total}};
    const std::string title = "New order " + order_number + ": " + plural(vendor_units, "item", "items");
    for (const auto& user : users->second) {
      out.push_back(make(e, user, "vendor_new_order", title, body, vendor_data));
    }
  }
  return out;
}

std::vector<notification> order_shipped_notifications(const outbox_event& e) {
  const auto data = parse_data(e);
  const auto order_id = text(data, "order_id");
  const auto customer_id = text(data, "customer_id");
  const auto order_number = text_or(data, "order_number", order_id);
  const auto* shipment = field(data, "shipment");
  if (!shipment || !shipment->is_object()) {
    malformed("shipment is missing or not an object");
  }
  const auto carrier = text(shipment->as_object(), "carrier");
  const auto tracking = text(shipment->as_object(), "tracking_number");
  // The label is the shipper's business, not the customer's: it is not passed on.
  return {make(e, customer_id, "order_shipped", "Order " + order_number + " has shipped",
               "Your order " + order_number + " is on its way with " + carrier + ", tracking number " + tracking + ".",
               json::object{{"order_id", order_id},
                            {"order_number", order_number},
                            {"carrier", carrier},
                            {"tracking_number", tracking}})};
}

std::vector<notification> refund_issued_notifications(const outbox_event& e) {
  const auto data = parse_data(e);
  const auto order_id = text(data, "order_id");
  const auto customer_id = text(data, "customer_id");
  const auto order_number = text_or(data, "order_number", order_id);
  const auto currency = text(data, "currency");
  const auto refunded = amount(data, "amount");
  json::object details{{"payment_id", text_or(data, "payment_id", "")},
                       {"order_id", order_id},
                       {"order_number", order_number},
                       {"amount", refunded},
                       {"currency", currency}};
  if (auto so_far = amount_of(field(data, "refunded_amount"))) {
    details["refunded_amount"] = *so_far;
  }
  return {make(e, customer_id, "refund_issued", "Refund for order " + order_number,
               "We refunded " + format_money(refunded, currency) + " for your order " + order_number +
                   " to your original payment method.",
               std::move(details))};
}

std::vector<subscription> outbox_subscriptions(std::shared_ptr<notifier> out, vendor_lookup vendors) {
  std::vector<subscription> subs;

  const std::string placed = "notify-order-placed";
  subs.push_back({placed, persistence::outbox_filter{{"order"}, {"OrderPlaced"}},
                  batch_handler(out, [placed, vendors](const std::vector<outbox_event>& batch) {
                    // One vendor lookup for the whole batch.
                    std::vector<std::string> vendor_ids;
                    std::vector<const outbox_event*> readable;
                    for (const auto& e : batch) {
                      try {
                        for (auto& v : order_placed_vendors(e)) {
                          vendor_ids.push_back(std::move(v));
                        }
                        readable.push_back(&e);
                      } catch (const std::invalid_argument& why) {
                        log_skipped(placed, e, why);
                      }
                    }
                    const vendor_users_map users = vendor_ids.empty() ? vendor_users_map{} : vendors(vendor_ids);
                    std::vector<notification> notes;
                    for (const auto* e : readable) {
                      try {
                        for (auto& n : order_placed_notifications(*e, users)) {
                          notes.push_back(std::move(n));
                        }
                      } catch (const std::invalid_argument& why) {
                        log_skipped(placed, *e, why);
                      }
                    }
                    return notes;
                  })});

  auto simple = [&](std::string name, std::string aggregate_kind, std::string event_type,
                    std::vector<notification> (*build)(const outbox_event&)) {
    auto handler = batch_handler(out, [name, build](const std::vector<outbox_event>& batch) {
      std::vector<notification> notes;
      for (const auto& e : batch) {
        try {
          for (auto& n : build(e)) {
            notes.push_back(std::move(n));
          }
        } catch (const std::invalid_argument& why) {
          log_skipped(name, e, why);
        }
      }
      return notes;
    });
    subs.push_back({name, persistence::outbox_filter{{std::move(aggregate_kind)}, {std::move(event_type)}},
                    std::move(handler)});
  };
  simple("notify-order-shipped", "order", "OrderShipped", &order_shipped_notifications);
  simple("notify-refund-issued", "payment", "RefundIssued", &refund_issued_notifications);
  return subs;
}

}  // namespace mercato::notifications
