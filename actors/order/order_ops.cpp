#include "actors/order/order_ops.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "actors/order/flow_actor.hpp"
#include "actors/payment/payment_model.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "actors/protocol/type_ids.hpp"

namespace mercato::actors {
namespace {

using protocol::errc;

// Shared steps: refund through the provider and record it at the payment; put units back in stock.
class order_flow : public flow_actor {
 public:
  order_flow(caf::actor_config& cfg, checkout_context ctx, protocol::command_meta meta)
      : flow_actor(cfg, std::move(ctx)), meta_(std::move(meta)) {
    meta_.source = "saga";
    meta_.expected_version = 0;
  }

 protected:
  // Command ids name the operation and stay within the runtime's 64 characters (so they are
  // remembered, and a repeated step is not applied twice).
  protocol::command_meta meta(const std::string& step) const {
    auto m = meta_;
    m.command_id = step.substr(0, 64);
    return m;
  }

  template <class Done>
  void failed(Done& done, const caf::error& e) {
    if (done) {
      auto d = std::move(done);
      d(e);
    }
    quit();
  }

  // Refund `amount` of the payment as `refund_id`: recorded as pending at the payment first (it counts
  // against what can still be refunded, and a crash from here on is finished by housekeeping), then
  // the provider (by key: asked again, it refunds once), then the record.
  void refund(const protocol::payment_view& p, const std::string& refund_id, std::int64_t amount,
              const std::string& reason, const std::string& order_number,
              std::function<void(caf::expected<protocol::payment_view>)> then) {
    if (amount <= 0 || std::find(p.refund_ids.begin(), p.refund_ids.end(), refund_id) != p.refund_ids.end()) {
      then(p);
      return;
    }
    protocol::payment_refund intent;
    intent.meta = meta("refund-intent");
    intent.meta.command_id.clear();  // idempotent by its refund id
    intent.refund_id = refund_id;
    intent.amount = amount;
    intent.reason = reason;
    intent.order_number = order_number;
    intent.intent = true;
    ask<protocol::payment_view>(
        "payment", p.id, std::move(intent),
        [this, refund_id, amount, reason, order_number, then](protocol::payment_view& v) {
          if (std::find(v.refund_ids.begin(), v.refund_ids.end(), refund_id) != v.refund_ids.end()) {
            then(v);  // recorded meanwhile
          } else {
            refund_at_provider(v, refund_id, amount, reason, order_number, then);
          }
        },
        [then](caf::error& e) { then(e); });
  }

  void refund_at_provider(const protocol::payment_view& p, const std::string& refund_id, std::int64_t amount,
                          const std::string& reason, const std::string& order_number,
                          std::function<void(caf::expected<protocol::payment_view>)> then) {
    auto provider = c_.provider;
    const auto key = payment_model::provider_key(p.id, "refund-" + refund_id);
    const auto auth = payment_model::provider_key(p.id, "authorize");
    call_provider([provider, key, auth, amount](payment_provider::callback cb) { provider->refund(key, auth, amount, std::move(cb)); },
                  [this, p, refund_id, amount, reason, order_number, then](std::optional<provider_answer> a) {
                    if (!a) {
                      then(caf::make_error(errc::timeout, "the payment provider did not answer the refund in time"));
                      return;
                    }
                    if (!a->approved) {
                      then(caf::make_error(errc::conflict, "the payment provider refused the refund (" +
                                                               a->decline_code + ")"));
                      return;
                    }
                    crash_point("refund-provider");
                    protocol::payment_refund r;
                    r.meta = meta("refund:" + refund_id);
                    r.refund_id = refund_id;
                    r.amount = amount;
                    r.reason = reason;
                    r.order_number = order_number;
                    ask<protocol::payment_view>("payment", p.id, std::move(r),
                                                [then](protocol::payment_view& v) { then(v); },
                                                [then](caf::error& e) { then(e); });
                  });
  }

  // Records that `operation` starts (order_begin) before its first side effect.
  void begin(const std::string& order_id, const std::string& operation, const std::string& return_id,
             std::function<void(protocol::order_view)> ok, std::function<void(caf::error)> err) {
    protocol::order_begin b;
    b.meta = meta("begin");
    b.meta.command_id.clear();  // idempotent by the order's state
    b.operation = operation;
    b.return_id = return_id;
    ask<protocol::order_view>("order", order_id, std::move(b), [ok](protocol::order_view& v) { ok(v); },
                              [err](caf::error& e) { err(e); });
  }

