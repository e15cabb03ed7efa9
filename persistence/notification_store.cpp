#include "persistence/notification_store.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include "persistence/uuid.hpp"

namespace mercato::persistence::notification_store {

namespace {

#define MERCATO_NOTE_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

// The rows travel as one JSON array and are unpacked by jsonb_to_recordset: one statement however many there
// are, and no escaping of our own. The join with users drops unknown users instead of failing on the FK.
constexpr const char* insert_sql =
    "INSERT INTO notifications (user_id, kind, title, body, data, source_event_id) "
    "SELECT r.user_id, r.kind, r.title, r.body, COALESCE(r.data, '{}'::jsonb), r.source_event_id "
    "FROM jsonb_to_recordset($1::jsonb) AS r(ord int, user_id uuid, kind text, title text, body text, data jsonb, "
    "                                       source_event_id uuid) "
    "JOIN users u ON u.id = r.user_id "
    "ORDER BY r.ord "
    "ON CONFLICT (user_id, source_event_id, kind) DO NOTHING "
    "RETURNING id::text, user_id::text, kind, title, source_event_id::text";

}  // namespace

std::vector<stored_notification> insert(pqxx::connection& conn, const std::vector<new_notification>& batch) {
  boost::json::array rows;
  int ord = 0;
  for (const auto& n : batch) {
    if (!is_uuid_text(n.user_id) || !is_uuid_text(n.source_event_id)) {
      continue;
    }
    boost::system::error_code ec;
    auto data = boost::json::parse(n.data_json.empty() ? "{}" : n.data_json, ec);
    if (ec || !data.is_object()) {
      data = boost::json::object{};
    }
    rows.push_back(boost::json::object{{"ord", ord++},
                                       {"user_id", n.user_id},
                                       {"kind", n.kind},
                                       {"title", n.title},
                                       {"body", n.body},
                                       {"data", std::move(data)},
                                       {"source_event_id", n.source_event_id}});
  }
  std::vector<stored_notification> out;
  if (rows.empty()) {
    return out;
  }
  pqxx::work tx{conn};
  const pqxx::result r = tx.exec_params(insert_sql, boost::json::serialize(rows));
  tx.commit();
  out.reserve(r.size());
  for (const auto& row : r) {
    out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                   row[3].as<std::string>(), row[4].as<std::string>()});
  }
  return out;
}

std::map<std::string, std::vector<std::string>> vendor_users(pqxx::connection& conn,
                                                             const std::vector<std::string>& vendor_ids) {
  std::map<std::string, std::vector<std::string>> out;
  std::set<std::string> ids;
  for (const auto& v : vendor_ids) {
    if (is_uuid_text(v)) {
      std::string lower = v;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      ids.insert(lower);
    }
  }
  if (ids.empty()) {
    return out;
  }
  std::string array = "{";
  for (const auto& id : ids) {
    array += (array.size() > 1 ? "," : "") + id;
  }
  array += "}";
  pqxx::nontransaction tx{conn};
  const pqxx::result r = tx.exec_params(
      "SELECT vendor_id::text, id::text FROM users "
      "WHERE vendor_id = ANY($1::uuid[]) AND 'vendor' = ANY(roles) AND status = 'active' "
      "ORDER BY vendor_id, created_at, id",
      array);
  for (const auto& row : r) {
    out[row[0].as<std::string>()].push_back(row[1].as<std::string>());
  }
  return out;
}

std::vector<notification_record> page(pqxx::connection& conn, const page_request& req) {
  std::string sql = "SELECT id::text, kind, title, body, data::text, " MERCATO_NOTE_TS(
      "read_at") ", " MERCATO_NOTE_TS("created_at") " FROM notifications WHERE user_id = $1::uuid";
  if (req.unread_only) {
    sql += " AND read_at IS NULL";
  }
  pqxx::nontransaction tx{conn};
  pqxx::result rows;
  if (req.before) {
    sql += " AND (created_at, id) < ($2::timestamptz, $3::uuid) ORDER BY created_at DESC, id DESC LIMIT $4";
    rows = tx.exec_params(sql, req.user_id, req.before->first, req.before->second,
                          static_cast<std::int64_t>(req.limit));
  } else {
    sql += " ORDER BY created_at DESC, id DESC LIMIT $2";
    rows = tx.exec_params(sql, req.user_id, static_cast<std::int64_t>(req.limit));
  }
  std::vector<notification_record> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    notification_record n;
    n.id = r[0].as<std::string>();
    n.kind = r[1].as<std::string>();
    n.title = r[2].as<std::string>();
    n.body = r[3].as<std::string>();
    n.data = r[4].as<std::string>();
    if (!r[5].is_null()) {
      n.read_at = r[5].as<std::string>();
    }
    n.created_at = r[6].as<std::string>();
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace mercato::persistence::notification_store
