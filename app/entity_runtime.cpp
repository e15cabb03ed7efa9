#include "app/entity_runtime.hpp"

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "actors/cart/cart_model.hpp"
#include "actors/inventory/inventory_model.hpp"
#include "actors/order/order_model.hpp"
#include "actors/payment/payment_model.hpp"
#include "actors/protocol/protocol.hpp"
#include "cluster/cluster_metrics.hpp"
#include "cluster/gateway.hpp"
#include "cluster/messages.hpp"
#include "cluster/openssl_errors.hpp"
#include "telemetry/logging.hpp"
#include "persistence/pg_pool.hpp"
#include "supervisors/entity.hpp"
#include "supervisors/entity_router.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::app {

namespace {

// caf_openssl loads the PEM files for every connection and throws from its I/O loop when one is bad:
// load them once here, so a bad file stops the node at start-up with a readable reason.
void check_tls_files(const cluster::coordinator_options& c) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_method()), SSL_CTX_free};
  auto fail = [](const std::string& what) {
    char reason[256] = {};
    ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
    ERR_clear_error();
    throw std::invalid_argument("cluster TLS: " + what + " (" + reason + ")");
  };
  if (!ctx) {
    fail("cannot create an OpenSSL context");
  }
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.tls_certificate.c_str()) != 1) {
    fail("cannot load the certificate " + c.tls_certificate);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail("cannot load the private key " + c.tls_key);
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    fail("the private key " + c.tls_key + " does not belong to the certificate " + c.tls_certificate);
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), c.tls_ca.c_str(), nullptr) != 1) {
    fail("cannot load the CA " + c.tls_ca);
  }
}

}  // namespace

struct entity_runtime::impl {
  struct kind_slot {
    std::shared_ptr<supervisors::entity_env> env;
    caf::actor router;  // this node's entities of the kind
    caf::actor front;   // where every command for the kind enters: routes it to its shard's owner
  };

  impl(entity_runtime_options o, persistence::pg_pool& pool, telemetry::metrics* m)
      : opts(std::move(o)), metrics(m) {
    // spdlog's default logger comes into being on first use; make that happen here, before the writer,
    // dispatcher and coordinator threads log (two first uses at once are a race TSan reports: Debian's
    // spdlog is not instrumented, so it cannot see the construction's synchronisation).
    (void)spdlog::default_logger_raw();
    if (opts.dispatch_outbox) {
      auto oo = opts.outbox;
      oo.dsn = opts.dsn;
      dispatcher = std::make_unique<persistence::outbox_dispatcher>(std::move(oo), metrics);
    }
    auto wo = opts.writer;
    wo.dsn = opts.dsn;
    wo.node_id = opts.node_id;
    if (dispatcher) {
      wo.on_events_committed = [d = dispatcher.get(), next = std::move(wo.on_events_committed)] {
        d->notify();
        if (next) {
          next();
        }
      };
    }
    writer = std::make_unique<persistence::snapshot_writer>(std::move(wo), metrics);
    protocol::register_protocol(caf_config);
    cluster::register_types(caf_config);
    caf_config.load<caf::io::middleman>();
    if (opts.cluster.tls()) {
      // Certificates on both sides, verified against the cluster's CA (CAF-0.17-NOTES: without them
      // caf_openssl would fall back to an anonymous cipher with no peer verification).
      if (opts.cluster.tls_key.empty() || opts.cluster.tls_ca.empty()) {
        throw std::invalid_argument("cluster TLS needs a certificate, a key and a CA");
      }
      check_tls_files(opts.cluster);
      if (!cluster::openssl_error_queue_cleared_per_call()) {
        throw std::runtime_error("cluster TLS: this program does not wrap libssl's I/O calls (cluster/openssl_errors.hpp); "
                                 "a failed TLS peer would take healthy connections down");
      }
      caf_config.load<caf::openssl::manager>();
      caf_config.openssl_certificate = opts.cluster.tls_certificate;
      caf_config.openssl_key = opts.cluster.tls_key;
      caf_config.openssl_cafile = opts.cluster.tls_ca;
    }
    // Heartbeats between nodes, so a frozen peer's connection is noticed (CAF's default is off).
    caf_config.set("middleman.heartbeat-interval", caf::timespan{opts.cluster.heartbeat});
    caf_config.set("middleman.connection-timeout", caf::timespan{opts.cluster.node_timeout});
    if (opts.scheduler_threads > 0) {
      caf_config.set("scheduler.max-threads", opts.scheduler_threads);
    }
    caf_config.set("work-stealing.moderate-sleep-duration", caf::timespan{opts.scheduler_poll_sleep});
    system = std::make_unique<caf::actor_system>(caf_config);
    if (metrics) {
      cluster_stats = std::make_unique<cluster::cluster_metrics>(metrics->registry());
    }
    const int hosts = opts.hosts_per_kind > 0 ? opts.hosts_per_kind
                                              : static_cast<int>(system->scheduler().num_workers());
    add_kind(actors::cart_model::kind, supervisors::spawner_for<actors::cart_model>(), pool, hosts);
    add_kind(actors::inventory_model::kind, supervisors::spawner_for<actors::inventory_model>(), pool, hosts);
    add_kind(actors::order_model::kind, supervisors::spawner_for<actors::order_model>(), pool, hosts);
    add_kind(actors::payment_model::kind, supervisors::spawner_for<actors::payment_model>(), pool, hosts);
  }

