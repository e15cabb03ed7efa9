#pragma once
// What a handler sees of a request and how it answers. Handlers may answer from any thread, once:
// the responder posts the response back to the connection's strand.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>

#include "http/problem.hpp"

namespace simdjson::dom {
class document;
class element;
}  // namespace simdjson::dom

namespace mercato::http {

namespace bhttp = boost::beast::http;

struct response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  static response json(unsigned status, const boost::json::value& v);
  static response json_text(unsigned status, std::string body);
  static response from(const problem& p);
  static response empty(unsigned status);
  response& with_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

// The verified identity behind a request (from the access token).
struct principal {
  std::string user_id;
  std::vector<std::string> roles;
  std::string vendor_id;   // vendors only
  std::string session_id;  // the login (refresh-token family) behind the token; empty for older tokens
  std::chrono::system_clock::time_point expires_at{};  // the token's exp (a live-updates connection ends there)

  bool has_role(std::string_view role) const;
  bool is_admin() const { return has_role("admin"); }
};

struct route;

struct request_context {
  bhttp::request<bhttp::string_body> raw;
  std::string path;  // percent-decoded path, no query
  std::vector<std::pair<std::string, std::string>> query;        // decoded, in order
  std::vector<std::pair<std::string, std::string>> path_params;  // from the route pattern
  std::string route;       // the matched pattern ("/api/v1/products/{id}"), for logs and metrics
  std::string request_id;  // X-Request-Id, echoed or generated
  std::string trace_id;    // from traceparent, or generated: 32 lowercase hex
  std::string span_id;     // this request's span: 16 lowercase hex
  std::string client_ip;   // the TCP peer, or behind a trusted proxy the client it names (http/client_address.hpp)
  std::chrono::steady_clock::time_point received_at;
  std::chrono::steady_clock::time_point handler_at;  // when the pipeline called the handler (stage timing)
  const http::route* matched = nullptr;  // the route ctx->route names (null when unmatched), for its metric series
  // Who is calling, from the bearer token the pipeline verified; empty for anonymous requests.
  std::optional<principal> caller;
  // Headers the pipeline adds to whatever the handler answers (RateLimit-*).
  std::vector<std::pair<std::string, std::string>> extra_headers;
  // The body parsed by simdjson, for routes that take JSON (set by the pipeline before the handler).
  std::unique_ptr<simdjson::dom::document> body_doc;

  request_context();
  ~request_context();
  request_context(const request_context&) = delete;
  request_context& operator=(const request_context&) = delete;

  bool has_json_body() const { return body_doc != nullptr; }
  simdjson::dom::element json() const;  // requires has_json_body()

  bhttp::verb method() const { return raw.method(); }
  std::string_view header(bhttp::field f) const;
  std::string_view header(std::string_view name) const;
  const std::string* param(std::string_view name) const;
  const std::string* query_param(std::string_view name) const;
};

// The credential of "Authorization: Bearer <credential>" (the scheme in any case, spaces after it
// skipped); nullopt when the header names another scheme or no credential.
std::optional<std::string_view> bearer_credential(std::string_view authorization);

class responder {
 public:
  using sink = std::function<void(response)>;
  explicit responder(sink s);
  // The first call answers; later calls are ignored (a bug, logged). Thread-safe.
  void operator()(response r) const;
  void operator()(const problem& p) const { (*this)(response::from(p)); }

 private:
  struct state;
  std::shared_ptr<state> st_;
};

using handler = std::function<void(std::shared_ptr<request_context>, responder)>;

}  // namespace mercato::http
