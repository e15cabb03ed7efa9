#include "support/contract_proxy.hpp"

#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "support/http_client.hpp"

namespace mercato::test::contract {

namespace json = boost::json;

bool enabled() {
  const char* v = std::getenv("MERCATO_TEST_CONTRACT_PROXY");
  return v && std::string_view{v} == "1";
}

// --- proxy port → node port ----------------------------------------------------------------------

namespace {
std::mutex registry_mutex;
std::map<std::uint16_t, std::uint16_t>& registry() {
  static std::map<std::uint16_t, std::uint16_t> r;
  return r;
}
}  // namespace

void register_proxy(std::uint16_t proxy_port, std::uint16_t node_port) {
  std::lock_guard<std::mutex> lock{registry_mutex};
  registry()[proxy_port] = node_port;
}

void unregister_proxy(std::uint16_t proxy_port) {
  std::lock_guard<std::mutex> lock{registry_mutex};
  registry().erase(proxy_port);
}

std::optional<std::uint16_t> node_behind(std::uint16_t port) {
  std::lock_guard<std::mutex> lock{registry_mutex};
  auto it = registry().find(port);
  if (it == registry().end()) {
    return std::nullopt;
  }
  return it->second;
}

// --- what Prism forwards unchanged ---------------------------------------------------------------

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) {
        return false;
      }
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    const std::uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 pchar without percent-encoding: Prism's URL parser leaves these alone.
bool plain_path_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view{"-._~!$&'()*+,;=:@/"}.find(c) != std::string_view::npos;
}

// No percent-escapes, empty segments or dot segments (WHATWG URL parsing and path.join rewrite those).
bool path_unchanged(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.find("//") != std::string_view::npos) {
    return false;
  }
  if (!std::all_of(path.begin(), path.end(), plain_path_char)) {
    return false;
  }
  std::size_t pos = 1;
  while (pos <= path.size()) {
    auto end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    const auto segment = path.substr(pos, end - pos);
    if (segment == "." || segment == "..") {
      return false;
    }
    pos = end + 1;
  }
  return true;
}

// Prism decodes the query (URLSearchParams: '+' is a space) and encodes it again; the node decodes it the same way, so
// the meaning survives when every pair is `name=value`, every escape is valid and what it decodes to is UTF-8.
bool query_unchanged(std::string_view query) {
  if (query.empty()) {
    return false;  // a bare '?' disappears
  }
  std::size_t pos = 0;
  while (pos <= query.size()) {
    auto end = query.find('&', pos);
    if (end == std::string_view::npos) end = query.size();
    const auto pair = query.substr(pos, end - pos);
    pos = end + 1;
    if (pair.empty() || pair.find('=') == std::string_view::npos || pair.rfind("__server=", 0) == 0) {
      return false;  // `a&&b`, `flag` become `a&b`, `flag=`; __server is Prism's own parameter
    }
    std::string decoded;
    for (std::size_t i = 0; i < pair.size(); ++i) {
      const char c = pair[i];
      if (c == '%') {
        if (i + 2 >= pair.size()) return false;
        const int hi = hex(pair[i + 1]);
        const int lo = hex(pair[i + 2]);
        if (hi < 0 || lo < 0) return false;
        decoded += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else if (std::isalnum(static_cast<unsigned char>(c)) ||
                 std::string_view{"-._~!$'()*+,;=:@/?"}.find(c) != std::string_view::npos) {
        decoded += c;
      } else {
        return false;
      }
    }
    if (!valid_utf8(decoded)) {
      return false;
    }
  }
  return true;
}

// The body without the whitespace between tokens (JSON.stringify writes none).
std::string compact(std::string_view body) {
  std::string out;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      out += c;
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
      out += c;
    } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      out += c;
    }
  }
  return out;
}

