#include "http/rate_limiter.hpp"


#include <algorithm>
#include <array>
#include <charconv>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "persistence/redis_client.hpp"
#include "security/jwt.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

using namespace std::chrono_literals;
using persistence::redis_script;
using persistence::redis_value;

std::int64_t micros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::chrono::seconds ceil_seconds_us(std::int64_t us) {
  if (us <= 0) {
    return 0s;
  }
  return std::chrono::seconds((us + 999'999) / 1'000'000);
}

using security::sha256_hex;

// Caller keys are used as they are (IP, user id) unless long: then hashed so a Redis key stays small.
std::string bounded_key(std::string_view key) {
  if (key.size() <= 128) {
    return std::string(key);
  }
  return "h:" + sha256_hex(key);
}

// --- GCRA ---------------------------------------------------------------------------------------
// State: tat (theoretical arrival time, µs since the epoch). A rule "limit per window" has the
// emission interval T = window / limit and the burst capacity limit * T (≈ window).
//   tat' = max(tat, now) + T;  allowed iff tat' - now <= limit * T;  then store tat' with TTL tat' - now.
// The Lua script below is the same computation, done atomically inside Redis.
struct gcra_params {
  std::int64_t interval_us;
  std::int64_t limit;
  std::int64_t capacity_us() const { return interval_us * limit; }
};

gcra_params params_of(const rate_limit_rule& rule) {
  const std::int64_t window_us = std::chrono::duration_cast<std::chrono::microseconds>(rule.window).count();
  const std::int64_t limit = rule.limit;
  return {std::max<std::int64_t>(1, (window_us + limit / 2) / limit), limit};
}

struct gcra_outcome {
  bool allowed = false;
  std::int64_t remaining = 0;
  std::int64_t reset_us = 0;  // until the full budget is back
  std::int64_t retry_us = 0;  // when denied: until one request fits
  std::int64_t new_tat = 0;   // when allowed: the state to store
};

gcra_outcome gcra(std::int64_t stored_tat, std::int64_t now, const gcra_params& p) {
  const std::int64_t tat = std::max(stored_tat, now);
  const std::int64_t new_tat = tat + p.interval_us;
  const std::int64_t wait = new_tat - p.capacity_us() - now;
  gcra_outcome o;
  if (wait > 0) {
    o.reset_us = tat - now;
    o.retry_us = wait;
    return o;
  }
  o.allowed = true;
  o.new_tat = new_tat;
  o.reset_us = new_tat - now;
  o.remaining = (p.capacity_us() - (new_tat - now)) / p.interval_us;
  return o;
}

// KEYS[1] rl:{rule}:{key}; ARGV now_us, interval_us, limit. Returns {allowed, remaining, reset_us,
// retry_us}. Times are integers below 2^53, exact in Lua's doubles; '%.0f' writes them without the
// exponent notation tostring() would use.
const redis_script& gcra_script() {
  static const redis_script s(R"lua(
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = interval * tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - capacity - now
if wait > 0 then
  return {0, 0, tat - now, wait}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((capacity - (new_tat - now)) / interval), new_tat - now, 0}
)lua");
  return s;
}

// All the budgets of one request, all or nothing. KEYS[i] rl:{rule}:{key}; ARGV now_us, then
// interval_us and limit per key. Returns {i, reset_us, retry_us} for the first budget that refuses
// (nothing stored), else {0, remaining_1, reset_us_1, remaining_2, reset_us_2, ...} after storing
// every new TAT.
const redis_script& gcra_all_script() {
  static const redis_script s(R"lua(
local now = tonumber(ARGV[1])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local capacity = interval * tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - capacity - now
  if wait > 0 then
    return {i, tat - now, wait}
  end
  tats[i] = new_tat
end
local out = {0}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local capacity = interval * tonumber(ARGV[2 * i + 1])
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000))
  out[#out + 1] = math.floor((capacity - (tats[i] - now)) / interval)
  out[#out + 1] = tats[i] - now
end
return out
)lua");
  return s;
}

// Batches of tokens (http::rate_admission): KEYS[i] rl:{rule}:{key}; ARGV now_us, then interval_us,
// limit and delta per key. delta > 0 takes min(delta, what fits) tokens (each one is one request's
// worth of TAT, so k tokens move the TAT exactly as k admitted requests would); delta < 0 gives
// unused tokens back (the TAT moves back, never below now). Returns {granted, remaining, reset_us,
// retry_us} per key; retry_us > 0 only when not one more token fits.
const redis_script& gcra_batch_script() {
  static const redis_script s(R"lua(
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local capacity = interval * tonumber(ARGV[3 * i])
  local delta = tonumber(ARGV[3 * i + 1])
  local stored = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local tat = stored
  if tat < now then tat = now end
  local granted = 0
  if delta > 0 then
    local fits = math.floor((capacity - (tat - now)) / interval)
    if fits > 0 then
      granted = delta
      if granted > fits then granted = fits end
      tat = tat + granted * interval
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    end
  elseif delta < 0 and stored > now then
    tat = stored + delta * interval
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    else
      tat = now
      redis.call('DEL', KEYS[i])
    end
  end
  local remaining = math.floor((capacity - (tat - now)) / interval)
  local retry = 0
  if remaining < 1 then
    remaining = 0
    retry = tat + interval - capacity - now
  end
  out[#out + 1] = granted
  out[#out + 1] = remaining
  out[#out + 1] = tat - now
  out[#out + 1] = retry
end
return out
)lua");
  return s;
}

// KEYS[1] lb:{sha256(account)}; ARGV now_ms, free_failures, base_ms, max_ms, forget_ms.
// Returns {failures, blocked_ms}.
const redis_script& login_failure_script() {
  static const redis_script s(R"lua(
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local blocked = 0
if n >= free then
  blocked = tonumber(ARGV[3]) * (2 ^ (n - free))
  if blocked > tonumber(ARGV[4]) then blocked = tonumber(ARGV[4]) end
  redis.call('HSET', KEYS[1], 'until', string.format('%.0f', now + blocked))
end
local ttl = tonumber(ARGV[5])
if blocked > ttl then ttl = blocked end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl))
return {n, math.floor(blocked)}
)lua");
  return s;
}

std::optional<std::vector<long long>> integers(const redis_value& v, std::size_t n) {
  if (v.type != redis_value::kind::array || v.elements.size() != n) {
    return std::nullopt;
  }
  std::vector<long long> out;
  for (const auto& e : v.elements) {
    if (e.type != redis_value::kind::integer) {
      return std::nullopt;
    }
    out.push_back(e.integer);
  }
  return out;
}

// A bounded, sharded map key → State (State has `std::int64_t expires`, same unit as `now`). Entries
// past their expiry are equivalent to absent ones. A full shard first drops expired entries, then
// the eighth that expires soonest (the least valuable state to keep).
template <class State>
class local_table {
 public:
  explicit local_table(std::size_t max_keys) : per_shard_(std::max<std::size_t>(1, max_keys / kShards)) {}

  // fn(std::optional<State> current) → std::pair<Result, std::optional<State>> (the new state; nullopt
  // removes the key). Runs under the shard lock.
  template <class Fn>
  auto update(const std::string& key, std::int64_t now, Fn&& fn) {
    auto& sh = shards_[std::hash<std::string>{}(key) % kShards];
    std::lock_guard<std::mutex> lk(sh.mu);
    auto it = sh.map.find(key);
    std::optional<State> cur;
    if (it != sh.map.end() && it->second.expires > now) {
      cur = it->second;
    }
    auto [result, next] = fn(cur);
    if (next && next->expires > now) {
      if (it != sh.map.end()) {
        it->second = *next;
      } else {
        make_room(sh, now);
        sh.map.emplace(key, *next);
      }
    } else if (it != sh.map.end()) {
      sh.map.erase(it);
    }
    return result;
  }

  void erase(const std::string& key) {
    auto& sh = shards_[std::hash<std::string>{}(key) % kShards];
    std::lock_guard<std::mutex> lk(sh.mu);
    sh.map.erase(key);
  }

  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& sh : shards_) {
      std::lock_guard<std::mutex> lk(sh.mu);
      n += sh.map.size();
    }
    return n;
  }

 private:
  static constexpr std::size_t kShards = 16;
  struct shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, State> map;
  };

  void make_room(shard& sh, std::int64_t now) {
    if (sh.map.size() < per_shard_) {
      return;
    }
    for (auto it = sh.map.begin(); it != sh.map.end();) {
      it = it->second.expires <= now ? sh.map.erase(it) : std::next(it);
    }
    if (sh.map.size() < per_shard_) {
      return;
    }
    std::vector<std::int64_t> expiries;
    expiries.reserve(sh.map.size());
    for (const auto& [k, v] : sh.map) {
      expiries.push_back(v.expires);
    }
    const std::size_t cut = std::max<std::size_t>(1, expiries.size() / 8);
    std::nth_element(expiries.begin(), expiries.begin() + static_cast<std::ptrdiff_t>(cut - 1), expiries.end());
    const std::int64_t threshold = expiries[cut - 1];
    for (auto it = sh.map.begin(); it != sh.map.end();) {
      it = it->second.expires <= threshold ? sh.map.erase(it) : std::next(it);
    }
  }

  std::size_t per_shard_;
  std::array<shard, kShards> shards_;
};

}  // namespace

