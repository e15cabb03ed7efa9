#include "actors/payment/payment_model.hpp"

#include <algorithm>
#include <stdexcept>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
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




bool allowed(const std::string& from, const std::string& to) {
  return (from == "pending" && (to == "authorized" || to == "failed" || to == "voided")) ||
         (from == "authorized" && (to == "captured" || to == "voided" || to == "failed"));
}

const char* event_type_of(const std::string& outcome) {
  if (outcome == "authorized") return "PaymentAuthorized";
  if (outcome == "captured") return "PaymentProcessed";
  if (outcome == "voided") return "PaymentVoided";
  return "PaymentFailed";
}

json::array pending_json(const protocol::payment_view& p) {
  json::array out;
  for (const auto& r : p.pending_refunds) {
    out.push_back(json::object{{"refund_id", r.refund_id},
                               {"amount", r.amount},
                               {"reason", r.reason},
                               {"order_number", r.order_number},
                               {"started_at", r.started_at}});
  }
  return out;
}

// What can still be refunded: captured, less refunded, less what is pending (but `except`).
std::int64_t refundable(const protocol::payment_view& p, const std::string& except) {
  auto left = p.amount - p.refunded_amount;
  for (const auto& r : p.pending_refunds) {
    if (r.refund_id != except) {
      left -= r.amount;
    }
  }
  return left;
}

}  // namespace

std::int64_t payment_model::refundable(const protocol::payment_view& p) { return actors::refundable(p, {}); }

std::string payment_model::id_for_order(const std::string& order_id) {
  std::string id = order_id;
  static const char* hex = "0123456789abcdef";
  for (std::size_t i = 0; i < 8 && i < id.size(); ++i) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(id[i])));
    const int v = c >= 'a' ? c - 'a' + 10 : c - '0';
    id[i] = hex[15 - (v & 0xF)];
  }
  return id;
}

std::string payment_model::provider_key(const std::string& payment_id, const std::string& operation) {
  return "mercato:" + payment_id + ":" + operation;
}

payment_model::state payment_model::empty(const std::string&) { return state{}; }

payment_model::state payment_model::decode(const json::value& v) {
  const auto& o = v.as_object();
  if (num(o, "schema") != 1) {
    throw std::invalid_argument("unknown payment snapshot schema");
  }
  state s;
  auto& p = s.payment;
  p.order_id = str(o, "order_id");
  p.customer_id = str(o, "customer_id");
  p.status = str(o, "status");
  p.amount = num(o, "amount");
  p.refunded_amount = num(o, "refunded_amount");
  p.currency = str(o, "currency");
  p.provider = str(o, "provider");
  p.provider_reference = str(o, "provider_reference");
  p.token = str(o, "token");
  p.failure_code = str(o, "failure_code");
  p.created_at = str(o, "created_at");
  p.updated_at = str(o, "updated_at");
  if (auto it = o.find("refund_ids"); it != o.end()) {
    for (const auto& r : it->value().as_array()) {
      p.refund_ids.emplace_back(r.as_string());
    }
  }
  if (auto it = o.find("pending_refunds"); it != o.end()) {
    for (const auto& r : it->value().as_array()) {
      const auto& ro = r.as_object();
      p.pending_refunds.push_back(
          {str(ro, "refund_id"), num(ro, "amount"), str(ro, "reason"), str(ro, "order_number"), str(ro, "started_at")});
    }
  }
  return s;
}

json::value payment_model::encode(const state& s) {
  const auto& p = s.payment;
  return json::object{{"schema", schema_version},
                      {"order_id", p.order_id},
                      {"customer_id", p.customer_id},
                      {"status", p.status},
                      {"amount", p.amount},
                      {"refunded_amount", p.refunded_amount},
                      {"currency", p.currency},
                      {"provider", p.provider},
                      {"provider_reference", p.provider_reference},
                      {"token", p.token},
                      {"failure_code", p.failure_code},
                      {"created_at", p.created_at},
                      {"updated_at", p.updated_at},
                      {"refund_ids", json::array(p.refund_ids.begin(), p.refund_ids.end())},
                      {"pending_refunds", pending_json(p)}};
}