  // Puts `lines` back in stock (one adjustment per line, by command id: a repeat adds nothing).
  void restock(const std::vector<protocol::order_return_line>& lines, const std::string& why,
               const std::string& id_prefix, std::function<void(caf::error)> then) {
    if (lines.empty()) {
      then({});
      return;
    }
    pending_ = lines.size();
    first_error_ = caf::error{};
    after_restock_ = std::move(then);
    for (const auto& l : lines) {
      protocol::inventory_adjust a;
      a.meta = meta(id_prefix + ":" + l.product_id.substr(0, 24));
      a.delta = l.quantity;
      a.reason = why;
      ask<protocol::inventory_view>("inventory", l.product_id, std::move(a),
                                    [this](protocol::inventory_view&) { restocked_one(); },
                                    [this](caf::error& e) {
                                      if (!first_error_) {
                                        first_error_ = e;
                                      }
                                      restocked_one();
                                    });
    }
  }

  void get_order(const std::string& id, std::function<void(protocol::order_view)> ok,
                 std::function<void(caf::error)> err) {
    protocol::order_get g;
    g.meta = meta("get");
    g.meta.command_id.clear();
    ask<protocol::order_view>("order", id, std::move(g), [ok](protocol::order_view& v) { ok(v); },
                              [err](caf::error& e) { err(e); });
  }

  void get_payment(const std::string& id, std::function<void(protocol::payment_view)> ok,
                   std::function<void(caf::error)> err) {
    protocol::payment_get g;
    g.meta = meta("get");
    g.meta.command_id.clear();
    ask<protocol::payment_view>("payment", id, std::move(g), [ok](protocol::payment_view& v) { ok(v); },
                                [err](caf::error& e) { err(e); });
  }

  protocol::command_meta meta_;

 private:
  void restocked_one() {
    if (--pending_ == 0 && after_restock_) {
      auto k = std::move(after_restock_);
      k(first_error_);
    }
  }

  std::size_t pending_ = 0;
  caf::error first_error_;
  std::function<void(caf::error)> after_restock_;
};

class cancel_flow : public order_flow {
 public:
  cancel_flow(caf::actor_config& cfg, checkout_context ctx, std::string order_id, protocol::command_meta meta,
              order_done done, bool checkout_driven)
      : order_flow(cfg, std::move(ctx), std::move(meta)),
        order_id_(std::move(order_id)),
        done_(std::move(done)),
        checkout_driven_(checkout_driven) {}

 protected:
  void start() override {
    // The cancel is recorded first (order_sagas.step canceling): from here on it finishes even if
    // this node dies, and the checkout saga of a pending order asks nothing more of the provider.
    begin(order_id_, "cancel", {}, [this](protocol::order_view o) { on_order(std::move(o)); },
          [this](caf::error e) { failed(done_, e); });
  }

 private:
  void on_order(protocol::order_view o) {
    crash_point("cancel-begin");
    order_ = std::move(o);
    if (order_.status == "canceled") {
      finish(order_);  // canceled before: the same answer
    } else if (order_.status == "pending_payment") {
      if (checkout_driven_) {
        failed(done_, caf::make_error(errc::timeout, "the order's payment could not be settled yet; the cancel "
                                                     "finishes by itself"));
        return;
      }
      // The checkout saga ends the order (idempotent steps: a saga still running for it does the same):
      // with the cancel recorded before its capture it voids, releases the stock and cancels; if the
      // capture was under way it ends paid, and the cancel goes on as for a paid order.
      protocol::order_create resume;
      resume.meta = meta_;
      resume.meta.command_id.clear();
      auto& sys = system();
      run_checkout(sys, c_, order_id_, std::move(resume),
                   [&sys, ctx = c_, id = order_id_, m = meta_, done = std::move(done_)](
                       caf::expected<protocol::order_view>) mutable {
                     sys.spawn<cancel_flow>(std::move(ctx), std::move(id), std::move(m), std::move(done), true);
                   });
      quit();
    } else if (order_.status == "paid") {
      get_payment(order_.payment_id, [this](protocol::payment_view p) {
        refund(p, "cancel", payment_model::refundable(p), "order canceled", order_.order_number,
               [this](caf::expected<protocol::payment_view> r) {
                 if (!r) {
                   failed(done_, r.error());
                   return;
                 }
                 crash_point("cancel-refund");
                 std::vector<protocol::order_return_line> lines;
                 for (const auto& l : order_.items) {
                   lines.push_back({l.product_id, l.quantity});
                 }
                 refunded_ = r->refunded_amount;
                 payment_status_ = r->status;
                 restock(lines, "order " + order_.order_number + " canceled", "c:" + order_id_.substr(0, 36),
                         [this](caf::error e) {
                   if (e) {
                     failed(done_, e);  // finished later (adjustments by command id: nothing twice)
                   } else {
                     crash_point("cancel-restock");
                     to_canceled(refunded_);
                   }
                 });
               });
      }, [this](caf::error e) { failed(done_, e); });
    } else {
      failed(done_, caf::make_error(errc::invalid_transition, "an order " + order_.status + " cannot be canceled"));
    }
  }

