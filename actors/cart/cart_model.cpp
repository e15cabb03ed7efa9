#include "actors/cart/cart_model.hpp"

#include <chrono>
#include <algorithm>
#include <ctime>
#include <stdexcept>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include "actors/domain_event.hpp"
#include "actors/snapshot_fields.hpp"
#include "actors/protocol/clock.hpp"
#include "actors/protocol/json_writer.hpp"
#include "actors/protocol/type_ids.hpp"

namespace mercato::actors {
namespace {

using protocol::errc;

using protocol::now_rfc3339;
const auto& str = text_field;
const auto& num = int_field;



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
  return make_event(meta, type, data);
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

bool still_open_guest(const cart_model::state& s) { return s.status == "open" && s.owner_user_id.empty(); }

// The claim of a guest cart (API.md POST /carts/{id}/claim), in steps the edge drives; each one is
// idempotent, so a claim retried after a crash at any point finishes without losing or doubling a line.
bool handle_claim_steps(protocol::entity_context<cart_model::state>& ctx, const caf::message& msg) {
  const auto& id = ctx.id();
  const auto& s = ctx.state();
  if (msg.match_elements<protocol::cart_claim>()) {
    const auto& cmd = msg.get_as<protocol::cart_claim>(0);
    if (!s.owner_user_id.empty() && s.owner_user_id == cmd.owner_user_id) {
      ctx.reply(cart_model::current(id, s, ctx.version()));  // claimed already
      return true;
    }
    if (cmd.owner_user_id.empty() || !still_open_guest(s)) {
      ctx.reject(errc::conflict, "only an open guest cart can be claimed");
      return true;
    }
    auto next = s;
    next.owner_user_id = cmd.owner_user_id;
    next.token_hash.clear();  // the token no longer opens it
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartClaimed", {{"owner_user_id", cmd.owner_user_id}})},
               std::move(answer));
    return true;
  }
  if (msg.match_elements<protocol::cart_hand_over>()) {
    const auto& cmd = msg.get_as<protocol::cart_hand_over>(0);
    if (s.status == "merging" || s.status == "merged") {
      ctx.reply(cart_model::current(id, s, ctx.version()));  // merged_into says where it goes
      return true;
    }
    if (!still_open_guest(s) || cmd.into_cart_id.empty() || cmd.into_cart_id == id) {
      ctx.reject(errc::conflict, "only an open guest cart can be merged into another cart");
      return true;
    }
    auto next = s;
    next.status = "merging";
    next.merged_into = cmd.into_cart_id;
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartHandedOver", {{"into_cart_id", cmd.into_cart_id}})},
               std::move(answer));
    return true;
  }
  if (msg.match_elements<protocol::cart_close_merged>()) {
    const auto& cmd = msg.get_as<protocol::cart_close_merged>(0);
    if (s.status == "merged") {
      ctx.reply(cart_model::current(id, s, ctx.version()));
      return true;
    }
    if (s.status != "merging") {
      ctx.reject(errc::conflict, "the cart is not being merged");
      return true;
    }
    auto next = s;
    next.status = "merged";
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartMerged", {{"into_cart_id", s.merged_into}})},
               std::move(answer));
    return true;
  }
  if (!msg.match_elements<protocol::cart_merge>()) {
    return false;
  }
  const auto& cmd = msg.get_as<protocol::cart_merge>(0);
  if (std::find(s.merged_from.begin(), s.merged_from.end(), cmd.source_cart_id) != s.merged_from.end()) {
    ctx.reply(cart_model::current(id, s, ctx.version()));  // merged once already
    return true;
  }
  if (s.status != "open") {
    ctx.reject(errc::conflict, "the cart is " + s.status + " and can no longer be changed");
    return true;
  }
  if (cmd.source_cart_id.empty() || cmd.source_cart_id == id || cmd.lines.size() != cmd.available.size()) {
    ctx.reject(errc::invalid, "a merge names its source cart and the availability of each line");
    return true;
  }
  auto next = s;
  std::vector<protocol::cart_adjustment> adjustments;
  for (std::size_t i = 0; i < cmd.lines.size(); ++i) {
    const auto& in = cmd.lines[i];
    if (in.quantity <= 0) {
      continue;
    }
    auto* held = find_line(next, in.product_id);
    const std::int32_t before = held ? held->quantity : 0;
    const std::int32_t wanted = std::min<std::int32_t>(before + in.quantity, 2 * cart_model::max_quantity);
    if (cmd.available[i] < 0 || in.unit_price <= 0) {
      adjustments.push_back({in.product_id, wanted, before, "unavailable"});
      continue;
    }
    const std::int32_t cap = std::min<std::int32_t>(cmd.available[i], cart_model::max_quantity);
    // Never below what the user's cart held already; never above what is available or a line's limit.
    const std::int32_t granted = std::max(before, std::min(wanted, cap));
    if (granted < wanted) {
      adjustments.push_back({in.product_id, wanted, granted,
                             cmd.available[i] < wanted ? "insufficient_stock" : "line_limit"});
    }
    if (held) {
      held->quantity = granted;
      held->previous_unit_price = held->unit_price != in.unit_price ? held->unit_price : 0;
      held->unit_price = in.unit_price;
      held->name = in.name;
      held->sku = in.sku;
    } else if (granted > 0) {
      if (static_cast<int>(next.items.size()) >= cart_model::max_lines) {
        if (!adjustments.empty() && adjustments.back().product_id == in.product_id) {
          adjustments.back().quantity = 0;  // capped first, then no room for the line at all
          adjustments.back().reason = "cart_full";
        } else {
          adjustments.push_back({in.product_id, wanted, 0, "cart_full"});
        }
        continue;
      }
      auto line = in;
      line.quantity = granted;
      line.previous_unit_price = 0;
      next.items.push_back(std::move(line));
    }
  }
  next.merged_from.push_back(cmd.source_cart_id);
  if (next.merged_from.size() > cart_model::merged_from_kept) {
    next.merged_from.erase(next.merged_from.begin());
  }
  next.updated_at = now_rfc3339();
  auto answer = cart_model::view(id, next, ctx.version() + 1);
  answer.adjustments = adjustments;
  boost::json::array adjusted;
  for (const auto& a : adjustments) {
    adjusted.push_back(boost::json::object{{"product_id", a.product_id},
                                           {"requested", a.requested},
                                           {"quantity", a.quantity},
                                           {"reason", a.reason}});
  }
  ctx.commit(std::move(next),
             {event(cmd.meta, id, "CartsMerged",
                    {{"source_cart_id", cmd.source_cart_id}, {"adjustments", std::move(adjusted)}})},
             caf::make_message(std::move(answer)));
  return true;
}

}  // namespace

