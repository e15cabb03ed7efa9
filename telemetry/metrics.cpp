#include "telemetry/metrics.hpp"

#include <sstream>

#include <prometheus/text_serializer.h>

namespace mercato::telemetry {
namespace {

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,   0.1,   0.25,   0.5,   1.0,  2.5, 5.0};
  return b;
}

}  // namespace

metrics::metrics()
    : metrics(std::make_shared<prometheus::Registry>()) {}

metrics::metrics(std::shared_ptr<prometheus::Registry> reg)
    : http_in_flight(prometheus::BuildGauge()
                         .Name("mercato_http_requests_in_flight")
                         .Help("HTTP requests received and not yet answered")
                         .Register(*reg)
                         .Add({})),
      http_connections(prometheus::BuildGauge()
                           .Name("mercato_http_connections")
                           .Help("Open HTTP connections")
                           .Register(*reg)
                           .Add({})),
      db_pool_size(prometheus::BuildGauge()
                       .Name("mercato_db_pool_size")
                       .Help("PostgreSQL connections the pool may hold")
                       .Register(*reg)
                       .Add({})),
      db_pool_in_use(prometheus::BuildGauge()
                         .Name("mercato_db_pool_in_use")
                         .Help("PostgreSQL pool connections currently running a job")
                         .Register(*reg)
                         .Add({})),
      db_queue_depth(prometheus::BuildGauge()
                         .Name("mercato_db_queue_depth")
                         .Help("Database jobs waiting for a pool connection")
                         .Register(*reg)
                         .Add({})),
      db_failures(prometheus::BuildCounter()
                      .Name("mercato_db_failures_total")
                      .Help("Database jobs that failed because PostgreSQL was unavailable or errored")
                      .Register(*reg)
                      .Add({})),
      db_up(prometheus::BuildGauge()
                .Name("mercato_db_up")
                .Help("1 while the last PostgreSQL connection attempt succeeded")
                .Register(*reg)
                .Add({})),
      registry_(std::move(reg)),
      http_requests_(prometheus::BuildCounter()
                         .Name("mercato_http_requests_total")
                         .Help("HTTP requests answered, by route, method and status")
                         .Register(*registry_)),
      http_duration_(prometheus::BuildHistogram()
                         .Name("mercato_http_request_duration_seconds")
                         .Help("Time from request read to response written, by route")
                         .Register(*registry_)) {}

std::string metrics::scrape() const {
  std::ostringstream out;
  prometheus::TextSerializer{}.Serialize(out, registry_->Collect());
  return out.str();
}

void metrics::observe_http_request(std::string_view route, std::string_view method, unsigned status,
                                   double seconds) {
  const std::string status_text = std::to_string(status);
  http_requests_.Add({{"route", std::string(route)}, {"method", std::string(method)}, {"status", status_text}})
      .Increment();
  http_duration_.Add({{"route", std::string(route)}, {"status_class", status_text.substr(0, 1) + "xx"}},
                     latency_buckets())
      .Observe(seconds);
}

}  // namespace mercato::telemetry
