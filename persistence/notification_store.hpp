#pragma once
// Notifications addressed to users (table `notifications`, migrations 0006 and 0014) as plain SQL: the batch
// insert the outbox handlers use (idempotent per user, source event and kind), the vendor-user lookup they
// address vendor notifications with, and the caller's page for GET /me/notifications. Blocking; callers
// run it on a thread of their own (dispatcher, pool).

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/connection>

namespace mercato::persistence {

struct notification_record {
  std::string id;
  std::string kind;
  std::string title;
  std::string body;
  std::string data;  // JSON text
  std::optional<std::string> read_at;
  std::string created_at;  // RFC 3339 UTC with microseconds
};

// One notification to store.
struct new_notification {
  std::string user_id;
  std::string kind;             // order_confirmation, vendor_new_order, order_shipped, refund_issued
  std::string title;            // at most 200 characters
  std::string body;
  std::string data_json;        // JSON object text
  std::string source_event_id;  // the outbox event it came from (UUID)
};

// One that was stored now (not before).
struct stored_notification {
  std::string id;
  std::string user_id;
  std::string kind;
  std::string title;
  std::string source_event_id;
};

namespace notification_store {

// One INSERT for all of them. A (user, source event, kind) stored already is skipped (a redelivered event),
// and so is a user that does not exist (an event naming a deleted or unknown account must not fail the
// batch). Returns the rows inserted now.
std::vector<stored_notification> insert(pqxx::connection& conn, const std::vector<new_notification>& batch);

// vendor id -> the ids of its active users with the vendor role (users.vendor_id), in one query. A vendor
// with none is absent. Ids that are not UUIDs are ignored.
std::map<std::string, std::vector<std::string>> vendor_users(pqxx::connection& conn,
                                                             const std::vector<std::string>& vendor_ids);

struct page_request {
  std::string user_id;
  std::size_t limit = 20;    // rows to read (ask one more than you show to know whether there are more)
  bool unread_only = false;  // read_at IS NULL
  std::optional<std::pair<std::string, std::string>> before;  // (created_at, id) of the last row shown
};

// The user's notifications, newest first (created_at, id descending), keyset paged.
std::vector<notification_record> page(pqxx::connection& conn, const page_request& req);

}  // namespace notification_store
}  // namespace mercato::persistence
