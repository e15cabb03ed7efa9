#include "http/request.hpp"

#include <algorithm>
#include <cctype>

#include <boost/json/serialize.hpp>
#include <simdjson.h>

#include "telemetry/logging.hpp"

namespace mercato::http {

response response::json(unsigned status, const boost::json::value& v) {
  return json_text(status, boost::json::serialize(v));
}

response response::json_text(unsigned status, std::string body) {
  response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

response response::from(const problem& p) {
  response r;
  r.status = p.status;
  r.content_type = "application/problem+json";
  r.body = p.to_json();
  return r;
}

response response::empty(unsigned status) {
  response r;
  r.status = status;
  r.content_type.clear();
  return r;
}

bool principal::has_role(std::string_view role) const {
  for (const auto& r : roles) {
    if (r == role) {
      return true;
    }
  }
  return false;
}

request_context::request_context() = default;
request_context::~request_context() = default;

simdjson::dom::element request_context::json() const { return body_doc->root(); }

std::string_view request_context::header(bhttp::field f) const {
  auto it = raw.find(f);
  if (it == raw.end()) {
    return {};
  }
  return {it->value().data(), it->value().size()};
}

std::string_view request_context::header(std::string_view name) const {
  auto it = raw.find(boost::beast::string_view{name.data(), name.size()});
  if (it == raw.end()) {
    return {};
  }
  return {it->value().data(), it->value().size()};
}

const std::string* request_context::param(std::string_view name) const {
  for (const auto& [k, v] : path_params) {
    if (k == name) {
      return &v;
    }
  }
  return nullptr;
}

const std::string* request_context::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) {
      return &v;
    }
  }
  return nullptr;
}

struct responder::state {
  explicit state(sink s) : out(std::move(s)) {}
  ~state() {
    // A handler that dropped its responder would leave the client hanging: answer for it.
    if (!done.exchange(true)) {
      telemetry::log_error("handler finished without answering");
      out(response::from(internal_error("the request was not answered")));
    }
  }
  std::atomic<bool> done{false};
  sink out;
};

responder::responder(sink s) : st_(std::make_shared<state>(std::move(s))) {}

void responder::operator()(response r) const {
  if (st_->done.exchange(true)) {
    telemetry::log_error("a request was answered twice; the second answer is dropped");
    return;
  }
  st_->out(std::move(r));
}

std::optional<std::string_view> bearer_credential(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), authorization.begin(),
                  [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
    return std::nullopt;
  }
  auto credential = authorization.substr(scheme.size());
  while (!credential.empty() && credential.front() == ' ') {
    credential.remove_prefix(1);
  }
  if (credential.empty()) {
    return std::nullopt;
  }
  return credential;
}

}  // namespace mercato::http
