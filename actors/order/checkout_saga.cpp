#include "actors/order/checkout_saga.hpp"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <caf/all.hpp>

#include "actors/order/flow_actor.hpp"
#include "actors/payment/payment_model.hpp"
#include "actors/protocol/atoms.hpp"
#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "actors/protocol/type_ids.hpp"

namespace mercato::actors {
namespace {

using protocol::errc;

class saga : public flow_actor {
 public:
  saga(caf::actor_config& cfg, checkout_context ctx, std::string order_id, protocol::order_create create,
       checkout_done done)
      : flow_actor(cfg, std::move(ctx)),
        order_id_(std::move(order_id)),
        create_(std::move(create)),
        done_(std::move(done)) {}

 private:

  // The meta of every command the saga sends: the request's identity, source "saga" (the order and
  // payment entities admit it), and a command id per step so a repeated step is recognised.
  protocol::command_meta meta(const std::string& step) const {
    auto m = create_.meta;
    m.source = "saga";
    m.command_id = order_id_.substr(0, 36) + ":" + step;
    m.expected_version = 0;
    return m;
  }
  // A per-line step's meta: its command id stays within the runtime's 64 characters.
  protocol::command_meta line_meta(const std::string& step, const std::string& product) const {
    auto m = meta(step);
    m.command_id = step.substr(0, 3) + ":" + order_id_.substr(0, 36) + ":" + product.substr(0, 20);
    return m;
  }

  void finish(caf::expected<protocol::order_view> r) {
    if (done_) {
      auto d = std::move(done_);
      d(std::move(r));
    }
    quit();
  }
  void fail(const caf::error& e) { finish(e); }

  void start() override {
    protocol::order_create cmd = create_;
    cmd.meta = meta("create");
    ask<protocol::order_view>("order", order_id_, std::move(cmd), [this](protocol::order_view& v) { on_order(v); },
                              [this](caf::error& e) { fail(e); });
  }

  void on_order(const protocol::order_view& v) {
    order_ = v;
    if (v.status == "reserving") {
      crash_point("create");
    } else if (v.status == "paid") {
      crash_point("paid");
    }
    if (v.status == "reserving") {
      reserve_all();
    } else if (v.status == "pending_payment") {
      pay();
    } else if (v.status == "paid") {
      clear_cart();
    } else {
      finish(v);  // failed, canceled (or later states): the checkout ended before
    }
  }

  void transition(const std::string& to, std::string code = {}, std::string detail = {}) {
    protocol::order_transition t;
    t.meta = meta("to-" + to);
    t.to = to;
    t.failure_code = std::move(code);
    t.failure_detail = std::move(detail);
    t.payment_id = payment_.id;
    t.payment_status = payment_.status;
    ask<protocol::order_view>("order", order_id_, std::move(t), [this](protocol::order_view& v) { on_order(v); },
                              [this](caf::error& e) { fail(e); });
  }

  // --- stock ---------------------------------------------------------------------------------
  void reserve_all() {
    pending_ = order_.items.size();
    short_ = boost::json::array{};
    transient_ = caf::error{};
    for (const auto& line : order_.items) {
      protocol::inventory_reserve r;
      r.meta = line_meta("reserve", line.product_id);
      r.reservation_id = order_id_;
      r.quantity = line.quantity;
      r.ttl_ms = c_.settings.reservation_ttl.count();
      const auto product = line.product_id;
      const auto wanted = line.quantity;
      ask<protocol::inventory_view>(
          "inventory", product, std::move(r), [this](protocol::inventory_view&) { reserved_one(); },
          [this, product, wanted](caf::error& e) {
            // conflict: the reservation of this order expired or was released meanwhile (a checkout
            // resumed late): its stock is gone as far as this order is concerned.
            if (is(e, errc::insufficient_stock) || is(e, errc::not_found) || is(e, errc::conflict)) {
              note_short(product, wanted);
            } else {
              transient_ = e;
              reserved_one();
            }
          });
    }
  }

  // A short line: how many are available now, for the client's list.
  void note_short(const std::string& product, std::int32_t wanted) {
    protocol::inventory_get g;
    g.meta = meta("stock");
    ask<protocol::inventory_view>(
        "inventory", product, std::move(g),
        [this, product, wanted](protocol::inventory_view& v) {
          short_.push_back(boost::json::object{{"product_id", product}, {"requested", wanted}, {"available", v.available}});
          reserved_one();
        },
        [this, product, wanted](caf::error&) {
          short_.push_back(boost::json::object{{"product_id", product}, {"requested", wanted}, {"available", 0}});
          reserved_one();
        });
  }

