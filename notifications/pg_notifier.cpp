#include "notifications/pg_notifier.hpp"

#include <pqxx/pqxx>

#include "persistence/notification_store.hpp"
#include "persistence/pg_pool.hpp"
#include "telemetry/logging.hpp"

namespace mercato::notifications {

pg_notifier::pg_notifier(std::string dsn, std::chrono::milliseconds connect_timeout,
                         std::chrono::milliseconds statement_timeout)
    : dsn_(std::move(dsn)), connect_timeout_(connect_timeout), statement_timeout_(statement_timeout) {}

pg_notifier::~pg_notifier() = default;

template <class Fn>
auto pg_notifier::with_connection(Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>())) {
  std::lock_guard<std::mutex> lock{mutex_};
  if (!conn_ || !conn_->is_open()) {
    conn_ = persistence::open_connection(dsn_, connect_timeout_, statement_timeout_);
  }
  try {
    return fn(*conn_);
  } catch (...) {
    // Whatever went wrong, the next call starts on a fresh connection (a broken one would fail again).
    conn_.reset();
    throw;
  }
}

void pg_notifier::notify(const notification& n) { notify_all({n}); }

void pg_notifier::notify_all(const std::vector<notification>& batch) {
  if (batch.empty()) {
    return;
  }
  std::vector<persistence::new_notification> rows;
  rows.reserve(batch.size());
  for (const auto& n : batch) {
    rows.push_back({n.user_id, n.kind, n.title, n.body, n.data_json, n.source_event_id});
  }
  const auto stored =
      with_connection([&](pqxx::connection& conn) { return persistence::notification_store::insert(conn, rows); });
  for (const auto& s : stored) {
    telemetry::log_info("notification", {{"notification_id", s.id},
                                         {"user_id", s.user_id},
                                         {"kind", s.kind},
                                         {"title", s.title},
                                         {"event_id", s.source_event_id}});
  }
  if (stored.size() < batch.size()) {
    telemetry::log_debug("notifications skipped: stored before (a redelivered event) or no such user",
                         {{"skipped", batch.size() - stored.size()}, {"stored", stored.size()}});
  }
}

std::map<std::string, std::vector<std::string>> pg_notifier::vendor_users(const std::vector<std::string>& vendor_ids) {
  return with_connection(
      [&](pqxx::connection& conn) { return persistence::notification_store::vendor_users(conn, vendor_ids); });
}

}  // namespace mercato::notifications
