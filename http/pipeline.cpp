#include "http/pipeline.hpp"

#include <algorithm>
#include <cctype>
#include <random>

#include <boost/beast/core/string.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <simdjson.h>

#include "http/json_body.hpp"
#include "http/idempotency.hpp"
#include "http/rate_gate.hpp"
#include "security/jwt.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::http {
namespace {

std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

bool is_json_media_type(std::string_view ct) {
  // "application/json" with optional parameters (charset=utf-8), case-insensitive.
  auto semi = ct.find(';');
  auto type = ct.substr(0, semi);
  while (!type.empty() && type.back() == ' ') {
    type.remove_suffix(1);
  }
  constexpr std::string_view want = "application/json";
  return type.size() == want.size() &&
         std::equal(type.begin(), type.end(), want.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

enum class target_status { ok, malformed, not_utf8 };

// Splits and percent-decodes the request target. Decoded bytes must be UTF-8 (RFC 3986 §2.5; our
// database and JSON are UTF-8): anything else is refused here, before routing, so it never reaches a
// query (where PostgreSQL would reject it as an encoding error) or an answer. `bad` names the part.
target_status parse_target(request_context& ctx, std::string& bad) {
  auto target = ctx.raw.target();
  auto parsed = boost::urls::parse_origin_form({target.data(), target.size()});
  if (!parsed) {
    return target_status::malformed;
  }
  auto utf8 = [](const std::string& s) { return simdjson::validate_utf8(s.data(), s.size()); };
  std::string path = parsed->path();
  if (!utf8(path)) {
    bad = "/path";
    return target_status::not_utf8;
  }
  ctx.path = std::move(path);
  for (auto p : parsed->params()) {
    if (!utf8(p.key) || !utf8(p.value)) {
      bad = utf8(p.key) ? "/query/" + p.key : "/query";
      return target_status::not_utf8;
    }
    ctx.query.emplace_back(p.key, p.value);
  }
  return target_status::ok;
}

}  // namespace

std::string random_hex(std::size_t chars) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(chars, '0');
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < chars; ++i) {
    if (i % 16 == 0) {
      bits = rng()();
    }
    out[i] = digits[bits & 0xF];
    bits >>= 4;
  }
  return out;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':';
  });
}

std::string generate_request_id() {
  // A random (version 4) UUID.
  std::string h = random_hex(32);
  h[12] = '4';
  h[16] = "89ab"[rng()() & 3];
  return h.substr(0, 8) + '-' + h.substr(8, 4) + '-' + h.substr(12, 4) + '-' + h.substr(16, 4) + '-' + h.substr(20);
}

std::optional<std::pair<std::string, std::string>> parse_traceparent(std::string_view h) {
  // version "-" trace-id "-" parent-id "-" flags, e.g. 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
  if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') {
    return std::nullopt;
  }
  const auto version = h.substr(0, 2);
  const auto trace = h.substr(3, 32);
  const auto parent = h.substr(36, 16);
  const auto flags = h.substr(53, 2);
  if (!is_lower_hex(version) || version == "ff" || !is_lower_hex(trace) || !is_lower_hex(parent) ||
      !is_lower_hex(flags) || all_zero(trace) || all_zero(parent)) {
    return std::nullopt;
  }
  if (version == "00" && h.size() != 55) {
    return std::nullopt;
  }
  return std::make_pair(std::string(trace), std::string(parent));
}

pipeline::pipeline(const router& routes, telemetry::metrics* metrics, pipeline_options opts)
    : routes_(routes), metrics_(metrics), opts_(opts) {}

