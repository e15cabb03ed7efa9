#pragma once
// The HTTP edge in-process, as the Beast session drives it but without a socket: the real pipeline and
// router with the real routes of the catalog, products, catalog admin, accounts, notifications, the
// operations endpoints and the storefront's static files.
//
// Stand-ins, for what lies behind the validation only:
// - the PostgreSQL pool has no thread and no queue: a handler whose input passed validation and that
//   submits its query is refused at once, answered 503 "overloaded" (the designed answer of a full
//   queue). That answer is how a target sees that a request got past validation; it is the only 5xx
//   the rule allows (and /readyz's 503, its designed answer while the database is unreachable).
// - the worker pool (password hashing, Redis) likewise has no thread and no queue;
// - the live caller check (sessions and current roles, a database read) confirms the token as it is.
// Routes served through the entity runtime (carts, inventory, orders: CAF actors) are not registered;
// their bodies are covered by the same body_reader and json_body code the registered routes use.
//
// Bearer tokens: the placeholders "Bearer @admin", "@customer", "@vendor" and "@support" are replaced by
// a real signed access token for such a user, so inputs can reach signed-in routes (the fuzzer cannot
// forge HS256; forged tokens are the jwt target's business).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "fuzz_check.hpp"
#include "http/pipeline.hpp"
#include "http/router.hpp"
#include "http/routes/auth_routes.hpp"
#include "http/routes/catalog_admin_routes.hpp"
#include "http/routes/catalog_routes.hpp"
#include "http/routes/notification_routes.hpp"
#include "http/routes/ops_routes.hpp"
#include "http/routes/product_routes.hpp"
#include "http/routes/static_routes.hpp"
#include "http/worker_pool.hpp"
#include "persistence/pg_pool.hpp"
#include "security/jwt.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::fuzz {

struct edge {
  telemetry::metrics metrics;
  persistence::pg_pool pool{persistence::pg_pool_options{"", 0, 0, {}, {}, {}}, nullptr};
  http::worker_pool workers{"fuzz", 0, 0};
  security::jwt_settings jwt;
  http::router routes;
  std::unique_ptr<http::pipeline> pipe;
  std::map<std::string, std::string> tokens;  // "@admin" -> a signed token
  std::chrono::steady_clock::time_point minted_at{};

  edge() {
    jwt.secret = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
    jwt.kid = "fuzz";
    http::add_ops_routes(routes, {&pool, &metrics, [] { return true; }, [] { return true; }, "fuzz-node", nullptr,
                                  nullptr, std::nullopt});
    http::add_catalog_routes(routes, pool, nullptr);
    http::add_catalog_admin_routes(routes, pool, workers, nullptr);
    http::add_product_routes(routes, pool, workers, nullptr);
    http::add_auth_routes(routes, std::make_shared<http::auth_context>(http::auth_context{
                                      pool, workers, jwt, std::chrono::seconds{30 * 24 * 3600}, nullptr, {}}));
    http::add_notification_routes(routes, pool);
    http::add_static_routes(routes, http::load_static_site(MERCATO_SOURCE_DIR "/web"));
    routes.set_caller_check([](std::shared_ptr<http::request_context>,
                               std::function<void(std::optional<http::response>)> done) { done(std::nullopt); });
    http::pipeline_options opts;
    opts.jwt = &jwt;
    pipe = std::make_unique<http::pipeline>(routes, &metrics, opts);
  }

  // Tokens live access_ttl (15 minutes): minted again every minute, so a long run never sees them expire.
  // The signed token for a placeholder ("@admin"), or nullopt for anything else.
  std::optional<std::string> token(const std::string& who) {
    const auto now = std::chrono::steady_clock::now();
    if (tokens.empty() || now - minted_at > std::chrono::minutes(1)) {
      tokens.clear();
      minted_at = now;
      const auto wall = std::chrono::system_clock::now();
      auto mint = [&](const char* name, std::vector<std::string> roles, std::string vendor) {
        auto c = security::make_access_claims("0f0f0f0f-0000-4000-8000-00000000000" + std::to_string(tokens.size()),
                                              std::move(roles), std::move(vendor), jwt, wall);
        tokens[name] = security::sign_access_token(c, jwt);
      };
      mint("@admin", {"admin"}, "");
      mint("@customer", {"customer"}, "");
      mint("@vendor", {"vendor"}, "0f0f0f0f-0000-4000-8000-0000000000aa");
      mint("@support", {"support"}, "");
    }
    auto it = tokens.find(who);
    if (it == tokens.end()) {
      return std::nullopt;
    }
    return it->second;
  }

