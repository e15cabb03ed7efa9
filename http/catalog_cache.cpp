#include "http/catalog_cache.hpp"


#include <algorithm>
#include <array>
#include <charconv>
#include <list>
#include <unordered_map>
#include <utility>

#include "http/product_lines.hpp"
#include "persistence/redis_client.hpp"
#include "security/jwt.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

using steady = std::chrono::steady_clock;
using persistence::redis_script;
using persistence::redis_value;

constexpr std::chrono::milliseconds kMaxL1Ttl = std::chrono::minutes(5);

using security::sha256_hex;

// SCAN MATCH is a glob: a prefix is matched literally by escaping the glob metacharacters.
std::string glob_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// One invalidation: exact keys and key prefixes (unprefixed cache keys, as used by L1).
struct inval_op {
  bool prefix = false;
  std::string key;
};
using inval_ops = std::vector<inval_op>;

// Log entry text: one op per line, "k <key>" or "p <prefix>"; '%' and '\n' in keys percent-escaped.
std::string encode_ops(const inval_ops& ops) {
  std::string out;
  for (const auto& op : ops) {
    if (!out.empty()) {
      out.push_back('\n');
    }
    out += op.prefix ? "p " : "k ";
    for (char c : op.key) {
      if (c == '%') {
        out += "%25";
      } else if (c == '\n') {
        out += "%0A";
      } else {
        out.push_back(c);
      }
    }
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s.substr(i, 3) == "%25") {
      out.push_back('%');
      i += 2;
    } else if (s.substr(i, 3) == "%0A") {
      out.push_back('\n');
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<std::int64_t> parse_i64(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

// "{gen}\n{ops}" → gen and ops; nullopt when malformed.
std::optional<std::pair<std::int64_t, inval_ops>> decode_entry(std::string_view text) {
  const auto nl = text.find('\n');
  auto gen = parse_i64(text.substr(0, nl));
  if (!gen) {
    return std::nullopt;
  }
  inval_ops ops;
  std::string_view rest = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    if (line.size() < 2 || line[1] != ' ' || (line[0] != 'k' && line[0] != 'p')) {
      return std::nullopt;
    }
    ops.push_back({line[0] == 'p', unescape(line.substr(2))});
  }
  return std::make_pair(*gen, std::move(ops));
}

// KEYS[1] cache:gen, KEYS[2] cache:inv, KEYS[3..] exact keys to delete; ARGV[1] ops, ARGV[2] log size.
// Increments the generation first (see the header: a concurrent load's check-and-set then fails).
const redis_script& invalidate_script() {
  static const redis_script s(R"lua(
local g = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], g .. '\n' .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return g
)lua");
  return s;
}

// KEYS[1] the cache key, KEYS[2] cache:gen; ARGV value, ttl_ms, the generation seen before loading.
// Returns {stored (0/1), current generation}.
const redis_script& set_if_generation_script() {
  static const redis_script s(R"lua(
local g = redis.call('GET', KEYS[2]) or '0'
if g ~= ARGV[3] then return {0, g} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, g}
)lua");
  return s;
}

// --- L1 ---------------------------------------------------------------------------------------------

class l1_cache {
 public:
  using value_ptr = catalog_cache::value_ptr;

  l1_cache(std::size_t max_entries, std::size_t max_bytes)
      : max_entries_(std::max<std::size_t>(1, (max_entries + kShards - 1) / kShards)),
        max_bytes_(std::max<std::size_t>(1, (max_bytes + kShards - 1) / kShards)) {}

  value_ptr get(const std::string& key, steady::time_point now) {
    auto& sh = shard_of(key);
    std::lock_guard<std::mutex> lk(sh.mu);
    auto it = sh.index.find(key);
    if (it == sh.index.end()) {
      return nullptr;
    }
    if (it->second->expires <= now) {
      remove(sh, it->second);
      return nullptr;
    }
    sh.lru.splice(sh.lru.begin(), sh.lru, it->second);
    return it->second->value;
  }

