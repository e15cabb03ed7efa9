#pragma once
// A small thread-safe Redis client over the *synchronous* hiredis API.
//
// Threading: every call blocks the calling thread for at most about one command timeout (default
// 200 ms). Call it only from pool threads (the pg_pool style workers), never from Asio io threads or
// CAF workers.
//
// Connections: a bounded pool (`max_connections`, default 8). A call borrows one idle connection (or
// opens a new one while under the bound), runs its command(s) and returns it. A connection that saw
// an I/O error or a timeout is discarded, never reused: after a timeout the reply may still arrive
// and would desynchronise the stream.
//
// Outages: when a connect or a command fails at the network level the client is marked down for a
// backoff period (doubling from `backoff_min` to `backoff_max`). While down, every call fails at once
// with `redis_errc::unavailable` without touching the network. When the period ends exactly one
// caller (the winner of an atomic compare-and-swap) probes Redis; the others keep failing fast
// until the probe succeeds. So an outage costs at most one timeout per backoff period, not one per
// call.
//
// Use an IP literal for the host where possible: hiredis resolves names with a blocking getaddrinfo
// that the connect timeout does not bound.
//
// Errors are values (`redis_result`); nothing here throws across the API (std::bad_alloc aside).
// Redis is optional in mercato: callers treat every error as "no cache / use local state".

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

struct redisContext;

namespace mercato::persistence {

// redis://[[user]:password@]host[:port][/db]   (host may be [v6-literal]; port defaults to 6379).
// rediss:// (TLS) and unix sockets are not supported by this client.
struct redis_endpoint {
  std::string host;
  std::uint16_t port = 6379;
  int db = 0;
  std::string user;      // empty: AUTH <password> (legacy form)
  std::string password;  // empty: no AUTH
};

std::optional<redis_endpoint> parse_redis_url(std::string_view url);

enum class redis_errc {
  unavailable,   // not connected / in backoff after a failure
  io,            // connection lost or timed out during a command
  server,        // Redis answered with an error reply (e.g. WRONGTYPE)
  unexpected,    // a reply of an unexpected type
  bad_argument,  // rejected before reaching Redis (invalid URL, empty key list, ...)
};

const char* to_string(redis_errc e);

struct redis_error {
  redis_errc code = redis_errc::unavailable;
  std::string message;
};

// Either a value or a redis_error. Small and copyable; no exceptions.
template <class T>
class redis_result {
 public:
  redis_result(T v) : v_(std::in_place_index<0>, std::move(v)) {}  // NOLINT: implicit by design
  redis_result(redis_error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  const T* operator->() const { return &value(); }
  const redis_error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, redis_error> v_;
};

struct redis_ok {};
using redis_status = redis_result<redis_ok>;

// A decoded reply (RESP2 as hiredis 0.14 knows it).
struct redis_value {
  enum class kind { nil, integer, string, status, array };
  kind type = kind::nil;
  long long integer = 0;
  std::string str;  // string and status replies
  std::vector<redis_value> elements;

  bool is_nil() const { return type == kind::nil; }
};

// A Lua script known by its text. The SHA1 is learnt from Redis (SCRIPT LOAD) on first use and kept
// here, so EVALSHA can be used afterwards; a NOSCRIPT answer (Redis restarted or SCRIPT FLUSH) falls
// back to EVAL, which also reloads the script. Thread-safe; define scripts as long-lived objects.
class redis_script {
 public:
  explicit redis_script(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }

 private:
  friend class redis_client;
  std::string source_;
  mutable std::mutex mu_;
  mutable std::string sha_;  // guarded by mu_
};

struct redis_options {
  std::chrono::milliseconds connect_timeout{200};
  std::chrono::milliseconds command_timeout{200};
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{10'000};
  unsigned max_connections = 8;
  unsigned scan_count = 500;  // COUNT hint of SCAN in delete_by_pattern
};

class redis_client {
 public:
  // An unparsable URL yields a client that is never available (every call: bad_argument).
  explicit redis_client(std::string_view url, redis_options opts = {});
  redis_client(redis_endpoint ep, redis_options opts = {});
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  // False from a network failure until a command succeeds again (and always for a client built from
  // an invalid URL); optimistically true before the first call. Cheap: for readiness detail. Calls
  // made while this is false fail fast unless they are the one probe allowed per backoff period.
  bool available() const;
  const redis_endpoint& endpoint() const { return ep_; }
  const redis_options& options() const { return opts_; }

  // Counters (monotonic), for metrics.
  std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  std::uint64_t fast_failures() const { return fast_failures_.load(std::memory_order_relaxed); }
  std::uint64_t connects() const { return connects_.load(std::memory_order_relaxed); }

  // --- commands -------------------------------------------------------------------------------
  // Any command, binary-safe arguments.
  redis_result<redis_value> command(const std::vector<std::string>& argv);

  redis_status ping();
  // nullopt in the value: the key does not exist.
  redis_result<std::optional<std::string>> get(std::string_view key);
  // Several keys in one round trip (MGET); one optional per key.
  redis_result<std::vector<std::optional<std::string>>> mget(const std::vector<std::string>& keys);
  // SET key value PX ttl (millisecond precision; the classic SETEX with finer granularity).
  redis_status setex(std::string_view key, std::chrono::milliseconds ttl, std::string_view value);
  redis_result<long long> incr(std::string_view key);
  // Deletes the keys; returns how many existed. An empty list is a no-op returning 0.
  redis_result<long long> del(const std::vector<std::string>& keys);
  // Deletes every key matching a glob pattern with SCAN MATCH ... COUNT (never KEYS) plus DEL in
  // batches. Not atomic: keys created concurrently may survive. Returns the number deleted.
  redis_result<long long> delete_by_pattern(std::string_view pattern);
  // EVALSHA with the script's cached SHA; NOSCRIPT → EVAL.
  redis_result<redis_value> eval(const redis_script& script, const std::vector<std::string>& keys,
                                 const std::vector<std::string>& args);

 private:
  using clock = std::chrono::steady_clock;
  struct acquired {
    redisContext* ctx = nullptr;  // null: connect failed (err set) or busy
    bool fresh = false;           // opened just now (not reused from the idle list)
    bool busy = false;            // every connection is borrowed and none came back in time
  };

  // Fast failure while down; lets exactly one probe through per backoff period (probe = true).
  std::optional<redis_error> gate(bool& probe);
  acquired acquire(redis_error& err);
  void release(redisContext* c, bool healthy);
  redisContext* open(redis_error& err);
  void mark_down(const redis_error& why, bool probe);
  void mark_up();
  void drop_idle();

  redis_endpoint ep_;
  redis_options opts_;
  bool valid_ = true;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<redisContext*> idle_;  // guarded by mu_
  unsigned open_count_ = 0;          // guarded by mu_ (idle + borrowed)

  std::atomic<bool> up_{true};
  std::atomic<clock::rep> retry_at_{0};  // steady ticks; the next probe may start at/after this
  std::atomic<clock::rep> backoff_{0};   // current backoff in steady ticks
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> fast_failures_{0};
  std::atomic<std::uint64_t> connects_{0};
};

}  // namespace mercato::persistence
