#include "actors/cart/cart_model.hpp"

#include <chrono>
#include <ctime>
#include <stdexcept>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include "actors/protocol/type_ids.hpp"

namespace mercato::actors {
namespace {

using protocol::errc;

std::string now_rfc3339() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto secs = time_point_cast<seconds>(now);
  const auto micros = duration_cast<microseconds>(now - secs).count();
  const std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

std::string str(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    return {};
  }
  return std::string(it->value().as_string());
}

std::int64_t num(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) {
    throw std::invalid_argument(std::string("cart snapshot lacks ") + key);
  }
  return it->value().to_number<std::int64_t>();
}

std::int64_t subtotal(const cart_model::state& s) {
  std::int64_t sum = 0;
  for (const auto& l : s.items) {
    sum += l.unit_price * l.quantity;
  }
  return sum;
}

protocol::domain_event event(const protocol::command_meta& meta, const std::string& cart_id, const char* type,
                                boost::json::object data) {
  data["cart_id"] = cart_id;
  boost::json::object metadata{{"correlation_id", meta.request_id},
                               {"causation_id", meta.request_id},
                               {"trace_id", meta.trace_id},
                               {"user_id", meta.user_id},
                               {"source", meta.source}};
  return protocol::domain_event{{}, type, "1", boost::json::serialize(data), boost::json::serialize(metadata)};
}

protocol::cart_line* find_line(cart_model::state& s, const std::string& product_id) {
  for (auto& l : s.items) {
    if (l.product_id == product_id) {
      return &l;
    }
  }
  return nullptr;
}

// The answer to a change: the cart as it is once the change is committed.
caf::message view_reply(protocol::entity_context<cart_model::state>& ctx, const cart_model::state& next) {
  return caf::make_message(cart_model::view(ctx.id(), next, ctx.version() + 1));
}

}  // namespace

cart_model::state cart_model::empty(const std::string&) { return state{}; }

cart_model::state cart_model::decode(const boost::json::value& v) {
  const auto& o = v.as_object();
  const auto schema = num(o, "schema");
  state s;
  if (schema == 1) {
    // v1 (first release): {"schema":1,"owner":..., "lines":[{"product","sku","name","qty","price"}]}
    s.owner_user_id = str(o, "owner");
    for (const auto& l : o.at("lines").as_array()) {
      const auto& lo = l.as_object();
      s.items.push_back({str(lo, "product"), str(lo, "sku"), str(lo, "name"),
                         static_cast<std::int32_t>(num(lo, "qty")), num(lo, "price")});
    }
    return s;
  }
  if (schema != 2) {
    throw std::invalid_argument("unknown cart snapshot schema " + std::to_string(schema));
  }
  s.owner_user_id = str(o, "owner_user_id");
  s.token_hash = str(o, "token_hash");
  s.currency = str(o, "currency");
  s.status = str(o, "status");
  s.updated_at = str(o, "updated_at");
  for (const auto& l : o.at("items").as_array()) {
    const auto& lo = l.as_object();
    s.items.push_back({str(lo, "product_id"), str(lo, "sku"), str(lo, "name"),
                       static_cast<std::int32_t>(num(lo, "quantity")), num(lo, "unit_price")});
  }
  return s;
}

boost::json::value cart_model::encode(const state& s) {
  boost::json::array items;
  items.reserve(s.items.size());
  for (const auto& l : s.items) {
    items.push_back(boost::json::object{{"product_id", l.product_id},
                                        {"sku", l.sku},
                                        {"name", l.name},
                                        {"quantity", l.quantity},
                                        {"unit_price", l.unit_price}});
  }
  return boost::json::object{{"schema", schema_version}, {"owner_user_id", s.owner_user_id},
                             {"token_hash", s.token_hash}, {"currency", s.currency},
                             {"status", s.status},         {"items", std::move(items)},
                             {"updated_at", s.updated_at}};
}

std::vector<protocol::projection_row> cart_model::project(const std::string& id, const state& s,
                                                          std::int64_t version) {
  using protocol::column_type;
  std::int64_t count = 0;
  for (const auto& l : s.items) {
    count += l.quantity;
  }
  auto opt = [](const std::string& v) { return v.empty() ? std::nullopt : std::optional<std::string>(v); };
  return {protocol::projection_row{"carts",
                                   {{"id", column_type::text, id},
                                    {"owner_user_id", column_type::uuid, opt(s.owner_user_id)},
                                    {"status", column_type::text, s.status},
                                    {"item_count", column_type::integer, std::to_string(count)},
                                    {"subtotal", column_type::bigint, std::to_string(subtotal(s))},
                                    {"currency", column_type::text, s.currency},
                                    {"version", column_type::bigint, std::to_string(version)},
                                    {"updated_at", column_type::timestamptz,
                                     s.updated_at.empty() ? now_rfc3339() : s.updated_at}}}};
}

const protocol::command_meta* cart_model::meta_of(const caf::message& msg) {
  if (msg.match_elements<protocol::cart_add_item>()) {
    return &msg.get_as<protocol::cart_add_item>(0).meta;
  }
  if (msg.match_elements<protocol::cart_set_quantity>()) {
    return &msg.get_as<protocol::cart_set_quantity>(0).meta;
  }
  if (msg.match_elements<protocol::cart_remove_item>()) {
    return &msg.get_as<protocol::cart_remove_item>(0).meta;
  }
  if (msg.match_elements<protocol::cart_open>()) {
    return &msg.get_as<protocol::cart_open>(0).meta;
  }
  if (msg.match_elements<protocol::cart_get>()) {
    return &msg.get_as<protocol::cart_get>(0).meta;
  }
  return nullptr;
}

