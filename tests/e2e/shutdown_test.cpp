// End-to-end: graceful shutdown of a real mercatod. SIGTERM under load: stop accepting, finish
// in-flight requests (no truncated answers), exit 0 within the grace period, port closed after.
// SIGINT behaves the same. And at start-up the node says which malloc it runs on.

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "support/http_client.hpp"
#include "support/node_process.hpp"

namespace json = boost::json;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using mercato::test::http_client;
using mercato::test::node_process;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto grace = std::chrono::milliseconds(8000);

bool port_refuses(std::uint16_t port) {
  net::io_context ioc;
  net::ip::tcp::socket s{ioc};
  boost::system::error_code ec;
  s.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  return ec == net::error::connection_refused;
}

// What the load threads saw.
struct tally {
  std::atomic<int> complete_ok{0};          // 200 with a well-formed product page
  std::atomic<int> complete_bad{0};         // a complete answer that is not that
  std::atomic<int> truncated{0};            // the connection ended inside an answer
  std::atomic<int> unanswered{0};           // closed/reset before any byte of an answer (after SIGTERM)
  std::atomic<int> failed_before_signal{0}; // any failure before SIGTERM
  std::atomic<int> in_flight_finished{0};   // sent before SIGTERM, complete 200 after it
  std::atomic<int> held_then_dropped{0};    // no answer, and the connection closed only >= 1 s later
  std::mutex m;
  std::vector<std::string> problems;
  void note(const std::string& p) {
    std::lock_guard<std::mutex> lock{m};
    if (problems.size() < 20) problems.push_back(p);
  }
};

// Whether a complete answer is a well-formed product page.
bool valid_page(const bhttp::response<bhttp::string_body>& res, std::string& why) {
  if (res.result_int() != 200) {
    why = "status " + std::to_string(res.result_int()) + ": " + res.body().substr(0, 300);
    return false;
  }
  boost::system::error_code ec;
  const auto v = json::parse(res.body(), ec);
  if (ec || !v.is_object() || !v.get_object().contains("data") || !v.at("data").is_array() ||
      !v.get_object().contains("meta")) {
    why = "not a product page (" + std::to_string(res.body().size()) + " bytes): " + res.body().substr(0, 300);
    return false;
  }
  if (v.at("data").get_array().empty()) {
    why = "an empty product page";
    return false;
  }
  return true;
}

// One load thread: keep-alive requests in a loop on its own connection, reconnecting when the
// server closes it, until the server refuses connections or `stop` is set.
void load_loop(std::uint16_t port, const std::atomic<bool>& stop, const std::atomic<bool>& signalled,
               std::atomic<steady::time_point::rep>& signalled_at, tally& t) {
  net::io_context ioc;
  std::unique_ptr<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  const auto deadline = steady::now() + std::chrono::seconds(60);
  while (!stop.load() && steady::now() < deadline) {
    if (!stream) {
      stream = std::make_unique<beast::tcp_stream>(ioc);
      buffer.clear();
      boost::system::error_code ec;
      stream->socket().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
      if (ec) {
        if (!signalled.load()) {
          ++t.failed_before_signal;
          t.note("connect failed before SIGTERM: " + ec.message());
        }
        return;  // refused: the node stopped accepting
      }
    }
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/api/v1/products?limit=100", 11};
    req.set(bhttp::field::host, "127.0.0.1");
    boost::system::error_code ec;
    bhttp::write(*stream, req, ec);
    const auto sent_at = steady::now();
    const bool sent_before_signal = !signalled.load();
    if (ec) {
      // The server closed the connection before reading this request: no answer, nothing lost.
      if (sent_before_signal) {
        ++t.failed_before_signal;
        t.note("write failed before SIGTERM: " + ec.message());
      } else {
        ++t.unanswered;
      }
      stream.reset();
      continue;
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    bhttp::read(*stream, buffer, parser, ec);
    if (ec) {
      const bool nothing_read = !parser.got_some() && buffer.size() == 0;
      const bool clean_close = ec == bhttp::error::end_of_stream || ec == net::error::eof ||
                               ec == net::error::connection_reset || ec == net::error::broken_pipe;
      if (nothing_read && clean_close) {
        const auto waited = steady::now() - sent_at;
        if (!signalled.load()) {
          ++t.failed_before_signal;
          t.note("connection closed without an answer before SIGTERM: " + ec.message());
        } else if (waited >= std::chrono::seconds(1)) {
          // The server read the request, kept it, and closed without answering: a dropped in-flight request.
          ++t.held_then_dropped;
          t.note("request held " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()) +
                 " ms, then the connection closed without an answer (" + ec.message() + ")");
        } else {
          ++t.unanswered;
        }
      } else {
        ++t.truncated;
        t.note("answer cut short (" + ec.message() + ") after " +
               std::to_string(parser.got_some() ? parser.get().body().size() : 0) + " body bytes; header done: " +
               (parser.is_header_done() ? "yes" : "no"));
      }
      stream.reset();
      continue;
    }
    const auto res = parser.release();
    std::string why;
    if (valid_page(res, why)) {
      ++t.complete_ok;
      const auto sig_at = steady::time_point(steady::duration(signalled_at.load()));
      if (sent_before_signal && signalled.load() && sig_at > sent_at) {
        ++t.in_flight_finished;
      }
    } else {
      ++t.complete_bad;
      t.note("complete but invalid answer: " + why);
    }
    if (!res.keep_alive()) {
      stream.reset();
    }
  }
}

}  // namespace