// --- rules --------------------------------------------------------------------------------------

rate_limit_rules default_rules() {
  using std::chrono::minutes;
  rate_limit_rules r;
  r.global = {"global", 1000, minutes(15)};
  r.login = {"auth_login", 10, minutes(15)};
  r.register_account = {"auth_register", 5, minutes(60)};
  r.orders = {"orders", 100, minutes(15)};
  r.search = {"search", 500, minutes(15)};
  r.authenticated = {"user", 2000, minutes(15)};
  r.anonymous = {"anon", 500, minutes(15)};
  return r;
}

// --- fallback switch ----------------------------------------------------------------------------

namespace detail {

void fallback_switch::redis_ok() {
  if (active_.load(std::memory_order_relaxed) && active_.exchange(false)) {
    telemetry::log_info("redis back: shared counters in use again", {{"component", component_}});
  }
}

void fallback_switch::fallback(std::string_view why) {
  decisions_.fetch_add(1, std::memory_order_relaxed);
  if (!active_.load(std::memory_order_relaxed) && !active_.exchange(true)) {
    telemetry::log_warn("redis unavailable: falling back to local counters",
                        {{"component", component_}, {"error", why}});
  }
}

}  // namespace detail

// --- rate_limiter -------------------------------------------------------------------------------

struct rate_limiter::impl {
  struct tat_state {
    std::int64_t tat;
    std::int64_t expires;
  };