  void reserved_one() {
    if (--pending_ > 0) {
      return;
    }
    if (!short_.empty()) {
      // All or nothing: give back what was reserved, then the order fails (it never was one).
      release_all([this] { transition("failed", "insufficient_stock", boost::json::serialize(short_)); });
    } else if (transient_) {
      fail(transient_);  // left reserving: a retry (or the recovery) continues from here
    } else {
      crash_point("reserve");
      transition("pending_payment");
    }
  }

  void release_all(std::function<void()> then) {
    pending_ = order_.items.size();
    after_release_ = std::move(then);
    for (const auto& line : order_.items) {
      protocol::inventory_release r;
      r.meta = line_meta("release", line.product_id);
      r.reservation_id = order_id_;
      ask<protocol::inventory_view>("inventory", line.product_id, std::move(r),
                                    [this](protocol::inventory_view&) { released_one(); },
                                    [this](caf::error&) { released_one(); });
    }
  }

  void released_one() {
    if (--pending_ == 0 && after_release_) {
      auto k = std::move(after_release_);
      k();
    }
  }

  void commit_all() {
    pending_ = order_.items.size();
    transient_ = caf::error{};
    for (const auto& line : order_.items) {
      protocol::inventory_commit r;
      r.meta = line_meta("commit", line.product_id);
      r.reservation_id = order_id_;
      ask<protocol::inventory_view>("inventory", line.product_id, std::move(r),
                                    [this](protocol::inventory_view&) { committed_one(); },
                                    [this](caf::error& e) {
                                      transient_ = e;
                                      committed_one();
                                    });
    }
  }

  void committed_one() {
    if (--pending_ > 0) {
      return;
    }
    if (transient_) {
      fail(transient_);  // paid but not committed: a retry commits (the reservations still hold the units)
      return;
    }
    crash_point("commit");
    transition("paid");
  }

  // --- payment -------------------------------------------------------------------------------
  void pay() {
    protocol::payment_create p;
    p.meta = meta("payment");
    p.order_id = order_id_;
    p.customer_id = order_.customer_id;
    p.amount = order_.total;
    p.currency = order_.currency;
    p.provider = c_.provider->name();
    p.token = order_.payment_token;
    ask<protocol::payment_view>("payment", payment_model::id_for_order(order_id_), std::move(p),
                                [this](protocol::payment_view& v) { on_payment(v); },
                                [this](caf::error& e) { fail(e); });
  }

  void on_payment(const protocol::payment_view& p) {
    payment_ = p;
    if (p.status == "pending") {
      // A cancel recorded meanwhile closes the gate: nothing is asked of the provider.
      gate("authorize", [this] { authorize(); }, [this] { record("failed", {}, "canceled"); });
    } else if (p.status == "authorized") {
      crash_point("authorize");
      gate("capture", [this] { capture(); }, [this] { void_then_fail("canceled"); });
    } else if (p.status == "captured") {
      crash_point("capture");
      commit_all();
    } else {
      // failed or voided: the stock goes back and the order is canceled.
      const auto code = p.failure_code == "timeout"    ? "payment_timeout"
                        : p.failure_code == "canceled" ? "canceled"
                                                       : "payment_declined";
      release_all([this, code, detail = p.failure_code] { transition("canceled", code, detail); });
    }
  }

  // Asks the order whether the payment may go on (order_begin "authorize" / "capture"): a cancel
  // recorded before closes it; once "capture" passed, a cancel waits for the order to be paid.
  void gate(const char* step, std::function<void()> open, std::function<void()> closed) {
    protocol::order_begin b;
    b.meta = meta(std::string("gate-") + step);
    b.meta.command_id.clear();  // asked each time, not remembered
    b.operation = step;
    ask<protocol::order_view>("order", order_id_, std::move(b), [open](protocol::order_view&) { open(); },
                              [this, closed](caf::error& e) {
                                if (is(e, errc::invalid_transition)) {
                                  closed();
                                } else {
                                  fail(e);
                                }
                              });
  }

  void record(const std::string& outcome, std::string reference, std::string failure) {
    protocol::payment_record r;
    r.meta = meta("pay-" + outcome);
    r.outcome = outcome;
    r.provider_reference = std::move(reference);
    r.failure_code = std::move(failure);
    ask<protocol::payment_view>("payment", payment_.id, std::move(r),
                                [this](protocol::payment_view& v) { on_payment(v); },
                                [this, outcome](caf::error& e) {
                                  if (is(e, errc::invalid_transition)) {
                                    moved_on(outcome);
                                  } else {
                                    fail(e);
                                  }
                                });
  }

