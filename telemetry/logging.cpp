#include "telemetry/logging.hpp"

#include <atomic>
#include <chrono>
#include <ctime>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/async.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

namespace mercato::telemetry {
namespace {

std::atomic<config::log_format> g_format{config::log_format::text};

std::string utc_timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = time_point_cast<seconds>(now);
  auto millis = duration_cast<milliseconds>(now - secs).count();
  std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

std::string_view level_name(spdlog::level::level_enum lvl) {
  auto sv = spdlog::level::to_string_view(lvl);
  return {sv.data(), sv.size()};
}

// Forwards to the node's stderr sink (the same object, so its mutex keeps lines whole) and counts what
// it wrote, so flush_logging() can tell when the queue has drained.
class counting_sink final : public spdlog::sinks::sink {
 public:
  explicit counting_sink(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override {
    inner_->log(msg);
    written_.fetch_add(1, std::memory_order_release);
  }
  void flush() override { inner_->flush(); }
  // The inner sink keeps the node logger's pattern ("%v": lines are rendered before they are logged).
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}
  std::uint64_t written() const { return written_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
  std::atomic<std::uint64_t> written_{0};
};

// 4096 queued lines (~1.5 MB once used) absorb a burst of 100 ms at 40k requests/s. When stderr still
// cannot keep up, overrun_oldest drops the oldest lines: `block` would put the io threads back to waiting
// on the pipe, which is what the queue is for (and spdlog 1.10 has no bounded wait).
constexpr std::size_t access_queue_lines = 4096;

struct access_log {
  std::shared_ptr<spdlog::details::thread_pool> pool;
  std::shared_ptr<counting_sink> sink;
  std::shared_ptr<spdlog::async_logger> logger;
  std::atomic<std::uint64_t> queued{0};
};

// Set once by the first configure_logging and never destroyed: a destructor at exit would join the log
// thread, which could hang on a pipe nobody reads. Queued lines are written out by flush_logging() (the node
// calls it at shutdown, bounded in time).
std::atomic<access_log*> g_access{nullptr};

}  // namespace

void configure_logging(const config::log_settings& s) {
  g_format = s.format;
  // stderr keeps stdout free for command output (admin commands print there).
  auto logger = spdlog::get("mercato");
  if (!logger) {
    logger = spdlog::stderr_logger_mt("mercato");
  }
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::from_str(s.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  if (g_access.load(std::memory_order_acquire) == nullptr && !logger->sinks().empty()) {
    auto a = std::make_unique<access_log>();
    a->pool = std::make_shared<spdlog::details::thread_pool>(access_queue_lines, 1);
    a->sink = std::make_shared<counting_sink>(logger->sinks().front());
    a->logger = std::make_shared<spdlog::async_logger>("mercato.access", a->sink, a->pool,
                                                       spdlog::async_overflow_policy::overrun_oldest);
    g_access.store(a.release(), std::memory_order_release);  // intentionally kept until the process ends
  }
  if (auto* a = g_access.load(std::memory_order_acquire)) {
    a->logger->set_level(logger->level());
  }
}

void log_access(std::string_view msg, const boost::json::object& fields) {
  auto* a = g_access.load(std::memory_order_acquire);
  if (a == nullptr) {  // logging not configured (tests): the node logger, synchronously
    log(spdlog::level::info, msg, fields);
    return;
  }
  if (!a->logger->should_log(spdlog::level::info)) {
    return;
  }
  a->queued.fetch_add(1, std::memory_order_relaxed);
  a->logger->log(spdlog::level::info, "{}",
                 render_log_line(g_format.load(std::memory_order_relaxed), spdlog::level::info, msg, fields));
}

std::size_t dropped_access_lines() {
  auto* a = g_access.load(std::memory_order_acquire);
  return a == nullptr ? 0 : a->pool->overrun_counter();
}

void flush_logging() {
  auto* a = g_access.load(std::memory_order_acquire);
  if (a == nullptr) {
    return;
  }
  // Wait (at most 5 s: stderr may be a pipe nobody reads) until every queued line is written or dropped.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (a->sink->written() + a->pool->overrun_counter() < a->queued.load(std::memory_order_relaxed) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  a->sink->flush();
}

bool log_enabled(spdlog::level::level_enum lvl) {
  return spdlog::default_logger_raw()->should_log(lvl);
}

std::string render_log_line(config::log_format fmt, spdlog::level::level_enum lvl, std::string_view msg,
                            const boost::json::object& fields) {
  if (fmt == config::log_format::json) {
    boost::json::object line;
    line.reserve(fields.size() + 3);
    line["ts"] = utc_timestamp();
    line["level"] = level_name(lvl);
    line["msg"] = msg;
    for (const auto& kv : fields) {
      line[kv.key()] = kv.value();
    }
    return boost::json::serialize(line);
  }
  std::string out = utc_timestamp();
  out += ' ';
  out += level_name(lvl);
  out += ' ';
  out += msg;
  for (const auto& kv : fields) {
    out += ' ';
    out += kv.key();
    out += '=';
    if (kv.value().is_string()) {
      const auto& s = kv.value().get_string();
      out.append(s.data(), s.size());
    } else {
      out += boost::json::serialize(kv.value());
    }
  }
  return out;
}

void log(spdlog::level::level_enum lvl, std::string_view msg, const boost::json::object& fields) {
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(lvl)) {
    return;
  }
  logger->log(lvl, "{}", render_log_line(g_format.load(std::memory_order_relaxed), lvl, msg, fields));
}

}  // namespace mercato::telemetry
