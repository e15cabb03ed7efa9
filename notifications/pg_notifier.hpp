#pragma once
// The default notifier: stores notifications in PostgreSQL (persistence/notification_store, read back by
// GET /me/notifications) and writes one log line for each that is new. It also answers who the users of a
// vendor are, for the vendor notifications.
//
// It has a connection of its own, opened at first use and again after a failure, so notifications never wait
// behind HTTP traffic on the pool and never take a pool connection away from it. Meant for one thread (the
// outbox dispatcher's); a mutex makes other callers safe, not fast.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <pqxx/connection>

#include "notifications/notifier.hpp"

namespace mercato::notifications {

class pg_notifier : public notifier {
 public:
  explicit pg_notifier(std::string dsn, std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(2000),
                       std::chrono::milliseconds statement_timeout = std::chrono::milliseconds(5000));
  ~pg_notifier() override;

  void notify(const notification& n) override;
  // One INSERT for the batch. Throws on a database error (nothing of the batch is stored then).
  void notify_all(const std::vector<notification>& batch) override;

  // vendor id -> its active vendor users. Throws on a database error.
  std::map<std::string, std::vector<std::string>> vendor_users(const std::vector<std::string>& vendor_ids);

 private:
  template <class Fn>
  auto with_connection(Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>()));

  std::string dsn_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds statement_timeout_;
  std::mutex mutex_;
  std::unique_ptr<pqxx::connection> conn_;  // guarded by mutex_
};

}  // namespace mercato::notifications
