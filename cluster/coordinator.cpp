#include "cluster/coordinator.hpp"

#include <cstdio>
#include <random>
#include <set>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <pqxx/pqxx>

#include "actors/protocol/atoms.hpp"
#include "cluster/cluster_metrics.hpp"
#include "cluster/messages.hpp"
#include "cluster/placement.hpp"
#include "persistence/pg_pool.hpp"
#include "telemetry/logging.hpp"

namespace mercato::cluster {
namespace {

using clock = std::chrono::steady_clock;

std::string random_uuid() {
  std::random_device rd;
  std::mt19937_64 gen{(static_cast<std::uint64_t>(rd()) << 32) ^ rd()};
  const std::uint64_t a = gen();
  const std::uint64_t b = gen();
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0x0fff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffull));
  return buf;
}

}  // namespace

coordinator::coordinator(coordinator_options opts, caf::actor_system& sys, std::vector<kind_binding> kinds,
                         cluster_metrics* metrics)
    : opts_(std::move(opts)), sys_(sys), kinds_(std::move(kinds)), metrics_(metrics), incarnation_(random_uuid()) {
  // A node must stop serving a shard well before its lease can expire in the database: a renewal that
  // is late by more than the margin makes the front door hold that shard's messages until it lands.
  if (opts_.heartbeat.count() <= 0) {
    opts_.heartbeat = std::chrono::milliseconds(1000);
  }
  if (opts_.lease_ttl < 3 * opts_.heartbeat) {
    opts_.lease_ttl = 3 * opts_.heartbeat;
  }
  margin_ = std::max(opts_.heartbeat, opts_.lease_ttl / 5);
  // Connection results arrive on CAF threads; the shared state lets a late one find the coordinator gone.
  auto alive = alive_;
  connected_ = std::make_shared<connect_callback>(
      [this, alive](const std::string& id, const std::string& host, int port, caf::actor gw, caf::error err) {
        std::lock_guard<std::mutex> lock{alive->mutex};
        if (!alive->on) {
          return;
        }
        std::lock_guard<std::mutex> peers_lock{mutex_};
        auto it = peers_.find(id);
        if (it == peers_.end() || it->second.host != host || it->second.port != port) {
          return;  // the peer went away or moved meanwhile
        }
        it->second.connecting = false;
        if (gw) {
          it->second.gateway = std::move(gw);
          watch(id, it->second.gateway);
          caf::anon_send(it->second.gateway, hello_atom::value, opts_.node_id, opts_.gateway);
          telemetry::log_info("cluster peer connected", {{"node_id", id}, {"address", host + ":" + std::to_string(port)}});
        } else {
          telemetry::log_warn("cluster peer unreachable", {{"node_id", id}, {"address", host + ":" + std::to_string(port)},
                                                           {"error", sys_.render(err)}});
        }
      });
  view_.self = opts_.node_id;
  for (const auto& k : kinds_) {
    view_.shards_total += k.env->shards;
  }
}