  void put(const std::string& key, value_ptr v, steady::time_point expires) {
    const std::size_t bytes = 2 * key.size() + v->size() + kOverhead;
    if (bytes > max_bytes_) {
      return;
    }
    auto& sh = shard_of(key);
    std::lock_guard<std::mutex> lk(sh.mu);
    if (auto it = sh.index.find(key); it != sh.index.end()) {
      remove(sh, it->second);
    }
    sh.lru.push_front(entry{key, std::move(v), expires, bytes});
    sh.index.emplace(key, sh.lru.begin());
    sh.bytes += bytes;
    while (sh.lru.size() > max_entries_ || sh.bytes > max_bytes_) {
      remove(sh, std::prev(sh.lru.end()));
      evictions_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void erase(const std::string& key) {
    auto& sh = shard_of(key);
    std::lock_guard<std::mutex> lk(sh.mu);
    if (auto it = sh.index.find(key); it != sh.index.end()) {
      remove(sh, it->second);
    }
  }

  void erase_prefix(std::string_view prefix) {
    for (auto& sh : shards_) {
      std::lock_guard<std::mutex> lk(sh.mu);
      for (auto it = sh.lru.begin(); it != sh.lru.end();) {
        auto next = std::next(it);
        if (std::string_view(it->key).substr(0, prefix.size()) == prefix) {
          remove(sh, it);
        }
        it = next;
      }
    }
  }

  void clear() {
    for (auto& sh : shards_) {
      std::lock_guard<std::mutex> lk(sh.mu);
      sh.lru.clear();
      sh.index.clear();
      sh.bytes = 0;
    }
  }

  void apply(const inval_ops& ops) {
    for (const auto& op : ops) {
      if (op.prefix) {
        erase_prefix(op.key);
      } else {
        erase(op.key);
      }
    }
  }

  std::size_t entries() const {
    std::size_t n = 0;
    for (const auto& sh : shards_) {
      std::lock_guard<std::mutex> lk(sh.mu);
      n += sh.lru.size();
    }
    return n;
  }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto& sh : shards_) {
      std::lock_guard<std::mutex> lk(sh.mu);
      n += sh.bytes;
    }
    return n;
  }
  std::uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kOverhead = 96;  // list node, hash node, shared_ptr control block
  struct entry {
    std::string key;
    value_ptr value;
    steady::time_point expires;
    std::size_t bytes;
  };
  struct shard {
    mutable std::mutex mu;
    std::list<entry> lru;  // front: most recently used
    std::unordered_map<std::string, std::list<entry>::iterator> index;
    std::size_t bytes = 0;
  };

  shard& shard_of(const std::string& key) { return shards_[std::hash<std::string>{}(key) % kShards]; }

  static void remove(shard& sh, std::list<entry>::iterator it) {
    sh.bytes -= it->bytes;
    sh.index.erase(it->key);
    sh.lru.erase(it);
  }

  std::size_t max_entries_;
  std::size_t max_bytes_;
  std::array<shard, kShards> shards_;
  std::atomic<std::uint64_t> evictions_{0};
};

}  // namespace

// --- catalog_cache ------------------------------------------------------------------------------

struct catalog_cache::impl {
  impl(std::shared_ptr<persistence::redis_client> r, catalog_cache_options o)
      : redis(std::move(r)), opts(std::move(o)), l1(opts.l1_max_entries, opts.l1_max_bytes) {
    opts.l1_ttl = std::clamp(opts.l1_ttl, std::chrono::milliseconds(1), kMaxL1Ttl);
    if (opts.l2_ttl.count() <= 0) {
      opts.l2_ttl = std::chrono::hours(1);
    }
    opts.invalidation_log_size = std::max<std::size_t>(1, opts.invalidation_log_size);
    gen_key = opts.key_prefix + "cache:gen";
    log_key = opts.key_prefix + "cache:inv";
  }

  std::string rkey(std::string_view key) const { return opts.key_prefix + std::string(key); }

  void maybe_poll();
  void observe(std::string_view gen_text);
  void sync_locked(std::int64_t seen);  // sync_mu held
  void invalidate(inval_ops ops);
  bool send(const inval_ops& ops);
  bool replay_pending();
  void add_pending(inval_ops ops);