std::vector<protocol::projection_row> payment_model::project(const std::string& id, const state& s,
                                                             std::int64_t version) {
  using protocol::column_type;
  const auto& p = s.payment;
  auto opt = [](const std::string& v) { return v.empty() ? std::nullopt : std::optional<std::string>(v); };
  return {{"payments",
           {{"id", column_type::uuid, id},
            {"order_id", column_type::uuid, p.order_id},
            {"customer_id", column_type::uuid, p.customer_id},
            {"status", column_type::text, p.status},
            {"amount", column_type::numeric, minor_to_decimal(p.amount)},
            {"refunded_amount", column_type::numeric, minor_to_decimal(p.refunded_amount)},
            {"currency", column_type::text, p.currency},
            {"provider", column_type::text, p.provider},
            {"provider_reference", column_type::text, opt(p.provider_reference)},
            {"failure_code", column_type::text, opt(p.failure_code)},
            {"pending_refunds", column_type::integer, std::to_string(p.pending_refunds.size())},
            {"version", column_type::bigint, std::to_string(version)},
            {"created_at", column_type::timestamptz, p.created_at},
            {"updated_at", column_type::timestamptz, p.updated_at}}}};
}

const protocol::command_meta* payment_model::meta_of(const caf::message& msg) {
  return protocol::meta_among<protocol::payment_create, protocol::payment_record, protocol::payment_get,
                              protocol::payment_refund>(msg);
}

caf::error payment_model::admit(const state& s, std::int64_t version, const caf::message& msg,
                                const protocol::command_meta& meta) {
  if (meta.source == "saga") {
    return {};
  }
  if (msg.match_elements<protocol::payment_get>() && version > 0 &&
      (meta.admin || (!meta.user_id.empty() && meta.user_id == s.payment.customer_id))) {
    return {};
  }
  return caf::make_error(errc::not_found, "no such payment");
}

protocol::payment_view payment_model::view(const std::string& id, const state& s, std::int64_t version) {
  auto v = s.payment;
  v.id = id;
  v.version = version;
  return v;
}

caf::message payment_model::current(const std::string& id, const state& s, std::int64_t version) {
  return caf::make_message(view(id, s, version));
}

