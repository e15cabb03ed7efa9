#include "actors/order/order_model.hpp"

#include <algorithm>
#include <stdexcept>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <caf/make_message.hpp>

#include "actors/domain_event.hpp"
#include "actors/snapshot_fields.hpp"
#include "actors/protocol/clock.hpp"
#include "actors/protocol/type_ids.hpp"

namespace mercato::actors {
namespace {

using protocol::errc;
namespace json = boost::json;
const auto& str = text_field;
const auto& num = int_field;




// A stable UUID-shaped key for an order line's projection row (order_items.id).
std::string line_key(const std::string& order_id, std::size_t index) {
  std::string key = order_id;
  // The order id with its last 4 hex digits replaced by the line index keeps it unique per order and
  // valid as a UUID; orders hold far fewer than 65536 lines.
  static const char* hex = "0123456789abcdef";
  for (int i = 0; i < 4; ++i) {
    key[key.size() - 1 - i] = hex[(index >> (4 * i)) & 0xF];
  }
  return key;
}

bool customer_visible(const std::string& status) { return status != "reserving" && status != "failed" && !status.empty(); }

protocol::domain_event event(const protocol::command_meta& meta, const std::string& type, json::object data) {
  return make_event(meta, type, data);
}


json::array items_json(const protocol::order_view& o) {
  json::array items;
  for (const auto& l : o.items) {
    items.push_back(json::object{{"product_id", l.product_id},
                                 {"product_sku", l.sku},
                                 {"product_name", l.name},
                                 {"quantity", l.quantity},
                                 {"unit_price", l.unit_price},
                                 {"total_price", l.unit_price * l.quantity},
                                 {"vendor_id", l.vendor_id}});
  }
  return items;
}

// API.md's state machine (reserving and failed are the checkout's own, never shown as orders).
bool allowed(const std::string& from, const std::string& to) {
  return (from == "reserving" && (to == "pending_payment" || to == "failed")) ||
         (from == "pending_payment" && (to == "paid" || to == "canceled")) ||
         (from == "paid" && (to == "canceled" || to == "shipped")) || (from == "shipped" && to == "delivered") ||
         (from == "delivered" && to == "return_requested") ||
         (from == "return_requested" && (to == "refunded" || to == "partially_refunded"));
}

json::array shipments_json(const protocol::order_view& d) {
  json::array out;
  for (const auto& x : d.shipments) {
    out.push_back(json::object{{"id", x.id},
                               {"carrier", x.carrier},
                               {"tracking_number", x.tracking_number},
                               {"label_url", x.label_url},
                               {"shipped_at", x.shipped_at}});
  }
  return out;
}

json::array returns_json(const protocol::order_view& d) {
  json::array out;
  for (const auto& r : d.returns) {
    json::array items;
    for (const auto& l : r.items) {
      items.push_back(json::object{{"product_id", l.product_id}, {"quantity", l.quantity}});
    }
    out.push_back(json::object{{"id", r.id},
                               {"items", std::move(items)},
                               {"reason", r.reason},
                               {"status", r.status},
                               {"refund_amount", r.refund_amount},
                               {"requested_at", r.requested_at},
                               {"received_at", r.received_at}});
  }
  return out;
}

}  // namespace

order_model::state order_model::empty(const std::string&) { return state{}; }

std::string order_model::order_number(const std::string& id, const std::string& created_at) {
  // YYMMDD from the creation date, then 10 hex digits of the id (40 bits; the unique index on
  // orders.order_number catches the astronomically rare clash).
  std::string date = created_at.size() >= 10 ? created_at.substr(2, 2) + created_at.substr(5, 2) +
                                                   created_at.substr(8, 2)
                                             : "000000";
  std::string hex;
  for (char c : id) {
    if (c != '-') {
      hex.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    if (hex.size() == 10) {
      break;
    }
  }
  return "MC-" + date + "-" + hex;
}

order_model::state order_model::decode(const json::value& v) {
  const auto& o = v.as_object();
  if (num(o, "schema") != 1) {
    throw std::invalid_argument("unknown order snapshot schema");
  }
  state s;
  auto& d = s.order;
  d.order_number = str(o, "order_number");
  d.customer_id = str(o, "customer_id");
  d.cart_id = str(o, "cart_id");
  d.status = str(o, "status");
  d.currency = str(o, "currency");
  for (const auto& l : o.at("items").as_array()) {
    const auto& lo = l.as_object();
    d.items.push_back({str(lo, "product_id"), str(lo, "sku"), str(lo, "name"), str(lo, "vendor_id"),
                       static_cast<std::int32_t>(num(lo, "quantity")), num(lo, "unit_price")});
  }
  d.subtotal = num(o, "subtotal");
  d.tax = num(o, "tax");
  d.shipping = num(o, "shipping");
  d.discount = num(o, "discount");
  d.total = num(o, "total");
  d.shipping_address = str(o, "shipping_address");
  d.billing_address = str(o, "billing_address");
  d.payment_id = str(o, "payment_id");
  d.payment_status = str(o, "payment_status");
  for (const auto& h : o.at("history").as_array()) {
    d.history.push_back({str(h.as_object(), "status"), str(h.as_object(), "at")});
  }
  d.failure_code = str(o, "failure_code");
  d.failure_detail = str(o, "failure_detail");
  d.created_at = str(o, "created_at");
  d.updated_at = str(o, "updated_at");
  s.payment_token = str(o, "payment_token");
  d.refunded = int_field_or(o, "refunded", 0);
  if (auto it = o.find("operation"); it != o.end()) {
    d.operation = str(o, "operation");
    d.operation_return_id = str(o, "operation_return_id");
  }
  if (auto it = o.find("capturing"); it != o.end() && it->value().is_bool()) {
    d.capturing = it->value().get_bool();
  }
  if (auto it = o.find("shipments"); it != o.end()) {
    for (const auto& x : it->value().as_array()) {
      const auto& so = x.as_object();
      d.shipments.push_back({str(so, "id"), str(so, "carrier"), str(so, "tracking_number"), str(so, "label_url"),
                             str(so, "shipped_at")});
    }
  }
  if (auto it = o.find("returns"); it != o.end()) {
    for (const auto& x : it->value().as_array()) {
      const auto& ro = x.as_object();
      protocol::order_return r{str(ro, "id"), {}, str(ro, "reason"), str(ro, "status"), num(ro, "refund_amount"),
                               str(ro, "requested_at"), str(ro, "received_at")};
      for (const auto& l : ro.at("items").as_array()) {
        r.items.push_back({str(l.as_object(), "product_id"), static_cast<std::int32_t>(num(l.as_object(), "quantity"))});
      }
      d.returns.push_back(std::move(r));
    }
  }
  return s;
}

json::value order_model::encode(const state& s) {
  const auto& d = s.order;
  json::array items;
  for (const auto& l : d.items) {
    items.push_back(json::object{{"product_id", l.product_id}, {"sku", l.sku},         {"name", l.name},
                                 {"vendor_id", l.vendor_id},   {"quantity", l.quantity}, {"unit_price", l.unit_price}});
  }
  json::array history;
  for (const auto& h : d.history) {
    history.push_back(json::object{{"status", h.status}, {"at", h.at}});
  }
  return json::object{{"schema", schema_version},
                      {"order_number", d.order_number},
                      {"customer_id", d.customer_id},
                      {"cart_id", d.cart_id},
                      {"status", d.status},
                      {"currency", d.currency},
                      {"items", std::move(items)},
                      {"subtotal", d.subtotal},
                      {"tax", d.tax},
                      {"shipping", d.shipping},
                      {"discount", d.discount},
                      {"total", d.total},
                      {"shipping_address", d.shipping_address},
                      {"billing_address", d.billing_address},
                      {"payment_id", d.payment_id},
                      {"payment_status", d.payment_status},
                      {"history", std::move(history)},
                      {"failure_code", d.failure_code},
                      {"failure_detail", d.failure_detail},
                      {"created_at", d.created_at},
                      {"updated_at", d.updated_at},
                      {"payment_token", s.payment_token},
                      {"refunded", d.refunded},
                      {"shipments", shipments_json(d)},
                      {"returns", returns_json(d)},
                      {"operation", d.operation},
                      {"operation_return_id", d.operation_return_id},
                      {"capturing", d.capturing}};
}

std::string order_model::step_of(const protocol::order_view& d) {
  if (d.operation == "cancel") {
    return "canceling";
  }
  if (d.operation == "receive") {
    return "receiving";
  }
  return d.status;
}

std::vector<protocol::projection_row> order_model::project(const std::string& id, const state& s,
                                                           std::int64_t version) {
  using protocol::column_type;
  const auto& d = s.order;
  const auto v = std::to_string(version);
  std::vector<protocol::projection_row> rows;
  rows.push_back({"order_sagas",
                  {{"order_id", column_type::uuid, id},
                   {"customer_id", column_type::uuid, d.customer_id},
                   {"step", column_type::text, step_of(d)},
                   {"version", column_type::bigint, v},
                   {"updated_at", column_type::timestamptz, d.updated_at}}});
  if (!customer_visible(d.status)) {
    return rows;
  }
  rows.push_back({"orders",
                  {{"id", column_type::uuid, id},
                   {"order_number", column_type::text, d.order_number},
                   {"customer_id", column_type::uuid, d.customer_id},
                   {"status", column_type::text, d.status},
                   {"subtotal", column_type::numeric, minor_to_decimal(d.subtotal)},
                   {"tax_amount", column_type::numeric, minor_to_decimal(d.tax)},
                   {"shipping_amount", column_type::numeric, minor_to_decimal(d.shipping)},
                   {"discount_amount", column_type::numeric, minor_to_decimal(d.discount)},
                   {"total_amount", column_type::numeric, minor_to_decimal(d.total)},
                   {"currency", column_type::text, d.currency},
                   {"shipping_address", column_type::jsonb, d.shipping_address.empty() ? "{}" : d.shipping_address},
                   {"billing_address", column_type::jsonb, d.billing_address.empty() ? "{}" : d.billing_address},
                   {"payment_method", column_type::jsonb, std::string(R"({"method":"card"})")},
                   {"version", column_type::bigint, v},
                   {"created_at", column_type::timestamptz, d.created_at},
                   {"updated_at", column_type::timestamptz, d.updated_at}}});
  for (std::size_t i = 0; i < d.items.size(); ++i) {
    const auto& l = d.items[i];
    rows.push_back({"order_items",
                    {{"id", column_type::uuid, line_key(id, i)},
                     {"order_id", column_type::uuid, id},
                     {"product_id", column_type::uuid, l.product_id},
                     {"product_sku", column_type::text, l.sku},
                     {"product_name", column_type::text, l.name},
                     {"quantity", column_type::integer, std::to_string(l.quantity)},
                     {"unit_price", column_type::numeric, minor_to_decimal(l.unit_price)},
                     {"total_price", column_type::numeric, minor_to_decimal(l.unit_price * l.quantity)},
                     {"version", column_type::bigint, v}}});
  }
  return rows;
}

const protocol::command_meta* order_model::meta_of(const caf::message& msg) {
  return protocol::meta_among<protocol::order_create, protocol::order_transition, protocol::order_get,
                              protocol::order_begin>(msg);
}

caf::error order_model::admit(const state& s, std::int64_t version, const caf::message& msg,
                              const protocol::command_meta& meta) {
  if (meta.source == "saga") {
    return {};
  }
  const bool reader = msg.match_elements<protocol::order_get>();
  if (reader && version > 0 && customer_visible(s.order.status) &&
      (meta.admin || (!meta.user_id.empty() && meta.user_id == s.order.customer_id))) {
    return {};
  }
  return caf::make_error(errc::not_found, "no such order");
}

protocol::order_view order_model::view(const std::string& id, const state& s, std::int64_t version) {
  auto v = s.order;
  v.id = id;
  v.version = version;
  v.payment_token = s.payment_token;
  return v;
}

caf::message order_model::current(const std::string& id, const state& s, std::int64_t version) {
  return caf::make_message(view(id, s, version));
}

namespace {

// order_begin: the start of a cancel or a return's receipt recorded before any side effect, and the
// checkout saga's gates before it authorizes and captures (a recorded cancel closes them).
void begin(protocol::entity_context<order_model::state>& ctx, const protocol::order_begin& cmd) {
  const auto& id = ctx.id();
  if (!ctx.exists()) {
    ctx.reject(errc::not_found, "no such order");
    return;
  }
  const auto& s = ctx.state();
  const auto& o = s.order;
  auto as_is = [&] { ctx.reply(order_model::current(id, s, ctx.version())); };
  auto record = [&](auto change) {
    auto next = s;
    change(next.order);
    next.order.updated_at = protocol::now_rfc3339();
    auto answer = order_model::current(id, next, ctx.version() + 1);
    ctx.commit(std::move(next), {}, std::move(answer));
  };
  if (cmd.operation == "authorize" || cmd.operation == "capture") {
    if (o.status != "pending_payment") {
      ctx.reject(errc::invalid_transition, "the order is " + o.status);
    } else if (o.capturing) {
      as_is();  // the capture is under way (a resumed saga repeats it by key): a cancel waits for it
    } else if (o.operation == "cancel") {
      ctx.reject(errc::invalid_transition, "the order is being canceled");
    } else if (cmd.operation == "authorize") {
      as_is();
    } else {
      record([](protocol::order_view& d) { d.capturing = true; });
    }
    return;
  }
  if (cmd.operation == "cancel") {
    if (o.status == "canceled" || o.operation == "cancel") {
      as_is();
    } else if (o.status != "pending_payment" && o.status != "paid") {
      ctx.reject(errc::invalid_transition, "an order " + o.status + " cannot be canceled");
    } else {
      record([](protocol::order_view& d) { d.operation = "cancel"; });
    }
    return;
  }
  if (cmd.operation == "receive") {
    const protocol::order_return* ret = nullptr;
    for (const auto& r : o.returns) {
      if (r.id == cmd.return_id) {
        ret = &r;
      }
    }
    if (!ret) {
      ctx.reject(errc::not_found, "no such return");
    } else if (ret->status == "received" || (o.operation == "receive" && o.operation_return_id == cmd.return_id)) {
      as_is();
    } else if (o.status != "return_requested" || !o.operation.empty()) {
      ctx.reject(errc::invalid_transition, "the order is " + o.status);
    } else {
      record([&cmd](protocol::order_view& d) {
        d.operation = "receive";
        d.operation_return_id = cmd.return_id;
      });
    }
    return;
  }
  ctx.reject(errc::invalid, "unknown operation " + cmd.operation);
}

}  // namespace

bool order_model::handle(protocol::entity_context<state>& ctx, const caf::message& msg) {
  const auto& id = ctx.id();
  if (msg.match_elements<protocol::order_get>()) {
    if (!ctx.exists()) {
      ctx.reject(errc::not_found, "no such order");
    } else {
      ctx.reply(current(id, ctx.state(), ctx.version()));
    }
    return true;
  }
  if (msg.match_elements<protocol::order_create>()) {
    const auto& cmd = msg.get_as<protocol::order_create>(0);
    if (ctx.exists()) {
      ctx.reply(current(id, ctx.state(), ctx.version()));  // the saga driven again
      return true;
    }
    if (cmd.customer_id.empty() || cmd.items.empty() || cmd.currency.size() != 3 || cmd.total < 0) {
      ctx.reject(errc::invalid, "an order needs a customer, lines and a currency");
      return true;
    }
    state next;
    auto& d = next.order;
    d.customer_id = cmd.customer_id;
    d.cart_id = cmd.cart_id;
    d.status = "reserving";
    d.currency = cmd.currency;
    d.items = cmd.items;
    d.subtotal = cmd.subtotal;
    d.tax = cmd.tax;
    d.shipping = cmd.shipping;
    d.discount = cmd.discount;
    d.total = cmd.total;
    d.shipping_address = cmd.shipping_address;
    d.billing_address = cmd.billing_address;
    d.created_at = protocol::now_rfc3339();
    d.updated_at = d.created_at;
    d.order_number = order_number(id, d.created_at);
    d.history.push_back({"reserving", d.created_at});
    next.payment_token = cmd.payment_token;
    auto answer = caf::make_message(view(id, next, ctx.version() + 1));
    ctx.commit(std::move(next),
               {event(cmd.meta, "OrderCreated",
                      {{"order_id", id}, {"order_number", d.order_number}, {"customer_id", d.customer_id}})},
               std::move(answer));
    return true;
  }
  if (msg.match_elements<protocol::order_begin>()) {
    begin(ctx, msg.get_as<protocol::order_begin>(0));
    return true;
  }
  if (!msg.match_elements<protocol::order_transition>()) {
    return false;
  }
  const auto& cmd = msg.get_as<protocol::order_transition>(0);
  if (!ctx.exists()) {
    ctx.reject(errc::not_found, "no such order");
    return true;
  }
  const auto& s = ctx.state();
  if (s.order.status == cmd.to) {
    ctx.reply(current(id, s, ctx.version()));
    return true;
  }
  // A return received (refunded or partially refunded) already: a repeat of that receipt.
  if ((cmd.to == "refunded" || cmd.to == "partially_refunded") && !cmd.return_request.id.empty()) {
    for (const auto& r : s.order.returns) {
      if (r.id == cmd.return_request.id && r.status == "received") {
        ctx.reply(current(id, s, ctx.version()));
        return true;
      }
    }
  }
  if (cmd.to == "return_requested" && (cmd.return_request.id.empty() || cmd.return_request.items.empty())) {
    ctx.reject(errc::invalid, "a return names its lines");
    return true;
  }
  if (!allowed(s.order.status, cmd.to)) {
    ctx.reject(errc::invalid_transition, "an order cannot go from " + s.order.status + " to " + cmd.to);
    return true;
  }
  if (cmd.to == "paid" && s.order.operation == "cancel" && !s.order.capturing) {
    ctx.reject(errc::invalid_transition, "the order is being canceled");
    return true;
  }
  state next = s;
  auto& d = next.order;
  const auto from = d.status;
  d.status = cmd.to;
  d.updated_at = protocol::now_rfc3339();
  d.history.push_back({cmd.to, d.updated_at});
  if (!cmd.payment_id.empty()) {
    d.payment_id = cmd.payment_id;
  }
  if (!cmd.payment_status.empty()) {
    d.payment_status = cmd.payment_status;
  }
  if (!cmd.failure_code.empty()) {
    d.failure_code = cmd.failure_code;
    d.failure_detail = cmd.failure_detail;
  }
  if (cmd.to == "paid" || cmd.to == "canceled" || cmd.to == "failed") {
    next.payment_token.clear();  // no further provider calls need it
  }
  if (cmd.to == "canceled" || cmd.to == "failed" || cmd.to == "refunded" || cmd.to == "partially_refunded") {
    d.operation.clear();  // the operation under way ended here
    d.operation_return_id.clear();
  }
  if (cmd.to == "shipped") {
    auto shipment = cmd.shipment;
    shipment.shipped_at = d.updated_at;
    d.shipments.push_back(std::move(shipment));
  }
  if (cmd.to == "return_requested") {
    auto r = cmd.return_request;
    r.status = "requested";
    r.requested_at = d.updated_at;
    r.received_at.clear();
    r.refund_amount = 0;
    d.returns.push_back(std::move(r));
  }
  if (cmd.to == "refunded" || cmd.to == "partially_refunded") {
    for (auto& r : d.returns) {
      if (r.id == cmd.return_request.id) {
        r.status = "received";
        r.received_at = d.updated_at;
        r.refund_amount = cmd.refund_amount;
      }
    }
  }
  d.refunded += cmd.refund_amount;
  std::vector<protocol::domain_event> events;
  events.push_back(event(cmd.meta, "OrderStatusChanged",
                         {{"order_id", id},
                          {"order_number", d.order_number},
                          {"customer_id", d.customer_id},
                          {"from", from},
                          {"to", d.status},
                          {"failure_code", d.failure_code}}));
  if (cmd.to == "shipped") {
    events.push_back(event(cmd.meta, "OrderShipped",
                           {{"order_id", id},
                            {"order_number", d.order_number},
                            {"customer_id", d.customer_id},
                            {"shipment",
                             {{"carrier", cmd.shipment.carrier},
                              {"tracking_number", cmd.shipment.tracking_number},
                              {"label_url", cmd.shipment.label_url}}}}));
  }
  if (cmd.to == "paid") {
    events.push_back(event(cmd.meta, "OrderPlaced",
                           {{"order_id", id},
                            {"order_number", d.order_number},
                            {"customer_id", d.customer_id},
                            {"currency", d.currency},
                            {"total_amount", d.total},
                            {"items", items_json(d)},
                            {"payment_id", d.payment_id},
                            {"cart_id", d.cart_id},
                            {"payment_method", "card"},
                            {"shipping_address", object_or_empty(d.shipping_address)}}));
  }
  auto answer = caf::make_message(view(id, next, ctx.version() + 1));
  ctx.commit(std::move(next), std::move(events), std::move(answer));
  return true;
}

}  // namespace mercato::actors
