// Query strings and cursors: the first byte picks a GET route of the edge (edge_harness.hpp), the second
// the caller; the rest is the query string of the request target, parsed and percent-decoded by the
// pipeline and read by the route (limits, filters, sorts, the opaque cursors of the catalog and the
// notifications). The same parameters also go through query_reader and the edge codecs directly, with
// their rules: what they accept lies within the bounds asked for, and base64url decoding undoes encoding.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edge_harness.hpp"
#include "http/codec.hpp"
#include "http/routes/query_params.hpp"

namespace {

std::vector<std::string> get_targets(const mercato::http::router& routes) {
  std::vector<std::string> out;
  for (const auto* r : routes.routes()) {
    if (r->method != mercato::http::bhttp::verb::get) {
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
    out.push_back(target);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void check_readers(const mercato::http::request_context& ctx) {
  using mercato::fuzz::require;
  mercato::http::query_reader q{ctx};
  const auto limit = q.integer("limit", 20, 1, 100);
  require(limit >= 1 && limit <= 100, "query_reader::integer stays within its bounds");
  if (auto n = q.optional_integer("min_price", 0, 9'999'999'999)) {
    require(*n >= 0 && *n <= 9'999'999'999, "query_reader::optional_integer stays within its bounds");
  }
  if (auto t = q.text("q", 1, 200)) {
    require(!t->empty() && t->size() <= 200, "query_reader::text stays within its length bounds");
  }
  if (auto id = q.uuid("category")) {
    require(mercato::http::is_uuid(*id), "query_reader::uuid gives a UUID");
  }
  (void)q.boolean("unread", false);
  if (!q.ok()) {
    const auto p = q.to_problem();
    require(p.status == 400 && !p.errors.empty(), "a refused query names its fields in a 400");
  }
  for (const auto& [key, value] : ctx.query) {
    if (auto raw = mercato::http::base64url_decode(value)) {
      const auto again = mercato::http::base64url_encode(*raw);
      require(mercato::http::base64url_decode(again) == raw, "base64url_decode undoes base64url_encode", value);
    }
    (void)mercato::http::if_match_version(value);
    (void)mercato::http::etag_matches(value, "\"7\"");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace bhttp = mercato::http::bhttp;
  auto& edge = mercato::fuzz::the_edge();
  static const auto targets = get_targets(edge.routes);
  if (size < 2) {
    return 0;
  }
  static const char* const callers[] = {"", "@customer", "@vendor", "@admin"};
  auto ctx = std::make_shared<mercato::http::request_context>();
  ctx->raw.method(bhttp::verb::get);
  ctx->raw.target(targets[data[0] % targets.size()] + "?" +
                  std::string(reinterpret_cast<const char*>(data) + 2, size - 2));
  ctx->raw.version(11);
  ctx->raw.set(bhttp::field::host, "shop.example");
  if (const char* who = callers[data[1] & 0x03]; *who != '\0') {
    ctx->raw.set(bhttp::field::authorization, std::string("Bearer ") + who);
  }
  ctx->client_ip = "192.0.2.1";
  edge.sign_in(*ctx);
  auto answer = edge.run(ctx);
  mercato::fuzz::check_answer(*ctx, answer);
  check_readers(*ctx);  // ctx->query as the pipeline decoded it (empty when the target was refused)
  return 0;
}