  void to_canceled(std::int64_t refunded) {
    protocol::order_transition t;
    t.meta = meta("cancel:" + order_id_.substr(0, 36));
    t.to = "canceled";
    t.failure_code = "canceled";
    t.refund_amount = refunded - order_.refunded;
    if (!payment_status_.empty()) {
      t.payment_status = payment_status_;
    }
    ask<protocol::order_view>("order", order_id_, std::move(t), [this](protocol::order_view& v) { finish(v); },
                              [this](caf::error& e) { failed(done_, e); });
  }

  void finish(const protocol::order_view& v) {
    if (done_) {
      auto d = std::move(done_);
      d(v);
    }
    quit();
  }

  std::string order_id_;
  order_done done_;
  bool checkout_driven_;
  protocol::order_view order_;
  std::int64_t refunded_ = 0;
  std::string payment_status_;
};

class receive_flow : public order_flow {
 public:
  receive_flow(caf::actor_config& cfg, checkout_context ctx, std::string order_id, std::string return_id,
               protocol::command_meta meta, order_done done)
      : order_flow(cfg, std::move(ctx), std::move(meta)),
        order_id_(std::move(order_id)),
        return_id_(std::move(return_id)),
        done_(std::move(done)) {}

 protected:
  void start() override {
    if (return_id_.empty()) {
      // Resumed by housekeeping: the return whose receipt was recorded as under way.
      get_order(order_id_, [this](protocol::order_view o) {
        if (o.operation != "receive" || o.operation_return_id.empty()) {
          finish(o);
          return;
        }
        return_id_ = o.operation_return_id;
        start();
      }, [this](caf::error e) { failed(done_, e); });
      return;
    }
    // Recorded first (order_sagas.step receiving), so that it finishes even if this node dies.
    begin(order_id_, "receive", return_id_, [this](protocol::order_view o) { on_order(std::move(o)); },
          [this](caf::error e) { failed(done_, e); });
  }

 private:
  void on_order(protocol::order_view o) {
    order_ = std::move(o);
    const protocol::order_return* ret = nullptr;
    for (const auto& r : order_.returns) {
      if (r.id == return_id_) {
        ret = &r;
      }
    }
    if (!ret) {
      failed(done_, caf::make_error(errc::not_found, "no such return"));
      return;
    }
    if (ret->status == "received") {
      finish(order_);
      return;
    }
    if (order_.status != "return_requested") {
      failed(done_, caf::make_error(errc::invalid_transition, "the order is " + order_.status));
      return;
    }
    return_ = *ret;
    amount_ = 0;
    std::int64_t returned_units = 0;
    std::int64_t ordered_units = 0;
    for (const auto& l : order_.items) {
      ordered_units += l.quantity;
      for (const auto& r : return_.items) {
        if (r.product_id == l.product_id) {
          amount_ += l.unit_price * r.quantity;
          returned_units += r.quantity;
        }
      }
    }
    full_ = returned_units >= ordered_units;
    if (full_) {
      amount_ = order_.total - order_.refunded;  // everything back, tax and shipping included
    }
    restock(return_.items, "return of order " + order_.order_number, "r:" + return_id_.substr(0, 36),
            [this](caf::error e) {
      if (e) {
        failed(done_, e);
        return;
      }
      crash_point("receive-restock");
      get_payment(order_.payment_id, [this](protocol::payment_view p) {
        amount_ = std::min(amount_, pending_or_recorded(p) ? amount_ : payment_model::refundable(p));
        refund(p, return_id_, amount_, "return received", order_.order_number,
               [this](caf::expected<protocol::payment_view> r) {
                 if (!r) {
                   failed(done_, r.error());
                   return;
                 }
                 crash_point("receive-refund");
                 protocol::order_transition t;
                 t.meta = meta("receive:" + return_id_.substr(0, 36));
                 t.to = full_ ? "refunded" : "partially_refunded";
                 t.return_request.id = return_id_;
                 t.refund_amount = amount_;
                 t.payment_status = r->status;
                 ask<protocol::order_view>("order", order_id_, std::move(t),
                                           [this](protocol::order_view& v) { finish(v); },
                                           [this](caf::error& e) { failed(done_, e); });
               });
      }, [this](caf::error e) { failed(done_, e); });
    });
  }

