// A cancel racing the checkout's payment, through the entity runtime on a real PostgreSQL, with a
// payment provider the test holds in the middle of a call: the order entity decides who wins. A cancel
// recorded while the capture is already at the provider lets the checkout end paid and then refunds it
// in full (the money never stays captured on a canceled order); a cancel recorded while the
// authorization is at the provider closes the capture gate, so nothing is captured, the authorization
// is voided and the order ends canceled. Either way the stock comes back and nothing is left reserved.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "actors/order/checkout_saga.hpp"
#include "actors/order/order_ops.hpp"
#include "actors/payment/payment_provider.hpp"
#include "persistence/inventory_seed.hpp"
#include "support/cart_runtime.hpp"

using namespace mercato;
using namespace mercato::test;
using namespace std::chrono_literals;

namespace {

// Approves everything, idempotently by key, and holds the first call of one operation until released.
class held_provider : public actors::payment_provider {
 public:
  explicit held_provider(std::string hold) : hold_(std::move(hold)) {}

  std::string name() const override { return "held"; }
  void authorize(const std::string& key, std::int64_t, const std::string&, const std::string&, callback done) override {
    call("authorize", key, std::move(done));
  }
  void capture(const std::string& key, const std::string&, std::int64_t, callback done) override {
    call("capture", key, std::move(done));
  }
  void void_authorization(const std::string& key, const std::string&, callback done) override {
    call("void", key, std::move(done));
  }
  void refund(const std::string& key, const std::string&, std::int64_t amount, callback done) override {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (refunds_.emplace(key, amount).second) {
        refunded_ += amount;
      }
    }
    call("refund", key, std::move(done));
  }

  // Blocks until the held operation reached the provider.
  bool wait_held(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, timeout, [this] { return !held_.empty(); });
  }
  // Answers the held call(s) (approved) and holds nothing more.
  void release() {
    std::vector<callback> answer;
    {
      std::lock_guard<std::mutex> lock(m_);
      answer.swap(held_);
      hold_.clear();
    }
    for (auto& cb : answer) {
      cb(actors::provider_answer{true, "ref-held", {}});
    }
  }
  // Distinct keys the provider saw for `op`.
  std::size_t keys(const std::string& op) {
    std::lock_guard<std::mutex> lock(m_);
    return keys_[op].size();
  }
  std::int64_t refunded() {
    std::lock_guard<std::mutex> lock(m_);
    return refunded_;
  }

 private:
  void call(const std::string& op, const std::string& key, callback done) {
    {
      std::lock_guard<std::mutex> lock(m_);
      keys_[op].emplace(key, true);
      if (op == hold_) {
        held_.push_back(std::move(done));
        cv_.notify_all();
        return;
      }
    }
    done(actors::provider_answer{true, "ref-" + op, {}});
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::string hold_;
  std::vector<callback> held_;
  std::map<std::string, std::map<std::string, bool>> keys_;
  std::map<std::string, std::int64_t> refunds_;
  std::int64_t refunded_ = 0;
};

constexpr const char* customer = "7f1a2b3c-0000-4000-8000-0000000000c1";

struct fixture : cart_db_fixture {
  std::string product;
  fixture() {
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    product = tx.exec1("INSERT INTO products (sku, name, base_price, current_price) "
                       "VALUES ('RACE-1', 'Race', 10.00, 10.00) RETURNING id::text")[0]
                  .as<std::string>();
    persistence::seed_inventory(tx, product, 10, 0);
    tx.commit();
  }

  long value(const std::string& sql, const std::string& param) {
    pqxx::connection conn{db.dsn()};
    pqxx::nontransaction tx{conn};
    auto r = tx.exec_params(sql, param);
    return r.empty() || r[0][0].is_null() ? -1 : r[0][0].as<long>();
  }
  // Waits (bounded) until the order's committed step is `step`.
  bool step_is(const std::string& order, const std::string& step) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      pqxx::connection conn{db.dsn()};
      pqxx::nontransaction tx{conn};
      auto r = tx.exec_params("SELECT step FROM order_sagas WHERE order_id = $1::uuid", order);
      if (!r.empty() && r[0][0].as<std::string>() == step) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

protocol::order_create order_of(const std::string& product) {
  protocol::order_create c;
  c.meta.request_id = "req-race";
  c.meta.user_id = customer;
  c.customer_id = customer;
  c.currency = "USD";
  c.items.push_back({product, "RACE-1", "Race", "", 2, 1000});
  c.subtotal = 2000;
  c.total = 2000;
  c.payment_token = "tok_ok";
  return c;
}

actors::checkout_context context_of(cart_runtime& rt, std::shared_ptr<held_provider> provider) {
  actors::checkout_context ctx;
  ctx.routers = [&rt](std::string_view kind) { return rt.router_of(kind); };
  ctx.provider = std::move(provider);
  ctx.settings.provider_timeout = 10s;
  return ctx;
}

template <class T>
caf::expected<T> await(std::future<caf::expected<T>>& f) {
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  return f.get();
}

}  // namespace

