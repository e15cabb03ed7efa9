#include "http/entity_bridge.hpp"

#include <algorithm>
#include <deque>
#include <utility>

#include <caf/scheduler/abstract_coordinator.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/protocol/errors.hpp"
#include "http/problem.hpp"
#include "persistence/uuid.hpp"
#include "security/jwt.hpp"

namespace mercato::http {
namespace {

std::string detail_of(const caf::error& err) {
  if (err.context().match_elements<std::string>()) {
    return err.context().get_as<std::string>(0);
  }
  return {};
}

// A 503 with Retry-After; `retry_safe` tells the client that retrying the same request is safe.
response unavailable(std::string code, std::string detail, bool retry_safe, int retry_after_s = 1) {
  problem p = service_unavailable(std::move(code), std::move(detail));
  p.retry_safe = retry_safe;
  auto r = response::from(p);
  r.with_header("Retry-After", std::to_string(retry_after_s));
  return r;
}

using sweep_atom = caf::atom_constant<caf::atom("b_sweep")>;

// A bridge actor's jobs in start order, each with its deadline (start + the bridge's timeout), so the
// front is the next to expire. One timer at a time, set for the front's deadline.
struct bridge_state {
  std::deque<std::pair<std::chrono::steady_clock::time_point, bridge_job_ptr>> jobs;
  bool timer_set = false;
};

caf::behavior bridge_actor(caf::stateful_actor<bridge_state>* self, std::chrono::milliseconds timeout) {
  auto arm = [self] {
    auto& st = self->state;
    if (st.timer_set || st.jobs.empty()) {
      return;
    }
    st.timer_set = true;
    const auto wait = st.jobs.front().first - std::chrono::steady_clock::now();
    self->delayed_send(self, std::max<std::chrono::steady_clock::duration>(wait, std::chrono::milliseconds(1)),
                       sweep_atom::value);
  };
  return {
      [self, timeout, arm](const bridge_job_ptr& job) {
        auto& jobs = self->state.jobs;
        while (!jobs.empty() && jobs.front().second->ended()) {
          jobs.pop_front();  // answered: most jobs leave here, in about the order they came
        }
        job->start(self);
        jobs.emplace_back(std::chrono::steady_clock::now() + timeout, job);
        arm();
      },
      [self, arm](sweep_atom) {
        auto& st = self->state;
        st.timer_set = false;
        const auto now = std::chrono::steady_clock::now();
        while (!st.jobs.empty() && (st.jobs.front().second->ended() || st.jobs.front().first <= now)) {
          auto job = std::move(st.jobs.front().second);
          st.jobs.pop_front();
          job->expire();  // nothing if it has ended
        }
        arm();
      },
  };
}

}  // namespace

entity_bridge::entity_bridge(caf::actor_system& system, router_lookup routers, std::chrono::milliseconds timeout,
                             std::size_t actors)
    : system_(system), routers_(std::move(routers)), timeout_(timeout) {
  if (actors == 0) {
    actors = 2 * std::max<std::size_t>(1, system.scheduler().num_workers());
  }
  actors_.reserve(actors);
  for (std::size_t i = 0; i < actors; ++i) {
    actors_.push_back(system_.spawn(bridge_actor, timeout_));
  }
}

entity_bridge::~entity_bridge() { stop(); }

void entity_bridge::stop() {
  if (stopped_.exchange(true)) {
    return;
  }
  for (const auto& a : actors_) {
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
}

void entity_bridge::submit(bridge_job_ptr job) const {
  if (stopped_.load(std::memory_order_relaxed)) {
    return;  // stopped: no request is taken any more
  }
  const auto i = next_.fetch_add(1, std::memory_order_relaxed) % actors_.size();
  caf::anon_send(actors_[i], std::move(job));
}

std::string new_uuid() { return persistence::time_ordered_uuid(); }

protocol::command_meta command_meta_for(const request_context& ctx, std::string_view operation,
                                        const std::string& resource_id) {
  protocol::command_meta m;
  m.request_id = ctx.request_id;
  m.trace_id = ctx.trace_id;
  if (ctx.caller) {
    m.user_id = ctx.caller->user_id;
    m.admin = ctx.caller->is_admin();
  }
  const auto token = ctx.header("X-Cart-Token");
  if (!token.empty()) {
    m.credential_hash = security::sha256_hex(token);
  }
  const auto key = ctx.header("Idempotency-Key");
  if (!key.empty()) {
    m.command_id = security::sha256_hex(std::string(operation) + '\n' + resource_id + '\n' + m.user_id + '\n' +
                                        m.credential_hash + '\n' + std::string(key));
  } else {
    m.command_id = new_uuid();
  }
  return m;
}

response response_for(const caf::error& err) {
  using protocol::errc;
  if (err.category() == caf::atom("mercato")) {
    const auto detail = detail_of(err);
    switch (static_cast<errc>(err.code())) {
      case errc::not_found: return response::from(not_found(detail.empty() ? "no such resource" : detail));
      case errc::invalid: return response::from(invalid_request(detail));
      case errc::conflict: {
        problem p{409, "conflict", "Conflict", detail, {}};
        return response::from(p);
      }
      case errc::insufficient_stock: {
        problem p{409, "insufficient_stock", "Insufficient stock", detail, {}};
        return response::from(p);
      }
      case errc::precondition_failed:
        return response::from(detail.empty() ? precondition_failed() : precondition_failed(detail));
      case errc::invalid_transition: {
        problem p{409, "invalid_transition", "Invalid transition", detail, {}};
        return response::from(p);
      }
      case errc::overloaded:
        return unavailable("overloaded", "the server is busy; retry shortly", true);
      case errc::unavailable:
        return unavailable("service_unavailable", detail.empty() ? "the change could not be stored" : detail, true);
      case errc::fenced:
        return unavailable("entity_moved", "the entity is being taken over by another node; retry", true);
      case errc::outcome_unknown:
        return unavailable("outcome_unknown",
                           "the change may or may not have been stored; retry with the same Idempotency-Key", true);
      case errc::entity_restarting:
        return unavailable("entity_restarting", "the entity is restarting; retry with the same Idempotency-Key", true);
      case errc::shutting_down:
        return unavailable("shutting_down", "the node is stopping; retry", true, 2);
      case errc::timeout:
        return unavailable("timeout", "no answer in time; retry with the same Idempotency-Key", true);
      case errc::entity_failed:
      case errc::crashed:
      case errc::restart_limit:
        return response::from(internal_error("the request could not be processed"));
    }
  }
  if (err == caf::sec::request_timeout) {
    return unavailable("timeout", "no answer in time; retry with the same Idempotency-Key", true);
  }
  if (err == caf::sec::request_receiver_down) {
    return unavailable("entity_restarting", "the entity is restarting; retry with the same Idempotency-Key", true);
  }
  return response::from(internal_error("the request could not be processed"));
}

}  // namespace mercato::http
