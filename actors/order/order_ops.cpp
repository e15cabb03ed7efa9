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

  // Refund `amount` of the payment as `refund_id`: the provider first (by key), then the record.
  void refund(const protocol::payment_view& p, const std::string& refund_id, std::int64_t amount,
              const std::string& reason, const std::string& order_number,
              std::function<void(caf::expected<protocol::payment_view>)> then) {
    if (amount <= 0) {
      then(p);
      return;
    }
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

  void release(const protocol::order_view& o, std::function<void()> then) {
    pending_ = o.items.size();
    after_release_ = std::move(then);
    for (const auto& line : o.items) {
      protocol::inventory_release r;
      r.meta = meta("rel:" + o.id.substr(0, 36) + ":" + line.product_id.substr(0, 20));
      r.reservation_id = o.id;
      ask<protocol::inventory_view>("inventory", line.product_id, std::move(r),
                                    [this](protocol::inventory_view&) { released_one(); },
                                    [this](caf::error&) { released_one(); });
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
  void released_one() {
    if (--pending_ == 0 && after_release_) {
      auto k = std::move(after_release_);
      k();
    }
  }

  std::size_t pending_ = 0;
  caf::error first_error_;
  std::function<void(caf::error)> after_restock_;
  std::function<void()> after_release_;
};

class cancel_flow : public order_flow {
 public:
  cancel_flow(caf::actor_config& cfg, checkout_context ctx, std::string order_id, protocol::command_meta meta,
              order_done done)
      : order_flow(cfg, std::move(ctx), std::move(meta)), order_id_(std::move(order_id)), done_(std::move(done)) {}

 protected:
  void start() override {
    get_order(order_id_, [this](protocol::order_view o) { on_order(std::move(o)); },
              [this](caf::error e) { failed(done_, e); });
  }

 private:
  void on_order(protocol::order_view o) {
    order_ = std::move(o);
    if (order_.status == "canceled") {
      finish(order_);  // canceled before: the same answer
    } else if (order_.status == "pending_payment") {
      // Void whatever authorization there is, then give the stock back.
      auto provider = c_.provider;
      const auto pid = payment_model::id_for_order(order_id_);
      call_provider(
          [provider, pid](payment_provider::callback cb) {
            provider->void_authorization(payment_model::provider_key(pid, "void"),
                                         payment_model::provider_key(pid, "authorize"), std::move(cb));
          },
          [this, pid](std::optional<provider_answer>) {
            protocol::payment_record r;
            r.meta = meta("cancel-void:" + order_id_.substr(0, 36));
            r.outcome = "voided";
            ask<protocol::payment_view>("payment", pid, std::move(r), [this](protocol::payment_view&) { released(); },
                                        [this](caf::error&) { released(); });  // no payment yet: nothing to void
          });
    } else if (order_.status == "paid") {
      get_payment(order_.payment_id, [this](protocol::payment_view p) {
        refund(p, "cancel", p.amount - p.refunded_amount, "order canceled", order_.order_number,
               [this](caf::expected<protocol::payment_view> r) {
                 if (!r) {
                   failed(done_, r.error());
                   return;
                 }
                 std::vector<protocol::order_return_line> lines;
                 for (const auto& l : order_.items) {
                   lines.push_back({l.product_id, l.quantity});
                 }
                 refunded_ = r->refunded_amount;
                 payment_status_ = r->status;
                 restock(lines, "order " + order_.order_number + " canceled", "c:" + order_id_.substr(0, 36),
                         [this](caf::error e) {
                   if (e) {
                     failed(done_, e);  // a repeat of the cancel finishes it (adjustments by command id)
                   } else {
                     to_canceled(refunded_);
                   }
                 });
               });
      }, [this](caf::error e) { failed(done_, e); });
    } else {
      failed(done_, caf::make_error(errc::invalid_transition, "an order " + order_.status + " cannot be canceled"));
    }
  }

  void released() {
    release(order_, [this] { to_canceled(0); });
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
    get_order(order_id_, [this](protocol::order_view o) { on_order(std::move(o)); },
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
      get_payment(order_.payment_id, [this](protocol::payment_view p) {
        amount_ = std::min(amount_, p.amount - p.refunded_amount + (already(p) ? amount_ : 0));
        refund(p, return_id_, amount_, "return received", order_.order_number,
               [this](caf::expected<protocol::payment_view> r) {
                 if (!r) {
                   failed(done_, r.error());
                   return;
                 }
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

  bool already(const protocol::payment_view& p) const {
    return std::find(p.refund_ids.begin(), p.refund_ids.end(), return_id_) != p.refund_ids.end();
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
      const bool recorded = std::find(p.refund_ids.begin(), p.refund_ids.end(), refund_id_) != p.refund_ids.end();
      if (recorded) {
        finish(p);
        return;
      }
      if (p.status != "captured" && p.status != "partially_refunded") {
        failed(done_, caf::make_error(errc::invalid_transition, "a " + p.status + " payment cannot be refunded"));
        return;
      }
      if (amount_ > p.amount - p.refunded_amount) {
        failed(done_, caf::make_error(errc::conflict, "at most " + std::to_string(p.amount - p.refunded_amount) +
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
  sys.spawn<cancel_flow>(std::move(ctx), std::move(order_id), std::move(meta), std::move(done));
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