namespace {

problem unauthenticated(std::string code, std::string detail) {
  return problem{401, std::move(code), "Unauthorized", std::move(detail), {}};
}

response with_challenge(const problem& p, bool invalid_token) {
  return response::from(p).with_header(
      "WWW-Authenticate", invalid_token ? "Bearer realm=\"mercato\", error=\"invalid_token\"" : "Bearer realm=\"mercato\"");
}

// Reads "Authorization: Bearer <token>". nullopt: no credentials; a problem: credentials refused.
std::optional<problem> authenticate(request_context& ctx, const security::jwt_settings* jwt) {
  const auto header = ctx.header(bhttp::field::authorization);
  if (header.empty()) {
    return std::nullopt;
  }
  const auto token = bearer_credential(header);
  if (!token) {
    return unauthenticated("invalid_token", "the Authorization header must be \"Bearer <access token>\"");
  }
  if (jwt == nullptr) {
    return unauthenticated("invalid_token", "this node does not accept access tokens");
  }
  auto verified = security::verify_access_token(*token, *jwt);
  if (!verified) {
    const auto why = verified.error();
    return unauthenticated("invalid_token", why == security::jwt_error::expired
                                                ? "the access token has expired; refresh it"
                                                : "the access token is not valid");
  }
  ctx.caller = principal{verified->subject, verified->roles, verified->vendor_id, verified->session_id,
                        verified->expires_at};
  return std::nullopt;
}

using seconds_d = std::chrono::duration<double>;

// The request's series: the matched route's, resolved once and cached on the route; requests no route
// matched (or a method the route does not have, which cannot happen today) take the registry lookup.
void observe(telemetry::metrics& metrics, const request_context& ctx, unsigned status, double elapsed,
             std::chrono::steady_clock::time_point now) {
  const http::route* matched = ctx.matched;
  const auto verb = ctx.raw.method();
  const auto method = ctx.raw.method_string();
  if (matched == nullptr || (verb != matched->method && verb != bhttp::verb::head)) {
    metrics.observe_http_request(ctx.route.empty() ? std::string_view("unmatched") : std::string_view(ctx.route),
                                 {method.data(), method.size()}, status, elapsed);
    return;
  }
  auto& slot = matched->series[verb == matched->method ? 0 : 1];
  auto* series = slot.load(std::memory_order_acquire);
  if (series == nullptr || series->owner() != &metrics) {
    // First request of this route (or a router shared with another registry, as in tests).
    series = &metrics.route_series(matched->pattern, {method.data(), method.size()});
    slot.store(series, std::memory_order_release);
  }
  series->observe(status, elapsed);
  if (matched->method == bhttp::verb::post && matched->pattern == "/api/v1/carts/{id}/items" &&
      ctx.handler_at != std::chrono::steady_clock::time_point{}) {
    // Add-to-cart stages (mercato_stage_seconds; the writer reports its own).
    using st = telemetry::metrics::stage;
    metrics.stage_seconds(st::admission).Observe(seconds_d(ctx.handler_at - ctx.received_at).count());
    metrics.stage_seconds(st::handler).Observe(seconds_d(now - ctx.handler_at).count());
  }
}

}  // namespace

void pipeline::dispatch(std::shared_ptr<request_context> ctx, done_fn done) const {
  ctx->received_at = std::chrono::steady_clock::now();
  if (auto rid = ctx->header("X-Request-Id"); valid_request_id(rid)) {
    ctx->request_id = std::string(rid);
  } else {
    ctx->request_id = generate_request_id();
  }
  if (auto tp = parse_traceparent(ctx->header("traceparent"))) {
    ctx->trace_id = std::move(tp->first);
  } else {
    ctx->trace_id = random_hex(32);
  }
  ctx->span_id = random_hex(16);
  if (metrics_) {
    metrics_->http_in_flight.Increment();
  }

  // Everything leaves through here: identity headers, metrics, one access-log line.
  auto finish = [ctx, done = std::move(done), metrics = metrics_](response r) {
    for (auto& h : ctx->extra_headers) {
      r.with_header(h.first, h.second);
    }
    // Whatever answers a request that carried credentials is personal: no cache may keep it (this
    // overrides a handler's own caching headers, which are written for anonymous readers).
    if (ctx->caller || !ctx->header(bhttp::field::authorization).empty()) {
      r.headers.erase(std::remove_if(r.headers.begin(), r.headers.end(),
                                     [](const auto& h) { return boost::beast::iequals(h.first, "Cache-Control"); }),
                      r.headers.end());
      r.with_header("Cache-Control", "no-store");
    }
    r.with_header("X-Request-Id", ctx->request_id);
    r.with_header("traceparent", "00-" + ctx->trace_id + "-" + ctx->span_id + "-01");
    const auto now = std::chrono::steady_clock::now();
    const auto elapsed = std::chrono::duration<double>(now - ctx->received_at).count();
    const std::string_view route = ctx->route.empty() ? std::string_view("unmatched") : std::string_view(ctx->route);
    const auto method = ctx->raw.method_string();
    if (metrics) {
      metrics->http_in_flight.Decrement();
      observe(*metrics, *ctx, r.status, elapsed, now);
    }
    if (telemetry::log_enabled(spdlog::level::info)) {
      telemetry::log_access("request", {{"request_id", ctx->request_id},
                                      {"trace_id", ctx->trace_id},
                                      {"method", std::string_view{method.data(), method.size()}},
                                      {"route", route},
                                      {"path", ctx->path},
                                      {"status", r.status},
                                      {"bytes", r.body.size()},
                                      {"duration_us", static_cast<std::int64_t>(elapsed * 1e6)}});
    }
    done(std::move(r));
  };

  std::string bad_part;
  switch (parse_target(*ctx, bad_part)) {
    case target_status::ok:
      break;
    case target_status::malformed:
      finish(response::from(invalid_request("the request target is not a valid origin-form URI")));
      return;
    case target_status::not_utf8:
      // The offending bytes are not echoed (nor logged): only where they were.
      finish(response::from(problem{400, "invalid_encoding", "Invalid encoding",
                                    "the request target decodes to bytes that are not UTF-8",
                                    {{bad_part, "is not valid UTF-8 after percent-decoding"}}}));
      return;
  }
  auto m = routes_.match(ctx->raw.method(), ctx->path);
  if (m.outcome == route_match::kind::not_found) {
    finish(response::from(not_found("no route for this path")));
    return;
  }
  if (m.outcome == route_match::kind::method_not_allowed) {
    std::string allow;
    for (auto v : m.allowed) {
      if (!allow.empty()) {
        allow += ", ";
      }
      allow += std::string(bhttp::to_string(v));
    }
    auto method = ctx->raw.method_string();
    finish(response::from(method_not_allowed(fmt::format("{} is not allowed here; allowed: {}",
                                                          std::string_view{method.data(), method.size()}, allow)))
               .with_header("Allow", allow));
    return;
  }
  ctx->route = m.matched->pattern;
  ctx->matched = m.matched;
  ctx->path_params = std::move(m.params);

  // A route with a credential of its own (route_options::access_token) reads Authorization itself.
  if (m.matched->options.access_token) {
    if (auto refused = authenticate(*ctx, opts_.jwt)) {
      finish(with_challenge(*refused, true));
      return;
    }
  }
  const route& matched = *m.matched;
  if (opts_.limits != nullptr && opts_.limits->enabled() && matched.options.rate_limited) {
    opts_.limits->admit(ctx, [this, &matched, ctx, finish = std::move(finish)](std::optional<response> refused) mutable {
      if (refused) {
        finish(std::move(*refused));
        return;
      }
      admit(matched, ctx, responder{std::move(finish)});
    });
    return;
  }
  admit(matched, ctx, responder{std::move(finish)});
}