TEST_CASE_FIXTURE(fixture, "a cancel recorded while the capture is at the provider: the order is paid, then refunded in full") {
  cart_runtime rt{{db.dsn()}};
  auto provider = std::make_shared<held_provider>("capture");
  const auto ctx = context_of(rt, provider);
  const std::string order = "0a1b2c3d-0000-4000-8000-00000000c0de";

  std::promise<caf::expected<protocol::order_view>> checked_out;
  auto checkout_done = checked_out.get_future();
  actors::run_checkout(rt.system(), ctx, order, order_of(product),
                       [&checked_out](caf::expected<protocol::order_view> r) { checked_out.set_value(std::move(r)); });
  REQUIRE(provider->wait_held(15s));  // the capture is at the provider, its answer held back

  protocol::command_meta meta;
  meta.request_id = "req-cancel";
  meta.user_id = customer;
  std::promise<caf::expected<protocol::order_view>> canceled;
  auto cancel_done = canceled.get_future();
  actors::run_cancel(rt.system(), ctx, order, meta,
                     [&canceled](caf::expected<protocol::order_view> r) { canceled.set_value(std::move(r)); });
  REQUIRE(step_is(order, "canceling"));  // the cancel is committed while the capture is still open
  provider->release();

  auto paid = await(checkout_done);
  REQUIRE_MESSAGE(paid, caf::to_string(paid.error()));
  CHECK(paid->status == "paid");  // the capture went through: the checkout answers what happened
  auto result = await(cancel_done);
  REQUIRE_MESSAGE(result, caf::to_string(result.error()));
  CHECK(result->status == "canceled");
  CHECK(result->refunded == 2000);

  CHECK(provider->keys("capture") == 1);
  CHECK(provider->refunded() == 2000);  // what was captured went back
  CHECK(value("SELECT (refunded_amount * 100)::bigint FROM payments WHERE order_id = $1::uuid", order) == 2000);
  CHECK(value("SELECT on_hand - reserved FROM inventory WHERE product_id = $1::uuid", product) == 10);
  CHECK(value("SELECT reserved FROM inventory WHERE product_id = $1::uuid", product) == 0);
  CHECK(value("SELECT COUNT(*) FROM order_sagas WHERE order_id = $1::uuid AND step = 'canceled'", order) == 1);
  rt.stop();
}

TEST_CASE_FIXTURE(fixture, "a cancel recorded while the authorization is at the provider: nothing is captured, the stock comes back") {
  cart_runtime rt{{db.dsn()}};
  auto provider = std::make_shared<held_provider>("authorize");
  const auto ctx = context_of(rt, provider);
  const std::string order = "0a1b2c3d-0000-4000-8000-00000000beef";

  std::promise<caf::expected<protocol::order_view>> checked_out;
  auto checkout_done = checked_out.get_future();
  actors::run_checkout(rt.system(), ctx, order, order_of(product),
                       [&checked_out](caf::expected<protocol::order_view> r) { checked_out.set_value(std::move(r)); });
  REQUIRE(provider->wait_held(15s));

  protocol::command_meta meta;
  meta.request_id = "req-cancel";
  meta.user_id = customer;
  std::promise<caf::expected<protocol::order_view>> canceled;
  auto cancel_done = canceled.get_future();
  actors::run_cancel(rt.system(), ctx, order, meta,
                     [&canceled](caf::expected<protocol::order_view> r) { canceled.set_value(std::move(r)); });
  // The cancel is answered without waiting for the held authorization (its saga closes the gate).
  auto result = await(cancel_done);
  REQUIRE_MESSAGE(result, caf::to_string(result.error()));
  CHECK(result->status == "canceled");
  CHECK(result->failure_code == "canceled");
  provider->release();  // the authorization approves late: it must be voided, never captured

  auto ended = await(checkout_done);
  REQUIRE_MESSAGE(ended, caf::to_string(ended.error()));
  CHECK(ended->status == "canceled");
  CHECK(ended->failure_code == "canceled");
  CHECK(provider->keys("capture") == 0);
  CHECK(provider->refunded() == 0);
  CHECK(value("SELECT on_hand - reserved FROM inventory WHERE product_id = $1::uuid", product) == 10);
  CHECK(value("SELECT reserved FROM inventory WHERE product_id = $1::uuid", product) == 0);
  CHECK(value("SELECT COUNT(*) FROM payments WHERE order_id = $1::uuid AND status = 'captured'", order) == 0);
  rt.stop();
}
