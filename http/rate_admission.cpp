#include "http/rate_admission.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

namespace mercato::http {
namespace {

std::int64_t micros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// What this node knows of one budget and caller key.
struct entry {
  const rate_limit_rule* rule = nullptr;
  std::int64_t b = 0;                 // the most credit this node may hold
  std::int64_t credit = 0;            // usable tokens (0 ≤ credit ≤ b)
  std::int64_t give_back = 0;         // tokens no longer usable, owed back to Redis
  std::int64_t shared_remaining = 0;  // what Redis still held for anyone after our last round trip
  std::int64_t tat_us = 0;            // Redis's TAT after our last round trip (absolute µs)
  std::int64_t refused_until = 0;     // Redis said no token fits before this (absolute µs)
  std::int64_t last_used = 0;         // µs
  bool refill_queued = false;
};

struct waiter {
  std::vector<rate_limit_charge> charges;
  std::vector<std::string> rkeys;  // per charge; empty for a disabled rule
  rate_admission::callback later;
};

bool live(const rate_limit_charge& c) { return c.rule != nullptr && c.rule->enabled(); }

}  // namespace

struct rate_admission::impl {
  static constexpr std::size_t kShards = 16;
  struct shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, entry> map;
  };

  impl(rate_limiter& l, rate_admission_options o)
      : limiter(l), opts(std::move(o)), per_shard(std::max<std::size_t>(1, opts.max_keys / kShards)) {}

  shard& shard_of(const std::string& rkey) { return shards[std::hash<std::string>{}(rkey) % kShards]; }
  const shard& shard_of(const std::string& rkey) const { return shards[std::hash<std::string>{}(rkey) % kShards]; }

  std::int64_t credit_of(const rate_limit_rule& rule) const {
    if (!rule.enabled() || opts.credit_divisor == 0 ||
        std::find(opts.exact.begin(), opts.exact.end(), rule.name) != opts.exact.end()) {
      return 0;
    }
    return std::min<std::int64_t>(opts.max_credit, rule.limit / opts.credit_divisor);
  }

  // The decision an admitted request reports for one budget: what Redis still holds plus our credit.
  static rate_limit_decision admitted(const entry& e, std::int64_t now_us) {
    return rate_limiter::verdict_decision(*e.rule, true, e.shared_remaining + e.credit,
                                          std::max<std::int64_t>(0, e.tat_us - now_us), 0, false);
  }
  static rate_limit_decision refused(const entry& e, std::int64_t now_us) {
    return rate_limiter::verdict_decision(*e.rule, false, 0, std::max<std::int64_t>(0, e.tat_us - now_us),
                                          std::max<std::int64_t>(1, e.refused_until - now_us), false);
  }

  // Takes one token of every live charge, all or nothing. Returns false (nothing taken) when one of them
  // has no credit. Queues refills of keys that fall below half their credit.
  bool take_all(const waiter& w, std::int64_t now_us, rate_limit_verdict& v, std::vector<std::string>& refills) {
    std::size_t taken = 0;
    bool ok = true;
    for (std::size_t i = 0; i < w.charges.size() && ok; ++i) {
      if (w.rkeys[i].empty()) {
        ++taken;
        continue;
      }
      auto& sh = shard_of(w.rkeys[i]);
      std::lock_guard<std::mutex> lk(sh.mu);
      auto it = sh.map.find(w.rkeys[i]);
      if (it == sh.map.end() || it->second.credit < 1) {
        ok = false;
        break;
      }
      auto& e = it->second;
      --e.credit;
      e.last_used = now_us;
      const auto d = admitted(e, now_us);
      if (v.decision.limit == 0 || d.remaining < v.decision.remaining) {
        v.decision = d;
      }
      if (e.credit * 2 < e.b && !e.refill_queued) {
        e.refill_queued = true;
        refills.push_back(w.rkeys[i]);
      }
      ++taken;
    }
    if (ok) {
      v.any = true;
      return true;
    }
    for (std::size_t i = 0; i < taken; ++i) {  // give back what this request took
      if (w.rkeys[i].empty()) {
        continue;
      }
      auto& sh = shard_of(w.rkeys[i]);
      std::lock_guard<std::mutex> lk(sh.mu);
      if (auto it = sh.map.find(w.rkeys[i]); it != sh.map.end()) {
        auto& e = it->second;
        if (e.credit < e.b) {
          ++e.credit;
        } else {
          ++e.give_back;  // a round trip refilled it meanwhile: a node never holds more than b
        }
      }
    }
    v = rate_limit_verdict{};
    return false;
  }