  std::shared_ptr<persistence::redis_client> redis;
  catalog_cache_options opts;
  std::string gen_key;
  std::string log_key;
  l1_cache l1;

  // Bumped whenever L1 entries are dropped by an invalidation; a fetch that saw a different value
  // at its start does not fill L1.
  std::atomic<std::uint64_t> epoch{0};

  std::mutex sync_mu;  // serialises catching up with the log
  std::atomic<std::int64_t> known_gen{-1};  // written under sync_mu; -1: not known yet
  std::atomic<steady::rep> next_poll{0};

  std::mutex pending_mu;
  std::vector<inval_ops> pending;  // guarded by pending_mu
  bool flush_all = false;          // guarded by pending_mu
  std::atomic<bool> has_pending{false};

  std::atomic<std::uint64_t> l1_hits{0}, l1_misses{0}, l2_hits{0}, l2_misses{0}, l2_errors{0}, loads{0},
      remote_invalidations{0};
};

void catalog_cache::impl::maybe_poll() {
  if (!redis) {
    return;
  }
  const auto now = steady::now().time_since_epoch().count();
  auto at = next_poll.load(std::memory_order_relaxed);
  if (now < at) {
    return;
  }
  const auto next = now + std::chrono::duration_cast<steady::duration>(opts.generation_check_interval).count();
  if (!next_poll.compare_exchange_strong(at, next)) {
    return;  // another thread polls
  }
  if (has_pending.load() && !replay_pending()) {
    return;
  }
  if (auto r = redis->get(gen_key)) {
    observe(r->value_or("0"));
  }
}

void catalog_cache::impl::observe(std::string_view gen_text) {
  const std::int64_t seen = parse_i64(gen_text).value_or(0);
  if (known_gen.load() == seen) {
    return;
  }
  // One thread catches up; the others go on (they do not fill L1 until known_gen matches).
  std::unique_lock<std::mutex> lk(sync_mu, std::try_to_lock);
  if (lk.owns_lock()) {
    sync_locked(seen);
  }
}

void catalog_cache::impl::sync_locked(std::int64_t seen) {
  if (known_gen.load() == seen) {
    return;
  }
  auto drop_all = [&](std::int64_t gen) {
    l1.clear();
    epoch.fetch_add(1);
    known_gen = gen;
  };
  const std::int64_t known = known_gen.load();
  if (known < 0 || seen < known) {
    // First contact (L1 may hold entries filled before) or the counter was reset: start clean.
    drop_all(seen);
    return;
  }
  auto r = redis->command({"LRANGE", log_key, "0", "-1"});
  if (!r || r->type != redis_value::kind::array) {
    return;  // try again at the next poll; known_gen unchanged
  }
  std::vector<std::pair<std::int64_t, inval_ops>> entries;
  for (const auto& e : r->elements) {
    if (e.type != redis_value::kind::string) {
      continue;
    }
    if (auto d = decode_entry(e.str)) {
      entries.push_back(std::move(*d));
    }
  }
  std::int64_t newest = seen;
  std::int64_t oldest_after = -1;  // the smallest gen > known_gen in the log
  for (const auto& [g, ops] : entries) {
    if (g > known && (oldest_after < 0 || g < oldest_after)) {
      oldest_after = g;
    }
    newest = std::max(newest, g);
  }
  remote_invalidations.fetch_add(1, std::memory_order_relaxed);
  if (oldest_after != known + 1) {
    drop_all(newest);  // the log no longer reaches back to what we know (or is missing)
    return;
  }
  for (const auto& [g, ops] : entries) {
    if (g > known) {
      l1.apply(ops);
    }
  }
  epoch.fetch_add(1);
  known_gen = newest;
}

void catalog_cache::impl::invalidate(inval_ops ops) {
  l1.apply(ops);
  epoch.fetch_add(1);
  if (!redis) {
    return;
  }
  if (has_pending.load() && !replay_pending()) {
    add_pending(std::move(ops));
    return;
  }
  if (!send(ops)) {
    add_pending(std::move(ops));
  }
}

