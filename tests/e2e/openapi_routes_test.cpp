// End-to-end: the published contract and the node's routes are the same set (API9 of docs/security.md,
// "Improper Inventory Management": no undocumented route, no documented route the node lacks). The node
// logs its route table at debug level as it starts; the test reads it from the node's log and compares
// it with the openapi.yaml the node serves, operation by operation (method and path, path parameters
// compared by position, not by name).
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"

using mercato::test::http_client;
using mercato::test::node_process;
using namespace std::chrono_literals;

namespace {

// "/api/v1/carts/{id}/items/{product_id}" -> "/api/v1/carts/{}/items/{}"
std::string shape(const std::string& pattern) {
  static const std::regex param{R"(\{[^}/]*\})"};
  return std::regex_replace(pattern, param, "{}");
}

std::string upper(std::string s) {
  for (auto& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s;
}

// "METHOD shape" for every operation of the spec: a path is a two-space-indented key starting with '/',
// an operation a four-space-indented HTTP method key under it.
std::set<std::string> spec_operations(const std::string& yaml) {
  static const std::regex path_line{R"(^  (/[^:\s]*):\s*$)"};
  static const std::regex method_line{R"(^    (get|put|post|patch|delete|head|options|trace):\s*$)"};
  std::set<std::string> ops;
  bool in_paths = false;
  std::string path;
  std::istringstream in{yaml};
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (!line.empty() && line[0] != ' ' && line[0] != '#') {
      in_paths = line.rfind("paths:", 0) == 0;
      path.clear();
      continue;
    }
    if (!in_paths) {
      continue;
    }
    std::smatch m;
    if (std::regex_match(line, m, path_line)) {
      path = m[1];
    } else if (!path.empty() && std::regex_match(line, m, method_line)) {
      ops.insert(upper(m[1]) + " " + shape(path));
    }
  }
  return ops;
}

// "METHOD shape" for every `route` line the node logged (JSON log format).
std::set<std::string> logged_routes(const std::string& log) {
  std::set<std::string> routes;
  std::istringstream in{log};
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"msg\":\"route\"") == std::string::npos) {
      continue;
    }
    boost::system::error_code ec;
    const auto v = boost::json::parse(line, ec);
    REQUIRE_MESSAGE(!ec, line);
    const auto& o = v.as_object();
    routes.insert(std::string(o.at("method").as_string()) + " " + shape(std::string(o.at("pattern").as_string())));
  }
  return routes;
}

std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in{path};
  while (std::getline(in, part, '/')) {
    out.push_back(part);
  }
  return out;
}

// "GET /assets/{}" covers "GET /assets/app.js": the node registers each storefront file as a route of its
// own, the spec documents them as one template.
bool covers(const std::string& templ, const std::string& op) {
  if (templ == op) {
    return true;
  }
  const auto t = segments(templ);
  const auto o = segments(op);
  if (t.size() != o.size()) {
    return false;
  }
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] != o[i] && !(t[i] == "{}" && !o[i].empty() && o[i].find('{') == std::string::npos)) {
      return false;
    }
  }
  return true;
}

bool covered_by_any(const std::set<std::string>& templates, const std::string& op) {
  return std::any_of(templates.begin(), templates.end(), [&](const std::string& t) { return covers(t, op); });
}

bool covers_any(const std::string& templ, const std::set<std::string>& ops) {
  return std::any_of(ops.begin(), ops.end(), [&](const std::string& o) { return covers(templ, o); });
}

}  // namespace

TEST_CASE("every route the node serves is in openapi.yaml, and every operation there is a route of the node") {
  mercato::test::scratch_database db;
  node_process n{{"--demo"},
                 {{"MERCATO_PG_DSN", db.dsn()}, {"MERCATO_LOG_LEVEL", "debug"}, {"MERCATO_LOG_FORMAT", "json"}}};
  REQUIRE_MESSAGE(n.wait_ready(60s), "mercatod did not become ready; its log:\n" << n.log());
  http_client c{n.port()};
  const auto spec = c.get("/api/v1/openapi.yaml");
  REQUIRE(spec.status == 200);

  const auto documented = spec_operations(spec.body);
  const auto served = logged_routes(n.log());
  // Both sides were read: the spec has its operations, the log its route table (a parse that found
  // nothing would make the comparison below pass vacuously).
  REQUIRE(documented.size() > 40);
  REQUIRE(served.size() > 40);
  CHECK(documented.count("POST /api/v1/carts/{}/checkout") == 1);
  CHECK(served.count("POST /api/v1/carts/{}/checkout") == 1);

  CHECK(covers("GET /assets/{}", "GET /assets/app.js"));
  CHECK_FALSE(covers("GET /assets/{}", "GET /assets/app.js/x"));
  CHECK_FALSE(covers("GET /api/v1/carts/{}", "POST /api/v1/carts/{}"));

  for (const auto& op : served) {
    CHECK_MESSAGE(covered_by_any(documented, op), "served but not in openapi.yaml: " << op);
  }
  for (const auto& op : documented) {
    CHECK_MESSAGE(covers_any(op, served), "in openapi.yaml but not served: " << op);
  }
}
