#include "persistence/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

#include "telemetry/logging.hpp"

namespace mercato::persistence {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  if (ms.count() < 1) {
    ms = std::chrono::milliseconds{1};
  }
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') {
      a = static_cast<char>(a - 'A' + 'a');
    }
    if (a != prefix[i]) {
      return false;
    }
  }
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return std::nullopt;
    }
    const int hi = hex_digit(s[i + 1]);
    const int lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

template <class Int>
std::optional<Int> parse_uint(std::string_view s, Int max) {
  if (s.empty() || s.size() > 10) {
    return std::nullopt;
  }
  unsigned long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > static_cast<unsigned long long>(max)) {
    return std::nullopt;
  }
  return static_cast<Int>(v);
}

redis_value convert(const redisReply* r, std::optional<std::string>& error_out) {
  redis_value v;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      v.type = redis_value::kind::string;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = redis_value::kind::status;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = redis_value::kind::integer;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = redis_value::kind::array;
      v.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) {
        v.elements.push_back(convert(r->element[i], error_out));
      }
      break;
    case REDIS_REPLY_ERROR:
      if (!error_out) {
        error_out = std::string(r->str, r->len);
      }
      break;
    case REDIS_REPLY_NIL:
    default:
      v.type = redis_value::kind::nil;
      break;
  }
  return v;
}

redis_error unexpected(const char* what) { return {redis_errc::unexpected, what}; }

}  // namespace

const char* to_string(redis_errc e) {
  switch (e) {
    case redis_errc::unavailable: return "unavailable";
    case redis_errc::io: return "io";
    case redis_errc::server: return "server";
    case redis_errc::unexpected: return "unexpected";
    case redis_errc::bad_argument: return "bad_argument";
  }
  return "unknown";
}

std::optional<redis_endpoint> parse_redis_url(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (!iequals_prefix(url, scheme)) {
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme.size());
  if (rest.find_first_of("?# \t\r\n") != std::string_view::npos) {
    return std::nullopt;
  }
  redis_endpoint ep;

  // The authority ends at the first '/'; a '/' inside a password must be percent-encoded.
  const auto at = rest.substr(0, rest.find('/')).rfind('@');
  std::string_view authority_and_path = rest;
  if (at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    authority_and_path = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    std::optional<std::string> user;
    std::optional<std::string> pass;
    if (colon == std::string_view::npos) {
      // redis://secret@host: a bare password, as redis-cli -u accepts it.
      user = std::string();
      pass = percent_decode(userinfo);
    } else {
      user = percent_decode(userinfo.substr(0, colon));
      pass = percent_decode(userinfo.substr(colon + 1));
    }
    if (!user || !pass || pass->empty()) {
      return std::nullopt;
    }
    ep.user = std::move(*user);
    ep.password = std::move(*pass);
  }

  const auto slash = authority_and_path.find('/');
  const std::string_view hostport = authority_and_path.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view{} : authority_and_path.substr(slash + 1);

  std::string_view host;
  std::string_view port;
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    host = hostport.substr(1, close - 1);
    const std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return std::nullopt;
      }
      port = after.substr(1);
      if (port.empty()) {
        return std::nullopt;
      }
    }
  } else {
    const auto colon = hostport.find(':');
    host = hostport.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = hostport.substr(colon + 1);
      if (port.empty()) {
        return std::nullopt;
      }
    }
  }
  if (host.empty()) {
    return std::nullopt;
  }
  ep.host = std::string(host);
  if (!port.empty()) {
    auto p = parse_uint<std::uint16_t>(port, 65535);
    if (!p || *p == 0) {
      return std::nullopt;
    }
    ep.port = *p;
  }
  if (!path.empty()) {
    auto db = parse_uint<int>(path, INT_MAX);
    if (!db) {
      return std::nullopt;
    }
    ep.db = *db;
  }
  return ep;
}

// --- client -----------------------------------------------------------------------------------

redis_client::redis_client(std::string_view url, redis_options opts) : opts_(opts) {
  if (auto ep = parse_redis_url(url)) {
    ep_ = std::move(*ep);
  } else {
    valid_ = false;
    up_.store(false);
  }
  if (opts_.max_connections == 0) {
    opts_.max_connections = 1;
  }
}