bool catalog_cache::impl::send(const inval_ops& ops) {
  std::vector<std::string> keys{gen_key, log_key};
  for (const auto& op : ops) {
    if (!op.prefix) {
      keys.push_back(rkey(op.key));
    }
  }
  auto r = redis->eval(invalidate_script(), keys, {encode_ops(ops), std::to_string(opts.invalidation_log_size)});
  if (!r || r->type != redis_value::kind::integer) {
    return false;
  }
  {
    // Our own change is already applied to L1: skip it when catching up, if it is the next one.
    std::lock_guard<std::mutex> lk(sync_mu);
    const std::int64_t known = known_gen.load();
    if (known >= 0 && known == r->integer - 1) {
      known_gen = r->integer;
    }
  }
  for (const auto& op : ops) {
    if (op.prefix) {
      if (!redis->delete_by_pattern(glob_escape(rkey(op.key)) + "*")) {
        return false;
      }
    }
  }
  return true;
}

void catalog_cache::impl::add_pending(inval_ops ops) {
  std::lock_guard<std::mutex> lk(pending_mu);
  if (!flush_all) {
    if (pending.size() >= opts.pending_invalidations_max) {
      pending.clear();
      flush_all = true;
      telemetry::log_warn("catalog cache: too many invalidations while redis is unavailable; "
                          "all catalog keys will be flushed when it is back");
    } else {
      pending.push_back(std::move(ops));
    }
  }
  has_pending.store(true);
}

bool catalog_cache::impl::replay_pending() {
  std::vector<inval_ops> todo;
  bool all = false;
  {
    std::lock_guard<std::mutex> lk(pending_mu);
    todo.swap(pending);
    all = flush_all;
    flush_all = false;
    has_pending.store(false);
  }
  if (all) {
    todo.clear();
    todo.push_back({{true, "product:"}, {true, "category:"}, {true, "search:"}});
  }
  for (std::size_t i = 0; i < todo.size(); ++i) {
    if (!send(todo[i])) {
      std::lock_guard<std::mutex> lk(pending_mu);
      if (all) {
        flush_all = true;
      } else {
        for (std::size_t j = i; j < todo.size(); ++j) {
          if (pending.size() >= opts.pending_invalidations_max) {
            pending.clear();
            flush_all = true;
            break;
          }
          pending.push_back(std::move(todo[j]));
        }
      }
      has_pending.store(true);
      return false;
    }
  }
  return true;
}

catalog_cache::catalog_cache(std::shared_ptr<persistence::redis_client> redis, catalog_cache_options opts)
    : impl_(std::make_unique<impl>(std::move(redis), std::move(opts))) {}

catalog_cache::~catalog_cache() = default;

