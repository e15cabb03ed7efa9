// mercato_soak_driver — the traffic of bench/soak/soak.sh: a realistic storefront mix against one node, over
// HTTP/1.1 keep-alive connections and WebSocket subscribers, with latency and status counts per route.
//
// The mix (weights per request, --mix overrides them): browsing (GET /products with a sort or a category,
// GET /products/{id}, GET /categories), search (GET /products?q=), shopping sessions of minted customers
// (POST /carts, POST /carts/{id}/items with an Idempotency-Key, GET /carts/{id}, POST /carts/{id}/checkout with
// the sandbox card; a few checkouts use tok_decline and answer 402, then the customer pays with tok_ok; a checkout
// answered 409 price_changed reads the cart again and retries; --shoppers customers take turns), logins of
// registered users, admin price changes (PATCH /products/{id}: the subscribers' price updates), and two kinds of
// deliberate client errors: GET /products/{unknown id} (404) and adding a sold-out product to a guest cart (409
// insufficient_stock). Every route has the statuses it expects; anything else is counted as unexpected.
// WebSocket subscribers (--ws-clients) connect with a customer's token, subscribe to the stock and price of a few
// products and to their orders, read everything, and after a random lifetime close normally and reconnect.
//
//   mercato_soak_driver --port P --setup FILE (--closed | --rate R) [--connections N] [--duration S] [--warmup S]
//                       [--interval S] [--window S] [--ws-clients N] [--ws-lifetime-s S] [--timeout-ms MS]
//                       [--seed N] [--run-id TEXT] [--mix name=w,...] [--shoppers N]
//
// --setup is a JSON object written by bench/soak/soak_prepare.py: {"products": [ids], "sold_out": id,
// "categories": [ids], "queries": [strings], "customers": [access tokens], "logins": [{"email", "password"}],
// "guest_carts": [{"id", "token"}], "admin_token": token}.
// Output on stdout, one JSON object per line: {"type":"interval",...} every --interval seconds (warm-up included,
// "t" negative then), and {"type":"summary",...} at the end: per route the statuses (expected and unexpected),
// p50/p99/max of the successful and expected replies over the measured time, and p99 over its first and last
// --window seconds; the WebSocket counters; requests scheduled but never sent (open model). Latency runs from the
// send (closed loop) or from the scheduled time (open model), as in mercato_loadgen. Loopback (127.0.0.1) only;
// the run ends by itself after warm-up + duration (+ the request timeout for replies still on their way).
#include "latency_histogram.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

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
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using boost::system::error_code;
using mercato::bench::latency_histogram;

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "mercato_soak_driver: " << message << "\n";
  std::exit(2);
}

// ---------------------------------------------------------------------------------------------- options, setup

struct options {
  unsigned short port = 0;
  std::string setup_file;
  bool closed = false;
  std::optional<double> rate;
  int connections = 64;
  double duration_s = 60;
  double warmup_s = 5;
  double interval_s = 10;
  double window_s = 300;
  int ws_clients = 100;
  double ws_lifetime_s = 60;
  int timeout_ms = 5000;
  unsigned seed = 15;
  std::string run_id = "soak";
  std::string mix;
  int shoppers = 200;
};

struct setup {
  std::vector<std::string> products;
  std::string sold_out;
  std::vector<std::string> categories;
  std::vector<std::string> queries;
  std::vector<std::string> customers;
  std::vector<std::pair<std::string, std::string>> logins;
  std::vector<std::pair<std::string, std::string>> guest_carts;
  std::string admin_token;
};

double number_arg(const std::string& flag, const std::string& text, double min, double max) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !std::isfinite(v) || v < min || v > max) {
    usage_error(flag + " needs a number in [" + std::to_string(min) + ", " + std::to_string(max) + "], got '" + text +
                "'");
  }
  return v;
}

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << "usage: mercato_soak_driver --port P --setup FILE (--closed | --rate R) [--connections N]\n"
                   "  [--duration S] [--warmup S] [--interval S] [--window S] [--ws-clients N] [--ws-lifetime-s S]\n"
                   "  [--timeout-ms MS] [--seed N] [--run-id TEXT] [--mix name=weight,...] [--shoppers N]\n"
                   "mix names: list, product, categories, search, cart, login, price, not_found, sold_out\n";
      std::exit(0);
    } else if (a == "--port") {
      o.port = static_cast<unsigned short>(number_arg(a, value(), 1, 65535));
    } else if (a == "--setup") {
      o.setup_file = value();
    } else if (a == "--closed") {
      o.closed = true;
    } else if (a == "--rate") {
      o.rate = number_arg(a, value(), 0.1, 1e6);
    } else if (a == "--connections") {
      o.connections = static_cast<int>(number_arg(a, value(), 1, 5000));
    } else if (a == "--duration") {
      o.duration_s = number_arg(a, value(), 1, 86400);
    } else if (a == "--warmup") {
      o.warmup_s = number_arg(a, value(), 0, 3600);
    } else if (a == "--interval") {
      o.interval_s = number_arg(a, value(), 0.5, 3600);
    } else if (a == "--window") {
      o.window_s = number_arg(a, value(), 1, 86400);
    } else if (a == "--ws-clients") {
      o.ws_clients = static_cast<int>(number_arg(a, value(), 0, 20000));
    } else if (a == "--ws-lifetime-s") {
      o.ws_lifetime_s = number_arg(a, value(), 1, 86400);
    } else if (a == "--timeout-ms") {
      o.timeout_ms = static_cast<int>(number_arg(a, value(), 1, 600000));
    } else if (a == "--seed") {
      o.seed = static_cast<unsigned>(number_arg(a, value(), 0, 4e9));
    } else if (a == "--run-id") {
      o.run_id = value();
    } else if (a == "--mix") {
      o.mix = value();
    } else if (a == "--shoppers") {
      o.shoppers = static_cast<int>(number_arg(a, value(), 1, 1e6));
    } else {
      usage_error("unknown argument '" + a + "' (see --help)");
    }
  }
  if (o.port == 0 || o.setup_file.empty()) usage_error("--port and --setup are required");
  if (o.closed == o.rate.has_value()) usage_error("choose exactly one of --closed and --rate R");
  return o;
}