// Values JSON.parse + JSON.stringify write back exactly as Boost.JSON does: no floating-point numbers (formats differ),
// integers within 2^53 (a JavaScript number is a double), no keys that look like array indices (JavaScript puts those
// first in an object).
bool survives_javascript(const json::value& v) {
  constexpr std::int64_t max_safe = (std::int64_t{1} << 53) - 1;
  switch (v.kind()) {
    case json::kind::double_:
      return false;
    case json::kind::int64:
      return v.get_int64() >= -max_safe && v.get_int64() <= max_safe;
    case json::kind::uint64:
      return v.get_uint64() <= static_cast<std::uint64_t>(max_safe);
    case json::kind::array:
      return std::all_of(v.get_array().begin(), v.get_array().end(), survives_javascript);
    case json::kind::object:
      for (const auto& kv : v.get_object()) {
        const auto key = kv.key();
        if (!key.empty() && key.size() <= 10 &&
            std::all_of(key.begin(), key.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
          return false;
        }
        if (!survives_javascript(kv.value())) {
          return false;
        }
      }
      return true;
    default:
      return true;
  }
}

bool json_body_unchanged(const std::string& body) {
  json::error_code ec;
  const auto v = json::parse(body, ec);
  if (ec || !survives_javascript(v)) {
    return false;
  }
  // Duplicate keys, escapes written another way, `1.0`, `-0`: the serialisation differs.
  return json::serialize(v) == compact(body);
}

bool is_json_media_type(const std::string& content_type) {
  auto type = lower(content_type.substr(0, content_type.find(';')));
  type.erase(std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }), type.end());
  const std::string suffix = "+json";
  return type == "application/json" || (type.rfind("application/", 0) == 0 && type.size() > suffix.size() &&
                                        type.compare(type.size() - suffix.size(), suffix.size(), suffix) == 0);
}

}  // namespace

bool forwards_unchanged(const std::string& method, const std::string& target, const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  // HEAD: Prism reads the empty answer as JSON and fails; others are not API methods.
  if (method != "GET" && method != "POST" && method != "PUT" && method != "PATCH" && method != "DELETE") {
    return false;
  }
  if ((method == "GET" || method == "DELETE") && !body.empty()) {
    return false;  // Prism refuses a GET with a body
  }
  if (target.find('#') != std::string::npos) {
    return false;
  }
  const auto q = target.find('?');
  if (!path_unchanged(std::string_view{target}.substr(0, q))) {
    return false;
  }
  if (q != std::string::npos && !query_unchanged(std::string_view{target}.substr(q + 1))) {
    return false;
  }

  std::string content_type;
  std::size_t header_bytes = 0;
  static const char* const rewritten[] = {
      "host", "content-length", "transfer-encoding", "connection",         "keep-alive", "upgrade", "expect",
      "te",   "trailer",        "proxy-connection",  "proxy-authorization"};
  for (const auto& [name, value] : headers) {
    const auto n = lower(name);
    if (std::find(std::begin(rewritten), std::end(rewritten), n) != std::end(rewritten)) {
      return false;  // hop-by-hop or framing: Prism (Node.js) sets its own
    }
    if (n.empty() || !std::all_of(n.begin(), n.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) ||
                 std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
        })) {
      return false;
    }
    if (!std::all_of(value.begin(), value.end(), [](char c) { return c == '\t' || (c >= 0x20 && c < 0x7f); }) ||
        (!value.empty() &&
         (value.front() == ' ' || value.back() == ' ' || value.front() == '\t' || value.back() == '\t'))) {
      return false;  // Node.js trims or rejects these
    }
    header_bytes += name.size() + value.size() + 4;
    if (n == "content-type") {
      content_type = value;
    }
  }
  if (header_bytes > 8 * 1024) {
    return false;  // header limits are the node's to enforce, not Node.js's
  }

  if (body.empty()) {
    return true;
  }
  if (body.size() > 1024 * 1024 || content_type.empty()) {
    return false;  // Prism's body limit; without a Content-Type node-fetch adds text/plain
  }
  if (is_json_media_type(content_type)) {
    return json_body_unchanged(body);  // malformed JSON: Prism answers 400 itself
  }
  return valid_utf8(body);  // other bodies are forwarded as (UTF-8) text
}

// --- the verdict on one exchange -----------------------------------------------------------------

namespace {
// Printed when the test program ends, so a run can show (and tests/e2e/contract_proxy_test.sh check) that its traffic
// really went through the proxy.
struct tally {
  std::atomic<long> validated{0};
  std::atomic<long> direct{0};
  ~tally() {
    if (validated > 0 || direct > 0) {
      std::fprintf(stderr,
                   "contract proxy: %ld exchanges validated against "
                   "openapi.yaml, %ld sent to the node directly\n",
                   validated.load(), direct.load());
    }
  }
};
tally& counts() {
  static tally t;
  return t;
}
}  // namespace

void count_exchange(bool through_proxy) { ++(through_proxy ? counts().validated : counts().direct); }

