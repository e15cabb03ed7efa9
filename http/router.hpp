#pragma once
// Method + path routing with `{name}` path parameters, as a trie over path segments.
// Literal segments win over parameters, so "/products/search" can sit beside "/products/{id}".

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/verb.hpp>

#include "http/request.hpp"

namespace mercato::telemetry {
class http_route_series;
}

namespace mercato::http {

struct route_options {
  bool json_body = false;  // the handler takes a JSON body: the pipeline checks type and syntax first
  // Who may call it, checked at the edge before the handler runs (handlers check ownership again):
  bool signed_in = false;          // 401 without a valid access token
  std::vector<std::string> roles;  // non-empty: one of these roles (admin always passes), else 403
  bool rate_limited = true;        // false for the operations endpoints (probes, scrapes)
  // Privileged or account-changing: the caller is confirmed against current state before the handler
  // runs (the session behind the token is still live, and roles are the account's roles now, not the
  // token's), so a logout, a revocation or a role change takes effect at once on every node.
  bool live_caller = false;
  // POST with Idempotency-Key: a repeat gets the first answer, stored in PostgreSQL. false for routes
  // whose answers carry credentials (tokens, TOTP secrets, recovery codes): those are never stored in
  // clear, and a repeat runs again (a used refresh token is then reuse, not a replay of the new pair).
  bool replay_idempotency = true;
  // false: the pipeline does not read Authorization as an access token; the handler checks its own
  // credential there (the scrape token of /metrics).
  bool access_token = true;
};

// Shorthands for route registration.
inline route_options json_route() { return route_options{true, false, {}, true, false, true, true}; }
inline route_options signed_in_route(bool json = false) {
  return route_options{json, true, {}, true, false, true, true};
}
// Signed in and live_caller: changes of credentials (MFA).
inline route_options live_route(bool json = false) { return route_options{json, true, {}, true, true, true, true}; }
// Every role-restricted route is privileged, so live_caller too.
inline route_options role_route(std::vector<std::string> roles, bool json = false) {
  return route_options{json, true, std::move(roles), true, true, true, true};
}

// Confirms the caller of a live_caller route against current state. Calls `done` once, from any thread:
// nullopt to go on (ctx->caller now carries the current roles), or the refusal to answer with.
using caller_check =
    std::function<void(std::shared_ptr<request_context> ctx, std::function<void(std::optional<response>)> done)>;

struct route {
  bhttp::verb method{};
  std::string pattern;
  handler handle;
  route_options options;
  // Its metric series, resolved by the pipeline on first use and then read lock-free: [0] for requests with
  // the route's own method, [1] for HEAD answered by a GET route.
  mutable std::array<std::atomic<telemetry::http_route_series*>, 2> series{};
};

struct route_match {
  enum class kind { found, not_found, method_not_allowed } outcome = kind::not_found;
  const route* matched = nullptr;
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<bhttp::verb> allowed;  // for 405: the methods the path does accept
};

class router {
 public:
  router();
  ~router();
  router(const router&) = delete;
  router& operator=(const router&) = delete;

  // Throws std::invalid_argument on a malformed pattern or a duplicate (method, pattern).
  void add(bhttp::verb method, std::string pattern, handler h, route_options opts = {});

  // `path` is the decoded path without the query string.
  route_match match(bhttp::verb method, std::string_view path) const;

  std::vector<const route*> routes() const;

  // Installed by the module that owns accounts (auth routes). Without one, live_caller routes are refused
  // (503): failing closed beats trusting a token's roles by accident.
  void set_caller_check(caller_check check) { caller_check_ = std::move(check); }
  const caller_check& caller_checker() const { return caller_check_; }

 private:
  caller_check caller_check_;
  struct node;
  std::unique_ptr<node> root_;
  std::vector<std::unique_ptr<route>> routes_;
};

// Splits "/a/b/" into {"a", "b"}; empty segments are dropped except that "/" alone is the root.
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace mercato::http