setup read_setup(const std::string& path) {
  std::ifstream in(path);
  if (!in) usage_error("cannot read --setup '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  error_code ec;
  const json::value doc = json::parse(text.str(), ec);
  if (ec || !doc.is_object()) usage_error("--setup '" + path + "' is not a JSON object");
  setup s;
  try {
    const auto& o = doc.as_object();
    auto strings = [&](const char* key) {
      std::vector<std::string> out;
      for (const auto& v : o.at(key).as_array()) out.emplace_back(v.as_string());
      return out;
    };
    s.products = strings("products");
    s.sold_out = std::string(o.at("sold_out").as_string());
    s.categories = strings("categories");
    s.queries = strings("queries");
    s.customers = strings("customers");
    for (const auto& v : o.at("logins").as_array()) {
      s.logins.emplace_back(std::string(v.at("email").as_string()), std::string(v.at("password").as_string()));
    }
    for (const auto& v : o.at("guest_carts").as_array()) {
      s.guest_carts.emplace_back(std::string(v.at("id").as_string()), std::string(v.at("token").as_string()));
    }
    s.admin_token = std::string(o.at("admin_token").as_string());
  } catch (const std::exception& e) {
    usage_error("--setup '" + path + "': " + e.what());
  }
  if (s.products.empty() || s.customers.empty() || s.queries.empty() || s.logins.empty() || s.guest_carts.empty()) {
    usage_error("--setup '" + path + "' needs products, customers, queries, logins and guest_carts");
  }
  return s;
}

// ---------------------------------------------------------------------------------------------- routes

enum route_id : int {
  r_list,
  r_product,
  r_categories,
  r_search,
  r_cart_create,
  r_cart_add,
  r_cart_get,
  r_checkout,
  r_login,
  r_price,
  r_not_found,
  r_sold_out,
  route_count
};

// A reply's key: its status, and for a 409 also its problem code ("409 price_changed").
struct route_info {
  const char* name;                     // in the output
  std::vector<std::string> expected;    // reply keys the mix asks for on this route
  std::vector<std::string> deliberate;  // of those, the client errors the mix provokes (counted separately)
};

const std::vector<route_info>& routes() {
  static const std::vector<route_info> r = {
      {"GET /products", {"200"}, {}},
      {"GET /products/{id}", {"200"}, {}},
      {"GET /categories", {"200"}, {}},
      {"GET /products?q=", {"200"}, {}},
      {"POST /carts", {"201"}, {}},
      {"POST /carts/{id}/items", {"200", "201"}, {}},
      {"GET /carts/{id}", {"200"}, {}},
      // 402: the sessions that pay with tok_decline first; 409 price_changed: an admin price change of the mix
      // landed between the customer's cart read and the checkout (the customer reads the cart again and retries).
      {"POST /carts/{id}/checkout", {"201", "402", "409 price_changed"}, {"402", "409 price_changed"}},
      {"POST /auth/login", {"200"}, {}},
      {"PATCH /products/{id}", {"200"}, {}},
      {"GET /products/{unknown} (404)", {"404"}, {"404"}},
      {"POST /carts/{id}/items sold out (409)", {"409 insufficient_stock"}, {"409 insufficient_stock"}},
  };
  return r;
}

// The weighted choice of the next request kind. "cart" advances one shopping session by one step.
enum op_kind : int { op_list, op_product, op_categories, op_search, op_cart, op_login, op_price, op_not_found, op_sold_out, op_count };
const char* const op_names[op_count] = {"list", "product", "categories", "search", "cart",
                                        "login", "price", "not_found", "sold_out"};
// Per 1000 requests, roughly: 3 of 4 requests browse or search, 1 in 5 is a shopping step (so ~1 in 25 is a
// checkout), a login every ~330 requests (argon2id: each costs the node tens of ms of CPU), a price change every
// ~2000.
const double default_weights[op_count] = {220, 330, 20, 150, 240, 3, 0.5, 10, 10};

std::vector<double> parse_mix(const std::string& text) {
  std::vector<double> w(default_weights, default_weights + op_count);
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) usage_error("--mix: '" + item + "' is not name=weight");
    const std::string name = item.substr(0, eq);
    const auto it = std::find(op_names, op_names + op_count, name);
    if (it == op_names + op_count) usage_error("--mix: unknown name '" + name + "'");
    w[static_cast<std::size_t>(it - op_names)] = number_arg("--mix " + name, item.substr(eq + 1), 0, 1e9);
  }
  return w;
}