  // The payment moved on while the provider was asked (a cancel's saga recorded it failed): go on from
  // where it is; an authorization the books no longer want is voided first (never left to be captured).
  void moved_on(const std::string& outcome) {
    protocol::payment_get g;
    g.meta = meta("pay-read");
    g.meta.command_id.clear();
    ask<protocol::payment_view>("payment", payment_.id, std::move(g),
                                [this, outcome](protocol::payment_view& p) {
                                  if (outcome != "authorized" || (p.status != "failed" && p.status != "voided")) {
                                    on_payment(p);
                                    return;
                                  }
                                  auto provider = c_.provider;
                                  call_provider(
                                      [provider, k = key("void"), auth = key("authorize")](payment_provider::callback cb) {
                                        provider->void_authorization(k, auth, std::move(cb));
                                      },
                                      [this, p](std::optional<provider_answer>) { on_payment(p); });
                                },
                                [this](caf::error& e) { fail(e); });
  }

  std::string key(const std::string& op) const { return payment_model::provider_key(payment_.id, op); }

  void authorize() {
    const auto amount = payment_.amount;
    const auto currency = payment_.currency;
    const auto token = payment_.token;
    auto provider = c_.provider;
    call_provider(
        [provider, k = key("authorize"), amount, currency, token](payment_provider::callback cb) {
          provider->authorize(k, amount, currency, token, std::move(cb));
        },
        [this](std::optional<provider_answer> a) {
          if (!a) {
            void_then_fail("timeout");
          } else if (a->approved) {
            record("authorized", a->reference, {});
          } else {
            record("failed", {}, a->decline_code.empty() ? "card_declined" : a->decline_code);
          }
        });
  }

  void capture() {
    auto provider = c_.provider;
    call_provider(
        [provider, k = key("capture"), auth = key("authorize"), amount = payment_.amount](payment_provider::callback cb) {
          provider->capture(k, auth, amount, std::move(cb));
        },
        [this](std::optional<provider_answer> a) {
          if (!a) {
            // Whether the capture happened is unknown: leave the payment authorized; repeating the
            // checkout captures with the same key (charged once either way).
            fail(caf::make_error(errc::timeout, "the payment provider did not answer the capture in time"));
          } else if (a->approved) {
            record("captured", {}, {});
          } else {
            void_then_fail(a->decline_code.empty() ? "capture_declined" : a->decline_code);
          }
        });
  }

  // No answer or no capture: the authorization is voided (whatever became of it), then the payment fails.
  void void_then_fail(std::string code) {
    auto provider = c_.provider;
    call_provider(
        [provider, k = key("void"), auth = key("authorize")](payment_provider::callback cb) {
          provider->void_authorization(k, auth, std::move(cb));
        },
        [this, code](std::optional<provider_answer>) { record("failed", {}, code); });
  }

  // --- cart ----------------------------------------------------------------------------------
  void clear_cart() {
    if (order_.cart_id.empty()) {
      finish(order_);
      return;
    }
    protocol::cart_checked_out c;
    c.meta = meta("cart");
    c.meta.source = "saga";
    c.meta.user_id = order_.customer_id;  // the cart admits its owner
    c.order_id = order_id_;
    for (const auto& l : order_.items) {
      protocol::cart_line line;
      line.product_id = l.product_id;
      line.quantity = l.quantity;
      c.ordered.push_back(std::move(line));
    }
    ask<protocol::cart_view>("cart", order_.cart_id, std::move(c),
                             [this](protocol::cart_view&) { finish(order_); },
                             [this](caf::error&) { finish(order_); });  // the order stands either way
  }

  std::string order_id_;
  protocol::order_create create_;
  checkout_done done_;
  protocol::order_view order_;
  protocol::payment_view payment_;
  std::size_t pending_ = 0;
  boost::json::array short_;
  caf::error transient_;
  std::function<void()> after_release_;
};

}  // namespace

void run_checkout(caf::actor_system& sys, checkout_context ctx, std::string order_id, protocol::order_create create,
                  checkout_done done) {
  sys.spawn<saga>(std::move(ctx), std::move(order_id), std::move(create), std::move(done));
}

}  // namespace mercato::actors
