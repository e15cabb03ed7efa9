// mercato_loadgen — an HTTP/1.1 keep-alive load generator for loopback targets.
//
// Two models:
//   --closed   each connection sends its next request as soon as the previous reply arrives (max throughput);
//              latency runs from the actual send.
//   --rate R   open model: R requests per second are scheduled at fixed intervals whatever the server does;
//              latency runs from the *scheduled* time, so time spent waiting for a free connection counts
//              (no coordinated omission).
// Each io thread owns its own io_context, its share of the connections and of the rate; nothing is shared
// between threads while running, and the per-thread results are merged at the end.
#include "latency_histogram.hpp"
#include "loopback_url.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using boost::system::error_code;
using mercato::bench::latency_histogram;
using mercato::bench::loopback_url;

constexpr auto connect_backoff = std::chrono::milliseconds(100);
constexpr std::uint64_t response_body_limit = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------- options

struct options {
  std::vector<std::string> urls;
  std::string urls_file;
  std::string requests_file;
  std::string base;
  std::vector<std::string> headers;
  int connections = 32;
  int threads = 1;
  double duration_s = 10.0;
  double warmup_s = 2.0;
  std::optional<double> rate;
  bool closed = false;
  int timeout_ms = 5000;
  bool json = false;
  bool timeline = false;
  int timeline_ms = 1000;  // --timeline bucket width
  std::string label;
};

void print_usage(std::ostream& out) {
  out << R"(usage: mercato_loadgen (--closed | --rate R) --url http://127.0.0.1:PORT/path [options]

targets (round-robin; only loopback hosts: 127.0.0.0/8, ::1, localhost):
  --url URL            a target; repeatable
  --urls-file FILE     one target per line: a full URL, or a path resolved against --base (or the first --url);
                       blank lines and lines starting with '#' are skipped
  --base URL           host and port for the paths of --urls-file
  --requests-file FILE one request per line as a JSON object (blank lines and lines starting with '#' skipped):
                         {"method":"POST","path":"/api/v1/carts/ID/items","headers":{"X-Cart-Token":"..."},
                          "body":"{\"product_id\":\"...\",\"quantity\":1}"}
                       method defaults to GET; path is a full URL or a path resolved like --urls-file's;
                       headers and body are optional (a body is sent with Content-Length, and with
                       Content-Type: application/json unless a Content-Type header is given);
                       cycled round-robin together with the other targets
  --header 'K: V'      extra request header on every request; repeatable

model (exactly one):
  --closed             closed loop: each connection sends the next request when the previous reply arrives
  --rate R             open model: R requests/s overall at fixed intervals; latency from the scheduled time

options:
  --connections N      keep-alive connections (default 32)
  --threads T          io threads (default 1; never more than connections)
  --duration S         measured seconds (default 10)
  --warmup S           seconds run but not measured, before the measurement (default 2)
  --timeout-ms MS      per-request timeout from send to complete reply (default 5000)
  --label NAME         name echoed in the output
  --timeline           also report each measured second on its own (by scheduled or send time): ok, errors,
                       p50, p99 and max, to tell a steady tail from stalls (a "timeline" array in --json)
  --timeline-ms MS     the same in buckets of MS milliseconds (10-60000; implies --timeline), to see a stall
                       that recurs within each second
  --json               print one JSON line on stdout (the human summary then goes to stderr)
  --help

exit status: 0 when at least one request succeeded, 1 when none did, 2 on bad usage.
)";
}

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "mercato_loadgen: " << message << "\n(see --help)\n";
  std::exit(2);
}

double parse_number(const std::string& flag, const std::string& text, double min, double max) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    usage_error(flag + " needs a number, got '" + text + "'");
  }
  if (used != text.size() || !std::isfinite(v) || v < min || v > max) {
    std::ostringstream msg;
    msg << flag << " must be a number in [" << min << ", " << max << "], got '" << text << "'";
    usage_error(msg.str());
  }
  return v;
}