redis_client::redis_client(redis_endpoint ep, redis_options opts) : ep_(std::move(ep)), opts_(opts) {
  if (opts_.max_connections == 0) {
    opts_.max_connections = 1;
  }
}

redis_client::~redis_client() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto* c : idle_) {
    redisFree(c);
  }
  idle_.clear();
}

bool redis_client::available() const { return valid_ && up_.load(std::memory_order_relaxed); }

std::optional<redis_error> redis_client::gate(bool& probe) {
  probe = false;
  if (!valid_) {
    return redis_error{redis_errc::bad_argument, "invalid redis URL"};
  }
  if (up_.load(std::memory_order_acquire)) {
    return std::nullopt;
  }
  const auto now = clock::now().time_since_epoch().count();
  auto at = retry_at_.load(std::memory_order_acquire);
  if (now >= at) {
    // Reserve the next period for ourselves: only the CAS winner probes.
    const auto next = now + backoff_.load(std::memory_order_relaxed);
    if (retry_at_.compare_exchange_strong(at, next, std::memory_order_acq_rel)) {
      probe = true;
      return std::nullopt;
    }
  }
  fast_failures_.fetch_add(1, std::memory_order_relaxed);
  return redis_error{redis_errc::unavailable, "redis unavailable (backing off)"};
}

void redis_client::mark_down(const redis_error& why, bool probe) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  const auto now = clock::now();
  const auto min = std::chrono::duration_cast<clock::duration>(opts_.backoff_min).count();
  const auto max = std::chrono::duration_cast<clock::duration>(opts_.backoff_max).count();
  if (up_.exchange(false, std::memory_order_acq_rel)) {
    backoff_.store(min, std::memory_order_relaxed);
    retry_at_.store(now.time_since_epoch().count() + min, std::memory_order_release);
    telemetry::log_warn("redis unavailable",
                        {{"host", ep_.host}, {"port", ep_.port}, {"error", why.message},
                         {"retry_in_ms", opts_.backoff_min.count()}});
  } else if (probe) {
    // The one probe of this period failed: back off further.
    auto b = backoff_.load(std::memory_order_relaxed);
    const auto nb = std::min(max, std::max(min, b * 2));
    backoff_.store(nb, std::memory_order_relaxed);
    retry_at_.store(now.time_since_epoch().count() + nb, std::memory_order_release);
  }
  drop_idle();  // most likely dead too
}

void redis_client::drop_idle() {
  std::vector<redisContext*> drop;
  {
    std::lock_guard<std::mutex> lk(mu_);
    drop.swap(idle_);
    open_count_ -= static_cast<unsigned>(drop.size());
  }
  cv_.notify_all();
  for (auto* c : drop) {
    redisFree(c);
  }
}

void redis_client::mark_up() {
  if (!up_.load(std::memory_order_relaxed) && !up_.exchange(true, std::memory_order_acq_rel)) {
    backoff_.store(0, std::memory_order_relaxed);
    telemetry::log_info("redis reachable again", {{"host", ep_.host}, {"port", ep_.port}});
  }
}

redisContext* redis_client::open(redis_error& err) {
  redisContext* c = redisConnectWithTimeout(ep_.host.c_str(), ep_.port, to_timeval(opts_.connect_timeout));
  if (c == nullptr) {
    err = {redis_errc::unavailable, "redis connect: out of memory"};
    return nullptr;
  }
  if (c->err != 0) {
    err = {redis_errc::unavailable, std::string("redis connect: ") + c->errstr};
    redisFree(c);
    return nullptr;
  }
  if (redisSetTimeout(c, to_timeval(opts_.command_timeout)) != REDIS_OK) {
    err = {redis_errc::unavailable, "redis connect: cannot set timeout"};
    redisFree(c);
    return nullptr;
  }
  auto setup = [&](std::vector<std::string> argv) -> bool {
    std::vector<const char*> ptrs;
    std::vector<std::size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
    if (r == nullptr) {
      err = {redis_errc::unavailable, std::string("redis ") + argv[0] + ": " + c->errstr};
      return false;
    }
    const bool ok = r->type != REDIS_REPLY_ERROR;
    if (!ok) {
      err = {redis_errc::unavailable, std::string("redis ") + argv[0] + ": " + std::string(r->str, r->len)};
    }
    freeReplyObject(r);
    return ok;
  };
  if (!ep_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!ep_.user.empty()) {
      auth.push_back(ep_.user);
    }
    auth.push_back(ep_.password);
    if (!setup(std::move(auth))) {
      redisFree(c);
      return nullptr;
    }
  }
  if (ep_.db != 0 && !setup({"SELECT", std::to_string(ep_.db)})) {
    redisFree(c);
    return nullptr;
  }
  connects_.fetch_add(1, std::memory_order_relaxed);
  return c;
}

