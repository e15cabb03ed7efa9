// Issue 14: the per-request costs an io thread pays after its handler answered, old way against new way, in
// one process and one run (alternating rounds, so machine noise hits both alike):
//   1. metrics: the registry lookup per request (Family::Add: mutex + label hash) against the route's
//      pre-resolved series (http_route_series: two atomic loads), on 1 and 2 threads;
//   2. the access-log line: written synchronously to stderr by the caller (log_info, as before) against
//      queued to the async logger (log_access). Run it with stderr on a file or a pipe:
//        mercato_edge_costs_bench 2>/tmp/edge.log
//        mercato_edge_costs_bench 2> >(pv -qL 2m >/dev/null)    # a slow reader
// Prints ns per request (median of the rounds) and the ratio new/old on stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "config/settings.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using steady = std::chrono::steady_clock;

namespace {

template <typename F>
double ns_per_op(unsigned threads, std::size_t ops_per_thread, F f) {
  std::vector<std::thread> ts;
  const auto t0 = steady::now();
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&f, ops_per_thread, t] {
      for (std::size_t i = 0; i < ops_per_thread; ++i) {
        f(t, i);
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  return std::chrono::duration<double, std::nano>(steady::now() - t0).count() /
         static_cast<double>(ops_per_thread * threads);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const char* routes[] = {"/api/v1/products/{id}", "/api/v1/products", "/api/v1/categories", "/api/v1/carts/{id}/items"};
const unsigned statuses[] = {200, 200, 200, 404, 200, 304, 200, 201};

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  telemetry::metrics m;
  std::vector<telemetry::http_route_series*> series;
  for (const auto* r : routes) {
    series.push_back(&m.route_series(r, "GET"));
  }
  for (unsigned threads : {1u, 2u}) {
    std::vector<double> before, after;
    constexpr std::size_t ops = 200'000;
    for (int r = 0; r < rounds; ++r) {
      before.push_back(ns_per_op(threads, ops, [&m](unsigned t, std::size_t i) {
        m.observe_http_request(routes[(i + t) % 4], "GET", statuses[i % 8], 0.001);
      }));
      after.push_back(ns_per_op(threads, ops, [&series](unsigned t, std::size_t i) {
        series[(i + t) % 4]->observe(statuses[i % 8], 0.001);
      }));
    }
    std::printf("metrics, %u thread(s): registry lookup %.0f ns/request, pre-resolved series %.0f ns/request, "
                "new/old %.3f\n",
                threads, median(before), median(after), median(after) / median(before));
  }

  config::log_settings ls;
  ls.format = config::log_format::json;
  telemetry::configure_logging(ls);
  const boost::json::object fields{{"request_id", "0b6f8c7e-4d1a-4c1e-9f55-2f4a3e1b7c90"},
                                   {"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"},
                                   {"method", "GET"},
                                   {"route", "/api/v1/products/{id}"},
                                   {"path", "/api/v1/products/7b0c7a52-1b7e-4f0e-a3a3-5b5d0f6c2e11"},
                                   {"status", 200},
                                   {"bytes", 731},
                                   {"duration_us", 412}};
  std::vector<double> before, after, render;
  constexpr std::size_t lines = 20'000;
  for (int r = 0; r < rounds; ++r) {
    render.push_back(ns_per_op(1, lines, [&fields](unsigned, std::size_t) {
      auto line = telemetry::render_log_line(config::log_format::json, spdlog::level::info, "request", fields);
      asm volatile("" : : "g"(line.data()) : "memory");
    }));
    before.push_back(ns_per_op(1, lines, [&fields](unsigned, std::size_t) { telemetry::log_info("request", fields); }));
    after.push_back(ns_per_op(1, lines, [&fields](unsigned, std::size_t) { telemetry::log_access("request", fields); }));
    telemetry::flush_logging();  // the next round starts with an empty queue
  }
  std::printf("access log line, caller's cost: synchronous %.0f ns/request, async queue %.0f ns/request, new/old "
              "%.3f (rendering the line alone: %.0f ns); %zu async lines dropped\n",
              median(before), median(after), median(after) / median(before), median(render),
              telemetry::dropped_access_lines());
  return 0;
}