bool payment_model::handle(protocol::entity_context<state>& ctx, const caf::message& msg) {
  const auto& id = ctx.id();
  if (msg.match_elements<protocol::payment_get>()) {
    if (!ctx.exists()) {
      ctx.reject(errc::not_found, "no such payment");
    } else {
      ctx.reply(current(id, ctx.state(), ctx.version()));
    }
    return true;
  }
  if (msg.match_elements<protocol::payment_create>()) {
    const auto& cmd = msg.get_as<protocol::payment_create>(0);
    if (ctx.exists()) {
      if (ctx.state().payment.order_id != cmd.order_id) {
        ctx.reject(errc::conflict, "the payment belongs to another order");
      } else {
        ctx.reply(current(id, ctx.state(), ctx.version()));
      }
      return true;
    }
    if (cmd.order_id.empty() || cmd.amount < 0 || cmd.currency.size() != 3 || cmd.token.empty()) {
      ctx.reject(errc::invalid, "a payment needs an order, an amount, a currency and a card token");
      return true;
    }
    state next;
    auto& p = next.payment;
    p.order_id = cmd.order_id;
    p.customer_id = cmd.customer_id;
    p.status = "pending";
    p.amount = cmd.amount;
    p.currency = cmd.currency;
    p.provider = cmd.provider;
    p.token = cmd.token;
    p.created_at = protocol::now_rfc3339();
    p.updated_at = p.created_at;
    auto answer = caf::make_message(view(id, next, ctx.version() + 1));
    json::object data{{"payment_id", id}, {"order_id", p.order_id}, {"amount", p.amount}, {"currency", p.currency}};
    ctx.commit(std::move(next), {make_event(cmd.meta, "PaymentCreated", data)},
               std::move(answer));
    return true;
  }
  if (msg.match_elements<protocol::payment_refund>()) {
    const auto& cmd = msg.get_as<protocol::payment_refund>(0);
    if (!ctx.exists()) {
      ctx.reject(errc::not_found, "no such payment");
      return true;
    }
    const auto& s = ctx.state();
    if (std::find(s.payment.refund_ids.begin(), s.payment.refund_ids.end(), cmd.refund_id) !=
        s.payment.refund_ids.end()) {
      ctx.reply(current(id, s, ctx.version()));  // recorded already
      return true;
    }
    const auto pending = std::find_if(s.payment.pending_refunds.begin(), s.payment.pending_refunds.end(),
                                      [&](const auto& r) { return r.refund_id == cmd.refund_id; });
    const bool is_pending = pending != s.payment.pending_refunds.end();
    if (cmd.intent && is_pending) {
      ctx.reply(current(id, s, ctx.version()));  // asked before: the provider is asked again by key
      return true;
    }
    if (!is_pending && s.payment.status != "captured" && s.payment.status != "partially_refunded") {
      ctx.reject(errc::invalid_transition, "a " + s.payment.status + " payment cannot be refunded");
      return true;
    }
    const auto left = actors::refundable(s.payment, cmd.refund_id);
    if (cmd.refund_id.empty() || cmd.amount <= 0 || cmd.amount > left) {
      ctx.reject(errc::conflict, "a refund is positive and at most what was captured and not yet refunded (" +
                                     std::to_string(std::max<std::int64_t>(left, 0)) + ")");
      return true;
    }
    state next = s;
    auto& p = next.payment;
    p.updated_at = protocol::now_rfc3339();
    if (cmd.intent) {
      p.pending_refunds.push_back({cmd.refund_id, cmd.amount, cmd.reason, cmd.order_number, p.updated_at});
      auto answer = caf::make_message(view(id, next, ctx.version() + 1));
      ctx.commit(std::move(next), {}, std::move(answer));
      return true;
    }
    p.pending_refunds.erase(std::remove_if(p.pending_refunds.begin(), p.pending_refunds.end(),
                                           [&](const auto& r) { return r.refund_id == cmd.refund_id; }),
                            p.pending_refunds.end());
    p.refunded_amount += cmd.amount;
    p.status = p.refunded_amount == p.amount ? "refunded" : "partially_refunded";
    p.refund_ids.push_back(cmd.refund_id);
    if (p.refund_ids.size() > 64) {
      p.refund_ids.erase(p.refund_ids.begin());
    }
    auto answer = caf::make_message(view(id, next, ctx.version() + 1));
    json::object data{{"payment_id", id},
                      {"refund_id", cmd.refund_id},
                      {"order_id", p.order_id},
                      {"order_number", cmd.order_number},
                      {"customer_id", p.customer_id},
                      {"amount", cmd.amount},
                      {"currency", p.currency},
                      {"refunded_amount", p.refunded_amount},
                      {"reason", cmd.reason}};
    ctx.commit(std::move(next),
               {make_event(cmd.meta, "RefundIssued", data)},
               std::move(answer));
    return true;
  }
  if (!msg.match_elements<protocol::payment_record>()) {
    return false;
  }
  const auto& cmd = msg.get_as<protocol::payment_record>(0);
  if (!ctx.exists()) {
    ctx.reject(errc::not_found, "no such payment");
    return true;
  }
  const auto& s = ctx.state();
  if (s.payment.status == cmd.outcome) {
    ctx.reply(current(id, s, ctx.version()));
    return true;
  }
  if (!allowed(s.payment.status, cmd.outcome)) {
    ctx.reject(errc::invalid_transition, "a payment cannot go from " + s.payment.status + " to " + cmd.outcome);
    return true;
  }
  state next = s;
  auto& p = next.payment;
  p.status = cmd.outcome;
  if (!cmd.provider_reference.empty()) {
    p.provider_reference = cmd.provider_reference;
  }
  if (!cmd.failure_code.empty()) {
    p.failure_code = cmd.failure_code;
  }
  p.updated_at = protocol::now_rfc3339();
  auto answer = caf::make_message(view(id, next, ctx.version() + 1));
  json::object data{{"payment_id", id},         {"order_id", p.order_id}, {"customer_id", p.customer_id},
                    {"amount", p.amount},       {"currency", p.currency}, {"status", p.status},
                    {"failure_code", p.failure_code}, {"provider", p.provider}};
  ctx.commit(std::move(next),
             {make_event(cmd.meta, event_type_of(cmd.outcome), data)},
             std::move(answer));
  return true;
}

}  // namespace mercato::actors
