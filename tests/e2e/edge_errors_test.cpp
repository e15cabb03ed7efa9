// End-to-end: the HTTP edge of a real mercatod. Error answers (404, 405, 413, malformed HTTP),
// request identity (X-Request-Id, traceparent) and the access log, keep-alive and pipelining.

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <regex>
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
using mercato::test::http_reply;
using mercato::test::node_process;

namespace {

node_process& node() {
  static node_process n{{"--demo"}};
  static const bool ready = n.wait_ready(std::chrono::seconds(60));
  REQUIRE_MESSAGE(ready, "mercatod --demo did not become ready; its log:\n" << n.log());
  return n;
}

bool is_uuid(const std::string& s) {
  static const std::regex re{"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"};
  return std::regex_match(s, re);
}

std::string random_hex(std::size_t n) {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += digits[gen() % 16];
  return out;
}

std::string str(const json::value& v) { return v.is_string() ? std::string(v.get_string()) : std::string{}; }

// Checks an RFC 9457 problem answer: status, content type, body status and code.
void check_problem(const http_reply& r, unsigned status, const std::string& code, const std::string& what) {
  CHECK_MESSAGE(r.status == status, what << ": expected " << status << ", got " << r.status << ": " << r.body);
  CHECK_MESSAGE(r.header("content-type").rfind("application/problem+json", 0) == 0,
                what << ": content-type is '" << r.header("content-type") << "'");
  json::value v;
  try {
    v = r.json();
  } catch (const std::exception& e) {
    FAIL_CHECK(what << ": the body is not JSON (" << e.what() << "): " << r.body);
    return;
  }
  if (!v.is_object()) {
    FAIL_CHECK(what << ": the problem is not a JSON object: " << r.body);
    return;
  }
  const auto& o = v.get_object();
  CHECK_MESSAGE((o.contains("status") && o.at("status").is_number() && o.at("status").to_number<int>() == static_cast<int>(status)),
                what << ": problem.status is not " << status << ": " << r.body);
  CHECK_MESSAGE((o.contains("title") && o.at("title").is_string()), what << ": problem has no title: " << r.body);
  CHECK_MESSAGE((o.contains("type") && o.at("type").is_string()), what << ": problem has no type: " << r.body);
  if (code.empty()) {
    CHECK_MESSAGE((o.contains("code") && o.at("code").is_string() && !o.at("code").get_string().empty()),
                  what << ": the problem has no code: " << r.body);
  } else {
    CHECK_MESSAGE((o.contains("code") && str(o.at("code")) == code),
                  what << ": problem.code is not '" << code << "': " << r.body);
  }
}

// Every response carries a request id (a UUID when generated) and a W3C traceparent.
void check_request_id_header(const http_reply& r, const std::string& what) {
  CHECK_MESSAGE(!r.header("x-request-id").empty(), what << ": no X-Request-Id header");
}
void check_traceparent_header(const http_reply& r, const std::string& what) {
  static const std::regex tp{"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"};
  CHECK_MESSAGE(std::regex_match(r.header("traceparent"), tp),
                what << ": traceparent header is missing or malformed: '" << r.header("traceparent") << "'");
}
void check_identity_headers(const http_reply& r, const std::string& what) {
  check_request_id_header(r, what);
  check_traceparent_header(r, what);
}

std::vector<std::string> demo_product_ids(std::size_t n) {
  http_client c{node().port()};
  const auto r = c.get("/api/v1/products?limit=" + std::to_string(n));
  REQUIRE_MESSAGE(r.status == 200, "listing products answered " << r.status << ": " << r.body);
  std::vector<std::string> ids;
  const auto body = r.json();
  for (const auto& p : body.at("data").as_array()) ids.push_back(str(p.at("id")));
  REQUIRE_MESSAGE(ids.size() == n, "the demo catalog listed only " << ids.size() << " products");
  return ids;
}

// The JSON log lines of a node whose "msg" is "request" and whose request_id is `request_id`.
std::vector<json::object> access_log_lines(const node_process& n, const std::string& request_id) {
  std::vector<json::object> out;
  for (auto& o : n.log_entries("request")) {
    if (o.contains("request_id") && str(o.at("request_id")) == request_id) {
      out.push_back(std::move(o));
    }
  }
  return out;
}

// One plain connection that never reconnects: proves requests share it.
class one_connection {
 public:
  explicit one_connection(std::uint16_t port) : stream_(ioc_) {
    stream_.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }
  bhttp::response<bhttp::string_body> get(const std::string& target) {
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    bhttp::write(stream_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream_, buffer_, res);
    return res;
  }
  std::uint16_t local_port() const { return stream_.socket().local_endpoint().port(); }