  void queue_refills(std::vector<std::string>& refills) {
    if (refills.empty()) {
      return;
    }
    {
      std::lock_guard<std::mutex> lk(qmu);
      for (auto& k : refills) {
        pending_refills.push_back(std::move(k));
      }
    }
    qcv.notify_one();
  }

  void run() {
    std::unique_lock<std::mutex> lk(qmu);
    while (!stopping) {
      qcv.wait_for(lk, opts.interval, [&] { return stopping || !waiters.empty() || !pending_refills.empty(); });
      if (stopping) {
        break;
      }
      lk.unlock();
      reconcile(std::chrono::system_clock::now());
      lk.lock();
    }
  }

  void reconcile(std::chrono::system_clock::time_point now);

  rate_limiter& limiter;
  rate_admission_options opts;
  std::size_t per_shard;
  std::array<shard, kShards> shards;

  mutable std::mutex qmu;  // guards what follows up to the thread
  std::condition_variable qcv;
  std::vector<waiter> waiters;
  std::vector<std::string> pending_refills;
  bool stopping = false;

  std::mutex reconcile_mu;  // one round trip at a time; guards what follows
  std::int64_t last_scan_us = 0;
  std::vector<rate_limiter::batch_op> owed;  // tokens of keys not in the table, to give back
  std::atomic<std::uint64_t> round_trips{0};

  std::thread thread;
};