  impl(std::shared_ptr<persistence::redis_client> r, rate_limiter_options o)
      : redis(std::move(r)), opts(std::move(o)), local(opts.local_max_keys) {}

  std::shared_ptr<persistence::redis_client> redis;
  rate_limiter_options opts;
  detail::fallback_switch sw{"rate_limiter"};
  local_table<tat_state> local;
};

rate_limiter::rate_limiter(std::shared_ptr<persistence::redis_client> redis, rate_limiter_options opts)
    : impl_(std::make_unique<impl>(std::move(redis), std::move(opts))) {}

rate_limiter::~rate_limiter() = default;

std::string rate_limiter::redis_key(const rate_limit_rule& rule, std::string_view key) const {
  return impl_->opts.key_prefix + "rl:" + rule.name + ":" + bounded_key(key);
}

bool rate_limiter::using_fallback() const { return impl_->sw.active(); }
std::uint64_t rate_limiter::fallback_decisions() const { return impl_->sw.decisions(); }
std::size_t rate_limiter::local_keys() const { return impl_->local.size(); }

rate_limit_decision rate_limiter::check(const rate_limit_rule& rule, std::string_view key, clock::time_point now) {
  rate_limit_decision d;
  d.limit = rule.limit;
  if (!rule.enabled()) {
    d.remaining = rule.limit;
    return d;
  }
  const gcra_params p = params_of(rule);
  const std::int64_t now_us = micros(now);

  auto fill = [&](bool allowed, std::int64_t remaining, std::int64_t reset_us, std::int64_t retry_us) {
    d.allowed = allowed;
    d.remaining = static_cast<std::uint32_t>(std::clamp<std::int64_t>(remaining, 0, rule.limit));
    d.reset = ceil_seconds_us(reset_us);
    d.retry_after = allowed ? 0s : std::max(1s, ceil_seconds_us(retry_us));
  };

  const std::string rkey = redis_key(rule, key);
  if (impl_->redis) {
    auto r = impl_->redis->eval(gcra_script(), {rkey},
                                {std::to_string(now_us), std::to_string(p.interval_us), std::to_string(p.limit)});
    if (r) {
      if (auto v = integers(*r, 4)) {
        impl_->sw.redis_ok();
        fill((*v)[0] == 1, (*v)[1], (*v)[2], (*v)[3]);
        return d;
      }
      impl_->sw.fallback("unexpected reply from the rate limit script");
    } else {
      impl_->sw.fallback(r.error().message);
    }
  }

  d.local = true;
  const gcra_outcome o = impl_->local.update(rkey, now_us, [&](const std::optional<impl::tat_state>& cur) {
    gcra_outcome out = gcra(cur ? cur->tat : 0, now_us, p);
    std::optional<impl::tat_state> next = cur;
    if (out.allowed) {
      next = impl::tat_state{out.new_tat, out.new_tat};
    }
    return std::make_pair(out, next);
  });
  fill(o.allowed, o.remaining, o.reset_us, o.retry_us);
  return d;
}

