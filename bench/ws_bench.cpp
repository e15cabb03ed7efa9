// Live-updates fan-out benchmark (bench/ws_bench.sh drives it): N WebSocket connections to one node, each
// subscribed to the stock of P products; then committed stock changes one at a time (admin adjustments
// over HTTP), and for each the time until the LAST of the normal-speed subscribers has it. Also the node's
// resident memory per connection (VmRSS before the connections and after every one got its current values).
// A fraction of the clients can be deliberately slow: after their current values they read one message
// per --slow-read-ms (the node coalesces what waits for them); they are not counted in the latency.
//
//   mercato_ws_bench --port P --products FILE --token ADMIN_TOKEN --node-pid PID
//                    [--connections 10000] [--slow-fraction 0.1] [--slow-read-ms 1000] [--changes 200]
//                    [--timeout-s 120]
//
// Prints one JSON object with the figures. Loopback only; ends by itself (every wait has a deadline).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/resource.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

struct options {
  unsigned short port = 0;
  std::string products_file;
  std::string token;
  int node_pid = 0;
  int connections = 10'000;
  double slow_fraction = 0;
  int slow_read_ms = 1000;
  int changes = 200;
  int timeout_s = 120;
};

[[noreturn]] void die(const std::string& why) {
  std::cerr << "mercato_ws_bench: " << why << "\n";
  std::exit(2);
}

long rss_kib(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return 0;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count();
}

// The shared state of the measurement (the io thread writes, the main thread reads).
struct target_state {
  std::atomic<int> change{-1};  // the change being measured
  std::atomic<int> product{-1};
  std::atomic<std::int64_t> version{0};
  std::atomic<int> reached{0};
  std::atomic<std::int64_t> last_ns{0};
};

struct client : std::enable_shared_from_this<client> {
  client(net::io_context& ioc, bool slow_) : ws(ioc), timer(ioc), slow(slow_) {}
  websocket::stream<beast::tcp_stream> ws;
  net::steady_timer timer;
  beast::flat_buffer buf;
  bool slow;
  bool open = false;
  bool slow_mode = false;
  int initial_left = 0;
  int counted_change = -1;
  std::vector<std::int64_t> versions;
};

struct bench {
  options opt;
  std::vector<std::string> products;
  std::unordered_map<std::string, int> product_index;
  std::string subscribe_msg;
  net::io_context ioc;
  std::vector<std::shared_ptr<client>> clients;
  std::atomic<int> connected{0}, failed{0}, with_values{0}, closed{0};
  std::atomic<bool> slow_phase{false};
  std::atomic<std::uint64_t> messages{0};
  target_state target;
  int next_to_connect = 0;

  void on_message(client& c, std::string_view m) {
    messages.fetch_add(1, std::memory_order_relaxed);
    const auto pid_at = m.find("\"product_id\":\"");
    const auto ver_at = m.find("\"version\":");
    if (pid_at == std::string_view::npos || ver_at == std::string_view::npos) {
      return;
    }
    auto it = product_index.find(std::string(m.substr(pid_at + 14, 36)));
    if (it == product_index.end()) {
      return;
    }
    const std::int64_t v = std::strtoll(m.data() + ver_at + 10, nullptr, 10);
    const int p = it->second;
    if (c.versions[static_cast<std::size_t>(p)] < 0 && --c.initial_left == 0) {
      ++with_values;
    }
    c.versions[static_cast<std::size_t>(p)] = std::max(c.versions[static_cast<std::size_t>(p)], v);
    const int change = target.change.load();
    if (!c.slow && change >= 0 && c.counted_change < change && p == target.product.load() &&
        v >= target.version.load()) {
      c.counted_change = change;
      target.last_ns.store(now_ns());
      ++target.reached;
    }
  }

  void read(const std::shared_ptr<client>& c) {
    c->ws.async_read(c->buf, [this, c](beast::error_code ec, std::size_t) {
      if (ec) {
        c->open = false;
        ++closed;
        return;
      }
      const auto d = c->buf.data();
      on_message(*c, std::string_view(static_cast<const char*>(d.data()), d.size()));
      c->buf.consume(c->buf.size());
      if (c->slow && slow_phase.load()) {
        c->timer.expires_after(std::chrono::milliseconds(opt.slow_read_ms));
        c->timer.async_wait([this, c](beast::error_code) { read(c); });
        return;
      }
      read(c);
    });
  }