  // Replaces a placeholder bearer token by the real one.
  void sign_in(http::request_context& ctx) {
    auto it = ctx.raw.find(boost::beast::http::field::authorization);
    if (it == ctx.raw.end()) {
      return;
    }
    std::string value(it->value());
    const auto at = value.find('@');
    if (at == std::string::npos) {
      return;
    }
    if (auto real = token(value.substr(at))) {
      ctx.raw.set(boost::beast::http::field::authorization, value.substr(0, at) + *real);
    }
  }

  // Runs the request; every route answers synchronously with the stand-ins, so the answer is there on return.
  http::response run(std::shared_ptr<http::request_context> ctx) {
    std::optional<http::response> answer;
    int calls = 0;
    pipe->dispatch(ctx, [&](http::response r) {
      ++calls;
      answer = std::move(r);
    });
    require(calls == 1, "the pipeline answers every request exactly once, before dispatch returns with the stand-ins",
            ctx->raw.target());
    return std::move(*answer);
  }
};

inline edge& the_edge() {
  static edge* e = [] {
    // Quiet: an access-log line per execution would cost more than the request.
    telemetry::configure_logging(config::log_settings{"off", config::log_format::json});
    return new edge();
  }();
  return *e;
}

inline bool header_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// The rule of the HTTP and JSON targets: a well-formed answer, every 4xx (and 5xx) problem+json whose body
// is the problem, and no 5xx other than a stand-in's.
inline void check_answer(const http::request_context& ctx, const http::response& r) {
  const std::string where = std::string(ctx.raw.method_string()) + " " + std::string(ctx.raw.target()) + " -> " +
                            std::to_string(r.status) + " " + r.body.substr(0, 600);
  static const bool print = std::getenv("MERCATO_FUZZ_PRINT") != nullptr;  // to see what seeds reach
  if (print) {
    std::fprintf(stderr, "%s\n", where.substr(0, 300).c_str());
  }
  require(r.status >= 100 && r.status <= 599, "the status is a valid HTTP status", where);
  for (const auto& [name, value] : r.headers) {
    require(!name.empty() && std::all_of(name.begin(), name.end(), header_token_char),
            "header names are tokens", where + " header " + name);
    require(std::none_of(value.begin(), value.end(),
                         [](char c) { return c == '\r' || c == '\n' || c == '\0'; }),
            "header values hold no CR, LF or NUL", where + " header " + name);
  }
  require(std::none_of(r.content_type.begin(), r.content_type.end(),
                       [](char c) { return c == '\r' || c == '\n' || c == '\0'; }),
          "the content type holds no CR, LF or NUL", where);
  if (r.status >= 500) {
    const bool stand_in_db = r.status == 503 && r.body.find("\"code\":\"overloaded\"") != std::string::npos;
    const bool readiness = r.status == 503 && ctx.route == "/readyz";
    require(stand_in_db || readiness, "no input produces a 5xx (other than the stand-ins' 503)", where);
    if (readiness) {
      return;
    }
  }
  if (r.status >= 400) {
    require(r.content_type == "application/problem+json", "every 4xx is application/problem+json", where);
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    require(!ec && v.is_object(), "a problem body is a JSON object", where);
    const auto& o = v.as_object();
    const auto* status = o.if_contains("status");
    require(status != nullptr && status->is_int64() && status->as_int64() == r.status,
            "the problem's status is the response status", where);
    for (const char* field : {"type", "title", "code", "detail"}) {
      const auto* f = o.if_contains(field);
      require(f != nullptr && f->is_string(), "a problem has type, title, code and detail strings", where);
    }
    return;
  }
  if (r.content_type.rfind("application/json", 0) == 0 && !r.body.empty()) {
    boost::system::error_code ec;
    boost::json::parse(r.body, ec);
    require(!ec, "a JSON answer is valid JSON", where);
  }
  if (r.status == 204 || r.status == 304) {
    require(r.body.empty(), "204 and 304 have no body", where);
  }
}

}  // namespace mercato::fuzz