catalog_cache::value_ptr catalog_cache::get_or_load(const std::string& key, const loader_fn& loader) {
  auto& m = *impl_;
  m.maybe_poll();
  const std::uint64_t epoch0 = m.epoch.load();
  const auto now = steady::now();
  if (auto v = m.l1.get(key, now)) {
    m.l1_hits.fetch_add(1, std::memory_order_relaxed);
    return v;
  }
  m.l1_misses.fetch_add(1, std::memory_order_relaxed);

  std::optional<std::string> seen_gen;  // set when L2 answered: the generation before loading
  // Into L1 only if no invalidation was applied locally meanwhile and this node has caught up with
  // the generation the value was read at.
  auto fill_l1 = [&](const value_ptr& v) {
    if (m.epoch.load() == epoch0 &&
        (!seen_gen || parse_i64(*seen_gen).value_or(0) == m.known_gen.load())) {
      m.l1.put(key, v, steady::now() + m.opts.l1_ttl);
    }
  };

  if (m.redis && (!m.has_pending.load() || m.replay_pending())) {
    auto r = m.redis->mget({m.rkey(key), m.gen_key});
    if (r) {
      auto& vals = r.value();
      seen_gen = vals[1].value_or("0");
      m.observe(*seen_gen);
      if (vals[0]) {
        m.l2_hits.fetch_add(1, std::memory_order_relaxed);
        auto v = std::make_shared<const std::string>(std::move(*vals[0]));
        fill_l1(v);
        return v;
      }
      m.l2_misses.fetch_add(1, std::memory_order_relaxed);
    } else {
      m.l2_errors.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (m.redis) {
    m.l2_errors.fetch_add(1, std::memory_order_relaxed);
  }

  std::optional<std::string> loaded = loader();
  m.loads.fetch_add(1, std::memory_order_relaxed);
  if (!loaded) {
    return nullptr;
  }
  auto v = std::make_shared<const std::string>(std::move(*loaded));
  if (seen_gen) {
    // A failure is ignored (the next reader loads again). A refusal means an invalidation ran
    // while we were loading: the value may be stale, so it goes into neither level, and this node
    // catches up with the invalidation log at once.
    auto r = m.redis->eval(set_if_generation_script(), {m.rkey(key), m.gen_key},
                           {*v, std::to_string(m.opts.l2_ttl.count()), *seen_gen});
    if (r && r->type == redis_value::kind::array && r->elements.size() == 2 &&
        r->elements[0].type == redis_value::kind::integer && r->elements[0].integer == 0) {
      m.observe(r->elements[1].str);
      return v;
    }
  }
  fill_l1(v);
  return v;
}

catalog_cache::value_ptr catalog_cache::peek(const std::string& key) {
  auto& m = *impl_;
  if (m.redis) {
    // The same test as maybe_poll: when a poll is due, get_or_load makes it (and replays pending
    // invalidations) before reading L1, so the peek must not answer.
    if (steady::now().time_since_epoch().count() >= m.next_poll.load(std::memory_order_relaxed)) {
      return nullptr;
    }
  }
  auto v = m.l1.get(key, steady::now());
  if (v) {
    m.l1_hits.fetch_add(1, std::memory_order_relaxed);
  }
  return v;
}

std::string catalog_cache::product_key(std::string_view id) { return "product:" + std::string(id); }

std::string catalog_cache::category_children_key(std::string_view id) {
  return "category:" + std::string(id) + ":children";
}

std::string catalog_cache::search_key(std::string_view canonical_query) {
  return "search:" + sha256_hex(canonical_query);
}

std::string catalog_cache::normalize_search_terms(std::string_view terms) {
  std::string out;
  out.reserve(terms.size());
  bool space = false;
  for (char c : terms) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
      continue;
    }
    if (space) {
      out.push_back(' ');
      space = false;
    }
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

void catalog_cache::invalidate_product(std::string_view id) {
  if (lines_) {
    lines_->invalidate(std::string(id));
  }
  impl_->invalidate({{false, product_key(id)}, {true, "search:"}});
}

void catalog_cache::invalidate_categories() { impl_->invalidate({{true, "category:"}}); }

void catalog_cache::clear_local() {
  if (lines_) {
    lines_->clear();
  }
  impl_->l1.clear();
  impl_->epoch.fetch_add(1);
}

catalog_cache_stats catalog_cache::stats() const {
  const auto& m = *impl_;
  catalog_cache_stats s;
  s.l1_hits = m.l1_hits.load(std::memory_order_relaxed);
  s.l1_misses = m.l1_misses.load(std::memory_order_relaxed);
  s.l2_hits = m.l2_hits.load(std::memory_order_relaxed);
  s.l2_misses = m.l2_misses.load(std::memory_order_relaxed);
  s.l2_errors = m.l2_errors.load(std::memory_order_relaxed);
  s.loads = m.loads.load(std::memory_order_relaxed);
  s.l1_evictions = m.l1.evictions();
  s.remote_invalidations = m.remote_invalidations.load(std::memory_order_relaxed);
  return s;
}

std::size_t catalog_cache::l1_entries() const { return impl_->l1.entries(); }
std::size_t catalog_cache::l1_bytes() const { return impl_->l1.bytes(); }

}  // namespace mercato::http