caf::error cart_model::admit(const state& s, std::int64_t version, const caf::message& msg,
                              const protocol::command_meta& meta) {
  if (msg.match_elements<protocol::cart_open>()) {
    return {};  // opening decides the owner
  }
  const bool allowed =
      version > 0 && (s.owner_user_id.empty()
                          ? !s.token_hash.empty() && meta.credential_hash == s.token_hash
                          : meta.user_id == s.owner_user_id || (meta.admin && msg.match_elements<protocol::cart_get>()));
  if (!allowed) {
    return caf::make_error(errc::not_found, "no such cart");
  }
  return {};
}

caf::message cart_model::current(const std::string& id, const state& s, std::int64_t version) {
  return caf::make_message(view(id, s, version));
}

protocol::cart_view cart_model::view(const std::string& id, const state& s, std::int64_t version) {
  return protocol::cart_view{id, version, s.owner_user_id, s.currency, s.items, subtotal(s), s.status, s.updated_at};
}

bool cart_model::handle(protocol::entity_context<state>& ctx, const caf::message& msg) {
  const auto& id = ctx.id();
  if (msg.match_elements<protocol::cart_get>()) {
    if (!ctx.exists()) {
      ctx.reject(errc::not_found, "no cart " + id);
    } else {
      ctx.reply(caf::make_message(view(id, ctx.state(), ctx.version())));
    }
    return true;
  }
  if (msg.match_elements<protocol::cart_open>()) {
    const auto& cmd = msg.get_as<protocol::cart_open>(0);
    if (ctx.exists()) {
      ctx.reject(errc::conflict, "cart " + id + " exists already");
      return true;
    }
    if (cmd.currency.size() != 3) {
      ctx.reject(errc::invalid, "currency must be a three-letter code");
      return true;
    }
    state next;
    next.owner_user_id = cmd.owner_user_id;
    next.token_hash = cmd.token_hash;
    next.currency = cmd.currency;
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartOpened", {{"owner_user_id", cmd.owner_user_id}})},
               std::move(answer));
    return true;
  }
  const bool cart_command = msg.match_elements<protocol::cart_add_item>() ||
                            msg.match_elements<protocol::cart_set_quantity>() ||
                            msg.match_elements<protocol::cart_remove_item>();
  if (!cart_command) {
    return false;
  }
  // Every remaining command changes an existing cart.
  if (!ctx.exists()) {
    ctx.reject(errc::not_found, "no cart " + id);
    return true;
  }
  if (msg.match_elements<protocol::cart_add_item>()) {
    const auto& cmd = msg.get_as<protocol::cart_add_item>(0);
    const auto& line = cmd.line;
    if (line.product_id.empty() || line.quantity < 1 || line.quantity > max_quantity || line.unit_price <= 0) {
      ctx.reject(errc::invalid, "a line needs a product, a quantity from 1 to 999 and a positive price");
      return true;
    }
    state next = ctx.state();
    const auto* held = find_line(next, line.product_id);
    if (cmd.available >= 0 && (held ? held->quantity : 0) + line.quantity > cmd.available) {
      ctx.reject(errc::insufficient_stock, "only " + std::to_string(cmd.available) + " available of product " +
                                               line.product_id);
      return true;
    }
    if (auto* existing = find_line(next, line.product_id)) {
      if (existing->quantity + line.quantity > max_quantity) {
        ctx.reject(errc::invalid, "a line holds at most 999 units");
        return true;
      }
      existing->quantity += line.quantity;
      existing->unit_price = line.unit_price;
      existing->name = line.name;
      existing->sku = line.sku;
    } else {
      if (static_cast<int>(next.items.size()) >= max_lines) {
        ctx.reject(errc::invalid, "a cart holds at most 100 lines");
        return true;
      }
      next.items.push_back(line);
    }
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next),
               {event(cmd.meta, id, "CartItemAdded",
                      {{"product_id", line.product_id}, {"quantity", line.quantity}, {"unit_price", line.unit_price}})},
               std::move(answer));
    return true;
  }
  if (msg.match_elements<protocol::cart_set_quantity>()) {
    const auto& cmd = msg.get_as<protocol::cart_set_quantity>(0);
    if (cmd.quantity < 0 || cmd.quantity > max_quantity) {
      ctx.reject(errc::invalid, "quantity must be from 0 to 999");
      return true;
    }
    state next = ctx.state();
    auto* l = find_line(next, cmd.product_id);
    if (!l) {
      ctx.reject(errc::not_found, "the cart has no line for product " + cmd.product_id);
      return true;
    }
    if (cmd.available >= 0 && cmd.quantity > cmd.available) {
      ctx.reject(errc::insufficient_stock, "only " + std::to_string(cmd.available) + " available of product " +
                                               cmd.product_id);
      return true;
    }
    if (cmd.quantity == 0) {
      next.items.erase(next.items.begin() + (l - next.items.data()));
    } else {
      l->quantity = cmd.quantity;
    }
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next),
               {event(cmd.meta, id, cmd.quantity == 0 ? "CartItemRemoved" : "CartItemQuantityChanged",
                      {{"product_id", cmd.product_id}, {"quantity", cmd.quantity}})},
               std::move(answer));
    return true;
  }
  if (msg.match_elements<protocol::cart_remove_item>()) {
    const auto& cmd = msg.get_as<protocol::cart_remove_item>(0);
    state next = ctx.state();
    auto* l = find_line(next, cmd.product_id);
    if (!l) {
      ctx.reject(errc::not_found, "the cart has no line for product " + cmd.product_id);
      return true;
    }
    next.items.erase(next.items.begin() + (l - next.items.data()));
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartItemRemoved", {{"product_id", cmd.product_id}})},
               std::move(answer));
    return true;
  }
  return false;
}

}  // namespace mercato::actors