coordinator::~coordinator() {
  {
    std::lock_guard<std::mutex> lock{alive_->mutex};
    alive_->on = false;
  }
  {
    std::lock_guard<std::mutex> lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void coordinator::start() {
  if (!thread_.joinable()) {
    thread_ = std::thread([this] { run(); });
  }
}

bool coordinator::await_ready(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  while (!ready() && clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ready();
}

void coordinator::cut_off(bool on) {
  cut_off_.store(on);
  wake_.notify_all();
}

kind_binding* coordinator::kind(const std::string& name) {
  for (auto& k : kinds_) {
    if (k.env->kind == name) {
      return &k;
    }
  }
  return nullptr;
}

// Logs when the connection behind a peer's gateway proxy is lost (the proxy dies with it).
void coordinator::watch(const std::string& id, const caf::actor& gw) {
  caf::actor_cast<caf::abstract_actor*>(gw)->attach_functor([id](const caf::error& reason) {
    telemetry::log_warn("cluster peer connection lost", {{"node_id", id}, {"reason", caf::to_string(reason)}});
  });
}

std::function<void(const std::string&, caf::actor)> coordinator::introductions() {
  auto alive = alive_;
  return [this, alive](const std::string& id, caf::actor gw) {
    std::lock_guard<std::mutex> lock{alive->mutex};
    if (!alive->on || id == opts_.node_id || !(id < opts_.node_id)) {
      return;  // gone, or a node this one connects to itself
    }
    std::lock_guard<std::mutex> peers_lock{mutex_};
    auto& p = peers_[id];
    if (p.gateway != gw) {
      p.gateway = std::move(gw);
      watch(id, p.gateway);
      telemetry::log_info("cluster peer introduced itself", {{"node_id", id}});
    }
  };
}

std::vector<caf::actor> coordinator::peer_gateways() const {
  std::lock_guard<std::mutex> lock{mutex_};
  std::vector<caf::actor> out;
  for (const auto& [id, p] : peers_) {
    if (p.gateway) {
      out.push_back(p.gateway);
    }
  }
  return out;
}

cluster_view coordinator::view() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return view_;
}

void coordinator::run() {
  telemetry::log_info("cluster member starting", {{"node_id", opts_.node_id}, {"incarnation", incarnation_},
                                                  {"gateway", opts_.host + ":" + std::to_string(opts_.port)}});
  std::unique_lock<std::mutex> lock{mutex_};
  while (!stopping_) {
    lock.unlock();
    const auto started = clock::now();
    try {
      if (!cut_off_.load()) {
        tick();
      } else {
        drop_lapsed();
      }
    } catch (const std::exception& e) {
      // PostgreSQL unreachable (or a statement failed: a lock wait or statement timed out): the leases
      // will lapse locally if this lasts, and the shards are dropped before the node takes them again.
      // After a failed statement the server answered, so the connection is kept.
      telemetry::log_warn("cluster round failed", {{"node_id", opts_.node_id}, {"error", e.what()}});
      if (!dynamic_cast<const pqxx::sql_error*>(&e)) {
        conn_.reset();
      }
      handing_off_ = false;
      ready_.store(false);
      drop_lapsed();
    }
    if (metrics_) {
      metrics_->tick_seconds.Observe(std::chrono::duration<double>(clock::now() - started).count());
    }
    lock.lock();
    if (handing_off_) {
      continue;  // more shards to hand off: the next round starts at once
    }
    wake_.wait_for(lock, opts_.heartbeat, [this] { return stopping_; });
  }
}

// Local only: shards whose lease ran out here (no renewal in time) are dropped, so nothing stale is
// served or kept once the node can reach the database again.
void coordinator::drop_lapsed() {
  const auto now = clock::now().time_since_epoch().count();
  std::vector<shard_key> lapsed;
  for (const auto& [key, epoch] : held_) {
    auto* k = kind(key.kind);
    if (k && k->env->leases[static_cast<std::size_t>(key.shard)].serving_until.load() <= now) {
      lapsed.push_back(key);
    }
  }
  for (const auto& key : lapsed) {
    if (drop(key, "lease lapsed")) {
      held_.erase(key);
      if (metrics_) {
        metrics_->shard_moves.Add({{"direction", "lost"}}).Increment();
      }
    }
  }
  ready_.store(false);
}

bool coordinator::drop(const shard_key& key, const char* why) {
  auto* k = kind(key.kind);
  if (!k) {
    return true;
  }
  // Writes under the old epoch are fenced from here on; the entities stop after their writes settle.
  caf::scoped_actor self{sys_};
  bool ok = false;
  self->request(k->front, std::chrono::seconds(60), handoff_atom::value, static_cast<std::int32_t>(key.shard))
      .receive([&](std::uint64_t) { ok = true; },
               [&](caf::error& err) {
                 telemetry::log_warn("a shard's entities could not be stopped; retried next round",
                                     {{"kind", key.kind}, {"shard", key.shard}, {"why", why},
                                      {"error", sys_.render(err)}});
               });
  if (ok) {
    k->env->hold(key.shard, 0, clock::time_point{});
  }
  return ok;
}

// The counts the entity routers gave last time (asked again now, answered asynchronously: a busy
// scheduler must not delay the heartbeat). Asked as (stats_atom, parked_atom), which each host answers
// from its counters: plain stats_atom also sums the messages waiting per entity, a walk over every
// resident entity (100,000 parked carts took 1.6 % of a 2-core box at one heartbeat a second).
std::map<std::string, std::int64_t> coordinator::active_entities() {
  for (auto& k : kinds_) {
    sys_.spawn(
        [counts = active_counts_, kind = k.env->kind](caf::event_based_actor* self, caf::actor front) {
          self->request(front, std::chrono::seconds(2), protocol::stats_atom::value,
                        supervisors::parked_atom::value)
              .then(
                  [counts, kind](std::uint64_t active, std::uint64_t /*parked*/, std::uint64_t /*unparks*/) {
                    std::lock_guard<std::mutex> lock{counts->mutex};
                    counts->by_kind[kind] = static_cast<std::int64_t>(active);
                  },
                  [](caf::error&) {});
        },
        k.front);
  }
  std::lock_guard<std::mutex> lock{active_counts_->mutex};
  return active_counts_->by_kind;
}

// Connections are made by short-lived actors, never on this thread: a peer that is frozen (SIGSTOP)
// accepts the TCP connection and never answers CAF's handshake, and waiting for it here would stop the
// renewals of this node's own leases.
// Of two nodes, only the one with the smaller id connects, and introduces its gateway over the connection
// (hello_atom, again every round); the other waits for that introduction (see hello_atom for why).
void coordinator::connect_peers(const std::vector<node_record>& nodes) {
  std::set<std::string> live;
  for (const auto& n : nodes) {
    if (!n.live || n.id == opts_.node_id) {
      continue;
    }
    live.insert(n.id);
    std::lock_guard<std::mutex> lock{mutex_};
    auto& p = peers_[n.id];
    // A proxy whose connection dropped is terminated: connect again (a restarted peer has a new port).
    const bool dead =
        p.gateway && caf::actor_cast<caf::abstract_actor*>(p.gateway)->getf(caf::abstract_actor::is_terminated_flag);
    if (!(opts_.node_id < n.id)) {
      // The peer connects to this node: forget a gateway whose connection dropped or that belongs to an
      // earlier address of the peer; its next introduction brings the current one.
      if (dead || (p.port != 0 && (p.host != n.host || p.port != n.port))) {
        p.gateway = caf::actor{};
      }
      p.host = n.host;
      p.port = n.port;
      continue;
    }
    if (p.gateway && !dead && p.host == n.host && p.port == n.port) {
      caf::anon_send(p.gateway, hello_atom::value, opts_.node_id, opts_.gateway);
      continue;
    }
    if (p.connecting) {
      continue;
    }
    p.host = n.host;
    p.port = n.port;
    p.gateway = caf::actor{};
    p.connecting = true;
    auto done = connected_;
    sys_.spawn(
        [id = n.id, host = n.host, port = static_cast<std::uint16_t>(n.port), done](caf::event_based_actor* self,
                                                                                   caf::actor mm) {
          self->request(mm, std::chrono::seconds(5), caf::connect_atom::value, host, port)
              .then(
                  [=](const caf::node_id&, caf::strong_actor_ptr& gw, const std::set<std::string>&) {
                    (*done)(id, host, port, caf::actor_cast<caf::actor>(gw), caf::error{});
                  },
                  [=](caf::error& err) { (*done)(id, host, port, caf::actor{}, std::move(err)); });
        },
        // With TLS, the openssl module's middleman actor opens the connection (same BASP broker, TLS scribe).
        opts_.tls() ? caf::actor_cast<caf::actor>(sys_.openssl_manager().actor_handle())
                    : caf::actor_cast<caf::actor>(sys_.middleman().actor_handle()));
  }
  std::lock_guard<std::mutex> lock{mutex_};
  for (auto it = peers_.begin(); it != peers_.end();) {
    it = live.count(it->first) ? std::next(it) : peers_.erase(it);
  }
}

// One request to every connected peer's gateway, answered asynchronously: the remote round trip a
// forwarded command pays on top of its own work (mercato_cluster_remote_request_seconds).
void coordinator::measure_peers() {
  if (!metrics_) {
    return;
  }
  for (auto& gw : peer_gateways()) {
    sys_.spawn(
        [m = metrics_](caf::event_based_actor* self, caf::actor target) {
          const auto sent = clock::now();
          self->request(target, std::chrono::seconds(2), ping_atom::value, std::uint64_t{1})
              .then([m, sent](std::uint64_t) {
                      m->remote_seconds.Observe(std::chrono::duration<double>(clock::now() - sent).count());
                    },
                    [m](caf::error&) { m->remote_timeouts.Increment(); });
        },
        gw);
  }
}

// Renews every lease held; one that could not be renewed is lost: its entities are dropped (with their
// parked state) before anything else happens to the shard here.
void coordinator::renew_held(pqxx::connection& conn) {
  std::vector<held_lease> held;
  for (const auto& [key, epoch] : held_) {
    held.push_back({key, epoch});
  }
  const auto sent = clock::now();
  auto renewed = renew(conn, opts_.node_id, held, opts_.lease_ttl);
  last_renewal_ = sent;
  std::set<shard_key> ok(renewed.begin(), renewed.end());
  const auto until = sent + opts_.lease_ttl - margin_;
  std::vector<shard_key> lost;
  for (const auto& [key, epoch] : held_) {
    if (ok.count(key)) {
      kind(key.kind)->env->extend(key.shard, until);
    } else {
      lost.push_back(key);
    }
  }
  for (const auto& key : lost) {
    telemetry::log_warn("shard lease lost", {{"kind", key.kind}, {"shard", key.shard}});
    if (drop(key, "lease lost")) {
      held_.erase(key);
      if (metrics_) {
        metrics_->shard_moves.Add({{"direction", "lost"}}).Increment();
      }
    }
  }
}

// The round's connection. A transaction of this node left idle for the lease's time less the margin
// (the node frozen between two statements) is ended by the server: by then the node has stopped serving
// anyway, and its lease rows must not stay locked past their expiry against the node taking them over.
// The same bounds a statement. Waiting for a lock is bounded by a heartbeat: rounds are short and take
// their locks briefly, so a longer wait means a peer frozen in its transaction, and this round gives up
// (the next one retries) instead of holding back this node's own renewals until the peer's session ends.
// Deliberately not tighter: on a starved 2-core box a live node's round can pause for hundreds of ms, and
// ending its transactions (or its connection attempts) then only made every round fail.
std::unique_ptr<pqxx::connection> coordinator::open_round_connection() const {
  return persistence::open_connection(opts_.dsn, opts_.lease_ttl, opts_.lease_ttl - margin_, opts_.heartbeat);
}

void coordinator::tick() {
  if (!conn_) {
    conn_ = open_round_connection();
  }
  auto& conn = *conn_;
  if (!joined_) {
    if (opts_.may_join && !opts_.may_join()) {
      return;
    }
    register_node(conn, opts_.node_id, opts_.host, opts_.port, opts_.http_port, incarnation_);
    joined_ = true;
  }
  // The node's own leases first: nothing else in this round may delay their renewal.
  renew_held(conn);
  const bool leaving = leaving_.load();
  if (!heartbeat(conn, opts_.node_id, incarnation_, active_entities(), leaving ? "leaving" : "up")) {
    telemetry::log_error("another process registered this node id; this one stops serving",
                         {{"node_id", opts_.node_id}});
    leaving_.store(true);
  }
  auto members = nodes(conn, opts_.node_timeout);
  std::vector<std::string> live;
  for (const auto& n : members) {
    if (n.live) {
      live.push_back(n.id);
    }
  }
  if (metrics_) {
    metrics_->members.Set(static_cast<double>(live.size()));
  }
  connect_peers(members);
  measure_peers();

  // Hand off what now hashes elsewhere (or everything, when leaving). A hand-off waits for the shard's
  // entities to flush; the leases still held are renewed in between when a heartbeat has passed.
  // At most a heartbeat of hand-offs per round (at least one): a shard handed off waits, with the
  // messages its front door holds, for the end of the round to be placed at its new owner, so a round
  // that handed off a whole share (85 shards under load on a slow box: 8 s) held the first ones' messages
  // past the edge's deadline. The next round starts at once while shards are left to give.
  handing_off_ = false;
  const auto give_until = clock::now() + opts_.heartbeat;
  std::size_t given = 0;
  std::vector<shard_key> give;
  for (const auto& [key, epoch] : held_) {
    if (leaving || owner_of(key.kind, key.shard, live) != opts_.node_id) {
      give.push_back(key);
    }
  }
  for (const auto& key : give) {
    if (given > 0 && clock::now() >= give_until) {
      handing_off_ = true;
      break;
    }
    if (clock::now() - last_renewal_ >= opts_.heartbeat) {
      renew_held(conn);
    }
    if (!held_.count(key)) {
      continue;  // lost meanwhile
    }
    const auto t0 = clock::now();
    const auto epoch = held_[key];
    if (!drop(key, "hand-off")) {
      continue;
    }
    release(conn, opts_.node_id, {key, epoch});
    held_.erase(key);
    ++given;
    if (metrics_) {
      metrics_->shard_moves.Add({{"direction", "out"}}).Increment();
      metrics_->handoff_seconds.Observe(std::chrono::duration<double>(clock::now() - t0).count());
    }
  }

  // Take the free leases of what hashes here.
  auto table = leases(conn);
  std::map<shard_key, const lease_record*> by_key;
  for (const auto& l : table) {
    by_key[{l.kind, l.shard}] = &l;
  }
  bool all_mine_held = !leaving;
  std::vector<shard_key> wanted;
  if (!leaving) {
    for (const auto& k : kinds_) {
      for (int s = 0; s < k.env->shards; ++s) {
        shard_key key{k.env->kind, s};
        if (owner_of(key.kind, s, live) != opts_.node_id || held_.count(key)) {
          continue;
        }
        auto it = by_key.find(key);
        if (it == by_key.end() || !it->second->live || it->second->owner == opts_.node_id) {
          wanted.push_back(key);
        } else {
          all_mine_held = false;  // still held by another node (handing it off, or down until it expires)
        }
      }
    }
  }
  if (!wanted.empty()) {
    const auto sent = clock::now();
    auto taken = acquire(conn, opts_.node_id, wanted, opts_.lease_ttl);
    for (const auto& t : taken) {
      kind(t.key.kind)->env->hold(t.key.shard, t.epoch, sent + opts_.lease_ttl - margin_);
      held_[t.key] = t.epoch;
      if (metrics_) {
        metrics_->shard_moves.Add({{"direction", "in"}}).Increment();
      }
    }
    if (taken.size() < wanted.size()) {
      all_mine_held = false;
    }
    table = leases(conn);  // the routes below use what was just taken
  }
  place_all(table);

  if (metrics_) {
    for (const auto& k : kinds_) {
      int n = 0;
      for (const auto& [key, epoch] : held_) {
        n += key.kind == k.env->kind ? 1 : 0;
      }
      metrics_->shards_owned.Add({{"kind", k.env->kind}}).Set(n);
    }
  }
  {
    std::lock_guard<std::mutex> lock{mutex_};
    held_empty_and_alone_ = leaving && held_.empty() && live.size() <= 1;
    view_.nodes = std::move(members);
    view_.shards_by_node.clear();
    view_.epoch_max = 0;
    for (const auto& l : table) {
      if (l.live) {
        view_.shards_by_node[l.owner][l.kind].push_back(l.shard);
      }
      view_.epoch_max = std::max(view_.epoch_max, l.epoch);
    }
  }
  ready_.store(all_mine_held);
}

void coordinator::place_all(const std::vector<lease_record>& table) {
  std::map<shard_key, const lease_record*> by_key;
  for (const auto& l : table) {
    by_key[{l.kind, l.shard}] = &l;
  }
  std::map<std::string, caf::actor> gateways;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    for (const auto& [id, p] : peers_) {
      gateways[id] = p.gateway;
    }
  }
  for (const auto& k : kinds_) {
    for (int s = 0; s < k.env->shards; ++s) {
      shard_key key{k.env->kind, s};
      placement where = placement::pending;
      caf::actor gw;
      if (held_.count(key)) {
        where = placement::local;
      } else if (auto it = by_key.find(key); it != by_key.end() && it->second->live) {
        if (auto g = gateways.find(it->second->owner); g != gateways.end() && g->second) {
          where = placement::remote;
          gw = g->second;
        }
      }
      caf::anon_send(k.front, place_atom::value, static_cast<std::int32_t>(s), static_cast<std::int8_t>(where), gw);
    }
  }
}

void coordinator::leave(std::chrono::milliseconds deadline) {
  if (!thread_.joinable()) {
    return;
  }
  auto others_live = [this] {
    std::lock_guard<std::mutex> lock{mutex_};
    int n = 0;
    for (const auto& node : view_.nodes) {
      n += node.live && node.id != opts_.node_id ? 1 : 0;
    }
    return n;
  };
  if (others_live() > 0) {
    // Hand everything off and wait until the others hold it (messages that arrive meanwhile wait at the
    // front doors, then go to the new owners). Alone, there is nobody to hand off to: the shards stay
    // until finish() expires them.
    leaving_.store(true);
    wake_.notify_all();
    const auto until = clock::now() + deadline;
    while (clock::now() < until) {
      std::this_thread::sleep_for(opts_.heartbeat / 4);
      std::lock_guard<std::mutex> lock{mutex_};
      std::size_t others = 0;
      for (const auto& [owner, kinds] : view_.shards_by_node) {
        for (const auto& [kind, shards] : kinds) {
          others += owner == opts_.node_id ? 0 : shards.size();
        }
      }
      if (others >= static_cast<std::size_t>(view_.shards_total) || held_empty_and_alone_) {
        break;
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void coordinator::finish() {
  if (finished_.exchange(true)) {
    return;
  }
  {
    std::lock_guard<std::mutex> lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  ready_.store(false);
  if (!joined_) {
    return;
  }
  try {
    if (!conn_) {
      conn_ = open_round_connection();
    }
    cluster::leave(*conn_, opts_.node_id, incarnation_);
  } catch (const std::exception& e) {
    telemetry::log_warn("could not mark the node down; its leases expire by themselves",
                        {{"node_id", opts_.node_id}, {"error", e.what()}});
  }
  conn_.reset();
}

}  // namespace mercato::cluster
