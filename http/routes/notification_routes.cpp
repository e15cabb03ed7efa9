#include "http/routes/notification_routes.hpp"

#include <boost/json.hpp>

#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "http/routes/query_params.hpp"
#include "persistence/notification_store.hpp"

namespace mercato::http {
namespace {

namespace store = persistence::notification_store;

boost::json::value parse_or_empty(const std::string& text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return ec || !v.is_object() ? boost::json::value(boost::json::object{}) : v;
}

// The cursor is "n1|<created_at>|<id>" of the last row shown, base64url: opaque to clients. The same keyset
// order serves both the full list and `unread=true`, so a cursor stays valid across the filter.
void list_notifications(persistence::pg_pool& pool, const std::shared_ptr<request_context>& ctx,
                        const responder& respond) {
  query_reader q(*ctx);
  store::page_request req;
  const auto limit = static_cast<std::size_t>(q.integer("limit", 20, 1, 100));
  req.unread_only = q.boolean("unread", false);
  if (auto c = q.text("cursor", 1, 512)) {
    auto raw = base64url_decode(*c);
    auto bar = std::string::npos;
    if (!raw || raw->rfind("n1|", 0) != 0 || (bar = raw->find('|', 3)) == std::string::npos || bar == 3 ||
        !is_uuid(raw->substr(bar + 1))) {
      q.fail("cursor", "is not a cursor of this list");
    } else {
      req.before = std::make_pair(raw->substr(3, bar - 3), raw->substr(bar + 1));
    }
  }
  if (!q.ok()) {
    respond(q.to_problem());
    return;
  }
  // Scoped by the caller's own id, never by anything the request names: another user's notifications
  // cannot be asked for at all (BOLA).
  req.user_id = ctx->caller->user_id;
  req.limit = limit + 1;
  run_db(pool, respond, [req, limit](pqxx::connection& conn) {
    auto rows = store::page(conn, req);
    const bool more = rows.size() > limit;
    if (more) {
      rows.resize(limit);
    }
    boost::json::array data;
    for (const auto& n : rows) {
      data.push_back(boost::json::object{{"id", n.id},
                                         {"kind", n.kind},
                                         {"title", n.title},
                                         {"body", n.body},
                                         {"data", parse_or_empty(n.data)},
                                         {"read_at", n.read_at ? boost::json::value(*n.read_at) : nullptr},
                                         {"created_at", n.created_at}});
    }
    boost::json::value next = nullptr;
    if (more && !rows.empty()) {
      next = base64url_encode("n1|" + rows.back().created_at + "|" + rows.back().id);
    }
    return response::json(200, boost::json::object{{"data", std::move(data)},
                                                   {"meta", boost::json::object{{"next_cursor", next},
                                                                                {"has_more", more}}}});
  });
}

}  // namespace

void add_notification_routes(router& routes, persistence::pg_pool& pool) {
  routes.add(boost::beast::http::verb::get, "/api/v1/me/notifications",
             [&pool](std::shared_ptr<request_context> ctx, responder respond) {
               list_notifications(pool, ctx, respond);
             },
             signed_in_route());
}

}  // namespace mercato::http