rate_limit_verdict rate_limiter::check_all(const std::vector<rate_limit_charge>& charges, clock::time_point now) {
  rate_limit_verdict v;
  std::vector<std::size_t> live;  // indexes of the enabled charges
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (charges[i].rule != nullptr && charges[i].rule->enabled()) {
      live.push_back(i);
    }
  }
  if (live.empty()) {
    return v;
  }
  v.any = true;
  const std::int64_t now_us = micros(now);
  auto decision = [&](std::size_t i, bool allowed, std::int64_t remaining, std::int64_t reset_us,
                      std::int64_t retry_us, bool local) {
    return verdict_decision(*charges[i].rule, allowed, remaining, reset_us, retry_us, local);
  };
  auto admit = [&](const rate_limit_decision& d) {
    if (!v.refused && (v.decision.limit == 0 || d.remaining < v.decision.remaining)) {
      v.decision = d;
    }
  };

  if (impl_->redis) {
    std::vector<std::string> keys;
    std::vector<std::string> args{std::to_string(now_us)};
    for (auto i : live) {
      const auto p = params_of(*charges[i].rule);
      keys.push_back(redis_key(*charges[i].rule, charges[i].key));
      args.push_back(std::to_string(p.interval_us));
      args.push_back(std::to_string(p.limit));
    }
    auto r = impl_->redis->eval(gcra_all_script(), keys, args);
    if (r && r->type == redis_value::kind::array && !r->elements.empty()) {
      const auto n = r->elements.size();
      if (auto first = integers(*r, n); first && (*first)[0] == 0 && n == 1 + 2 * live.size()) {
        impl_->sw.redis_ok();
        for (std::size_t j = 0; j < live.size(); ++j) {
          admit(decision(live[j], true, (*first)[1 + 2 * j], (*first)[2 + 2 * j], 0, false));
        }
        return v;
      } else if (first && n == 3 && (*first)[0] >= 1 && static_cast<std::size_t>((*first)[0]) <= live.size()) {
        impl_->sw.redis_ok();
        const auto i = live[static_cast<std::size_t>((*first)[0] - 1)];
        v.refused = i;
        v.decision = decision(i, false, 0, (*first)[1], (*first)[2], false);
        return v;
      }
      impl_->sw.fallback("unexpected reply from the rate limit script");
    } else {
      impl_->sw.fallback(r ? "unexpected reply from the rate limit script" : r.error().message);
    }
  }

  return local_verdict(charges, live, now_us, /*count=*/false);
}

rate_limit_verdict rate_limiter::check_all_local(const std::vector<rate_limit_charge>& charges, clock::time_point now) {
  std::vector<std::size_t> live;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (charges[i].rule != nullptr && charges[i].rule->enabled()) {
      live.push_back(i);
    }
  }
  if (live.empty()) {
    return {};
  }
  return local_verdict(charges, live, micros(now), /*count=*/impl_->redis != nullptr);
}

