#include "http/router.hpp"

#include <stdexcept>

namespace mercato::http {

struct router::node {
  std::map<std::string, std::unique_ptr<node>, std::less<>> literals;
  std::unique_ptr<node> param;
  std::string param_name;
  std::map<bhttp::verb, const route*> handlers;
};

router::router() : root_(std::make_unique<node>()) {}
router::~router() = default;

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    const auto j = path.find('/', i);
    const auto end = j == std::string_view::npos ? path.size() : j;
    out.push_back(path.substr(i, end - i));
    i = end;
  }
  return out;
}

void router::add(bhttp::verb method, std::string pattern, handler h, route_options opts) {
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern must start with '/': " + pattern);
  }
  node* n = root_.get();
  for (auto seg : split_path(pattern)) {
    if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
      std::string name{seg.substr(1, seg.size() - 2)};
      if (!n->param) {
        n->param = std::make_unique<node>();
        n->param_name = name;
      } else if (n->param_name != name) {
        throw std::invalid_argument("conflicting parameter names at the same position: " + pattern);
      }
      n = n->param.get();
    } else {
      if (seg.find_first_of("{}") != std::string_view::npos) {
        throw std::invalid_argument("malformed route segment in " + pattern);
      }
      auto it = n->literals.find(seg);
      if (it == n->literals.end()) {
        it = n->literals.emplace(std::string(seg), std::make_unique<node>()).first;
      }
      n = it->second.get();
    }
  }
  if (n->handlers.count(method) != 0) {
    throw std::invalid_argument("duplicate route " + std::string(bhttp::to_string(method)) + " " + pattern);
  }
  auto r = std::make_unique<route>();
  r->method = method;
  r->pattern = std::move(pattern);
  r->handle = std::move(h);
  r->options = std::move(opts);
  routes_.push_back(std::move(r));
  n->handlers[method] = routes_.back().get();
}

route_match router::match(bhttp::verb method, std::string_view path) const {
  route_match m;
  const node* n = root_.get();
  for (auto seg : split_path(path)) {
    auto it = n->literals.find(seg);
    if (it != n->literals.end()) {
      n = it->second.get();
    } else if (n->param) {
      m.params.emplace_back(n->param_name, std::string(seg));
      n = n->param.get();
    } else {
      m.params.clear();
      return m;
    }
  }
  if (n->handlers.empty()) {
    m.params.clear();
    return m;
  }
  auto it = n->handlers.find(method);
  // HEAD is answered by the GET route (the edge strips the body).
  if (it == n->handlers.end() && method == bhttp::verb::head) {
    it = n->handlers.find(bhttp::verb::get);
  }
  if (it == n->handlers.end()) {
    m.outcome = route_match::kind::method_not_allowed;
    for (const auto& [verb, r] : n->handlers) {
      m.allowed.push_back(verb);
    }
    m.params.clear();
    return m;
  }
  m.outcome = route_match::kind::found;
  m.matched = it->second;
  return m;
}

std::vector<const route*> router::routes() const {
  std::vector<const route*> out;
  for (const auto& r : routes_) {
    out.push_back(r.get());
  }
  return out;
}

}  // namespace mercato::http