void rate_admission::impl::reconcile(std::chrono::system_clock::time_point now) {
  std::lock_guard<std::mutex> one(reconcile_mu);
  const std::int64_t now_us = micros(now);
  std::vector<waiter> ws;
  std::vector<std::string> refills;
  {
    std::lock_guard<std::mutex> lk(qmu);
    ws.swap(waiters);
    refills.swap(pending_refills);
  }
  const std::int64_t interval_us = std::chrono::duration_cast<std::chrono::microseconds>(opts.interval).count();
  const bool scan = interval_us == 0 || now_us - last_scan_us >= interval_us;
  const std::int64_t idle_us = std::chrono::duration_cast<std::chrono::microseconds>(opts.idle_return).count();

  // 1. Plan: one operation per key.
  struct plan {
    std::int64_t need = 0;      // tokens reserved for waiters
    bool forget = false;        // erase the entry after the round trip (idle)
    bool in_table = false;      // the entry exists (or will be created) in the table
  };
  std::vector<rate_limiter::batch_op> ops;
  std::vector<plan> plans;
  std::unordered_map<std::string, std::size_t> index;
  auto op_for = [&](const rate_limit_rule* rule, const std::string& rkey) -> std::size_t {
    auto [it, fresh] = index.emplace(rkey, ops.size());
    if (fresh) {
      ops.push_back({rule, rkey, 0});
      plans.emplace_back();
    }
    return it->second;
  };
  for (const auto& w : ws) {
    for (std::size_t i = 0; i < w.charges.size(); ++i) {
      if (!w.rkeys[i].empty()) {
        ++plans[op_for(w.charges[i].rule, w.rkeys[i])].need;
      }
    }
  }
  // Waiting keys: their waiters' tokens plus b (when the key has, or gets, a place in the table).
  for (std::size_t j = 0; j < ops.size(); ++j) {
    auto& sh = shard_of(ops[j].redis_key);
    std::lock_guard<std::mutex> lk(sh.mu);
    auto it = sh.map.find(ops[j].redis_key);
    plans[j].in_table = it != sh.map.end() || sh.map.size() < per_shard;
    const std::int64_t b = credit_of(*ops[j].rule);
    const std::int64_t held = it != sh.map.end() ? it->second.credit : 0;
    ops[j].delta = plans[j].need + (plans[j].in_table ? std::max<std::int64_t>(0, b - held) : 0);
  }
  // Keys below half their credit.
  for (const auto& rkey : refills) {
    if (index.count(rkey) != 0) {
      continue;
    }
    auto& sh = shard_of(rkey);
    std::lock_guard<std::mutex> lk(sh.mu);
    auto it = sh.map.find(rkey);
    if (it == sh.map.end()) {
      continue;
    }
    auto& e = it->second;
    if (e.credit < e.b) {
      const auto j = op_for(e.rule, rkey);
      ops[j].delta = e.b - e.credit;
      plans[j].in_table = true;
    } else {
      e.refill_queued = false;
    }
  }
  // Every interval: give back what is owed and the credit of idle keys (then forget them).
  if (scan) {
    last_scan_us = now_us;
    for (auto& sh : shards) {
      std::lock_guard<std::mutex> lk(sh.mu);
      for (auto it = sh.map.begin(); it != sh.map.end();) {
        auto& [rkey, e] = *it;
        if (index.count(rkey) != 0) {
          ++it;
          continue;  // taking tokens this round; what it owes goes back next time
        }
        const bool idle = now_us - e.last_used >= idle_us;
        if (idle) {
          e.give_back += e.credit;  // unusable from now on: an io thread cannot spend what goes back
          e.credit = 0;
          if (e.give_back == 0) {
            it = sh.map.erase(it);  // nothing held: forget it now
            continue;
          }
        }
        if (e.give_back > 0) {
          const auto j = op_for(e.rule, rkey);
          ops[j].delta = -e.give_back;
          plans[j].forget = idle;
          plans[j].in_table = true;
        }
        ++it;
      }
    }
    for (auto& o : owed) {
      if (index.count(o.redis_key) == 0) {
        const auto j = op_for(o.rule, o.redis_key);
        ops[j].delta = o.delta;
      }
    }
    owed.clear();
  }

  // 2. The round trip.
  std::optional<std::vector<rate_limiter::batch_result>> results;
  const bool has_work = std::any_of(ops.begin(), ops.end(), [](const auto& o) { return o.delta != 0; }) || !ws.empty();
  if (has_work) {
    results = limiter.take_batches(ops, now);
    round_trips.fetch_add(1, std::memory_order_relaxed);
  } else {
    if (scan) {
      limiter.probe();  // nothing to do: one PING while on the fallback, to notice Redis is back
    }
    results.emplace();
  }

  std::vector<std::pair<callback, rate_limit_verdict>> answers;
  answers.reserve(ws.size());
  if (!results) {
    // Redis failed (the limiter is on its fallback now): waiters are decided by the local counters;
    // what was owed stays owed, refills are queued again by the next admissions.
    for (std::size_t j = 0; j < ops.size(); ++j) {
      auto& sh = shard_of(ops[j].redis_key);
      std::lock_guard<std::mutex> lk(sh.mu);
      if (auto it = sh.map.find(ops[j].redis_key); it != sh.map.end()) {
        it->second.refill_queued = false;
      } else if (ops[j].delta < 0) {
        owed.push_back(ops[j]);
      }
    }
    for (auto& w : ws) {
      answers.emplace_back(std::move(w.later), limiter.check_all_local(w.charges, now));
    }
    for (auto& [later, v] : answers) {
      later(v);
    }
    return;
  }

  // 3. Apply: granted tokens reserved for the waiters go to `reserved`, the rest becomes credit.
  std::unordered_map<std::string, std::int64_t> reserved;  // per key, for this round's waiters
  std::unordered_map<std::string, entry> outside;           // keys that found no room in the table
  for (std::size_t j = 0; j < ops.size() && j < results->size(); ++j) {
    const auto& op = ops[j];
    const auto& res = (*results)[j];
    auto& sh = shard_of(op.redis_key);
    std::lock_guard<std::mutex> lk(sh.mu);
    auto it = sh.map.find(op.redis_key);
    if (it == sh.map.end() && plans[j].in_table && op.delta > 0 && sh.map.size() < per_shard) {
      it = sh.map.emplace(op.redis_key, entry{}).first;
      it->second.rule = op.rule;
      it->second.b = credit_of(*op.rule);
      it->second.last_used = now_us;
    }
    entry* e = nullptr;
    const bool in_table = it != sh.map.end();
    if (in_table) {
      e = &it->second;
    } else if (op.delta > 0) {
      e = &outside.emplace(op.redis_key, entry{}).first->second;
      e->rule = op.rule;
    } else {
      continue;  // an owed give-back done
    }
    e->shared_remaining = res.remaining;
    e->tat_us = now_us + res.reset_us;
    e->refused_until = res.retry_us > 0 ? now_us + res.retry_us : 0;
    if (op.delta > 0) {
      // A key outside the table keeps nothing: what its waiters leave goes back.
      const std::int64_t mine = in_table ? std::min(res.granted, plans[j].need) : res.granted;
      reserved[op.redis_key] = mine;
      e->credit += res.granted - mine;
      e->refill_queued = false;
    } else if (op.delta < 0) {
      e->give_back = std::max<std::int64_t>(0, e->give_back + op.delta);
      if (plans[j].forget && e->credit == 0 && e->give_back == 0 && now_us - e->last_used >= idle_us) {
        sh.map.erase(it);
      }
    }
  }

  // 4. Waiters, first come first served: each takes one reserved token per budget, all or nothing;
  // a budget with none left refuses when Redis said so, else the request waits for the next round.
  std::vector<waiter> again;
  for (auto& w : ws) {
    std::optional<std::size_t> short_at;
    for (std::size_t i = 0; i < w.charges.size() && !short_at; ++i) {
      if (!w.rkeys[i].empty() && reserved[w.rkeys[i]] < 1) {
        short_at = i;
      }
    }
    if (!short_at) {
      rate_limit_verdict v;
      v.any = true;
      for (std::size_t i = 0; i < w.charges.size(); ++i) {
        if (w.rkeys[i].empty()) {
          continue;
        }
        --reserved[w.rkeys[i]];
        auto& sh = shard_of(w.rkeys[i]);
        std::lock_guard<std::mutex> lk(sh.mu);
        auto it = sh.map.find(w.rkeys[i]);
        const entry& e = it != sh.map.end() ? it->second : outside.at(w.rkeys[i]);
        if (it != sh.map.end()) {
          it->second.last_used = now_us;
        }
        auto d = admitted(e, now_us);
        if (v.decision.limit == 0 || d.remaining < v.decision.remaining) {
          v.decision = d;
        }
      }
      answers.emplace_back(std::move(w.later), v);
      continue;
    }
    const auto& rkey = w.rkeys[*short_at];
    auto& sh = shard_of(rkey);
    std::unique_lock<std::mutex> lk(sh.mu);
    auto it = sh.map.find(rkey);
    const entry* e = it != sh.map.end() ? &it->second : nullptr;
    if (e == nullptr) {
      if (auto o = outside.find(rkey); o != outside.end()) {
        e = &o->second;
      }
    }
    if (e != nullptr && e->refused_until > now_us) {
      rate_limit_verdict v;
      v.any = true;
      v.refused = *short_at;
      v.decision = refused(*e, now_us);
      lk.unlock();
      answers.emplace_back(std::move(w.later), v);
    } else {
      lk.unlock();
      again.push_back(std::move(w));  // tokens went to earlier waiters; Redis has more
    }
  }

  // 5. Unused reserved tokens become credit (or go back); credit above b goes back.
  for (auto& [rkey, left] : reserved) {
    auto& sh = shard_of(rkey);
    std::lock_guard<std::mutex> lk(sh.mu);
    if (auto it = sh.map.find(rkey); it != sh.map.end()) {
      auto& e = it->second;
      e.credit += left;
      if (e.credit > e.b) {
        e.give_back += e.credit - e.b;
        e.credit = e.b;
      }
    } else if (left > 0) {
      owed.push_back({outside.at(rkey).rule, rkey, -left});
    }
  }
  if (!again.empty()) {
    std::lock_guard<std::mutex> lk(qmu);
    for (auto& w : again) {
      waiters.push_back(std::move(w));
    }
  }
  if (!again.empty()) {
    qcv.notify_one();
  }
  for (auto& [later, v] : answers) {
    later(v);
  }
}