rate_limit_verdict rate_limiter::local_verdict(const std::vector<rate_limit_charge>& charges,
                                               const std::vector<std::size_t>& live, std::int64_t now_us, bool count) {
  if (count) {
    impl_->sw.count();
  }
  rate_limit_verdict v;
  v.any = true;
  auto decision = [&](std::size_t i, bool allowed, std::int64_t remaining, std::int64_t reset_us,
                      std::int64_t retry_us) {
    return verdict_decision(*charges[i].rule, allowed, remaining, reset_us, retry_us, true);
  };
  auto admit = [&](const rate_limit_decision& d) {
    if (!v.refused && (v.decision.limit == 0 || d.remaining < v.decision.remaining)) {
      v.decision = d;
    }
  };
  // Local counters: look first (nothing charged), then charge every budget if all of them admit.
  for (auto i : live) {
    const auto p = params_of(*charges[i].rule);
    const std::string rkey = redis_key(*charges[i].rule, charges[i].key);
    const gcra_outcome o = impl_->local.update(rkey, now_us, [&](const std::optional<impl::tat_state>& cur) {
      return std::make_pair(gcra(cur ? cur->tat : 0, now_us, p), cur);
    });
    if (!o.allowed) {
      v.refused = i;
      v.decision = decision(i, false, 0, o.reset_us, o.retry_us);
      return v;
    }
  }
  for (auto i : live) {
    const auto p = params_of(*charges[i].rule);
    const std::string rkey = redis_key(*charges[i].rule, charges[i].key);
    const gcra_outcome o = impl_->local.update(rkey, now_us, [&](const std::optional<impl::tat_state>& cur) {
      gcra_outcome out = gcra(cur ? cur->tat : 0, now_us, p);
      std::optional<impl::tat_state> next = cur;
      if (out.allowed) {
        next = impl::tat_state{out.new_tat, out.new_tat};
      }
      return std::make_pair(out, next);
    });
    admit(decision(i, true, o.remaining, o.reset_us, 0));
  }
  return v;
}

rate_limit_decision rate_limiter::verdict_decision(const rate_limit_rule& rule, bool allowed, std::int64_t remaining,
                                                   std::int64_t reset_us, std::int64_t retry_us, bool local) {
  rate_limit_decision d;
  d.limit = rule.limit;
  d.allowed = allowed;
  d.remaining = static_cast<std::uint32_t>(std::clamp<std::int64_t>(remaining, 0, rule.limit));
  d.reset = ceil_seconds_us(reset_us);
  d.retry_after = allowed ? 0s : std::max(1s, ceil_seconds_us(retry_us));
  d.local = local;
  return d;
}

bool rate_limiter::shared() const { return impl_->redis != nullptr; }

void rate_limiter::probe() {
  if (!impl_->redis || !impl_->sw.active()) {
    return;
  }
  if (impl_->redis->ping()) {
    impl_->sw.redis_ok();
  }
}

std::optional<std::vector<rate_limiter::batch_result>> rate_limiter::take_batches(const std::vector<batch_op>& ops,
                                                                                  clock::time_point now) {
  if (!impl_->redis) {
    return std::nullopt;
  }
  std::vector<batch_result> out;
  out.reserve(ops.size());
  const std::string now_arg = std::to_string(micros(now));
  constexpr std::size_t kPerCall = 256;
  for (std::size_t from = 0; from < ops.size(); from += kPerCall) {
    const std::size_t to = std::min(ops.size(), from + kPerCall);
    std::vector<std::string> keys;
    std::vector<std::string> args{now_arg};
    keys.reserve(to - from);
    args.reserve(1 + 3 * (to - from));
    for (std::size_t i = from; i < to; ++i) {
      const auto p = params_of(*ops[i].rule);
      keys.push_back(ops[i].redis_key);
      args.push_back(std::to_string(p.interval_us));
      args.push_back(std::to_string(p.limit));
      args.push_back(std::to_string(ops[i].delta));
    }
    auto r = impl_->redis->eval(gcra_batch_script(), keys, args);
    if (!r) {
      impl_->sw.fallback(r.error().message);
      return std::nullopt;
    }
    auto v = integers(*r, 4 * (to - from));
    if (!v) {
      impl_->sw.fallback("unexpected reply from the rate limit batch script");
      return std::nullopt;
    }
    for (std::size_t j = 0; j < to - from; ++j) {
      out.push_back({(*v)[4 * j], (*v)[4 * j + 1], (*v)[4 * j + 2], (*v)[4 * j + 3]});
    }
  }
  impl_->sw.redis_ok();
  return out;
}

// --- login_backoff ------------------------------------------------------------------------------

struct login_backoff::impl {
  struct failures {
    std::int64_t n;
    std::int64_t until_ms;  // blocked until (0: not blocked)
    std::int64_t expires;   // ms since the epoch
  };

  impl(std::shared_ptr<persistence::redis_client> r, login_backoff_options o, rate_limiter_options s)
      : redis(std::move(r)), opts(o), storage(std::move(s)), local(storage.local_max_keys) {
    if (opts.free_failures == 0) {
      opts.free_failures = 1;
    }
  }