redis_client::acquired redis_client::acquire(redis_error& err) {
  std::unique_lock<std::mutex> lk(mu_);
  const auto deadline = clock::now() + opts_.command_timeout;
  for (;;) {
    if (!idle_.empty()) {
      redisContext* c = idle_.back();
      idle_.pop_back();
      return {c, false, false};
    }
    if (open_count_ < opts_.max_connections) {
      ++open_count_;
      lk.unlock();
      redisContext* c = open(err);
      if (c == nullptr) {
        lk.lock();
        --open_count_;
        lk.unlock();
        cv_.notify_one();
      }
      return {c, true, false};
    }
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_count_ >= opts_.max_connections) {
      // Pool exhausted: a local condition, not a Redis outage, so no mark_down.
      err = {redis_errc::io, "redis: all connections busy"};
      return {nullptr, false, true};
    }
  }
}

void redis_client::release(redisContext* c, bool healthy) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (healthy && up_.load(std::memory_order_relaxed)) {
      idle_.push_back(c);
      c = nullptr;
    } else {
      --open_count_;
    }
  }
  cv_.notify_one();
  if (c != nullptr) {
    redisFree(c);
  }
}

redis_result<redis_value> redis_client::command(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    return redis_error{redis_errc::bad_argument, "empty command"};
  }
  bool probe = false;
  if (auto e = gate(probe)) {
    return *e;
  }
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }

  for (int attempt = 0;; ++attempt) {
    redis_error err;
    const acquired a = acquire(err);
    if (a.busy) {
      return err;
    }
    if (a.ctx == nullptr) {
      mark_down(err, probe);
      return err;
    }
    redisContext* c = a.ctx;
    const bool fresh = a.fresh;
    errno = 0;
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
    if (r == nullptr) {
      const int saved_errno = errno;
      const bool timed_out = c->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK);
      const bool stale = !fresh && attempt == 0 &&
                         (c->err == REDIS_ERR_EOF ||
                          (c->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE)));
      redis_error e{redis_errc::io, std::string("redis ") + argv[0] + ": " +
                                        (timed_out ? std::string("timeout") : std::string(c->errstr))};
      release(c, false);
      if (stale) {
        // The idle connection had died (Redis restarted, idle timeout): so have its siblings.
        // One retry on a fresh connection.
        drop_idle();
        continue;
      }
      mark_down(e, probe);
      return e;
    }
    std::optional<std::string> server_error;
    redis_value v = convert(r, server_error);
    freeReplyObject(r);
    mark_up();  // before release: a probe's connection is kept only once the client is up again
    release(c, true);
    if (server_error) {
      return redis_error{redis_errc::server, std::move(*server_error)};
    }
    return v;
  }
}

redis_status redis_client::ping() {
  auto r = command({"PING"});
  if (!r) {
    return r.error();
  }
  return redis_ok{};
}

redis_result<std::optional<std::string>> redis_client::get(std::string_view key) {
  auto r = command({"GET", std::string(key)});
  if (!r) {
    return r.error();
  }
  if (r->is_nil()) {
    return std::optional<std::string>{};
  }
  if (r->type != redis_value::kind::string) {
    return unexpected("GET: not a string reply");
  }
  return std::optional<std::string>{std::move(std::move(r).value().str)};
}