  // This return's refund was asked for before (a repeat, or a crash in between): the same amount.
  bool pending_or_recorded(const protocol::payment_view& p) const {
    return std::find(p.refund_ids.begin(), p.refund_ids.end(), return_id_) != p.refund_ids.end() ||
           std::any_of(p.pending_refunds.begin(), p.pending_refunds.end(),
                       [this](const auto& r) { return r.refund_id == return_id_; });
  }

  void finish(const protocol::order_view& v) {
    if (done_) {
      auto d = std::move(done_);
      d(v);
    }
    quit();
  }

  std::string order_id_;
  std::string return_id_;
  order_done done_;
  protocol::order_view order_;
  protocol::order_return return_;
  std::int64_t amount_ = 0;
  bool full_ = false;
};

class refund_flow : public order_flow {
 public:
  refund_flow(caf::actor_config& cfg, checkout_context ctx, std::string payment_id, std::string refund_id,
              std::int64_t amount, std::string reason, protocol::command_meta meta, payment_done done)
      : order_flow(cfg, std::move(ctx), std::move(meta)),
        payment_id_(std::move(payment_id)),
        refund_id_(std::move(refund_id)),
        amount_(amount),
        reason_(std::move(reason)),
        done_(std::move(done)) {}

 protected:
  void start() override {
    get_payment(payment_id_, [this](protocol::payment_view p) {
      if (refund_id_.empty()) {
        finish_pending(p);
        return;
      }
      const bool recorded = std::find(p.refund_ids.begin(), p.refund_ids.end(), refund_id_) != p.refund_ids.end();
      if (recorded) {
        finish(p);
        return;
      }
      const auto pending = std::find_if(p.pending_refunds.begin(), p.pending_refunds.end(),
                                        [this](const auto& r) { return r.refund_id == refund_id_; });
      if (pending != p.pending_refunds.end()) {
        amount_ = pending->amount;  // asked before (the same Idempotency-Key): finish that refund
      } else if (p.status != "captured" && p.status != "partially_refunded") {
        failed(done_, caf::make_error(errc::invalid_transition, "a " + p.status + " payment cannot be refunded"));
        return;
      } else if (amount_ > payment_model::refundable(p)) {
        failed(done_, caf::make_error(errc::conflict, "at most " + std::to_string(payment_model::refundable(p)) +
                                                          " can still be refunded"));
        return;
      }
      refund(p, refund_id_, amount_, reason_, {}, [this](caf::expected<protocol::payment_view> r) {
        if (r) {
          finish(*r);
        } else {
          failed(done_, r.error());
        }
      });
    }, [this](caf::error e) { failed(done_, e); });
  }

 private:
  // Resumed by housekeeping: every refund asked of the provider and not recorded, one after another.
  void finish_pending(const protocol::payment_view& p) {
    if (p.pending_refunds.empty()) {
      finish(p);
      return;
    }
    const auto r = p.pending_refunds.front();
    refund_at_provider(p, r.refund_id, r.amount, r.reason, r.order_number,
                       [this](caf::expected<protocol::payment_view> v) {
                         if (v) {
                           finish_pending(*v);
                         } else {
                           failed(done_, v.error());
                         }
                       });
  }

  void finish(const protocol::payment_view& v) {
    if (done_) {
      auto d = std::move(done_);
      d(v);
    }
    quit();
  }

  std::string payment_id_;
  std::string refund_id_;
  std::int64_t amount_;
  std::string reason_;
  payment_done done_;
};

}  // namespace

void run_cancel(caf::actor_system& sys, checkout_context ctx, std::string order_id, protocol::command_meta meta,
                order_done done) {
  sys.spawn<cancel_flow>(std::move(ctx), std::move(order_id), std::move(meta), std::move(done), false);
}

void run_receive_return(caf::actor_system& sys, checkout_context ctx, std::string order_id, std::string return_id,
                        protocol::command_meta meta, order_done done) {
  sys.spawn<receive_flow>(std::move(ctx), std::move(order_id), std::move(return_id), std::move(meta),
                          std::move(done));
}

void run_refund(caf::actor_system& sys, checkout_context ctx, std::string payment_id, std::string refund_id,
                std::int64_t amount, std::string reason, protocol::command_meta meta, payment_done done) {
  sys.spawn<refund_flow>(std::move(ctx), std::move(payment_id), std::move(refund_id), amount, std::move(reason),
                         std::move(meta), std::move(done));
}

}  // namespace mercato::actors