  std::string key(std::string_view account) const { return storage.key_prefix + "lb:" + sha256_hex(account); }

  std::int64_t delay_ms(std::int64_t n) const {
    if (n < static_cast<std::int64_t>(opts.free_failures)) {
      return 0;
    }
    const std::int64_t max = opts.max_delay.count();
    std::int64_t d = opts.base_delay.count();
    for (std::int64_t i = opts.free_failures; i < n && d < max; ++i) {
      d *= 2;
    }
    return std::min(d, max);
  }

  std::shared_ptr<persistence::redis_client> redis;
  login_backoff_options opts;
  rate_limiter_options storage;
  detail::fallback_switch sw{"login_backoff"};
  local_table<failures> local;
};

namespace {
std::int64_t millis(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
std::optional<std::chrono::seconds> blocked_seconds(std::int64_t ms) {
  if (ms <= 0) {
    return std::nullopt;
  }
  return std::chrono::seconds((ms + 999) / 1000);
}
}  // namespace

login_backoff::login_backoff(std::shared_ptr<persistence::redis_client> redis, login_backoff_options opts,
                             rate_limiter_options storage)
    : impl_(std::make_unique<impl>(std::move(redis), opts, std::move(storage))) {}

login_backoff::~login_backoff() = default;

bool login_backoff::using_fallback() const { return impl_->sw.active(); }
std::uint64_t login_backoff::fallback_decisions() const { return impl_->sw.decisions(); }

std::optional<std::chrono::seconds> login_backoff::record_failure(std::string_view account, clock::time_point now) {
  const std::string key = impl_->key(account);
  const std::int64_t now_ms = millis(now);
  if (impl_->redis) {
    auto r = impl_->redis->eval(login_failure_script(), {key},
                                {std::to_string(now_ms), std::to_string(impl_->opts.free_failures),
                                 std::to_string(impl_->opts.base_delay.count()),
                                 std::to_string(impl_->opts.max_delay.count()),
                                 std::to_string(std::max<std::int64_t>(1, impl_->opts.forget_after.count()))});
    if (r) {
      if (auto v = integers(*r, 2)) {
        impl_->sw.redis_ok();
        return blocked_seconds((*v)[1]);
      }
      impl_->sw.fallback("unexpected reply from the login back-off script");
    } else {
      impl_->sw.fallback(r.error().message);
    }
  }
  const std::int64_t blocked = impl_->local.update(key, now_ms, [&](const std::optional<impl::failures>& cur) {
    impl::failures f{cur ? cur->n + 1 : 1, cur ? cur->until_ms : 0, 0};
    const std::int64_t d = impl_->delay_ms(f.n);
    if (d > 0) {
      f.until_ms = now_ms + d;
    }
    f.expires = now_ms + std::max<std::int64_t>(d, impl_->opts.forget_after.count());
    return std::make_pair(d, std::optional<impl::failures>(f));
  });
  return blocked_seconds(blocked);
}

void login_backoff::record_success(std::string_view account) {
  const std::string key = impl_->key(account);
  impl_->local.erase(key);  // harmless when Redis holds the state; needed when it did not
  if (impl_->redis) {
    auto r = impl_->redis->del({key});
    if (r) {
      impl_->sw.redis_ok();
    } else {
      impl_->sw.fallback(r.error().message);
    }
  }
}

std::optional<std::chrono::seconds> login_backoff::blocked_for(std::string_view account, clock::time_point now) {
  const std::string key = impl_->key(account);
  const std::int64_t now_ms = millis(now);
  if (impl_->redis) {
    auto r = impl_->redis->command({"HGET", key, "until"});
    if (r) {
      impl_->sw.redis_ok();
      if (r->type == redis_value::kind::string) {
        std::int64_t until = 0;
        const auto& str = r->str;
        auto [ptr, ec] = std::from_chars(str.data(), str.data() + str.size(), until);
        if (ec != std::errc{} || ptr != str.data() + str.size()) {
          return std::nullopt;
        }
        return blocked_seconds(until - now_ms);
      }
      return std::nullopt;
    }
    impl_->sw.fallback(r.error().message);
  }
  return impl_->local.update(key, now_ms, [&](const std::optional<impl::failures>& cur) {
    std::optional<std::chrono::seconds> out;
    if (cur) {
      out = blocked_seconds(cur->until_ms - now_ms);
    }
    return std::make_pair(out, cur);
  });
}

}  // namespace mercato::http
