// The per-route metric series the pipeline resolves once must expose exactly what the per-request
// registry lookup (observe_http_request) exposes.
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "http/pipeline.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using namespace mercato::http;

namespace {

// The lines of a scrape that do not depend on timing: the request counters and the histogram counts.
std::string stable_lines(const std::string& scrape) {
  std::istringstream in(scrape);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    const bool http = line.rfind("mercato_http_requests_total", 0) == 0 ||
                      line.rfind("mercato_http_request_duration_seconds_count", 0) == 0;
    const bool stage_count = line.rfind("mercato_stage_seconds_count", 0) == 0;
    if (http || stage_count) {
      out += line + "\n";
    }
  }
  return out;
}

struct call {
  bhttp::verb verb;
  std::string target;
  unsigned status;  // what the handler answers
};

}  // namespace

TEST_CASE("per-route series give the same /metrics as per-request lookups, HEAD and unmatched included") {
  router routes;
  auto answer = [](std::shared_ptr<request_context> ctx, responder respond) {
    const auto* s = ctx->query_param("status");
    respond(response::empty(s ? static_cast<unsigned>(std::stoul(*s)) : 200));
  };
  routes.add(bhttp::verb::get, "/api/v1/products/{id}", answer);
  routes.add(bhttp::verb::post, "/api/v1/carts/{id}/items", answer);
  routes.add(bhttp::verb::get, "/healthz", answer, route_options{false, false, {}, false, false, true, true});

  const std::vector<call> calls = {
      {bhttp::verb::get, "/api/v1/products/a", 200},          {bhttp::verb::get, "/api/v1/products/b?status=404", 404},
      {bhttp::verb::get, "/api/v1/products/c", 200},          {bhttp::verb::head, "/api/v1/products/a", 200},
      {bhttp::verb::post, "/api/v1/carts/x/items?status=201", 201}, {bhttp::verb::post, "/api/v1/carts/x/items?status=409", 409},
      {bhttp::verb::get, "/healthz", 200},                    {bhttp::verb::get, "/no/such/route", 404},
      {bhttp::verb::delete_, "/api/v1/products/a", 405},      {bhttp::verb::get, "/api/v1/products/d?status=599", 599},
      {bhttp::verb::get, "/api/v1/products/e?status=700", 700},
  };

  telemetry::metrics through_pipeline;
  telemetry::metrics by_lookup;
  pipeline p{routes, &through_pipeline};
  for (int round = 0; round < 3; ++round) {
    for (const auto& c : calls) {
      auto ctx = std::make_shared<request_context>();
      ctx->raw.method(c.verb);
      ctx->raw.target(c.target);
      unsigned got = 0;
      p.dispatch(ctx, [&got](response r) { got = r.status; });
      CHECK(got == c.status);
      const std::string route = ctx->route.empty() ? "unmatched" : ctx->route;
      const auto method = bhttp::to_string(c.verb);
      by_lookup.observe_http_request(route, {method.data(), method.size()}, c.status, 0.001);
    }
  }
  const auto want = stable_lines(by_lookup.scrape());
  CHECK(want.find("method=\"HEAD\"") != std::string::npos);
  CHECK(want.find("status=\"500\"") != std::string::npos);  // 700 folds into 500
  CHECK(stable_lines(through_pipeline.scrape()) != "");
  // The pipeline's registry also has the add-to-cart stages; the lookup registry has them at zero.
  auto got = stable_lines(through_pipeline.scrape());
  CHECK(got.find("mercato_stage_seconds_count{stage=\"admission\"} 6") != std::string::npos);
  CHECK(got.find("mercato_stage_seconds_count{stage=\"handler\"} 6") != std::string::npos);
  auto strip_stages = [](const std::string& s) {
    std::istringstream in(s);
    std::string line;
    std::string out;
    while (std::getline(in, line)) {
      if (line.rfind("mercato_stage_seconds", 0) != 0) {
        out += line + "\n";
      }
    }
    return out;
  };
  CHECK(strip_stages(got) == strip_stages(want));
}

TEST_CASE("a router shared by two registries reports into each pipeline's own registry") {
  router routes;
  routes.add(bhttp::verb::get, "/x", [](std::shared_ptr<request_context>, responder respond) {
    respond(response::empty(204));
  });
  telemetry::metrics a;
  telemetry::metrics b;
  pipeline pa{routes, &a};
  pipeline pb{routes, &b};
  for (auto* p : {&pa, &pb, &pa}) {
    auto ctx = std::make_shared<request_context>();
    ctx->raw.method(bhttp::verb::get);
    ctx->raw.target("/x");
    p->dispatch(ctx, [](response) {});
  }
  CHECK(a.scrape().find("mercato_http_requests_total{method=\"GET\",route=\"/x\",status=\"204\"} 2") !=
        std::string::npos);
  CHECK(b.scrape().find("mercato_http_requests_total{method=\"GET\",route=\"/x\",status=\"204\"} 1") !=
        std::string::npos);
}