int parse_int(const std::string& flag, const std::string& text, int min, int max) {
  const double v = parse_number(flag, text, min, max);
  if (v != std::floor(v)) usage_error(flag + " needs a whole number, got '" + text + "'");
  return static_cast<int>(v);
}

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      print_usage(std::cout);
      std::exit(0);
    } else if (arg == "--url") {
      o.urls.push_back(value());
    } else if (arg == "--urls-file") {
      o.urls_file = value();
    } else if (arg == "--requests-file") {
      o.requests_file = value();
    } else if (arg == "--base") {
      o.base = value();
    } else if (arg == "--header") {
      o.headers.push_back(value());
    } else if (arg == "--connections") {
      o.connections = parse_int(arg, value(), 1, 20000);
    } else if (arg == "--threads") {
      o.threads = parse_int(arg, value(), 1, 256);
    } else if (arg == "--duration") {
      o.duration_s = parse_number(arg, value(), 0.1, 3600);
    } else if (arg == "--warmup") {
      o.warmup_s = parse_number(arg, value(), 0, 600);
    } else if (arg == "--rate") {
      o.rate = parse_number(arg, value(), 0.1, 10'000'000);
    } else if (arg == "--closed") {
      o.closed = true;
    } else if (arg == "--timeout-ms") {
      o.timeout_ms = parse_int(arg, value(), 1, 600'000);
    } else if (arg == "--label") {
      o.label = value();
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--timeline") {
      o.timeline = true;
    } else if (arg == "--timeline-ms") {
      o.timeline = true;
      o.timeline_ms = parse_int(arg, value(), 10, 60'000);
    } else {
      usage_error("unknown argument '" + arg + "'");
    }
  }
  if (o.closed == o.rate.has_value()) usage_error("choose exactly one of --closed and --rate R");
  if (o.urls.empty() && o.urls_file.empty() && o.requests_file.empty()) {
    usage_error("give at least one --url, a --urls-file or a --requests-file");
  }
  o.threads = std::min(o.threads, o.connections);
  return o;
}

// ---------------------------------------------------------------------------------------------- targets

struct request_plan {
  asio::ip::address address;
  unsigned short port = 0;
  std::vector<std::string> requests;  // each one serialized once, sent as is
  std::vector<std::string> targets;
};

// One request as given: a GET of a --url or --urls-file line, or a line of --requests-file.
struct request_spec {
  loopback_url url;
  std::string method = "GET";
  std::vector<std::string> headers;  // "K: V", this request's own (after the --header ones)
  std::optional<std::string> body;
};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Whether one of the "K: V" lines is header `name` (case-insensitive).
bool has_header(const std::vector<std::string>& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const std::string& h) {
    return h.size() > name.size() && h[name.size()] == ':' && iequals(std::string_view(h).substr(0, name.size()), name);
  });
}

std::string serialize_request(const request_spec& r, const std::vector<std::string>& headers) {
  std::string out = r.method + " " + r.url.target + " HTTP/1.1\r\nHost: " + r.url.host_header +
                    "\r\nUser-Agent: mercato_loadgen\r\nAccept: application/json\r\n";
  for (const auto& h : headers) out += h + "\r\n";
  for (const auto& h : r.headers) out += h + "\r\n";
  const bool sends_body = r.body || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
  if (sends_body) {
    const std::string body = r.body.value_or(std::string());
    if (!body.empty() && !has_header(headers, "content-type") && !has_header(r.headers, "content-type")) {
      out += "Content-Type: application/json\r\n";
    }
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  } else {
    out += "\r\n";
  }
  return out;
}

bool is_token(const std::string& s) {  // an HTTP method or header name (RFC 9110 tchar, simplified)
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool has_control_chars(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

// Reads the lines of a --urls-file or --requests-file: (line number, text) without blanks and '#' comments.
std::vector<std::pair<int, std::string>> read_lines(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) usage_error(std::string("cannot read ") + flag + " '" + path + "'");
  std::vector<std::pair<int, std::string>> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    line.erase(0, first);
    out.emplace_back(line_no, std::move(line));
  }
  if (out.empty()) usage_error(std::string(flag) + " '" + path + "' holds no targets");
  return out;
}

