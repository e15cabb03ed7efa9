// Every JSON body the registered routes accept, through the real pipeline (Content-Type and syntax
// checks, duplicate members) into the handlers' field validation (body_reader and the routes' own
// checks). The first byte picks the route (among those taking a JSON body), the second the caller
// (anonymous, customer, vendor, support, admin) and a few request headers; the rest is the body.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edge_harness.hpp"

namespace {

struct json_route {
  mercato::http::bhttp::verb method;
  std::string target;  // the pattern with every {param} filled in
};

std::vector<json_route> json_routes(const mercato::http::router& routes) {
  std::vector<json_route> out;
  for (const auto* r : routes.routes()) {
    if (!r->options.json_body) {
      continue;
    }
    std::string target;
    for (std::size_t i = 0; i < r->pattern.size(); ++i) {
      if (r->pattern[i] == '{') {
        i = r->pattern.find('}', i);
        target += "0f0f0f0f-0000-4000-8000-000000000001";
      } else {
        target += r->pattern[i];
      }
    }
    out.push_back({r->method, target});
  }
  std::sort(out.begin(), out.end(), [](const json_route& a, const json_route& b) {
    return a.target != b.target ? a.target < b.target : a.method < b.method;
  });
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace bhttp = mercato::http::bhttp;
  auto& edge = mercato::fuzz::the_edge();
  static const auto routes = json_routes(edge.routes);
  mercato::fuzz::require(routes.size() >= 10, "the harness registers the JSON routes");
  if (size < 2) {
    return 0;
  }
  const auto& route = routes[data[0] % routes.size()];
  const std::uint8_t flags = data[1];
  static const char* const callers[] = {"", "@customer", "@vendor", "@support", "@admin", "@admin", "@admin", "@admin"};

  auto ctx = std::make_shared<mercato::http::request_context>();
  ctx->raw.method(route.method);
  ctx->raw.target(route.target);
  ctx->raw.version(11);
  ctx->raw.set(bhttp::field::host, "shop.example");
  ctx->raw.set(bhttp::field::content_type, (flags & 0x08) ? "application/json; charset=utf-8" : "application/json");
  if (const char* who = callers[flags & 0x07]; *who != '\0') {
    ctx->raw.set(bhttp::field::authorization, std::string("Bearer ") + who);
  }
  if (flags & 0x10) {
    ctx->raw.set(bhttp::field::if_match, "\"3\"");
  }
  if (flags & 0x20) {
    ctx->raw.set("Idempotency-Key", "fuzz-key-1");
  }
  ctx->raw.body().assign(reinterpret_cast<const char*>(data) + 2, size - 2);
  ctx->raw.prepare_payload();
  ctx->client_ip = "192.0.2.1";
  edge.sign_in(*ctx);
  auto answer = edge.run(ctx);
  mercato::fuzz::check_answer(*ctx, answer);
  return 0;
}
