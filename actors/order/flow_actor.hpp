#pragma once
// The base of the order flows (the checkout saga, cancellations, refunds, returns): a short-lived
// event-based actor that asks entities through their kind's router (never blocking) and calls the
// payment provider with a timeout, its answer coming back as a message to the actor.

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <caf/all.hpp>

#include "actors/order/checkout_saga.hpp"
#include "actors/payment/payment_provider.hpp"
#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"

namespace mercato::actors {

class flow_actor : public caf::event_based_actor {
 public:
  using prov_reply_atom = caf::atom_constant<caf::atom("prov_rep")>;
  using prov_timeout_atom = caf::atom_constant<caf::atom("prov_to")>;
  using provider_k = std::function<void(std::optional<provider_answer>)>;

  flow_actor(caf::actor_config& cfg, checkout_context ctx) : caf::event_based_actor(cfg), c_(std::move(ctx)) {}

  caf::behavior make_behavior() override {
    start();
    return {
        [this](prov_reply_atom, std::uint64_t call, bool approved, std::string& reference, std::string& decline) {
          if (call == call_ && next_) {
            auto k = std::move(next_);
            k(provider_answer{approved, std::move(reference), std::move(decline)});
          }
        },
        [this](prov_timeout_atom, std::uint64_t call) {
          if (call == call_ && next_) {
            auto k = std::move(next_);
            k(std::nullopt);
          }
        },
    };
  }

 protected:
  virtual void start() = 0;

  static bool is(const caf::error& e, protocol::errc code) {
    return e.category() == caf::atom("mercato") && e.code() == static_cast<std::uint8_t>(code);
  }

  template <class Reply, class Command, class OnOk, class OnError>
  void ask(std::string_view kind, const std::string& id, Command cmd, OnOk ok, OnError err) {
    request(c_.routers(kind), c_.settings.step_timeout, protocol::to_entity_atom::value, id,
            caf::make_message(std::move(cmd)))
        .then([ok](Reply& r) mutable { ok(r); }, [err](caf::error& e) mutable { err(e); });
  }

  // `call` starts the provider call with the callback it is given; `next` gets the answer, or nullopt
  // when none came within the provider timeout (a late answer is ignored).
  void call_provider(std::function<void(payment_provider::callback)> call, provider_k next) {
    const auto id = ++call_;
    next_ = std::move(next);
    auto me = caf::actor_cast<caf::actor>(this);
    call([me, id](provider_answer a) {
      caf::anon_send(me, prov_reply_atom::value, id, a.approved, std::move(a.reference), std::move(a.decline_code));
    });
    delayed_send(this, c_.settings.provider_timeout, prov_timeout_atom::value, id);
  }

  // Fault injection (checkout_settings::crash_after, off by default): dies like kill -9 right after
  // `step` is committed, for the crash tests.
  void crash_point(const char* step) const {
    if (c_.settings.crash_after == step) {
      std::raise(SIGKILL);
    }
  }

  checkout_context c_;

 private:
  std::uint64_t call_ = 0;
  provider_k next_;
};

}  // namespace mercato::actors
