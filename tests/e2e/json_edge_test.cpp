// The real Beast edge and pipeline in-process, with a JSON route: 415, 400 with the parse position,
// 413, and a handler that answers from another thread.
#include <doctest/doctest.h>

#include <atomic>
#include <future>

#include <thread>

#include <boost/asio.hpp>
#include <boost/json/object.hpp>
#include <simdjson.h>

#include "http/pipeline.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "support/http_client.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using mercato::test::http_client;

namespace {

struct edge_fixture {
  edge_fixture() {
    routes.add(http::bhttp::verb::post, "/echo/{name}",
               [this](std::shared_ptr<http::request_context> ctx, http::responder respond) {
                 std::string_view email;
                 if (ctx->json()["email"].get(email) != simdjson::SUCCESS) {
                   respond(http::invalid_request("email is required", {{"/email", "is required"}}));
                   return;
                 }
                 // Answer from a different thread, as database and actor replies do. "slow" answers
                 // only when the test lets it (a request really in flight).
                 const bool slow = *ctx->param("name") == "slow";
                 if (slow) {
                   slow_received.set_value();
                 }
                 std::thread([this, slow, ctx, respond, email = std::string(email)] {
                   if (slow) {
                     slow_release.get_future().wait();
                   }
                   respond(http::response::json(
                       201, boost::json::object{{"email", email}, {"name", *ctx->param("name")}}));
                   if (slow) {
                     slow_answered = true;
                   }
                 }).detach();
               },
               http::json_route());
    config::http_settings s;
    s.port = 0;
    s.max_body_bytes = 256;
    s.threads = 2;
    server = std::make_unique<http::server>(s, edge, &metrics);
    server->start();
  }
  ~edge_fixture() { server->shutdown(std::chrono::seconds(2)); }

  std::promise<void> slow_received;
  std::promise<void> slow_release;
  std::atomic<bool> slow_answered{false};
  telemetry::metrics metrics;
  http::router routes;
  http::pipeline edge{routes, &metrics};
  std::unique_ptr<http::server> server;
};

}  // namespace

TEST_CASE("a JSON route accepts JSON and rejects everything else with problem+json") {
  edge_fixture f;
  http_client c{f.server->port()};
  const std::vector<std::pair<std::string, std::string>> json{{"Content-Type", "application/json; charset=utf-8"}};

  auto ok = c.request("POST", "/echo/ann", R"({"email":"ann@example.com"})", json);
  CHECK(ok.status == 201);
  CHECK(ok.json().at("email").as_string() == "ann@example.com");
  CHECK(ok.json().at("name").as_string() == "ann");

  auto wrong_type = c.request("POST", "/echo/ann", R"({"email":"x"})", {{"Content-Type", "text/plain"}});
  CHECK(wrong_type.status == 415);
  CHECK(wrong_type.header("content-type") == "application/problem+json");
  CHECK(wrong_type.json().at("code").as_string() == "unsupported_media_type");

  auto no_type = c.request("POST", "/echo/ann", R"({"email":"x"})");
  CHECK(no_type.status == 415);

  auto malformed = c.request("POST", "/echo/ann", "{\"email\": \"x\",\n \"n\": tru }", json);
  CHECK(malformed.status == 400);
  CHECK(malformed.json().at("code").as_string() == "malformed_json");
  const std::string detail{malformed.json().at("detail").as_string()};
  CHECK_MESSAGE(detail.find("line 2") != std::string::npos, detail);

  auto empty = c.request("POST", "/echo/ann", "", json);
  CHECK(empty.status == 400);

  auto invalid = c.request("POST", "/echo/ann", R"({"mail":"x"})", json);
  CHECK(invalid.status == 400);
  CHECK(invalid.json().at("errors").as_array().at(0).at("pointer").as_string() == "/email");

  // The connection survived all of that (keep-alive after 4xx answers).
  CHECK(c.request("POST", "/echo/bob", R"({"email":"b@x.io"})", json).status == 201);
}

TEST_CASE("a body over the limit is 413 before any handler runs") {
  edge_fixture f;
  http_client c{f.server->port()};
  auto big = c.request("POST", "/echo/ann", std::string(4096, ' '), {{"Content-Type", "application/json"}});
  CHECK(big.status == 413);
  CHECK(big.json().at("code").as_string() == "payload_too_large");
}

TEST_CASE("shutdown waits for a request in flight and answers it") {
  edge_fixture f;
  const auto port = f.server->port();
  std::atomic<unsigned> status{0};
  std::thread client([&] {
    http_client c{port};
    status = c.request("POST", "/echo/slow", R"({"email":"s@x.io"})", {{"Content-Type", "application/json"}})
                 .status;
  });
  // The handler has the request and holds its answer: the request is in flight.
  REQUIRE(f.slow_received.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto cut = std::async(std::launch::async, [&] { return f.server->shutdown(std::chrono::seconds(10)); });
  // The shutdown has begun (the listener is closed) while the answer is still held.
  bool refusing = false;
  for (int i = 0; i < 500 && !refusing; ++i) {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket s{ioc};
    boost::system::error_code ec;
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    refusing = ec == boost::asio::error::connection_refused;
    if (!refusing) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  CHECK(refusing);
  CHECK_FALSE(f.slow_answered.load());
  f.slow_release.set_value();
  const auto cut_count = cut.get();  // returns only once the held answer was written
  CHECK(f.slow_answered.load());
  client.join();
  CHECK(status.load() == 201);
  CHECK(cut_count == 0);
  CHECK(f.server->open_sessions() == 0);
}