// ---------------------------------------------------------------------------------------------- results

struct route_stats {
  latency_histogram all;     // measured time; expected statuses only (fast errors cannot flatter it)
  latency_histogram first;   // the first --window seconds of the measured time
  latency_histogram last;    // the last --window seconds
  latency_histogram interval;
  std::map<std::string, std::uint64_t> expected;    // "200" -> n
  std::map<std::string, std::uint64_t> unexpected;  // "500", "timeout", ... -> n
  std::uint64_t interval_n = 0;
  std::uint64_t interval_bad = 0;
};

// ---------------------------------------------------------------------------------------------- the driver

struct customer {
  std::string token;
  std::string cart_id;
  int lines_wanted = 0;
  int lines = 0;
  bool viewed = false;
  bool decline_next = false;
};

struct pending_request {
  route_id route = r_list;
  int customer = -1;  // a shopping step's customer (locked while in flight)
  std::string product;
  std::string body;
  std::string wire;
};

class driver;

class http_connection {
 public:
  explicit http_connection(driver& d);
  void connect();
  void send(time_point intended, pending_request req);
  void close();
  // Open model: a connection waiting in the idle list watches its socket, so that one the node closed after its
  // idle timeout (http.idle_timeout_ms, 60 s) is reopened at once instead of failing the next request sent on it
  // (what an HTTP client's pool does with a stale keep-alive connection).
  void watch_idle();
  [[nodiscard]] bool busy() const { return busy_; }

 private:
  void on_read(const error_code& ec);
  void fail(const error_code& ec);

  driver& d_;
  beast::tcp_stream stream_;
  asio::steady_timer backoff_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  pending_request req_;
  time_point intended_{};
  bool busy_ = false;
  std::uint64_t generation_ = 0;  // bumped on every send: an idle watch of an earlier idle spell is void
};

struct ws_client : std::enable_shared_from_this<ws_client> {
  ws_client(asio::io_context& ioc, int index_) : ws(ioc), timer(ioc), index(index_) {}
  websocket::stream<beast::tcp_stream> ws;
  asio::steady_timer timer;
  beast::flat_buffer buffer;
  std::string subscribe_stock, subscribe_price, subscribe_orders;
  int index;
  bool closing = false;
};

class driver {
 public:
  driver(options o, setup s)
      : o_(std::move(o)),
        s_(std::move(s)),
        rng_(o_.seed),
        weights_(parse_mix(o_.mix)),
        pick_op_(weights_.begin(), weights_.end()),
        schedule_timer_(ioc_),
        end_timer_(ioc_),
        interval_timer_(ioc_),
        stats_(route_count) {
    const auto secs = [](double v) {
      return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(v));
    };
    start_ = clock_type::now() + std::chrono::milliseconds(100);
    measure_from_ = start_ + secs(o_.warmup_s);
    end_ = measure_from_ + secs(o_.duration_s);
    const double window = std::min(o_.window_s, o_.duration_s);
    first_until_ = measure_from_ + secs(window);
    last_from_ = end_ - secs(window);
    if (o_.rate) interval_ = secs(1.0 / *o_.rate);
    next_scheduled_ = start_;
    for (std::size_t i = 0; i < s_.customers.size(); ++i) {
      customers_.push_back({s_.customers[i], {}, 0, 0, false, false});
    }
    // --shoppers of the customers shop at any time, taking turns (a shopping step goes to the one that waited
    // longest), so a session of ~5 steps lasts shoppers / (shopping steps per second) seconds. The WebSocket
    // subscribers use the customers' tokens in order (subscriber i: customer i), shoppers or not.
    std::vector<int> all(customers_.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    std::shuffle(all.begin(), all.end(), rng_);
    all.resize(std::min(all.size(), static_cast<std::size_t>(o_.shoppers)));
    free_customers_.assign(all.begin(), all.end());
    for (int i = 0; i < o_.connections; ++i) connections_.push_back(std::make_unique<http_connection>(*this));
  }

  void run() {
    for (auto& c : connections_) c->connect();
    for (int i = 0; i < o_.ws_clients; ++i) ws_start(i, true);
    if (o_.rate) arm_schedule();
    arm_interval(start_);
    end_timer_.expires_at(end_);
    end_timer_.async_wait([this](const error_code& ec) {
      if (!ec) begin_stop();
    });
    ioc_.run();
    summary();
  }