redis_result<std::vector<std::optional<std::string>>> redis_client::mget(const std::vector<std::string>& keys) {
  using out_t = std::vector<std::optional<std::string>>;
  if (keys.empty()) {
    return out_t{};
  }
  std::vector<std::string> argv;
  argv.reserve(keys.size() + 1);
  argv.emplace_back("MGET");
  argv.insert(argv.end(), keys.begin(), keys.end());
  auto r = command(argv);
  if (!r) {
    return r.error();
  }
  if (r->type != redis_value::kind::array || r->elements.size() != keys.size()) {
    return unexpected("MGET: not an array of the right size");
  }
  out_t out;
  out.reserve(keys.size());
  for (auto& e : r.value().elements) {
    if (e.type == redis_value::kind::string) {
      out.emplace_back(std::move(e.str));
    } else {
      out.emplace_back(std::nullopt);
    }
  }
  return out;
}

redis_status redis_client::setex(std::string_view key, std::chrono::milliseconds ttl, std::string_view value) {
  if (ttl.count() <= 0) {
    return redis_error{redis_errc::bad_argument, "SET: ttl must be positive"};
  }
  auto r = command({"SET", std::string(key), std::string(value), "PX", std::to_string(ttl.count())});
  if (!r) {
    return r.error();
  }
  return redis_ok{};
}

redis_result<long long> redis_client::incr(std::string_view key) {
  auto r = command({"INCR", std::string(key)});
  if (!r) {
    return r.error();
  }
  if (r->type != redis_value::kind::integer) {
    return unexpected("INCR: not an integer reply");
  }
  return r->integer;
}

redis_result<long long> redis_client::del(const std::vector<std::string>& keys) {
  if (keys.empty()) {
    return 0LL;
  }
  std::vector<std::string> argv;
  argv.reserve(keys.size() + 1);
  argv.emplace_back("DEL");
  argv.insert(argv.end(), keys.begin(), keys.end());
  auto r = command(argv);
  if (!r) {
    return r.error();
  }
  if (r->type != redis_value::kind::integer) {
    return unexpected("DEL: not an integer reply");
  }
  return r->integer;
}

redis_result<long long> redis_client::delete_by_pattern(std::string_view pattern) {
  if (pattern.empty()) {
    return redis_error{redis_errc::bad_argument, "empty pattern"};
  }
  long long deleted = 0;
  std::string cursor = "0";
  const std::string count = std::to_string(opts_.scan_count == 0 ? 100 : opts_.scan_count);
  do {
    auto r = command({"SCAN", cursor, "MATCH", std::string(pattern), "COUNT", count});
    if (!r) {
      return r.error();
    }
    const auto& v = *r;
    if (v.type != redis_value::kind::array || v.elements.size() != 2 ||
        v.elements[0].type != redis_value::kind::string || v.elements[1].type != redis_value::kind::array) {
      return unexpected("SCAN: unexpected reply shape");
    }
    cursor = v.elements[0].str;
    std::vector<std::string> keys;
    keys.reserve(v.elements[1].elements.size());
    for (const auto& k : v.elements[1].elements) {
      if (k.type == redis_value::kind::string) {
        keys.push_back(k.str);
      }
    }
    if (!keys.empty()) {
      auto d = del(keys);
      if (!d) {
        return d.error();
      }
      deleted += *d;
    }
  } while (cursor != "0");
  return deleted;
}

redis_result<redis_value> redis_client::eval(const redis_script& script, const std::vector<std::string>& keys,
                                             const std::vector<std::string>& args) {
  std::string sha;
  {
    std::lock_guard<std::mutex> lk(script.mu_);
    sha = script.sha_;
  }
  if (sha.empty()) {
    auto loaded = command({"SCRIPT", "LOAD", script.source_});
    if (!loaded) {
      return loaded.error();
    }
    if (loaded->type != redis_value::kind::string) {
      return unexpected("SCRIPT LOAD: not a string reply");
    }
    sha = loaded->str;
    std::lock_guard<std::mutex> lk(script.mu_);
    script.sha_ = sha;
  }
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.emplace_back("EVALSHA");
  argv.push_back(sha);
  argv.push_back(std::to_string(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = command(argv);
  if (!r && r.error().code == redis_errc::server && r.error().message.rfind("NOSCRIPT", 0) == 0) {
    argv[0] = "EVAL";
    argv[1] = script.source_;
    r = command(argv);
  }
  return r;
}

}  // namespace mercato::persistence