std::vector<std::string> violations(const http_reply& reply) {
  std::vector<std::string> out;
  if (reply.header("x-request-id").empty()) {
    out.push_back("the answer came from Prism, not from the node (no X-Request-Id): " + reply.body.substr(0, 400));
    return out;
  }
  const auto header = reply.header("sl-violations");
  if (header.empty()) {
    return out;
  }
  json::error_code ec;
  const auto list = json::parse(header, ec);
  if (ec || !list.is_array()) {
    out.push_back("unreadable sl-violations header: " + header.substr(0, 2000));
    return out;
  }
  const bool accepted = reply.status < 400;
  for (const auto& v : list.get_array()) {
    if (!v.is_object()) {
      out.push_back("unreadable violation: " + json::serialize(v));
      continue;
    }
    const auto& o = v.get_object();
    std::string where;
    std::string side;
    if (const auto* loc = o.if_contains("location"); loc && loc->is_array()) {
      for (const auto& part : loc->get_array()) {
        const auto s = part.is_string() ? std::string(part.get_string()) : json::serialize(part);
        if (side.empty()) side = s;
        where += (where.empty() ? "" : ".") + s;
      }
    }
    if (side == "request" && !accepted) {
      continue;  // the test sent invalid input on purpose and the node refused it
    }
    const auto* message = o.if_contains("message");
    const auto* severity = o.if_contains("severity");
    std::string line = (side == "request" ? "the node accepted a request the spec calls invalid: " : "") + where +
                       ": " +
                       (message && message->is_string() ? std::string(message->get_string()) : json::serialize(v));
    if (severity && severity->is_string()) {
      line += " [" + std::string(severity->get_string()) + "]";
    }
    out.push_back(line);
  }
  return out;
}

void report(const std::string& method, const std::string& target, const http_reply& reply,
            const std::vector<std::string>& problems) {
  std::ostringstream m;
  m << "contract proxy: " << method << " " << target << " answered " << reply.status << " (X-Request-Id "
    << reply.header("x-request-id") << "), which does not match openapi.yaml:";
  for (const auto& p : problems) {
    m << "\n  - " << p;
  }
  m << "\n  body: " << reply.body.substr(0, 600) << (reply.body.size() > 600 ? "..." : "");
  if (doctest::is_running_in_test) {
    FAIL_CHECK(m.str());
  } else {
    std::cerr << m.str() << std::endl;
    std::abort();
  }
}

// --- the Prism process ---------------------------------------------------------------------------

proxy_process::proxy_process(std::uint16_t proxy_port, std::uint16_t node_port) : port_(proxy_port) {
  const std::string prism = std::string(MERCATO_SOURCE_DIR) + "/tests/tools/node_modules/.bin/prism";
  const std::string spec = std::string(MERCATO_SOURCE_DIR) + "/openapi.yaml";
  if (::access(prism.c_str(), X_OK) != 0) {
    throw std::runtime_error("MERCATO_TEST_CONTRACT_PROXY=1 but Prism is not installed (" + prism +
                             "); run scripts/setup --tests (npm ci in tests/tools)");
  }
  char tmpl[] = "/tmp/mercato-prism-XXXXXX";
  const int log_fd = ::mkstemp(tmpl);
  if (log_fd < 0) {
    throw std::runtime_error("cannot create a log file for Prism");
  }
  log_path_ = tmpl;
  std::vector<std::string> args{prism,
                                "proxy",
                                "--host=127.0.0.1",
                                "--port=" + std::to_string(proxy_port),
                                "--cors=false",
                                "--errors=false",
                                "--verboseLevel=warn",  // violations and failures only, not every request
                                spec,
                                "http://127.0.0.1:" + std::to_string(node_port)};
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) {
    ::close(log_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::close(log_fd);
    ::execv(prism.c_str(), argv.data());  // #!/usr/bin/env node
    std::_Exit(127);
  }
  ::close(log_fd);
}

proxy_process::~proxy_process() {
  stop();
  ::unlink(log_path_.c_str());
}

bool proxy_process::running() {
  if (pid_ <= 0 || exited_) {
    return false;
  }
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    return false;
  }
  return true;
}

bool proxy_process::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) {
      return false;
    }
    if (wait_for_status(port_, "/healthz", 200, std::chrono::milliseconds(200))) {
      return true;
    }
  }
  return false;
}

void proxy_process::stop() {
  if (!running()) {
    return;
  }
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exited_ = true;
}

std::string proxy_process::log() const {
  std::ifstream in{log_path_};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace mercato::test::contract