rate_admission::rate_admission(rate_limiter& limiter, rate_admission_options opts)
    : impl_(std::make_unique<impl>(limiter, std::move(opts))) {
  if (impl_->opts.interval.count() > 0 && limiter.shared()) {
    impl_->thread = std::thread([this] { impl_->run(); });
  }
}

rate_admission::~rate_admission() { stop(); }

void rate_admission::stop() {
  {
    std::lock_guard<std::mutex> lk(impl_->qmu);
    impl_->stopping = true;
  }
  impl_->qcv.notify_all();
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
  // Requests still waiting get their answer (a round trip, or the local counters).
  for (int round = 0; round < 3 && waiting() > 0; ++round) {
    impl_->reconcile(clock::now());
  }
  std::vector<waiter> left;
  {
    std::lock_guard<std::mutex> lk(impl_->qmu);
    left.swap(impl_->waiters);
  }
  for (auto& w : left) {
    w.later(impl_->limiter.check_all_local(w.charges, clock::now()));
  }
}

std::uint32_t rate_admission::credit_of(const rate_limit_rule& rule) const {
  return static_cast<std::uint32_t>(impl_->credit_of(rule));
}

bool rate_admission::exact(const std::vector<rate_limit_charge>& charges) const {
  if (!impl_->limiter.shared()) {
    return false;
  }
  return std::any_of(charges.begin(), charges.end(),
                     [&](const rate_limit_charge& c) { return live(c) && impl_->credit_of(*c.rule) == 0; });
}

