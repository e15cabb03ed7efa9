// The demo storefront's static route (http/routes/static_routes): first the real Beast edge in-process over a
// directory of our own (types, ETag and If-None-Match → 304, HEAD, Cache-Control and security headers,
// traversal and unknown paths → 404 problem+json, other methods → 405), then mercatod itself: the repository's
// web/ at "/" with every asset the page references, http.static_dir, and the page outside rate limiting.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <string>

#include <unistd.h>

#include <boost/json/object.hpp>

#include "http/pipeline.hpp"
#include "http/router.hpp"
#include "http/routes/static_routes.hpp"
#include "http/server.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;
namespace fs = std::filesystem;

namespace {

class temp_site {
 public:
  temp_site() {
    static int counter = 0;
    root_ = fs::temp_directory_path() /
            ("mercato_storefront_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(root_ / "assets");
    write("index.html", "<!doctype html><title>shop</title><script type=\"module\" src=\"/assets/app.js\"></script>");
    write("assets/app.js", "console.log('hi');\n");
    write("assets/style.css", "body { color: #123; }\n");
    write("assets/icon.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
    write(".secret", "never served");
  }
  ~temp_site() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  temp_site(const temp_site&) = delete;
  temp_site& operator=(const temp_site&) = delete;
  void write(const std::string& rel, const std::string& content) const {
    std::ofstream{root_ / rel, std::ios::binary} << content;
  }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
};

struct edge_fixture {
  explicit edge_fixture(const fs::path& dir) {
    routes.add(http::bhttp::verb::get, "/api/v1/thing", [](auto, http::responder respond) {
      respond(http::response::json(200, boost::json::object{{"ok", true}}));
    });
    http::add_static_routes(routes, http::load_static_site(dir));
    config::http_settings s;
    s.port = 0;
    s.threads = 1;
    server = std::make_unique<http::server>(s, edge, &metrics);
    server->start();
  }
  ~edge_fixture() { server->shutdown(std::chrono::seconds(2)); }

  telemetry::metrics metrics;
  http::router routes;
  http::pipeline edge{routes, &metrics};
  std::unique_ptr<http::server> server;
};

void check_not_found(const http_reply& r) {
  CHECK(r.status == 404);
  CHECK(r.header("content-type") == "application/problem+json");
  CHECK(r.body.find("\"code\":\"not_found\"") != std::string::npos);
  CHECK(r.body.find("root:") == std::string::npos);  // nothing of /etc/passwd
}

}  // namespace

TEST_CASE("static files: type, ETag, If-None-Match → 304, Cache-Control and the page's security headers") {
  temp_site site;
  edge_fixture f{site.root()};
  http_client c{f.server->port()};

  auto page = c.get("/");
  REQUIRE(page.status == 200);
  CHECK(page.header("content-type") == "text/html; charset=utf-8");
  CHECK(page.body.find("<title>shop</title>") != std::string::npos);
  const auto etag = page.header("etag");
  CHECK(etag.size() == 34);
  CHECK(page.header("cache-control") == "no-cache");
  CHECK(page.header("x-content-type-options") == "nosniff");
  CHECK(page.header("content-security-policy").find("default-src 'self'") != std::string::npos);
  CHECK(page.header("content-security-policy").find("connect-src 'self' ws: wss:") != std::string::npos);
  CHECK(page.header("x-frame-options") == "DENY");
  CHECK(page.header("referrer-policy") == "no-referrer");
  CHECK_FALSE(page.header("x-request-id").empty());

  // /index.html is the same file.
  auto index = c.get("/index.html");
  CHECK(index.status == 200);
  CHECK(index.header("etag") == etag);
  CHECK(index.body == page.body);

  auto js = c.get("/assets/app.js");
  CHECK(js.status == 200);
  CHECK(js.header("content-type") == "text/javascript; charset=utf-8");
  CHECK(js.body == "console.log('hi');\n");
  CHECK(c.get("/assets/style.css").header("content-type") == "text/css; charset=utf-8");
  CHECK(c.get("/assets/icon.svg").header("content-type") == "image/svg+xml");

  // Revalidation: the current tag → 304 without a body (but with the tag); an old one → 200.
  auto fresh = c.get("/", {{"If-None-Match", etag}});
  CHECK(fresh.status == 304);
  CHECK(fresh.body.empty());
  CHECK(fresh.header("etag") == etag);
  CHECK(fresh.header("cache-control") == "no-cache");
  CHECK(c.get("/", {{"If-None-Match", "W/" + etag}}).status == 304);           // weak comparison
  CHECK(c.get("/", {{"If-None-Match", "\"old\", " + etag}}).status == 304);    // a list
  CHECK(c.get("/", {{"If-None-Match", "*"}}).status == 304);
  CHECK(c.get("/", {{"If-None-Match", "\"0123\""}}).status == 200);
  CHECK(c.get("/assets/app.js", {{"If-None-Match", etag}}).status == 200);     // another file's tag

  // HEAD: the GET's headers and length, no body.
  auto head = c.request("HEAD", "/assets/app.js");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.header("content-length") == std::to_string(js.body.size()));
  CHECK(head.header("etag") == js.header("etag"));
  CHECK(c.get("/assets/app.js").status == 200);  // the connection is still in step after HEAD
}

TEST_CASE("static files: traversal, dot files and unknown paths are 404 problem+json; other methods 405") {
  temp_site site;
  edge_fixture f{site.root()};
  http_client c{f.server->port()};

  check_not_found(c.get("/..%2f..%2fetc/passwd"));
  check_not_found(c.get("/assets/..%2f..%2f..%2fetc%2fpasswd"));
  check_not_found(c.get("/%2e%2e/%2e%2e/etc/passwd"));
  check_not_found(c.get("/assets/%2e%2e/index.html"));
  check_not_found(c.get("/.secret"));
  check_not_found(c.get("/nope.html"));
  check_not_found(c.get("/assets/"));
  check_not_found(c.get("/assets/app.js.map"));
  // Sent byte for byte, without any client normalising the dots away.
  for (const std::string target : {"/../../etc/passwd", "/assets/../../etc/passwd", "/./index.html/.."}) {
    CAPTURE(target);
    auto replies = c.raw("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    REQUIRE(replies.size() == 1);
    check_not_found(replies.front());
  }

  auto post = c.request("POST", "/", "{}", {{"Content-Type", "application/json"}});
  CHECK(post.status == 405);
  CHECK(post.header("allow") == "GET");
  CHECK(c.request("DELETE", "/assets/app.js").status == 405);

  // The API beside it is untouched.
  CHECK(c.get("/api/v1/thing").status == 200);
}

TEST_CASE("mercatod serves the repository's web/ at / with every asset the page references") {
  node_process node;
  REQUIRE(node.wait_ready());
  http_client c{node.node_port()};

  auto page = c.get("/");
  REQUIRE(page.status == 200);
  CHECK(page.header("content-type") == "text/html; charset=utf-8");
  CHECK(page.body.find("data-testid=\"page\"") != std::string::npos);
  CHECK(page.header("content-security-policy").find("default-src 'self'") != std::string::npos);
  CHECK(c.get("/", {{"If-None-Match", page.header("etag")}}).status == 304);

  // Every src/href the page names under /assets/, and every module the scripts import, is served with a
  // type a browser accepts for it (module scripts need a JavaScript type).
  std::set<std::string> seen;
  std::vector<std::string> todo{"/"};
  const std::regex ref{R"re((?:src|href)="(/assets/[^"]+)"|from '\./([a-z0-9_-]+\.js)')re"};
  while (!todo.empty()) {
    const auto path = todo.back();
    todo.pop_back();
    auto r = c.get(path);
    CAPTURE(path);
    REQUIRE(r.status == 200);
    for (std::sregex_iterator it{r.body.begin(), r.body.end(), ref}, end; it != end; ++it) {
      const std::string found = (*it)[1].matched ? (*it)[1].str() : "/assets/" + (*it)[2].str();
      if (seen.insert(found).second) todo.push_back(found);
    }
  }
  CHECK(seen.count("/assets/app.js") == 1);
  CHECK(seen.count("/assets/style.css") == 1);
  CHECK(seen.count("/assets/live.js") == 1);
  for (const auto& path : seen) {
    CAPTURE(path);
    const auto type = c.get(path).header("content-type");
    if (path.size() > 3 && path.compare(path.size() - 3, 3, ".js") == 0) {
      CHECK(type == "text/javascript; charset=utf-8");
    } else if (path.size() > 4 && path.compare(path.size() - 4, 4, ".css") == 0) {
      CHECK(type == "text/css; charset=utf-8");
    } else {
      CHECK(type == "image/svg+xml");
    }
  }
  check_not_found(c.get("/..%2f..%2fetc/passwd"));
  check_not_found(c.get("/no-such-page"));
  // The operations endpoints keep their own answers.
  CHECK(c.get("/healthz").status == 200);
  CHECK(c.get("/api/v1/products?limit=1").status == 200);
  CHECK(node.stop(SIGTERM) == 0);
}

TEST_CASE("http.static_dir serves another directory; rate limiting never blocks the page") {
  temp_site site;
  std::random_device rd;
  node_process node{{"--demo"},
                    {{"MERCATO_HTTP_STATIC_DIR", site.root().string()},
                     {"MERCATO_RATE_LIMITS", "on"},
                     {"MERCATO_RATE_LIMIT_ANONYMOUS", "3/1m"},
                     {"MERCATO_REDIS_KEY_PREFIX", "storefront-static-" + std::to_string(rd()) + ":"}}};
  REQUIRE(node.wait_ready());
  http_client c{node.node_port()};

  auto page = c.get("/");
  REQUIRE(page.status == 200);
  CHECK(page.body.find("<title>shop</title>") != std::string::npos);

  // The anonymous API budget runs out; the page and its assets are still served.
  unsigned limited = 0;
  for (int i = 0; i < 6; ++i) {
    limited += c.get("/api/v1/categories").status == 429 ? 1 : 0;
  }
  CHECK(limited > 0);
  for (int i = 0; i < 10; ++i) {
    CHECK(c.get("/").status == 200);
    CHECK(c.get("/assets/app.js").status == 200);
  }
  CHECK(c.get("/api/v1/categories").status == 429);
  CHECK(node.stop(SIGTERM) == 0);
}