void pipeline::admit(const route& matched, std::shared_ptr<request_context> ctx, responder respond) const {
  if (matched.options.signed_in || !matched.options.roles.empty()) {
    if (!ctx->caller) {
      respond(with_challenge(unauthenticated("unauthenticated", "this endpoint needs an access token"), false));
      return;
    }
    if (matched.options.live_caller) {
      const auto& check = routes_.caller_checker();
      if (!check) {
        respond(service_unavailable("unavailable", "this operation cannot be authorised on this node"));
        return;
      }
      check(ctx, [this, &matched, ctx, respond](std::optional<response> refused) {
        if (refused) {
          respond(std::move(*refused));
          return;
        }
        authorize(matched, ctx, respond);
      });
      return;
    }
  }
  authorize(matched, ctx, std::move(respond));
}

void pipeline::authorize(const route& matched, std::shared_ptr<request_context> ctx, responder respond) const {
  if (matched.options.signed_in || !matched.options.roles.empty()) {
    if (!matched.options.roles.empty() && !ctx->caller->is_admin()) {
      bool allowed = false;
      for (const auto& role : matched.options.roles) {
        allowed = allowed || ctx->caller->has_role(role);
      }
      if (!allowed) {
        respond(problem{403, "forbidden", "Forbidden", "your roles do not allow this operation", {}});
        return;
      }
    }
  }

  if (matched.options.json_body) {
    const auto ct = ctx->header(bhttp::field::content_type);
    if (!is_json_media_type(ct)) {
      respond(response::from(unsupported_media_type(
          ct.empty() ? "a JSON body with Content-Type: application/json is required"
                     : "Content-Type must be application/json, got " + std::string(ct))));
      return;
    }
    auto doc = std::make_unique<simdjson::dom::document>();
    if (auto err = parse_json(ctx->raw.body(), *doc)) {
      respond(response::from(malformed_json("the body is not valid JSON: " + err->describe())));
      return;
    }
    if (auto flaw = find_json_flaw(*doc)) {
      if (flaw->what == json_flaw::repeated_member) {
        auto p = malformed_json("the body repeats a member name in one object");
        p.errors.push_back({flaw->pointer, "appears more than once in its object"});
        respond(response::from(p));
      } else {
        respond(response::from(invalid_request("the body holds a NUL character (\\u0000), which cannot be stored",
                                               {{flaw->pointer, "must not contain the NUL character (\\u0000)"}})));
      }
      return;
    }
    ctx->body_doc = std::move(doc);
  }

  ctx->handler_at = std::chrono::steady_clock::now();
  // Idempotency-Key on a POST: the first request runs, repeats get its stored answer.
  if (opts_.idempotency != nullptr && matched.method == bhttp::verb::post && matched.options.replay_idempotency &&
      !ctx->header("Idempotency-Key").empty()) {
    opts_.idempotency->run(ctx, std::move(respond), [&matched](std::shared_ptr<request_context> c, responder r) {
      matched.handle(std::move(c), std::move(r));
    });
    return;
  }
  try {
    matched.handle(ctx, respond);
  } catch (const std::exception& e) {
    // The handler threw before answering; the responder it dropped answers 500 (see responder::state).
    telemetry::log_error("handler threw", {{"request_id", ctx->request_id}, {"error", e.what()}});
  }
}

}  // namespace mercato::http
