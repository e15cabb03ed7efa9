#pragma once
// Method + path routing with `{name}` path parameters, as a trie over path segments.
// Literal segments win over parameters, so "/products/search" can sit beside "/products/{id}".

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/verb.hpp>

#include "http/request.hpp"

namespace mercato::http {

struct route_options {
  bool json_body = false;  // the handler takes a JSON body: the pipeline checks type and syntax first
  // Who may call it, checked at the edge before the handler runs (handlers check ownership again):
  bool signed_in = false;          // 401 without a valid access token
  std::vector<std::string> roles;  // non-empty: one of these roles (admin always passes), else 403
  bool rate_limited = true;        // false for the operations endpoints (probes, scrapes)
};

// Shorthands for route registration.
inline route_options json_route() { return route_options{true, false, {}, true}; }
inline route_options signed_in_route(bool json = false) { return route_options{json, true, {}, true}; }
inline route_options role_route(std::vector<std::string> roles, bool json = false) {
  return route_options{json, true, std::move(roles), true};
}

struct route {
  bhttp::verb method;
  std::string pattern;
  handler handle;
  route_options options;
};

struct route_match {
  enum class kind { found, not_found, method_not_allowed } outcome = kind::not_found;
  const route* matched = nullptr;
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<bhttp::verb> allowed;  // for 405: the methods the path does accept
};

class router {
 public:
  router();
  ~router();
  router(const router&) = delete;
  router& operator=(const router&) = delete;

  // Throws std::invalid_argument on a malformed pattern or a duplicate (method, pattern).
  void add(bhttp::verb method, std::string pattern, handler h, route_options opts = {});

  // `path` is the decoded path without the query string.
  route_match match(bhttp::verb method, std::string_view path) const;

  std::vector<const route*> routes() const;

 private:
  struct node;
  std::unique_ptr<node> root_;
  std::vector<std::unique_ptr<route>> routes_;
};

// Splits "/a/b/" into {"a", "b"}; empty segments are dropped except that "/" alone is the root.
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace mercato::http