  asio::io_context& context() { return ioc_; }
  [[nodiscard]] bool stopping() const { return stopping_; }
  [[nodiscard]] std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(o_.timeout_ms); }
  [[nodiscard]] tcp::endpoint endpoint() const { return {asio::ip::make_address("127.0.0.1"), o_.port}; }

  void on_ready(http_connection& c) {
    if (stopping_) return;
    if (!o_.rate) {
      send(c, clock_type::now());
    } else if (!pending_.empty()) {
      const time_point due = pending_.front();
      pending_.pop_front();
      send(c, due);
    } else {
      idle_.push_back(&c);
      c.watch_idle();
    }
  }

  void on_idle_closed(http_connection& c) {
    forget_idle(c);
    ++idle_reopened_;
  }

  void forget_idle(http_connection& c) { idle_.erase(std::remove(idle_.begin(), idle_.end(), &c), idle_.end()); }

  // A reply arrived (status) or the request failed (kind set, status 0).
  void done(const pending_request& req, time_point intended, int status, const std::string& body,
            const std::string& failure) {
    --in_flight_;
    const time_point now = clock_type::now();
    const auto& info = routes()[static_cast<std::size_t>(req.route)];
    const std::string key = failure.empty() ? reply_key(status, body) : failure;
    const bool expected = std::find(info.expected.begin(), info.expected.end(), key) != info.expected.end();
    advance_customer(req, key, body, expected);
    if (intended >= measure_from_ && intended < end_) {
      auto& st = stats_[static_cast<std::size_t>(req.route)];
      if (expected) {
        ++st.expected[key];
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - intended).count();
        st.all.record(ns);
        st.interval.record(ns);
        if (intended < first_until_) st.first.record(ns);
        if (intended >= last_from_) st.last.record(ns);
      } else {
        ++st.unexpected[key];
        ++st.interval_bad;
        if (unexpected_samples_.size() < 10) {
          unexpected_samples_.push_back(std::string(info.name) + " -> " + key + " " + body.substr(0, 200));
        }
      }
      ++st.interval_n;
    }
    if (stopping_ && in_flight_ == 0) finish();
  }

 private:
  friend class http_connection;

  static std::string reply_key(int status, const std::string& body) {
    std::string key = std::to_string(status);
    if (status == 409) {
      const auto at = body.find("\"code\":\"");
      if (at != std::string::npos) {
        const auto from = at + 8;
        const auto to = body.find('"', from);
        if (to != std::string::npos) key += " " + body.substr(from, to - from);
      }
    }
    return key;
  }

  // ------------------------------------------------------------------ requests

  std::string wire(const char* method, const std::string& target, const std::vector<std::string>& headers,
                   const std::string* body) const {
    std::string out = std::string(method) + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(o_.port) +
                      "\r\nUser-Agent: mercato_soak_driver\r\nAccept: application/json\r\n";
    for (const auto& h : headers) out += h + "\r\n";
    if (body != nullptr) {
      out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body->size()) + "\r\n\r\n" + *body;
    } else if (std::string_view(method) == "POST") {
      out += "Content-Length: 0\r\n\r\n";
    } else {
      out += "\r\n";
    }
    return out;
  }

  template <typename T>
  const T& any_of(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng_)];
  }

  std::string key() { return "Idempotency-Key: " + o_.run_id + "-" + std::to_string(++keys_sent_); }

  static std::string url_encode(const std::string& s) {
    std::string out;
    for (const unsigned char c : s) {
      if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
        out += static_cast<char>(c);
      } else {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", c);
        out += buf;
      }
    }
    return out;
  }

  pending_request next_request() {
    pending_request r;
    int kind = pick_op_(rng_);
    if (kind == op_cart && free_customers_.empty()) {
      ++no_free_customer_;
      kind = op_product;
    }
    static const char* const sorts[] = {"price", "-price", "name", "-created_at"};
    switch (kind) {
      case op_list: {
        std::string target = "/api/v1/products?limit=20&sort=" + std::string(sorts[rng_() % 4]);
        if (!s_.categories.empty() && rng_() % 2 == 0) target += "&category=" + any_of(s_.categories);
        if (rng_() % 4 == 0) target += "&in_stock=true";
        r.route = r_list;
        r.wire = wire("GET", target, {}, nullptr);
        break;
      }
      case op_product:
        r.route = r_product;
        r.wire = wire("GET", "/api/v1/products/" + any_of(s_.products), {}, nullptr);
        break;
      case op_categories:
        r.route = r_categories;
        r.wire = wire("GET", "/api/v1/categories", {}, nullptr);
        break;
      case op_search:
        r.route = r_search;
        r.wire = wire("GET", "/api/v1/products?q=" + url_encode(any_of(s_.queries)) + "&limit=20", {}, nullptr);
        break;
      case op_cart:
        r = shopping_step();
        break;
      case op_login: {
        const auto& [email, password] = any_of(s_.logins);
        r.route = r_login;
        r.body = json::serialize(json::object{{"email", email}, {"password", password}});
        r.wire = wire("POST", "/api/v1/auth/login", {}, &r.body);
        break;
      }
      case op_price: {
        // Prices move between 10.00 and 99.99 (minor units); the subscribers of that product get a price update.
        r.route = r_price;
        r.body = json::serialize(json::object{
            {"current_price",
             json::object{{"amount", 1000 + static_cast<std::int64_t>(rng_() % 9000)}, {"currency", "USD"}}}});
        r.wire = wire("PATCH", "/api/v1/products/" + any_of(s_.products), {"Authorization: Bearer " + s_.admin_token},
                      &r.body);
        break;
      }
      case op_not_found: {
        char id[40];
        std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012llx",
                      static_cast<unsigned long long>(rng_() % 0xffffffffffffULL));
        r.route = r_not_found;
        r.wire = wire("GET", std::string("/api/v1/products/") + id, {}, nullptr);
        break;
      }
      default: {  // op_sold_out: a guest adds the sold-out product (409 insufficient_stock, the cart unchanged)
        const auto& [cart, token] = any_of(s_.guest_carts);
        r.route = r_sold_out;
        r.body = json::serialize(json::object{{"product_id", s_.sold_out}, {"quantity", 1}});
        r.wire = wire("POST", "/api/v1/carts/" + cart + "/items", {"X-Cart-Token: " + token}, &r.body);
        break;
      }
    }
    return r;
  }

  // One step of a customer's session: open a cart, add 1-3 products (one line each), look at the cart, check out.
  pending_request shopping_step() {
    pending_request r;
    r.customer = free_customers_.front();
    free_customers_.pop_front();
    customer& c = customers_[static_cast<std::size_t>(r.customer)];
    const std::string auth = "Authorization: Bearer " + c.token;
    if (c.cart_id.empty()) {
      r.route = r_cart_create;
      r.wire = wire("POST", "/api/v1/carts", {auth}, nullptr);
    } else if (c.lines < c.lines_wanted) {
      r.route = r_cart_add;
      r.product = any_of(s_.products);
      r.body = json::serialize(json::object{{"product_id", r.product}, {"quantity", 1}});
      r.wire = wire("POST", "/api/v1/carts/" + c.cart_id + "/items", {auth, key()}, &r.body);
    } else if (!c.viewed) {
      r.route = r_cart_get;
      r.wire = wire("GET", "/api/v1/carts/" + c.cart_id, {auth}, nullptr);
    } else {
      r.route = r_checkout;
      r.body = json::serialize(json::object{
          {"shipping_address",
           json::object{{"line1", "1 Soak Street"}, {"city", "Springfield"}, {"postal_code", "12345"}, {"country", "US"}}},
          {"payment", json::object{{"method", "card"}, {"token", c.decline_next ? "tok_decline" : "tok_ok"}}}});
      r.wire = wire("POST", "/api/v1/carts/" + c.cart_id + "/checkout", {auth, key()}, &r.body);
    }
    return r;
  }

  void advance_customer(const pending_request& req, const std::string& key, const std::string& body, bool expected) {
    if (req.customer < 0) return;
    customer& c = customers_[static_cast<std::size_t>(req.customer)];
    if (expected) {
      switch (req.route) {
        case r_cart_create: {
          error_code ec;
          const json::value doc = json::parse(body, ec);
          if (!ec && doc.is_object() && doc.as_object().contains("id") && doc.at("id").is_string()) {
            c.cart_id = std::string(doc.at("id").as_string());
            c.lines = 0;
            c.lines_wanted = 1 + static_cast<int>(rng_() % 3);
            c.viewed = false;
            c.decline_next = rng_() % 20 == 0;  // 1 checkout in 20 is declined first (402), then paid
          }
          break;
        }
        case r_cart_add: ++c.lines; break;
        case r_cart_get: c.viewed = true; break;
        case r_checkout:
          if (key == "402") {
            c.decline_next = false;
          } else if (key == "409 price_changed") {
            c.viewed = false;  // read the cart again (the new prices), then check out again
          } else {
            c.cart_id.clear();
            ++checkouts_paid_;
          }
          break;
        default: break;
      }
    } else if (req.route == r_cart_create || req.route == r_checkout) {
      c.cart_id.clear();  // start over with a new cart
    }
    free_customers_.push_back(req.customer);
  }

  void send(http_connection& c, time_point intended) {
    ++in_flight_;
    ++sent_;
    c.send(intended, next_request());
  }

  // ------------------------------------------------------------------ schedule, intervals, end

  void arm_schedule() {
    if (stopping_ || next_scheduled_ >= end_) return;
    schedule_timer_.expires_at(next_scheduled_);
    schedule_timer_.async_wait([this](const error_code& ec) {
      if (ec || stopping_) return;
      const time_point now = clock_type::now();
      while (next_scheduled_ <= now && next_scheduled_ < end_) {
        pending_.push_back(next_scheduled_);
        next_scheduled_ += interval_;
      }
      while (!pending_.empty() && !idle_.empty()) {
        http_connection* c = idle_.back();
        idle_.pop_back();
        const time_point due = pending_.front();
        pending_.pop_front();
        send(*c, due);
      }
      arm_schedule();
    });
  }

  void arm_interval(time_point from) {
    const auto next = from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o_.interval_s));
    interval_timer_.expires_at(next);
    interval_timer_.async_wait([this, next](const error_code& ec) {
      if (ec) return;
      report_interval(next);
      if (!stopping_) arm_interval(next);
    });
  }

  static double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

  void report_interval(time_point at) {
    json::object routes_out;
    std::uint64_t n = 0, bad = 0;
    for (std::size_t i = 0; i < stats_.size(); ++i) {
      auto& st = stats_[i];
      if (st.interval_n > 0) {
        routes_out[routes()[i].name] = json::object{{"n", st.interval_n}, {"bad", st.interval_bad},
                                                    {"p99_ms", ms(st.interval.percentile(99))}};
      }
      n += st.interval_n;
      bad += st.interval_bad;
      st.interval = latency_histogram();
      st.interval_n = st.interval_bad = 0;
    }
    const double t = std::chrono::duration<double>(at - measure_from_).count();
    const double epoch =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    json::object out{{"type", "interval"},
                     {"t", std::round(t * 10) / 10},
                     {"epoch", std::round(epoch * 10) / 10},
                     {"sent", sent_},
                     {"measured", n},
                     {"unexpected", bad},
                     {"pending", pending_.size()},
                     {"ws_open", ws_open_},
                     {"ws_messages", ws_messages_},
                     {"ws_unexpected_closes", ws_unexpected_},
                     {"routes", routes_out}};
    std::cout << json::serialize(out) << std::endl;
  }

  void begin_stop() {
    stopping_ = true;
    schedule_timer_.cancel();
    const time_point now = clock_type::now();
    for (const time_point due : pending_) {
      if (due >= measure_from_) ++unsent_;
    }
    // Open model: what fell due but never went out because the timer fired late is unsent too.
    if (o_.rate) {
      for (time_point t = next_scheduled_; t < end_ && t <= now; t += interval_) ++unsent_;
    }
    pending_.clear();
    idle_.clear();
    for (auto& c : connections_) {
      if (!c->busy()) c->close();
    }
    for (auto& w : ws_) ws_close(w);
    if (in_flight_ == 0) {
      finish();
      return;
    }
    end_timer_.expires_after(timeout() + std::chrono::milliseconds(200));
    end_timer_.async_wait([this](const error_code& ec) {
      if (!ec) finish();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    end_timer_.cancel();
    interval_timer_.cancel();
    for (auto& c : connections_) c->close();
    // The WebSocket clients got their close frames in begin_stop; give them a moment, then stop everything.
    auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(300));
    t->async_wait([this, t](const error_code&) {
      for (auto& w : ws_) {
        error_code ignored;
        beast::get_lowest_layer(w->ws).socket().close(ignored);
        w->timer.cancel();
      }
      ioc_.stop();
    });
  }

  void summary() {
    json::object routes_out;
    std::uint64_t ok = 0, unexpected = 0, deliberate = 0;
    for (std::size_t i = 0; i < stats_.size(); ++i) {
      const auto& st = stats_[i];
      const auto& info = routes()[i];
      json::object exp, unexp;
      std::uint64_t n_deliberate = 0, n_unexpected = 0;
      for (const auto& [k, v] : st.expected) {
        exp[k] = v;
        if (std::find(info.deliberate.begin(), info.deliberate.end(), k) != info.deliberate.end()) {
          n_deliberate += v;
        }
      }
      for (const auto& [k, v] : st.unexpected) {
        unexp[k] = v;
        n_unexpected += v;
      }
      ok += st.all.count() - n_deliberate;
      deliberate += n_deliberate;
      unexpected += n_unexpected;
      routes_out[info.name] = json::object{
          {"expected", exp},          {"unexpected", unexp},
          {"n", st.all.count()},      {"deliberate", n_deliberate},
          {"p50_ms", ms(st.all.percentile(50))}, {"p99_ms", ms(st.all.percentile(99))},
          {"max_ms", ms(st.all.max())},          {"first_n", st.first.count()},
          {"first_p99_ms", ms(st.first.percentile(99))}, {"last_n", st.last.count()},
          {"last_p99_ms", ms(st.last.percentile(99))}};
    }
    json::array samples;
    for (const auto& s : unexpected_samples_) samples.emplace_back(s);
    json::object weights;
    for (int i = 0; i < op_count; ++i) weights[op_names[i]] = weights_[static_cast<std::size_t>(i)];
    json::object out{{"type", "summary"},
                     {"mode", o_.rate ? "open" : "closed"},
                     {"target_rate", o_.rate ? json::value(*o_.rate) : json::value(nullptr)},
                     {"connections", o_.connections},
                     {"duration_s", o_.duration_s},
                     {"warmup_s", o_.warmup_s},
                     {"window_s", std::min(o_.window_s, o_.duration_s)},
                     {"ok", ok},
                     {"deliberate_errors", deliberate},
                     {"unexpected", unexpected},
                     {"rate", static_cast<double>(ok + deliberate) / o_.duration_s},
                     {"unsent", unsent_},
                     {"sent_total", sent_},
                     {"idempotency_keys_sent", keys_sent_},
                     {"checkouts_paid_total", checkouts_paid_},
                     {"no_free_customer", no_free_customer_},
                     {"idle_connections_reopened", idle_reopened_},
                     {"ws_clients", o_.ws_clients},
                     {"ws_opened", ws_opened_},
                     {"ws_closed_by_client", ws_closed_by_us_},
                     {"ws_unexpected_closes", ws_unexpected_},
                     {"ws_connect_failures", ws_connect_failures_},
                     {"ws_messages", ws_messages_},
                     {"ws_by_type", json::object{{"stock", ws_types_[0]}, {"price", ws_types_[1]}, {"order", ws_types_[2]},
                                                 {"error", ws_types_[3]}, {"other", ws_types_[4]}}},
                     {"mix", weights},
                     {"unexpected_samples", samples},
                     {"routes", routes_out}};
    std::cout << json::serialize(out) << std::endl;
  }

  // ------------------------------------------------------------------ WebSocket subscribers

  void ws_start(int index, bool first) {
    if (stopping_) return;
    auto w = std::make_shared<ws_client>(ioc_, index);
    ws_.push_back(w);
    // A few products' stock and price, and the customer's orders.
    std::set<std::string> picked;
    const std::size_t want = std::min<std::size_t>(s_.products.size(), 3 + rng_() % 8);
    while (picked.size() < want) picked.insert(any_of(s_.products));
    json::array ids;
    for (const auto& p : picked) ids.emplace_back(p);
    w->subscribe_stock = json::serialize(json::object{{"op", "subscribe"}, {"topic", "stock"}, {"product_ids", ids}});
    w->subscribe_price = json::serialize(json::object{{"op", "subscribe"}, {"topic", "price"}, {"product_ids", ids}});
    w->subscribe_orders = json::serialize(json::object{{"op", "subscribe"}, {"topic", "orders"}});
    // Spread the first connections over a second; later ones reconnect at once.
    const auto delay = first ? std::chrono::milliseconds(rng_() % 1000) : std::chrono::milliseconds(0);
    w->timer.expires_after(delay);
    w->timer.async_wait([this, w](const error_code& ec) {
      if (ec || stopping_) return ws_forget(w);
      beast::get_lowest_layer(w->ws).expires_after(timeout());
      beast::get_lowest_layer(w->ws).async_connect(endpoint(), [this, w](const error_code& ec2) {
        if (ec2 || stopping_) return ws_failed(w, ec2);
        const std::string& token = s_.customers[static_cast<std::size_t>(w->index) % s_.customers.size()];
        w->ws.async_handshake("127.0.0.1:" + std::to_string(o_.port), "/api/v1/ws?access_token=" + token,
                              [this, w](const error_code& ec3) {
                                if (ec3 || stopping_) return ws_failed(w, ec3);
                                beast::get_lowest_layer(w->ws).expires_never();
                                w->ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
                                w->ws.text(true);
                                ++ws_open_;
                                ++ws_opened_;
                                ws_subscribe(w, 0);
                                ws_read(w);
                                // Its lifetime: uniform in [0.5, 1.5] x --ws-lifetime-s, then a normal close.
                                const double life = o_.ws_lifetime_s * (0.5 + static_cast<double>(rng_() % 1000) / 1000.0);
                                w->timer.expires_after(std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(life)));
                                w->timer.async_wait([this, w](const error_code& ec4) {
                                  if (!ec4 && !stopping_) ws_close(w);
                                });
                              });
      });
    });
  }

  void ws_subscribe(const std::shared_ptr<ws_client>& w, int step) {
    const std::string* msg = step == 0 ? &w->subscribe_stock : step == 1 ? &w->subscribe_price : &w->subscribe_orders;
    w->ws.async_write(asio::buffer(*msg), [this, w, step](const error_code& ec, std::size_t) {
      if (ec) return;  // the read side sees and counts it
      if (step < 2) ws_subscribe(w, step + 1);
    });
  }

  void ws_read(const std::shared_ptr<ws_client>& w) {
    w->ws.async_read(w->buffer, [this, w](const error_code& ec, std::size_t) {
      if (ec) {
        --ws_open_;
        if (w->closing || stopping_) {
          ++ws_closed_by_us_;
        } else {
          ++ws_unexpected_;
          if (unexpected_samples_.size() < 10) unexpected_samples_.push_back("websocket closed: " + ec.message());
        }
        w->timer.cancel();
        ws_forget(w);
        if (!stopping_) ws_start(w->index, false);
        return;
      }
      ++ws_messages_;
      const auto d = w->buffer.data();
      const std::string_view m(static_cast<const char*>(d.data()), d.size());
      int type = 4;
      if (m.find("\"type\":\"stock\"") != std::string_view::npos) type = 0;
      else if (m.find("\"type\":\"price\"") != std::string_view::npos) type = 1;
      else if (m.find("\"type\":\"order\"") != std::string_view::npos) type = 2;
      else if (m.find("\"type\":\"error\"") != std::string_view::npos) type = 3;
      ++ws_types_[type];
      if (type == 3 && unexpected_samples_.size() < 10) unexpected_samples_.push_back("websocket error: " + std::string(m.substr(0, 200)));
      w->buffer.consume(w->buffer.size());
      ws_read(w);
    });
  }

  void ws_close(const std::shared_ptr<ws_client>& w) {
    if (w->closing || !w->ws.is_open()) return;
    w->closing = true;
    w->ws.async_close(websocket::close_code::normal, [](const error_code&) {});
  }

  void ws_failed(const std::shared_ptr<ws_client>& w, const error_code& ec) {
    if (!stopping_) {
      ++ws_connect_failures_;
      if (unexpected_samples_.size() < 10) unexpected_samples_.push_back("websocket connect: " + ec.message());
    }
    ws_forget(w);
    if (stopping_) return;
    // Try again after a pause.
    auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::seconds(1));
    const int index = w->index;
    t->async_wait([this, t, index](const error_code&) { ws_start(index, false); });
  }

  void ws_forget(const std::shared_ptr<ws_client>& w) {
    if (stopping_) return;  // finish() still closes them
    ws_.erase(std::remove(ws_.begin(), ws_.end(), w), ws_.end());
  }

  // ------------------------------------------------------------------ state

  options o_;
  setup s_;
  std::mt19937_64 rng_;
  std::vector<double> weights_;
  std::discrete_distribution<int> pick_op_;
  asio::io_context ioc_{1};
  asio::steady_timer schedule_timer_;
  asio::steady_timer end_timer_;
  asio::steady_timer interval_timer_;
  time_point start_, measure_from_, end_, first_until_, last_from_;
  time_point next_scheduled_;
  clock_type::duration interval_{};
  std::vector<std::unique_ptr<http_connection>> connections_;
  std::vector<http_connection*> idle_;
  std::deque<time_point> pending_;
  std::vector<customer> customers_;
  std::deque<int> free_customers_;
  std::vector<route_stats> stats_;
  std::vector<std::shared_ptr<ws_client>> ws_;
  std::vector<std::string> unexpected_samples_;
  std::uint64_t in_flight_ = 0, sent_ = 0, unsent_ = 0, keys_sent_ = 0, checkouts_paid_ = 0, no_free_customer_ = 0;
  std::uint64_t idle_reopened_ = 0;
  std::uint64_t ws_opened_ = 0, ws_closed_by_us_ = 0, ws_unexpected_ = 0, ws_connect_failures_ = 0, ws_messages_ = 0;
  std::uint64_t ws_types_[5] = {0, 0, 0, 0, 0};
  std::int64_t ws_open_ = 0;
  bool stopping_ = false;
  bool finished_ = false;
};