  void connect_next() {
    if (next_to_connect >= opt.connections) {
      return;
    }
    const int i = next_to_connect++;
    const bool slow = opt.slow_fraction > 0 && (i % std::max(1, static_cast<int>(1.0 / opt.slow_fraction))) == 0;
    auto c = std::make_shared<client>(ioc, slow);
    c->versions.assign(products.size(), -1);
    c->initial_left = static_cast<int>(products.size());
    clients.push_back(c);
    c->ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    if (slow) {
      // A small receive window: what the slow client does not read backs up at the node quickly.
      beast::error_code ignored;
      auto& sock = beast::get_lowest_layer(c->ws).socket();
      sock.open(tcp::v4(), ignored);
      sock.set_option(net::socket_base::receive_buffer_size(2048), ignored);
    }
    beast::get_lowest_layer(c->ws).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(c->ws).async_connect(
        tcp::endpoint{net::ip::make_address("127.0.0.1"), opt.port}, [this, c](beast::error_code ec) {
          if (ec) {
            ++failed;
            connect_next();
            return;
          }
          c->ws.async_handshake("127.0.0.1", "/api/v1/ws", [this, c](beast::error_code ec2) {
            beast::get_lowest_layer(c->ws).expires_never();
            if (ec2) {
              ++failed;
              connect_next();
              return;
            }
            c->open = true;
            ++connected;
            c->ws.text(true);
            c->ws.async_write(net::buffer(subscribe_msg), [this, c](beast::error_code ec3, std::size_t) {
              if (ec3) {
                ++failed;
              } else {
                read(c);
              }
              connect_next();
            });
          });
        });
  }
};