rate_admission::outcome rate_admission::admit(const std::vector<rate_limit_charge>& charges, clock::time_point now,
                                              rate_limit_verdict& out, callback later) {
  out = rate_limit_verdict{};
  if (std::none_of(charges.begin(), charges.end(), live)) {
    return outcome::decided;
  }
  if (!impl_->limiter.shared()) {
    out = impl_->limiter.check_all(charges, now);  // local counters only: no network
    return outcome::decided;
  }
  if (impl_->limiter.using_fallback()) {
    out = impl_->limiter.check_all_local(charges, now);
    return outcome::decided;
  }
  const std::int64_t now_us = micros(now);
  waiter w;
  w.charges = charges;
  w.rkeys.resize(charges.size());
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (live(charges[i])) {
      w.rkeys[i] = impl_->limiter.redis_key(*charges[i].rule, charges[i].key);
    }
  }

  // A budget Redis reported as spent refuses at once; one without credit makes the request wait.
  bool short_of_credit = false;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (w.rkeys[i].empty()) {
      continue;
    }
    const auto& sh = impl_->shard_of(w.rkeys[i]);
    std::lock_guard<std::mutex> lk(sh.mu);
    auto it = sh.map.find(w.rkeys[i]);
    if (it != sh.map.end() && it->second.credit >= 1) {
      continue;
    }
    if (it != sh.map.end() && it->second.refused_until > now_us) {
      out.any = true;
      out.refused = i;
      out.decision = impl::refused(it->second, now_us);
      return outcome::decided;
    }
    short_of_credit = true;
  }
  if (!short_of_credit) {
    std::vector<std::string> refills;
    const bool taken = impl_->take_all(w, now_us, out, refills);
    impl_->queue_refills(refills);
    if (taken) {
      return outcome::decided;
    }
  }
  {
    std::lock_guard<std::mutex> lk(impl_->qmu);
    if (impl_->stopping) {
      out = impl_->limiter.check_all_local(charges, now);  // stopped: no more round trips
      return outcome::decided;
    }
    if (impl_->waiters.size() >= impl_->opts.max_waiting) {
      return outcome::overloaded;
    }
    w.later = std::move(later);
    impl_->waiters.push_back(std::move(w));
  }
  impl_->qcv.notify_one();
  return outcome::waiting;
}

void rate_admission::reconcile(clock::time_point now) { impl_->reconcile(now); }

std::size_t rate_admission::keys() const {
  std::size_t n = 0;
  for (const auto& sh : impl_->shards) {
    std::lock_guard<std::mutex> lk(sh.mu);
    n += sh.map.size();
  }
  return n;
}

std::int64_t rate_admission::credit(const rate_limit_rule& rule, std::string_view key) const {
  const std::string rkey = impl_->limiter.redis_key(rule, key);
  const auto& sh = impl_->shard_of(rkey);
  std::lock_guard<std::mutex> lk(sh.mu);
  auto it = sh.map.find(rkey);
  return it != sh.map.end() ? it->second.credit : 0;
}

std::size_t rate_admission::waiting() const {
  std::lock_guard<std::mutex> lk(impl_->qmu);
  return impl_->waiters.size();
}

std::uint64_t rate_admission::round_trips() const { return impl_->round_trips.load(std::memory_order_relaxed); }

}  // namespace mercato::http