  void add_kind(const char* kind, supervisors::entity_spawner spawn, persistence::pg_pool& pool, int hosts) {
    auto env = std::make_shared<supervisors::entity_env>(opts.shards);
    env->kind = kind;
    env->pool = &pool;
    env->writer = writer.get();
    env->metrics = metrics;
    env->limits = opts.limits;
    // The node's caps on parked states, per kind, are shared by the kind's hosts (ids spread evenly).
    const auto n = static_cast<std::size_t>(std::max(hosts, 1));
    if (opts.limits.max_parked > 0) {
      env->limits.max_parked = std::max<std::size_t>(1, (opts.limits.max_parked + n - 1) / n);
    }
    if (opts.limits.max_parked_bytes > 0) {
      env->limits.max_parked_bytes = std::max<std::size_t>(1, (opts.limits.max_parked_bytes + n - 1) / n);
    }
    if (metrics) {
      // Create the kind's series now, so dashboards see zeros rather than nothing.
      metrics->entities_active(kind);
      metrics->entities_parked(kind);
      metrics->entities_parked_bytes(kind);
      metrics->entity_activations(kind);
      metrics->entity_passivations(kind);
      metrics->entity_restarts(kind);
      metrics->entity_poison_dropped(kind);
    }
    auto router = system->spawn(supervisors::entity_router, std::shared_ptr<const supervisors::entity_env>(env),
                                std::move(spawn), hosts);
    // Nothing can reach the router but through the front, which is not handed out before the
    // constructor returns: the entities see env->front set.
    auto front = system->spawn(cluster::shard_front, std::shared_ptr<const supervisors::entity_env>(env), router,
                               opts.front, cluster_stats.get());
    env->front = front.address();
    kinds.push_back({std::move(env), std::move(router), std::move(front)});
  }

  const kind_slot& slot(std::string_view kind) const {
    for (const auto& k : kinds) {
      if (k.env->kind == kind) {
        return k;
      }
    }
    throw std::invalid_argument("no entity kind " + std::string(kind));
  }

  entity_runtime_options opts;
  telemetry::metrics* metrics;
  std::unique_ptr<persistence::outbox_dispatcher> dispatcher;  // outlives the writer that wakes it
  std::unique_ptr<persistence::snapshot_writer> writer;
  caf::actor_system_config caf_config;
  std::unique_ptr<caf::actor_system> system;
  std::vector<kind_slot> kinds;
  std::unique_ptr<cluster::cluster_metrics> cluster_stats;
  caf::actor gateway;
  std::uint16_t gateway_port = 0;
  std::unique_ptr<cluster::coordinator> members;
  bool stopped = false;
};

entity_runtime::entity_runtime(entity_runtime_options opts, persistence::pg_pool& pool, telemetry::metrics* metrics)
    : impl_(std::make_unique<impl>(std::move(opts), pool, metrics)) {}

entity_runtime::~entity_runtime() { stop(); }

void entity_runtime::subscribe(std::string name, persistence::outbox_dispatcher::handler fn,
                               persistence::outbox_filter filter) {
  if (impl_->dispatcher) {
    impl_->dispatcher->subscribe(std::move(name), std::move(fn), std::move(filter));
  }
}

void entity_runtime::start_outbox() {
  if (impl_->dispatcher) {
    impl_->dispatcher->start();
  }
}