TEST_CASE("shutdown: SIGTERM under load finishes in-flight requests and exits 0") {
  // One database connection for 8 busy clients: at any moment several requests are read and
  // waiting for the database, with no socket operation pending for them. Those must be answered.
  node_process n{{"--demo"},
                 {{"MERCATO_HTTP_SHUTDOWN_GRACE_MS", std::to_string(grace.count())}, {"MERCATO_PG_POOL_SIZE", "1"}}};
  REQUIRE_MESSAGE(n.wait_ready(), "mercatod did not become ready:\n" << n.log());
  const auto port = n.port();

  tally t;
  std::atomic<bool> stop{false};
  std::atomic<bool> signalled{false};
  std::atomic<steady::time_point::rep> signalled_at{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] { load_loop(port, stop, signalled, signalled_at, t); });
  }

  // Let the load run for about a second (and at least until answers flow) before the signal.
  const auto load_start = steady::now();
  const auto ready_deadline = load_start + std::chrono::seconds(30);
  while ((steady::now() - load_start < std::chrono::seconds(1) || t.complete_ok.load() < 40) &&
         steady::now() < ready_deadline && t.failed_before_signal.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK_MESSAGE(t.complete_ok.load() >= 40, "the load produced only " << t.complete_ok.load() << " answers");
  const int before = t.complete_ok.load();

  signalled_at.store(steady::now().time_since_epoch().count());
  signalled.store(true);
  const auto sent = steady::now();
  const int status = n.stop(SIGTERM, grace + std::chrono::seconds(10));
  const auto took = steady::now() - sent;

  // The load threads end when connections are refused; make sure they do.
  stop.store(true);
  for (auto& th : threads) th.join();

  std::string problems;
  for (const auto& p : t.problems) problems += "\n  " + p;
  INFO("answers before SIGTERM: " << before << ", total ok: " << t.complete_ok.load() << ", invalid: "
                                  << t.complete_bad.load() << ", truncated: " << t.truncated.load()
                                  << ", unanswered after SIGTERM: " << t.unanswered.load()
                                  << ", in flight at SIGTERM and finished: " << t.in_flight_finished.load()
                                  << ", held then dropped: " << t.held_then_dropped.load()
                                  << problems);
  CHECK_MESSAGE(status == 0, "mercatod exited with " << status << " after SIGTERM (-1: killed at the deadline); log:\n"
                                                     << n.log());
  CHECK_MESSAGE(took < grace + std::chrono::seconds(1),
                "exit took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                             << " ms, the grace period is " << grace.count() << " ms");
  // Every in-flight request takes milliseconds: draining them must not take anywhere near the grace.
  CHECK_MESSAGE(took < grace / 2, "exit took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                               << " ms for requests that take milliseconds (grace " << grace.count()
                                               << " ms): something waited for the deadline");
  CHECK_MESSAGE(t.held_then_dropped.load() == 0,
                "requests in flight at SIGTERM were held and then dropped without an answer");
  CHECK_MESSAGE(t.truncated.load() == 0, "answers were cut short by the shutdown");
  CHECK_MESSAGE(t.complete_bad.load() == 0, "complete answers that are not valid product pages");
  CHECK_MESSAGE(t.failed_before_signal.load() == 0, "requests failed before the signal");
  CHECK_MESSAGE(t.in_flight_finished.load() >= 1,
                "no request that was in flight at SIGTERM got its answer (8 busy connections, pool of 4)");
  CHECK_MESSAGE(port_refuses(port), "port " << port << " still accepts connections after the exit");
  const auto log = n.log();
  CHECK_MESSAGE(log.find("connections cut at the shutdown deadline") == std::string::npos,
                "connections had to be cut at the deadline; log:\n" << log);
  CHECK_MESSAGE(log.find("\"shutting down\"") != std::string::npos, "no 'shutting down' log line");
}

TEST_CASE("shutdown: idle keep-alive connections do not hold up SIGTERM") {
  node_process n{{"--demo"}, {{"MERCATO_HTTP_SHUTDOWN_GRACE_MS", std::to_string(grace.count())}}};
  REQUIRE_MESSAGE(n.wait_ready(), "mercatod did not become ready:\n" << n.log());
  std::vector<std::unique_ptr<http_client>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<http_client>(n.port()));
    REQUIRE(idle.back()->get("/healthz").status == 200);  // connected and kept alive
  }
  const auto sent = steady::now();
  const int status = n.stop(SIGTERM, grace + std::chrono::seconds(10));
  const auto took = steady::now() - sent;
  CHECK_MESSAGE(status == 0, "exit status " << status << " after SIGTERM; log:\n" << n.log());
  CHECK_MESSAGE(took < grace / 2, "idle connections held the shutdown for "
                                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(port_refuses(n.port()));
}

TEST_CASE("shutdown: SIGINT exits 0 too") {
  node_process n{{"--demo"}};
  REQUIRE_MESSAGE(n.wait_ready(), "mercatod did not become ready:\n" << n.log());
  {
    http_client c{n.port()};
    CHECK(c.get("/api/v1/products?limit=5").status == 200);
  }
  const int status = n.stop(SIGINT, std::chrono::seconds(20));
  CHECK_MESSAGE(status == 0, "exit status " << status << " after SIGINT; log:\n" << n.log());
  CHECK(port_refuses(n.port()));
  CHECK_MESSAGE(n.log().find("SIGINT") != std::string::npos, "the shutdown log line does not name SIGINT");
}

TEST_CASE("start-up: the node logs the malloc it was built with, and that malloc serves it") {
  // MERCATOD_MALLOC is the build's choice (CMake's MERCATO_MALLOC; sanitizer builds use the system's).
  node_process n{{"--demo"}};
  REQUIRE_MESSAGE(n.wait_ready(), "mercatod did not become ready:\n" << n.log());
  const auto log = n.log();
  const auto lines = n.log_entries("allocator");
  REQUIRE_MESSAGE(lines.size() == 1, "expected one \"allocator\" log line; log:\n" << log);
  const std::string malloc_in_use = boost::json::value_to<std::string>(lines.front().at("malloc"));
  CHECK_MESSAGE(malloc_in_use == MERCATOD_MALLOC, "allocator line says '" << malloc_in_use << "'; log:\n" << log);
  CHECK_MESSAGE(log.find("does not go through it") == std::string::npos,
                "the linked malloc is not the one in use:\n" << log);
  const int status = n.stop(SIGTERM, std::chrono::seconds(20));
  CHECK_MESSAGE(status == 0, "exit status " << status << " after SIGTERM; log:\n" << n.log());
}