// ---------------------------------------------------------------------------------------------- HTTP connection

http_connection::http_connection(driver& d) : d_(d), stream_(d.context()), backoff_(d.context()) {}

void http_connection::connect() {
  if (d_.stopping()) return;
  stream_.expires_after(d_.timeout());
  stream_.async_connect(d_.endpoint(), [this](const error_code& ec) {
    if (d_.stopping()) return;
    if (ec) {
      stream_.close();
      backoff_.expires_after(std::chrono::milliseconds(100));
      backoff_.async_wait([this](const error_code& wait_ec) {
        if (!wait_ec) connect();
      });
      return;
    }
    error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
    stream_.expires_never();
    d_.on_ready(*this);
  });
}

void http_connection::watch_idle() {
  const std::uint64_t generation = generation_;
  stream_.socket().async_wait(tcp::socket::wait_read, [this, generation](const error_code& ec) {
    if (ec || busy_ || generation != generation_ || d_.stopping()) return;
    // Readable while idle: the node closed it (or sent something unasked). Reopen.
    d_.on_idle_closed(*this);
    stream_.close();
    connect();
  });
}

void http_connection::send(time_point intended, pending_request req) {
  ++generation_;
  error_code ignored;
  stream_.socket().cancel(ignored);  // the idle watch, if any
  intended_ = intended;
  req_ = std::move(req);
  busy_ = true;
  buffer_.clear();
  parser_.emplace();
  parser_->body_limit(16 * 1024 * 1024);
  stream_.expires_after(d_.timeout());
  asio::async_write(stream_, asio::buffer(req_.wire), [this](const error_code& ec, std::size_t) {
    if (ec) return fail(ec);
    http::async_read(stream_, buffer_, *parser_, [this](const error_code& read_ec, std::size_t) { on_read(read_ec); });
  });
}

void http_connection::on_read(const error_code& ec) {
  if (ec) return fail(ec);
  busy_ = false;
  stream_.expires_never();
  const bool keep_alive = parser_->get().keep_alive();
  const int status = static_cast<int>(parser_->get().result_int());
  const std::string body = std::move(parser_->get().body());
  parser_.reset();
  d_.done(req_, intended_, status, body, {});
  if (d_.stopping()) return;
  if (keep_alive) {
    d_.on_ready(*this);
  } else {
    stream_.close();
    connect();
  }
}

void http_connection::fail(const error_code& ec) {
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
    kind = "io_error";
  }
  stream_.close();
  parser_.reset();
  d_.done(req_, intended_, 0, {}, kind);
  connect();
}

void http_connection::close() {
  backoff_.cancel();
  error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse_options(argc, argv);
  setup s = read_setup(o.setup_file);
  driver d(std::move(o), std::move(s));
  d.run();
  return 0;
}