 private:
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

}  // namespace

TEST_CASE("edge: unknown path is a 404 problem") {
  http_client c{node().port()};
  for (const std::string path : {"/api/v1/nope", "/nope", "/api/v2/products", "/api/v1/products/x/y"}) {
    CAPTURE(path);
    const auto r = c.get(path);
    check_problem(r, 404, "not_found", "GET " + path);
    check_identity_headers(r, "GET " + path);
  }
  const auto r = c.request("DELETE", "/definitely/not/here");
  check_problem(r, 404, "not_found", "DELETE on an unknown path");
}

TEST_CASE("edge: a known path with a wrong method is a 405 with Allow") {
  const auto id = demo_product_ids(1).front();
  http_client c{node().port()};
  const auto r = c.request("POST", "/api/v1/products/" + id, "{}", {{"Content-Type", "application/json"}});
  check_problem(r, 405, "method_not_allowed", "POST /api/v1/products/{id}");
  check_identity_headers(r, "405");
  const auto allow = r.header("allow");
  CHECK_MESSAGE(allow.find("GET") != std::string::npos, "the 405 Allow header does not list GET: '" << allow << "'");
  CHECK_MESSAGE(allow.find("POST") == std::string::npos, "the 405 Allow header lists POST: '" << allow << "'");

  const auto del = c.request("DELETE", "/api/v1/categories");
  check_problem(del, 405, "method_not_allowed", "DELETE /api/v1/categories");
  CHECK_MESSAGE(del.header("allow").find("GET") != std::string::npos, "Allow: '" << del.header("allow") << "'");
  // The connection stays usable after a 405.
  CHECK(c.get("/healthz").status == 200);
}

TEST_CASE("edge: a body over the limit is a 413 the client can read") {
  node_process small{{"--demo"}, {{"MERCATO_HTTP_MAX_BODY_BYTES", "1024"}}};
  REQUIRE_MESSAGE(small.wait_ready(), "the node with a 1 KiB body limit did not become ready:\n" << small.log());
  const std::string big(4096, 'x');

  SUBCASE("with Content-Length, to a route and to no route") {
    for (const std::string path : {"/api/v1/products", "/no/such/path"}) {
      CAPTURE(path);
      http_client c{small.port()};
      const auto r = c.request("POST", path, big, {{"Content-Type", "application/json"}});
      check_problem(r, 413, "", "POST 4 KiB to " + path);
      check_request_id_header(r, "413");
      CHECK_MESSAGE(is_uuid(r.header("x-request-id")), "the 413's X-Request-Id is not a UUID");
    }
  }
  SUBCASE("chunked") {
    http_client c{small.port()};
    std::string req =
        "POST /api/v1/products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 4; ++i) req += "400\r\n" + std::string(1024, 'y') + "\r\n";
    req += "0\r\n\r\n";
    const auto replies = c.raw(req, 1);
    REQUIRE_MESSAGE(replies.size() == 1, "no answer to a 4 KiB chunked body");
    check_problem(replies.front(), 413, "", "POST 4 KiB chunked");
  }
  SUBCASE("under the limit is not a 413") {
    http_client c{small.port()};
    const auto r = c.request("POST", "/no/such/path", std::string(512, 'z'));
    CHECK_MESSAGE(r.status == 404, "512 bytes under a 1 KiB limit answered " << r.status << ": " << r.body);
  }
  // The node keeps serving.
  http_client after{small.port()};
  CHECK(after.get("/healthz").status == 200);
}

TEST_CASE("edge: malformed HTTP is a 400") {
  http_client c{node().port()};
  for (const auto& bytes : {std::string("NOT HTTP\r\n\r\n"), std::string("GET\r\n\r\n"),
                                  std::string("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
                                  std::string("GET /healthz HTTP/1.1\r\nBad Header Without Colon\r\n\r\n")}) {
    CAPTURE(bytes);
    std::vector<http_reply> replies;
    try {
      replies = c.raw(bytes, 1);
    } catch (const std::exception& e) {
      FAIL_CHECK("no readable answer to malformed bytes: " << e.what());
      continue;
    }
    REQUIRE(replies.size() == 1);
    check_problem(replies.front(), 400, "", "malformed request");
    check_request_id_header(replies.front(), "malformed request");
  }
  // The node is unharmed.
  CHECK(c.get("/healthz").status == 200);
}

// Errors the connection layer answers itself (before a request is routed) are responses too: API.md
// "X-Request-Id is echoed (or generated) on every response; traceparent (W3C) is honoured and propagated".
TEST_CASE("edge: 413 and malformed-request answers carry X-Request-Id and traceparent") {
  node_process small{{"--demo"}, {{"MERCATO_HTTP_MAX_BODY_BYTES", "1024"}}};
  REQUIRE_MESSAGE(small.wait_ready(), "the node with a 1 KiB body limit did not become ready:\n" << small.log());
  http_client c{small.port()};
  const auto too_large = c.request("POST", "/api/v1/products", std::string(4096, 'x'),
                                   {{"Content-Type", "application/json"}});
  REQUIRE(too_large.status == 413);
  check_identity_headers(too_large, "413 body too large");

  const auto replies = c.raw("NOT HTTP\r\n\r\n", 1);
  REQUIRE(replies.size() == 1);
  REQUIRE(replies.front().status == 400);
  check_identity_headers(replies.front(), "400 malformed HTTP");
}

TEST_CASE("edge: X-Request-Id is echoed when valid and generated otherwise") {
  http_client c{node().port()};
  SUBCASE("valid ids are echoed") {
    for (const auto& id : {std::string("e2e-") + random_hex(12), std::string("abc_DEF.123:xyz"),
                                 std::string("0f8fad5b-d9cb-469f-a165-70867728950e")}) {
      const auto r = c.get("/healthz", {{"X-Request-Id", id}});
      CHECK_MESSAGE(r.header("x-request-id") == id, "sent X-Request-Id '" << id << "', got back '"
                                                                          << r.header("x-request-id") << "'");
      // Also on errors.
      const auto e = c.get("/api/v1/nope", {{"X-Request-Id", id}});
      CHECK_MESSAGE(e.header("x-request-id") == id, "a 404 did not echo X-Request-Id '" << id << "'");
    }
  }
  SUBCASE("absent: a UUID is generated, different each time") {
    const auto a = c.get("/healthz");
    const auto b = c.get("/healthz");
    CHECK_MESSAGE(is_uuid(a.header("x-request-id")), "generated X-Request-Id is not a UUID: '"
                                                         << a.header("x-request-id") << "'");
    CHECK_MESSAGE(is_uuid(b.header("x-request-id")), "generated X-Request-Id is not a UUID");
    CHECK_MESSAGE(a.header("x-request-id") != b.header("x-request-id"), "two requests got the same generated id");
  }
  SUBCASE("invalid: replaced by a generated UUID") {
    for (const auto& bad : {std::string("has spaces in it"), std::string(200, 'a'), std::string("semi;colon"),
                                  std::string("quote\"d")}) {
      const auto r = c.get("/healthz", {{"X-Request-Id", bad}});
      CHECK_MESSAGE(r.header("x-request-id") != bad, "the invalid X-Request-Id '" << bad << "' was echoed");
      CHECK_MESSAGE(is_uuid(r.header("x-request-id")), "the id replacing '" << bad << "' is not a UUID: '"
                                                                            << r.header("x-request-id") << "'");
    }
  }
}

TEST_CASE("edge: traceparent is propagated and the access log records the request") {
  const auto id = demo_product_ids(1).front();
  const std::string trace = random_hex(32);
  const std::string parent = random_hex(16);
  const std::string request_id = "e2e-trace-" + random_hex(16);
  http_client c{node().port()};
  const auto r = c.get("/api/v1/products/" + id,
                       {{"traceparent", "00-" + trace + "-" + parent + "-01"}, {"X-Request-Id", request_id}});
  REQUIRE(r.status == 200);
  static const std::regex tp{"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$"};
  std::smatch m;
  const auto out = r.header("traceparent");
  REQUIRE_MESSAGE(std::regex_match(out, m, tp), "the response traceparent is malformed: '" << out << "'");
  CHECK_MESSAGE(m[1].str() == trace, "the response trace id " << m[1].str() << " is not the incoming " << trace);
  CHECK_MESSAGE(m[2].str() != "0000000000000000", "the response parent id is all zero");
  CHECK_MESSAGE(m[2].str() != parent, "the response reuses the caller's span id as its own");

  // The access-log line (JSON) for exactly this request; the log is written asynchronously to
  // the request, so poll with a deadline.
  std::vector<json::object> lines;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((lines = access_log_lines(node(), request_id)).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE_MESSAGE(lines.size() == 1, "expected one access-log line with request_id " << request_id << ", found "
                                                                                      << lines.size() << "; log:\n"
                                                                                      << node().log());
  const auto& l = lines.front();
  CHECK_MESSAGE((l.contains("trace_id") && str(l.at("trace_id")) == trace), "log trace_id: " << json::serialize(l));
  CHECK_MESSAGE((l.contains("method") && str(l.at("method")) == "GET"), "log method: " << json::serialize(l));
  CHECK_MESSAGE((l.contains("route") && str(l.at("route")) == "/api/v1/products/{id}"),
                "log route (the pattern, not the path): " << json::serialize(l));
  CHECK_MESSAGE((l.contains("status") && l.at("status").is_number() && l.at("status").to_number<int>() == 200),
                "log status: " << json::serialize(l));
  CHECK_MESSAGE((l.contains("bytes") && l.at("bytes").is_number() &&
                 l.at("bytes").to_number<std::uint64_t>() == r.body.size()),
                "log bytes (body " << r.body.size() << "): " << json::serialize(l));
  // README: the access log carries the duration as integer microseconds (duration_us).
  CHECK_MESSAGE((l.contains("duration_us") && (l.at("duration_us").is_int64() || l.at("duration_us").is_uint64()) &&
                 l.at("duration_us").to_number<std::int64_t>() >= 0),
                "log duration_us (integer microseconds): " << json::serialize(l));
  CHECK_MESSAGE((l.contains("path") && str(l.at("path")) == "/api/v1/products/" + id), "log path: " << json::serialize(l));

  SUBCASE("an invalid traceparent starts a new trace") {
    for (const auto& bad : {std::string("00-00000000000000000000000000000000-") + parent + "-01",
                                  std::string("00-") + trace + "-0000000000000000-01",
                                  std::string("00-") + std::string(32, 'A') + "-" + parent + "-01",
                                  std::string("ff-") + trace + "-" + parent + "-01", std::string("garbage")}) {
      CAPTURE(bad);
      const auto b = c.get("/healthz", {{"traceparent", bad}});
      std::smatch bm;
      const auto h = b.header("traceparent");
      REQUIRE_MESSAGE(std::regex_match(h, bm, tp), "the response traceparent is malformed: '" << h << "'");
      CHECK_MESSAGE(bm[1].str() != "00000000000000000000000000000000", "an all-zero trace id was propagated");
      CHECK_MESSAGE(bm[1].str() != std::string(32, 'a'), "an upper-case trace id was propagated");
    }
  }
  SUBCASE("without traceparent each request gets its own trace") {
    const auto a = c.get("/healthz");
    const auto b = c.get("/healthz");
    std::smatch am, bm;
    const auto ha = a.header("traceparent");
    const auto hb = b.header("traceparent");
    REQUIRE(std::regex_match(ha, am, tp));
    REQUIRE(std::regex_match(hb, bm, tp));
    CHECK_MESSAGE(am[1].str() != bm[1].str(), "two unrelated requests share a trace id");
  }
}

TEST_CASE("edge: keep-alive serves 50 sequential requests on one connection") {
  const auto ids = demo_product_ids(3);
  one_connection conn{node().port()};
  const auto local = conn.local_port();
  for (int i = 0; i < 50; ++i) {
    CAPTURE(i);
    const std::string target = (i % 5 == 0) ? "/healthz"
                               : (i % 5 == 1) ? "/api/v1/products?limit=3"
                               : (i % 5 == 2) ? "/api/v1/nope"
                                              : "/api/v1/products/" + ids[static_cast<std::size_t>(i) % ids.size()];
    bhttp::response<bhttp::string_body> res;
    try {
      res = conn.get(target);
    } catch (const std::exception& e) {
      FAIL("request " << i << " (" << target << ") on the kept-alive connection failed: " << e.what());
    }
    const unsigned expected = (i % 5 == 2) ? 404 : 200;
    CHECK_MESSAGE(res.result_int() == expected, target << " answered " << res.result_int());
    CHECK_MESSAGE(res.keep_alive(), "response " << i << " closes the connection");
  }
  CHECK_MESSAGE(conn.local_port() == local, "the connection changed");
}

TEST_CASE("edge: pipelined requests are answered in order") {
  const auto ids = demo_product_ids(3);
  http_client c{node().port()};
  std::string bytes;
  for (const auto& id : ids) {
    bytes += "GET /api/v1/products/" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: pipe-" + id + "\r\n\r\n";
  }
  const auto replies = c.raw(bytes, 3);
  REQUIRE_MESSAGE(replies.size() == 3, "3 pipelined requests got " << replies.size() << " answers");
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK_MESSAGE(replies[i].status == 200, "answer " << i << " is " << replies[i].status << ": " << replies[i].body);
    json::value v;
    try {
      v = replies[i].json();
    } catch (const std::exception& e) {
      FAIL_CHECK("answer " << i << " is not JSON: " << replies[i].body);
      continue;
    }
    CHECK_MESSAGE((v.is_object() && str(v.at("id")) == ids[i]),
                  "answer " << i << " is for " << (v.is_object() ? str(v.at("id")) : "?") << ", expected " << ids[i]);
    CHECK_MESSAGE(replies[i].header("x-request-id") == "pipe-" + ids[i], "answer " << i << " carries request id "
                                                                                  << replies[i].header("x-request-id"));
  }

  SUBCASE("a pipelined mix of fast and slow routes keeps the order") {
    const std::string mix = "GET /api/v1/products?limit=100 HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /api/v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /api/v1/categories HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const auto r = c.raw(mix, 4);
    REQUIRE(r.size() == 4);
    CHECK(r[0].status == 200);
    CHECK_MESSAGE(r[0].body.find("\"data\"") != std::string::npos, "answer 0 is not the product list");
    CHECK(r[1].status == 200);
    CHECK_MESSAGE(r[1].body.find("\"ok\"") != std::string::npos, "answer 1 is not /healthz");
    CHECK(r[2].status == 404);
    CHECK(r[3].status == 200);
    CHECK_MESSAGE(r[3].body.rfind("[", 0) == 0, "answer 3 is not the category tree");
  }
}