cart_model::state cart_model::empty(const std::string&) { return state{}; }

namespace {

// A stored line holds what the commands allow: a row read back from the database is input too, and the
// totals multiply these (within them no sum can overflow: 1,000 lines x 999 x 10^10 < 2^63).
constexpr std::int64_t max_stored_unit_price = 9'999'999'999;  // DECIMAL(10,2) in minor units
constexpr std::size_t max_stored_lines = 10 * cart_model::max_lines;

std::int64_t bounded(std::int64_t value, std::int64_t lo, std::int64_t hi, const char* what) {
  if (value < lo || value > hi) {
    throw std::invalid_argument(std::string("the snapshot's ") + what + " is out of range");
  }
  return value;
}

protocol::cart_line checked(protocol::cart_line line) {
  bounded(line.quantity, 1, cart_model::max_quantity, "line quantity");
  bounded(line.unit_price, 1, max_stored_unit_price, "line unit price");
  bounded(line.previous_unit_price, 0, max_stored_unit_price, "line previous unit price");
  return line;
}

}  // namespace

cart_model::state cart_model::decode(const boost::json::value& v) {
  const auto& o = v.as_object();
  const auto schema = num(o, "schema");
  state s;
  if (schema == 1) {
    // v1 (first release): {"schema":1,"owner":..., "lines":[{"product","sku","name","qty","price"}]}
    s.owner_user_id = str(o, "owner");
    for (const auto& l : o.at("lines").as_array()) {
      const auto& lo = l.as_object();
      s.items.push_back(checked({str(lo, "product"), str(lo, "sku"), str(lo, "name"),
                                 static_cast<std::int32_t>(bounded(num(lo, "qty"), 1, max_quantity, "line quantity")),
                                 num(lo, "price")}));
      bounded(static_cast<std::int64_t>(s.items.size()), 0, max_stored_lines, "number of lines");
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
  s.merged_into = str(o, "merged_into");
  s.last_order_id = str(o, "last_order_id");
  if (auto it = o.find("merged_from"); it != o.end()) {
    for (const auto& m : it->value().as_array()) {
      s.merged_from.emplace_back(m.as_string());
    }
  }
  for (const auto& l : o.at("items").as_array()) {
    const auto& lo = l.as_object();
    protocol::cart_line line{str(lo, "product_id"), str(lo, "sku"), str(lo, "name"),
                             static_cast<std::int32_t>(bounded(num(lo, "quantity"), 1, max_quantity, "line quantity")),
                             num(lo, "unit_price"), 0};
    if (lo.contains("previous_unit_price")) {
      line.previous_unit_price = num(lo, "previous_unit_price");
    }
    s.items.push_back(checked(std::move(line)));
    bounded(static_cast<std::int64_t>(s.items.size()), 0, max_stored_lines, "number of lines");
  }
  return s;
}

std::string cart_model::encode_text(const state& s) {
  std::string out;
  out.reserve(256 + 192 * s.items.size());
  protocol::json_writer w(out);
  w.begin_object()
      .member("schema", schema_version)
      .member("owner_user_id", s.owner_user_id)
      .member("token_hash", s.token_hash)
      .member("currency", s.currency)
      .member("status", s.status);
  w.key("items").begin_array();
  for (const auto& l : s.items) {
    w.begin_object()
        .member("product_id", l.product_id)
        .member("sku", l.sku)
        .member("name", l.name)
        .member("quantity", l.quantity)
        .member("unit_price", l.unit_price);
    if (l.previous_unit_price != 0) {
      w.member("previous_unit_price", l.previous_unit_price);
    }
    w.end_object();
  }
  w.end_array().member("updated_at", s.updated_at);
  if (!s.merged_into.empty()) {
    w.member("merged_into", s.merged_into);
  }
  if (!s.last_order_id.empty()) {
    w.member("last_order_id", s.last_order_id);
  }
  if (!s.merged_from.empty()) {
    w.key("merged_from").begin_array();
    for (const auto& m : s.merged_from) {
      w.value(m);
    }
    w.end_array();
  }
  w.end_object();
  return out;
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
  return protocol::meta_among<protocol::cart_add_item, protocol::cart_set_quantity, protocol::cart_remove_item,
                    protocol::cart_open, protocol::cart_get, protocol::cart_reprice, protocol::cart_claim,
                    protocol::cart_hand_over, protocol::cart_merge, protocol::cart_close_merged,
                    protocol::cart_checked_out>(msg);
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
  return protocol::cart_view{id,           version,    s.owner_user_id, s.currency,    s.items,
                             subtotal(s), s.status,   s.updated_at,    s.merged_into, {}};
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
  const bool cart_command =
      msg.match_elements<protocol::cart_add_item>() || msg.match_elements<protocol::cart_set_quantity>() ||
      msg.match_elements<protocol::cart_remove_item>() || msg.match_elements<protocol::cart_reprice>() ||
      msg.match_elements<protocol::cart_claim>() || msg.match_elements<protocol::cart_hand_over>() ||
      msg.match_elements<protocol::cart_merge>() || msg.match_elements<protocol::cart_close_merged>() ||
      msg.match_elements<protocol::cart_checked_out>();
  if (!cart_command) {
    return false;
  }
  // Every remaining command changes an existing cart.
  if (!ctx.exists()) {
    ctx.reject(errc::not_found, "no cart " + id);
    return true;
  }
  if (handle_claim_steps(ctx, msg)) {
    return true;
  }
  if (msg.match_elements<protocol::cart_checked_out>()) {
    const auto& cmd = msg.get_as<protocol::cart_checked_out>(0);
    if (cmd.order_id.empty() || ctx.state().last_order_id == cmd.order_id) {
      ctx.reply(cart_model::current(id, ctx.state(), ctx.version()));
      return true;
    }
    state next = ctx.state();
    for (const auto& o : cmd.ordered) {
      if (auto* l = find_line(next, o.product_id)) {
        l->quantity -= o.quantity;
        if (l->quantity <= 0) {
          next.items.erase(next.items.begin() + (l - next.items.data()));
        }
      }
    }
    next.last_order_id = cmd.order_id;
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartCheckedOut", {{"order_id", cmd.order_id}})},
               std::move(answer));
    return true;
  }
  // The shopper's own changes need an open cart.
  if (ctx.state().status != "open") {
    if (msg.match_elements<protocol::cart_reprice>()) {
      ctx.reply(cart_model::current(id, ctx.state(), ctx.version()));  // a closed cart keeps its prices
    } else {
      ctx.reject(errc::conflict, "the cart is " + ctx.state().status + " and can no longer be changed");
    }
    return true;
  }
  if (msg.match_elements<protocol::cart_reprice>()) {
    const auto& cmd = msg.get_as<protocol::cart_reprice>(0);
    state next = ctx.state();
    boost::json::array changes;
    for (const auto& p : cmd.prices) {
      auto* l = find_line(next, p.product_id);
      if (!l || p.unit_price <= 0 || l->unit_price == p.unit_price) {
        continue;
      }
      changes.push_back(boost::json::object{
          {"product_id", p.product_id}, {"old_unit_price", l->unit_price}, {"new_unit_price", p.unit_price}});
      l->previous_unit_price = l->unit_price;
      l->unit_price = p.unit_price;
      if (!p.name.empty()) {
        l->name = p.name;
      }
      if (!p.sku.empty()) {
        l->sku = p.sku;
      }
    }
    if (changes.empty()) {
      ctx.reply(cart_model::current(id, ctx.state(), ctx.version()));
      return true;
    }
    next.updated_at = now_rfc3339();
    auto answer = view_reply(ctx, next);
    ctx.commit(std::move(next), {event(cmd.meta, id, "CartPricesRefreshed", {{"changes", std::move(changes)}})},
               std::move(answer));
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
      // Adding at a price other than the line's changes the whole line's price: the line says so.
      existing->previous_unit_price = existing->unit_price != line.unit_price ? existing->unit_price : 0;
      existing->unit_price = line.unit_price;
      existing->name = line.name;
      existing->sku = line.sku;
    } else {
      if (static_cast<int>(next.items.size()) >= max_lines) {
        ctx.reject(errc::invalid, "a cart holds at most 100 lines");
        return true;
      }
      next.items.push_back(line);
      next.items.back().previous_unit_price = 0;
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
      l->previous_unit_price = 0;  // the shopper changed the line at the price it shows
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