void entity_runtime::start_cluster() {
  auto& im = *impl_;
  if (im.members) {
    return;
  }
  auto hooks = std::make_shared<cluster::gateway_hooks>();
  hooks->front_of = [&im](std::string_view kind) {
    for (const auto& k : im.kinds) {
      if (k.env->kind == kind) {
        return k.front;
      }
    }
    return caf::actor{};
  };
  hooks->on_relayed = im.opts.on_relayed;
  // Introductions can arrive as soon as the gateway is published, before the coordinator exists.
  struct introduction_slot {
    std::mutex mutex;
    std::function<void(const std::string&, caf::actor)> to;
  };
  auto introductions = std::make_shared<introduction_slot>();
  hooks->on_hello = [introductions](const std::string& node_id, caf::actor peer_gateway) {
    std::lock_guard<std::mutex> lock{introductions->mutex};
    if (introductions->to) {
      introductions->to(node_id, std::move(peer_gateway));
    }
  };
  im.gateway = im.system->spawn(cluster::gateway, std::shared_ptr<const cluster::gateway_hooks>(hooks));
  auto co = im.opts.cluster;
  auto port = co.tls() ? caf::openssl::publish(im.gateway, co.port, co.host.c_str(), true)
                       : im.system->middleman().publish(im.gateway, co.port, co.host.c_str(), true);
  if (!port) {
    throw std::runtime_error("cannot publish the cluster gateway on " + co.host + ":" + std::to_string(co.port) +
                             ": " + im.system->render(port.error()));
  }
  im.gateway_port = *port;
  co.port = *port;
  co.dsn = im.opts.dsn;
  co.node_id = im.opts.node_id;
  co.gateway = im.gateway;
  std::vector<cluster::kind_binding> bindings;
  for (const auto& k : im.kinds) {
    bindings.push_back({k.env, k.front});
  }
  im.members = std::make_unique<cluster::coordinator>(std::move(co), *im.system, std::move(bindings),
                                                      im.cluster_stats.get());
  {
    std::lock_guard<std::mutex> lock{introductions->mutex};
    introductions->to = im.members->introductions();
  }
  im.members->start();
}

bool entity_runtime::await_leases(std::chrono::milliseconds timeout) {
  return impl_->members && impl_->members->await_ready(timeout);
}

bool entity_runtime::leases_held() const { return impl_->members && impl_->members->ready(); }

std::uint16_t entity_runtime::cluster_port() const { return impl_->gateway_port; }

cluster::coordinator* entity_runtime::coordinator() { return impl_->members.get(); }

void entity_runtime::relay(const std::vector<persistence::outbox_event>& events) {
  if (!impl_->members || events.empty()) {
    return;
  }
  for (auto& gw : impl_->members->peer_gateways()) {
    caf::anon_send(gw, cluster::relay_atom::value, events);
  }
}

caf::actor entity_runtime::router(std::string_view kind) const { return impl_->slot(kind).front; }

const supervisors::entity_env& entity_runtime::env(std::string_view kind) const { return *impl_->slot(kind).env; }

caf::actor_system& entity_runtime::system() { return *impl_->system; }

persistence::snapshot_writer& entity_runtime::writer() { return *impl_->writer; }

void entity_runtime::stop() {
  if (!impl_ || impl_->stopped) {
    return;
  }
  impl_->stopped = true;
  // The other nodes take this node's shards first (its entities flush and stop, their messages wait
  // at the front doors and then go to the new owners).
  if (impl_->members) {
    impl_->members->leave(std::chrono::seconds(10));
  }
  // Fronts and routers next (hosts and entities follow, answering what they hold), then the writer
  // drains what the entities handed it.
  for (auto& k : impl_->kinds) {
    caf::anon_send_exit(k.front, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(k.router, caf::exit_reason::user_shutdown);
    k.router = caf::actor{};
    k.front = caf::actor{};
  }
  if (impl_->gateway) {
    caf::anon_send_exit(impl_->gateway, caf::exit_reason::user_shutdown);
    impl_->gateway = caf::actor{};
  }
  impl_->system->await_all_actors_done();
  impl_->writer->stop();
  if (impl_->dispatcher) {
    impl_->dispatcher->stop();
  }
  if (impl_->members) {
    impl_->members->finish();
  }
}

}  // namespace mercato::app