// One admin adjustment over a kept-alive HTTP connection; returns the new inventory version.
struct admin_http {
  net::io_context ioc;
  tcp::socket sock{ioc};
  beast::flat_buffer buf;
  explicit admin_http(unsigned short port) { sock.connect({net::ip::make_address("127.0.0.1"), port}); }
  std::int64_t adjust(const std::string& product, int delta, const std::string& token) {
    http::request<http::string_body> req{http::verb::post, "/api/v1/inventory/" + product + "/adjustments", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer " + token);
    req.set(http::field::content_type, "application/json");
    req.body() = boost::json::serialize(boost::json::object{{"delta", delta}, {"reason", "ws bench"}});
    req.prepare_payload();
    http::write(sock, req);
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    if (res.result_int() != 200) {
      die("adjustment refused: " + std::to_string(res.result_int()) + " " + res.body());
    }
    return boost::json::parse(res.body()).at("version").to_number<std::int64_t>();
  }
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(at, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  bench b;
  auto& o = b.opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        die(a + " needs a value");
      }
      return argv[++i];
    };
    if (a == "--port") o.port = static_cast<unsigned short>(std::stoi(val()));
    else if (a == "--products") o.products_file = val();
    else if (a == "--token") o.token = val();
    else if (a == "--node-pid") o.node_pid = std::stoi(val());
    else if (a == "--connections") o.connections = std::stoi(val());
    else if (a == "--slow-fraction") o.slow_fraction = std::stod(val());
    else if (a == "--slow-read-ms") o.slow_read_ms = std::stoi(val());
    else if (a == "--changes") o.changes = std::stoi(val());
    else if (a == "--timeout-s") o.timeout_s = std::stoi(val());
    else die("unknown argument " + a);
  }
  if (o.port == 0 || o.products_file.empty() || o.token.empty() || o.node_pid <= 0) {
    die("--port, --products, --token and --node-pid are required");
  }
  {
    std::ifstream in{o.products_file};
    for (std::string line; std::getline(in, line);) {
      if (line.size() == 36) {
        b.product_index.emplace(line, static_cast<int>(b.products.size()));
        b.products.push_back(line);
      }
    }
  }
  if (b.products.empty()) {
    die("no product ids in " + o.products_file);
  }
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);

  boost::json::array ids;
  for (const auto& p : b.products) {
    ids.emplace_back(p);
  }
  b.subscribe_msg =
      boost::json::serialize(boost::json::object{{"op", "subscribe"}, {"topic", "stock"}, {"product_ids", ids}});

  const long rss_before = rss_kib(o.node_pid);
  const auto started = steady::now();
  const auto deadline = started + std::chrono::seconds(o.timeout_s);
  auto work = net::make_work_guard(b.ioc);
  std::thread io{[&] { b.ioc.run(); }};
  net::post(b.ioc, [&] {
    for (int k = 0; k < 256; ++k) {
      b.connect_next();  // at most 256 handshakes in flight
    }
  });
  while (b.with_values.load() + b.failed.load() < o.connections && steady::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double setup_s = std::chrono::duration<double>(steady::now() - started).count();
  const long rss_after = rss_kib(o.node_pid);
  const int ready = b.with_values.load();
  b.slow_phase = true;
  int fast = 0;
  for (const auto& c : b.clients) {
    fast += c->slow ? 0 : 1;
  }

  admin_http admin{o.port};
  std::vector<std::int64_t> current(b.products.size(), 0);
  for (const auto& c : b.clients) {
    for (std::size_t i = 0; i < current.size(); ++i) {
      current[i] = std::max(current[i], c->versions[i]);
    }
  }
  std::vector<double> from_ack_ms, from_send_ms;
  int timeouts = 0;
  for (int k = 0; k < o.changes && steady::now() < deadline; ++k) {
    const int p = k % static_cast<int>(b.products.size());
    b.target.reached = 0;
    b.target.product = p;
    b.target.version = current[static_cast<std::size_t>(p)] + 1;
    b.target.change = k;
    const auto sent = now_ns();
    const auto version = admin.adjust(b.products[static_cast<std::size_t>(p)], (k / static_cast<int>(b.products.size())) % 2 == 0 ? 1 : -1, o.token);
    const auto acked = now_ns();
    current[static_cast<std::size_t>(p)] = version;
    const auto wait_until = steady::now() + std::chrono::seconds(30);
    const int expected = fast - (b.closed.load());
    while (b.target.reached.load() < expected && steady::now() < wait_until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (b.target.reached.load() < expected) {
      ++timeouts;
      continue;
    }
    const auto last = b.target.last_ns.load();
    from_ack_ms.push_back(std::max<std::int64_t>(0, last - acked) / 1e6);
    from_send_ms.push_back((last - sent) / 1e6);
  }
  const long rss_end = rss_kib(o.node_pid);
  work.reset();
  b.ioc.stop();
  io.join();

  boost::json::object out{
      {"connections", o.connections},
      {"connected", b.connected.load()},
      {"failed", b.failed.load()},
      {"with_current_values", ready},
      {"slow_clients", o.connections - fast},
      {"products", static_cast<std::int64_t>(b.products.size())},
      {"setup_s", setup_s},
      {"rss_before_kib", rss_before},
      {"rss_after_subscribe_kib", rss_after},
      {"rss_end_kib", rss_end},
      {"bytes_per_connection",
       ready > 0 ? static_cast<double>(rss_after - rss_before) * 1024.0 / static_cast<double>(ready) : 0.0},
      {"changes_measured", static_cast<std::int64_t>(from_ack_ms.size())},
      {"changes_timed_out", timeouts},
      {"closed_during_run", b.closed.load()},
      {"last_subscriber_ms_from_ack_p50", percentile(from_ack_ms, 0.50)},
      {"last_subscriber_ms_from_ack_p99", percentile(from_ack_ms, 0.99)},
      {"last_subscriber_ms_from_ack_max", percentile(from_ack_ms, 1.0)},
      {"last_subscriber_ms_from_send_p50", percentile(from_send_ms, 0.50)},
      {"last_subscriber_ms_from_send_p99", percentile(from_send_ms, 0.99)},
      {"messages_received", static_cast<std::int64_t>(b.messages.load())}};
  std::cout << boost::json::serialize(out) << std::endl;
  return 0;
}