request_plan plan_requests(const options& o) {
  std::vector<request_spec> specs;
  auto parse = [&](const std::string& text, const std::string& origin) {
    loopback_url u;
    if (auto err = mercato::bench::parse_loopback_url(text, u); !err.empty()) usage_error(origin + ": " + err);
    return u;
  };
  for (const auto& u : o.urls) specs.push_back({parse(u, "--url"), "GET", {}, std::nullopt});

  // Paths of the files are resolved against --base, or the first --url.
  const std::string base = o.base.empty() && !o.urls.empty() ? o.urls.front() : o.base;
  loopback_url base_url;
  if (!base.empty()) base_url = parse(base, "--base");
  auto resolve = [&](const std::string& text, const std::string& origin) {
    if (text.empty() || text.front() != '/') return parse(text, origin);
    if (base.empty()) usage_error(origin + ": a path needs --base or a --url to give host and port");
    if (has_control_chars(text) || text.find(' ') != std::string::npos) {
      usage_error(origin + ": a path must not contain spaces or control characters");
    }
    loopback_url u = base_url;
    u.target = text;
    return u;
  };

  if (!o.urls_file.empty()) {
    for (const auto& [line_no, line] : read_lines(o.urls_file, "--urls-file")) {
      specs.push_back({resolve(line, o.urls_file + ":" + std::to_string(line_no)), "GET", {}, std::nullopt});
    }
  }

  if (!o.requests_file.empty()) {
    for (const auto& [line_no, line] : read_lines(o.requests_file, "--requests-file")) {
      const std::string origin = o.requests_file + ":" + std::to_string(line_no);
      boost::system::error_code ec;
      const boost::json::value doc = boost::json::parse(line, ec);
      if (ec || !doc.is_object()) usage_error(origin + ": not a JSON object");
      const auto& obj = doc.as_object();
      auto text_of = [&](const char* key) -> std::optional<std::string> {
        const auto* v = obj.if_contains(key);
        if (!v) return std::nullopt;
        if (!v->is_string()) usage_error(origin + ": \"" + key + "\" must be a string");
        return std::string(v->as_string());
      };
      for (const auto& kv : obj) {
        const std::string_view k = kv.key();
        if (k != "method" && k != "path" && k != "headers" && k != "body") {
          usage_error(origin + ": unknown member \"" + std::string(k) + "\"");
        }
      }
      request_spec r;
      const auto path = text_of("path");
      if (!path) usage_error(origin + ": \"path\" is required");
      r.url = resolve(*path, origin);
      if (auto m = text_of("method")) {
        r.method = *m;
        std::transform(r.method.begin(), r.method.end(), r.method.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        if (!is_token(r.method)) usage_error(origin + ": \"method\" is not an HTTP method");
      }
      if (const auto* h = obj.if_contains("headers")) {
        if (!h->is_object()) usage_error(origin + ": \"headers\" must be an object of strings");
        for (const auto& kv : h->as_object()) {
          const std::string name(kv.key());
          if (!is_token(name) || !kv.value().is_string() || has_control_chars(std::string(kv.value().as_string()))) {
            usage_error(origin + ": header \"" + name + "\" needs a token name and a one-line string value");
          }
          if (iequals(name, "content-length") || iequals(name, "host") || iequals(name, "transfer-encoding")) {
            usage_error(origin + ": header \"" + name + "\" is set by mercato_loadgen");
          }
          r.headers.push_back(name + ": " + std::string(kv.value().as_string()));
        }
      }
      r.body = text_of("body");
      specs.push_back(std::move(r));
    }
  }

  request_plan plan;
  plan.address = specs.front().url.address;
  plan.port = specs.front().url.port;
  for (const auto& r : specs) {
    if (r.url.address != plan.address || r.url.port != plan.port) {
      usage_error("all targets must share one host and port (got " + plan.address.to_string() + ":" +
                  std::to_string(plan.port) + " and " + r.url.address.to_string() + ":" +
                  std::to_string(r.url.port) + ")");
    }
    plan.requests.push_back(serialize_request(r, o.headers));
    plan.targets.push_back(r.url.target);
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------- results

// One bucket of --timeline (a second, or --timeline-ms): the requests scheduled (open model) or sent (closed
// loop) in it.
struct second_bucket {
  latency_histogram latency;  // successful requests only, as in results
  std::uint64_t errors = 0;

  void merge(const second_bucket& other) {
    latency.merge(other.latency);
    errors += other.errors;
  }
};

struct results {
  latency_histogram latency;  // successful (2xx/3xx) requests only, so fast error replies cannot flatter it
  std::uint64_t ok = 0;
  std::uint64_t unsent = 0;  // open model: scheduled in the window but never sent (no free connection in time)
  std::map<std::string, std::uint64_t> errors;
  std::vector<second_bucket> seconds;  // --timeline only; index = whole buckets since the end of the warm-up

  [[nodiscard]] std::uint64_t error_total() const {
    std::uint64_t n = 0;
    for (const auto& [kind, count] : errors) n += count;
    return n;
  }

  void merge(const results& other) {
    latency.merge(other.latency);
    ok += other.ok;
    unsent += other.unsent;
    for (const auto& [kind, count] : other.errors) errors[kind] += count;
    if (seconds.size() < other.seconds.size()) seconds.resize(other.seconds.size());
    for (std::size_t i = 0; i < other.seconds.size(); ++i) seconds[i].merge(other.seconds[i]);
  }
};

struct timeline {
  time_point start;         // first scheduled request (open model)
  time_point measure_from;  // end of warm-up
  time_point end;           // end of measurement: nothing new is sent after it
};

// ---------------------------------------------------------------------------------------------- worker

class worker;

// One keep-alive connection: connect, then write a request, read its reply, and ask the worker for more.
class connection {
 public:
  explicit connection(worker& owner);
  void connect();
  void send(time_point intended, const std::string& request);
  void close();
  [[nodiscard]] bool busy() const { return busy_; }

 private:
  void on_connect(const error_code& ec);
  void on_write(const error_code& ec);
  void on_read(const error_code& ec);
  void fail_request(const error_code& ec, const char* stage);

  worker& owner_;
  beast::tcp_stream stream_;
  asio::steady_timer backoff_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  time_point intended_{};
  bool busy_ = false;
};

class worker {
 public:
  worker(const options& o, const request_plan& plan, const timeline& t, int index, int connections,
         double rate_per_s)
      : options_(o),
        plan_(plan),
        timeline_(t),
        schedule_timer_(ioc_),
        end_timer_(ioc_),
        next_target_(static_cast<std::size_t>(index)) {
    for (int i = 0; i < connections; ++i) connections_.push_back(std::make_unique<connection>(*this));
    if (rate_per_s > 0) {
      interval_ = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(1.0 / rate_per_s));
      // Interleave the threads' schedules so the overall stream stays evenly spaced.
      next_scheduled_ = t.start + std::chrono::duration_cast<clock_type::duration>(
                                      std::chrono::duration<double>(index / *o.rate));
    }
  }

  void run() {
    for (auto& c : connections_) c->connect();
    if (open_model()) arm_schedule();
    end_timer_.expires_at(timeline_.end);
    end_timer_.async_wait([this](const error_code& ec) {
      if (!ec) begin_stop();
    });
    ioc_.run();
  }

  asio::io_context& context() { return ioc_; }
  [[nodiscard]] bool stopping() const { return stopping_; }
  [[nodiscard]] std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(options_.timeout_ms); }
  [[nodiscard]] tcp::endpoint endpoint() const { return {plan_.address, plan_.port}; }
  results& outcome() { return results_; }

  // A connection is ready for a request (just connected, or its previous reply arrived).
  void on_ready(connection& c) {
    if (stopping_) return;
    if (!open_model()) {
      send(c, clock_type::now());
    } else if (!pending_.empty()) {
      const time_point due = pending_.front();
      pending_.pop_front();
      send(c, due);
    } else {
      idle_.push_back(&c);
    }
  }

  void on_request_done(time_point intended, time_point finished, int status) {
    --in_flight_;
    if (intended >= timeline_.measure_from) {
      second_bucket* second = bucket_of(intended);
      if (status >= 200 && status < 400) {
        ++results_.ok;
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(finished - intended).count();
        results_.latency.record(ns);
        if (second != nullptr) second->latency.record(ns);
      } else {
        ++results_.errors["http_" + std::to_string(status)];
        if (second != nullptr) ++second->errors;
      }
    }
    if (stopping_ && in_flight_ == 0) finish();
  }

  void on_request_failed(time_point intended, const std::string& kind) {
    --in_flight_;
    if (intended >= timeline_.measure_from) {
      ++results_.errors[kind];
      if (second_bucket* second = bucket_of(intended)) ++second->errors;
    }
    if (stopping_ && in_flight_ == 0) finish();
  }

  void on_connect_failed() {
    if (clock_type::now() >= timeline_.measure_from && !stopping_) ++results_.errors["connect"];
  }

  void forget_idle(connection& c) { idle_.erase(std::remove(idle_.begin(), idle_.end(), &c), idle_.end()); }

 private:
  [[nodiscard]] bool open_model() const { return options_.rate.has_value(); }

  // The --timeline bucket of a measured request (nullptr without --timeline).
  second_bucket* bucket_of(time_point intended) {
    if (!options_.timeline) return nullptr;
    const auto index = static_cast<std::size_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(intended - timeline_.measure_from).count() /
        options_.timeline_ms);
    if (results_.seconds.size() <= index) results_.seconds.resize(index + 1);
    return &results_.seconds[index];
  }

  void send(connection& c, time_point intended) {
    ++in_flight_;
    c.send(intended, plan_.requests[next_target_ % plan_.requests.size()]);
    next_target_ += static_cast<std::size_t>(options_.threads);
  }

  void arm_schedule() {
    if (stopping_ || next_scheduled_ >= timeline_.end) return;
    schedule_timer_.expires_at(next_scheduled_);
    schedule_timer_.async_wait([this](const error_code& ec) {
      if (ec || stopping_) return;
      // Catch up on every request that fell due, even when the timer fired late.
      const time_point now = clock_type::now();
      while (next_scheduled_ <= now && next_scheduled_ < timeline_.end) {
        pending_.push_back(next_scheduled_);
        next_scheduled_ += interval_;
      }
      while (!pending_.empty() && !idle_.empty()) {
        connection* c = idle_.back();
        idle_.pop_back();
        const time_point due = pending_.front();
        pending_.pop_front();
        send(*c, due);
      }
      arm_schedule();
    });
  }

  void begin_stop() {
    stopping_ = true;
    schedule_timer_.cancel();
    for (const time_point due : pending_) {
      if (due >= timeline_.measure_from) ++results_.unsent;
    }
    pending_.clear();
    idle_.clear();
    for (auto& c : connections_) {
      if (!c->busy()) c->close();
    }
    if (in_flight_ == 0) {
      finish();
      return;
    }
    // Replies already on their way are awaited up to the request timeout, then abandoned (they time out).
    end_timer_.expires_after(timeout() + std::chrono::milliseconds(100));
    end_timer_.async_wait([this](const error_code& ec) {
      if (!ec) finish();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    end_timer_.cancel();
    for (auto& c : connections_) c->close();
    ioc_.stop();
  }

  asio::io_context ioc_{1};
  const options& options_;
  const request_plan& plan_;
  const timeline timeline_;
  asio::steady_timer schedule_timer_;
  asio::steady_timer end_timer_;
  std::vector<std::unique_ptr<connection>> connections_;
  std::vector<connection*> idle_;
  std::deque<time_point> pending_;
  time_point next_scheduled_{};
  clock_type::duration interval_{};
  std::size_t next_target_;
  std::uint64_t in_flight_ = 0;
  bool stopping_ = false;
  bool finished_ = false;
  results results_;
};

connection::connection(worker& owner) : owner_(owner), stream_(owner.context()), backoff_(owner.context()) {}

void connection::connect() {
  if (owner_.stopping()) return;
  stream_.expires_after(owner_.timeout());
  stream_.async_connect(owner_.endpoint(), [this](const error_code& ec) { on_connect(ec); });
}

void connection::on_connect(const error_code& ec) {
  if (owner_.stopping()) return;
  if (ec) {
    owner_.on_connect_failed();
    stream_.close();
    backoff_.expires_after(connect_backoff);
    backoff_.async_wait([this](const error_code& wait_ec) {
      if (!wait_ec) connect();
    });
    return;
  }
  error_code ignored;
  stream_.socket().set_option(tcp::no_delay(true), ignored);
  stream_.expires_never();
  owner_.on_ready(*this);
}

void connection::send(time_point intended, const std::string& request) {
  intended_ = intended;
  busy_ = true;
  buffer_.clear();
  parser_.emplace();
  parser_->body_limit(response_body_limit);
  stream_.expires_after(owner_.timeout());
  asio::async_write(stream_, asio::buffer(request), [this](const error_code& ec, std::size_t) { on_write(ec); });
}

void connection::on_write(const error_code& ec) {
  if (ec) return fail_request(ec, "write");
  http::async_read(stream_, buffer_, *parser_, [this](const error_code& read_ec, std::size_t) { on_read(read_ec); });
}

void connection::on_read(const error_code& ec) {
  if (ec) return fail_request(ec, "read");
  const time_point finished = clock_type::now();
  busy_ = false;
  stream_.expires_never();
  const bool keep_alive = parser_->get().keep_alive();
  const int status = static_cast<int>(parser_->get().result_int());
  parser_.reset();
  owner_.on_request_done(intended_, finished, status);
  if (owner_.stopping()) return;
  if (keep_alive) {
    owner_.on_ready(*this);
  } else {
    stream_.close();
    connect();
  }
}

void connection::fail_request(const error_code& ec, const char* stage) {
  busy_ = false;
  std::string kind;
  if (ec == beast::error::timeout) {
    kind = "timeout";
  } else if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
             ec == asio::error::broken_pipe) {
    kind = "closed_by_peer";
  } else if (ec == asio::error::operation_aborted) {
    kind = "aborted";
  } else {
    kind = std::string(stage) + "_error";
  }
  stream_.close();
  parser_.reset();
  owner_.on_request_failed(intended_, kind);
  connect();
}

void connection::close() {
  backoff_.cancel();
  error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

// ---------------------------------------------------------------------------------------------- report

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

std::string format_rate(double r) {
  std::ostringstream out;
  out << r;
  return out.str();
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void report(const options& o, const request_plan& plan, const results& r, double measured_s) {
  const auto& h = r.latency;
  const std::uint64_t errors = r.error_total();
  const std::uint64_t requests = r.ok + errors;
  const double rate = static_cast<double>(r.ok) / measured_s;
  std::ostringstream endpoint;
  if (plan.address.is_v6()) {
    endpoint << '[' << plan.address.to_string() << "]:" << plan.port;
  } else {
    endpoint << plan.address.to_string() << ':' << plan.port;
  }

  std::ostream& human = o.json ? std::cerr : std::cout;
  char line[512];
  human << "mercato_loadgen" << (o.label.empty() ? "" : " [" + o.label + "]") << ": "
        << (o.closed ? std::string("closed loop") : "open model at " + format_rate(*o.rate) + " req/s") << ", "
        << o.connections << " connections, " << o.threads << " thread(s), " << o.duration_s << " s measured after "
        << o.warmup_s << " s warm-up, " << plan.requests.size() << " target(s) on " << endpoint.str() << "\n";
  std::snprintf(line, sizeof line, "  requests   %llu (ok %llu, errors %llu)\n",
                static_cast<unsigned long long>(requests), static_cast<unsigned long long>(r.ok),
                static_cast<unsigned long long>(errors));
  human << line;
  std::snprintf(line, sizeof line, "  rate       %.1f req/s ok\n", rate);
  human << line;
  std::snprintf(line, sizeof line,
                "  latency ms p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f, %s)\n",
                ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)), ms(h.percentile(99.9)),
                ms(h.max()), h.mean() / 1e6, o.closed ? "from send" : "from scheduled time");
  human << line;
  if (!r.errors.empty()) {
    human << "  errors    ";
    for (const auto& [kind, count] : r.errors) human << ' ' << kind << '=' << count;
    human << "\n";
  }
  if (o.timeline) {
    human << (o.timeline_ms == 1000 ? "  second" : "  from s") << "        ok  errors    p50 ms    p99 ms    max ms\n";
    for (std::size_t i = 0; i < r.seconds.size(); ++i) {
      const auto& b = r.seconds[i];
      std::snprintf(line, sizeof line, "  %6g  %8llu  %6llu  %8.3f  %8.3f  %8.3f\n",
                    static_cast<double>(i) * o.timeline_ms / 1000.0,
                    static_cast<unsigned long long>(b.latency.count()), static_cast<unsigned long long>(b.errors),
                    ms(b.latency.percentile(50)), ms(b.latency.percentile(99)), ms(b.latency.max()));
      human << line;
    }
  }
  if (r.unsent > 0) {
    human << "  WARNING    " << r.unsent
          << " scheduled requests were never sent (no free connection before the end): the target cannot sustain"
             " this rate with these connections, and the percentiles above understate the queueing\n";
  }

  if (o.json) {
    std::ostringstream j;
    j.setf(std::ios::fixed);
    j.precision(3);
    j << "{\"label\":\"" << json_escape(o.label) << "\",\"mode\":\"" << (o.closed ? "closed" : "open") << "\""
      << ",\"endpoint\":\"" << endpoint.str() << "\",\"targets\":" << plan.requests.size()
      << ",\"connections\":" << o.connections << ",\"threads\":" << o.threads << ",\"duration_s\":" << o.duration_s
      << ",\"warmup_s\":" << o.warmup_s << ",\"target_rate\":";
    if (o.rate) {
      j << *o.rate;
    } else {
      j << "null";
    }
    j << ",\"requests\":" << requests << ",\"ok\":" << r.ok << ",\"errors\":" << errors << ",\"errors_by_kind\":{";
    bool first = true;
    for (const auto& [kind, count] : r.errors) {
      j << (first ? "" : ",") << '"' << json_escape(kind) << "\":" << count;
      first = false;
    }
    j << "},\"unsent\":" << r.unsent << ",\"rate\":" << rate << ",\"p50_ms\":" << ms(h.percentile(50))
      << ",\"p90_ms\":" << ms(h.percentile(90)) << ",\"p99_ms\":" << ms(h.percentile(99))
      << ",\"p999_ms\":" << ms(h.percentile(99.9)) << ",\"max_ms\":" << ms(h.max()) << ",\"mean_ms\":" << h.mean() / 1e6;
    if (o.timeline) {
      j << ",\"timeline\":[";
      for (std::size_t i = 0; i < r.seconds.size(); ++i) {
        const auto& b = r.seconds[i];
        j << (i == 0 ? "" : ",") << "{\"second\":" << static_cast<double>(i) * o.timeline_ms / 1000.0
          << ",\"ok\":" << b.latency.count()
          << ",\"errors\":" << b.errors << ",\"p50_ms\":" << ms(b.latency.percentile(50))
          << ",\"p99_ms\":" << ms(b.latency.percentile(99)) << ",\"max_ms\":" << ms(b.latency.max()) << "}";
      }
      j << "]";
    }
    j << "}";
    std::cout << j.str() << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse_options(argc, argv);
  const request_plan plan = plan_requests(o);

  const auto seconds = [](double s) {
    return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
  };
  timeline t;
  t.start = clock_type::now() + std::chrono::milliseconds(50);  // lets the connections open first
  t.measure_from = t.start + seconds(o.warmup_s);
  t.end = t.measure_from + seconds(o.duration_s);

  std::vector<std::unique_ptr<worker>> workers;
  for (int i = 0; i < o.threads; ++i) {
    const int share = o.connections / o.threads + (i < o.connections % o.threads ? 1 : 0);
    const double rate = o.rate ? *o.rate * share / o.connections : 0.0;
    workers.push_back(std::make_unique<worker>(o, plan, t, i, share, rate));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (auto& th : threads) th.join();

  results total;
  for (auto& w : workers) total.merge(w->outcome());
  report(o, plan, total, o.duration_s);
  return total.ok > 0 ? 0 : 1;
}
