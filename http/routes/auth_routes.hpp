#pragma once
// Accounts and sessions (API.md "Auth and users"): /auth/*, /me, /me/addresses and PUT /admin/users/{id}/roles
// (GET /me/notifications is http/routes/notification_routes).
//
// Threads: validation runs where the request arrives; password hashing and the Redis-backed login
// back-off run on the worker pool; SQL runs on the PostgreSQL pool. A handler hops between them and
// answers from whichever finishes last; every change is committed before the answer says so.

#include <chrono>
#include <memory>

#include <boost/json/object.hpp>

#include "http/router.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/user_store.hpp"
#include "security/jwt.hpp"
#include "security/password.hpp"

namespace mercato::http {

class worker_pool;
class rate_gate;

struct auth_context {
  persistence::pg_pool& pool;
  worker_pool& workers;
  security::jwt_settings jwt;
  std::chrono::seconds refresh_ttl{30 * 24 * 3600};
  rate_gate* limits = nullptr;        // failed-login back-off; null: none
  security::password_params password; // argon2id cost (tests lower it)
};

void add_auth_routes(router& routes, std::shared_ptr<const auth_context> auth);

// {id, email, name, roles, vendor_id, preferences, email_verified, mfa_enabled, created_at, updated_at}
boost::json::object user_json(const persistence::user_record& u);

// Roles a user may hold (API.md "Roles").
bool known_role(std::string_view role);

}  // namespace mercato::http
