#include "support/mixed_load.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <sstream>

#include <boost/json.hpp>

#include "support/http_client.hpp"

namespace mercato::test {

using namespace shop;
using namespace std::chrono_literals;

namespace {

// A client whose server went away (killed, restarting) is asked again after this pause, not in a spin.
constexpr auto transport_backoff = 20ms;
constexpr auto browse_interval = 4ms;

std::string describe(const std::string& op, const http_reply* r) {
  if (r == nullptr) {
    return op + " no answer";
  }
  if (r->status >= 400) {
    return op + " " + std::to_string(r->status) + " " + code_of(*r);
  }
  return op + " " + std::to_string(r->status);
}

bool is_problem(const http_reply& r) {
  return r.header("content-type").rfind("application/problem+json", 0) == 0;
}

}  // namespace

mixed_load::mixed_load(mixed_load_options o) : o_(std::move(o)), port_(o_.port) {
  http_client c{o_.port};
  shoppers_.resize(static_cast<std::size_t>(o_.shoppers));
  for (const auto& who : shoppers_) {
    carts_.push_back(new_cart(c, who));
  }
  acked_keys_.resize(shoppers_.size());
  if (o_.checkouts) {
    scarce_initial_ = available_of(c, o_.scarce_product);
  }
}

mixed_load::~mixed_load() { stop(); }

void mixed_load::start() {
  run_ = true;
  for (int t = 0; t < o_.add_threads; ++t) {
    threads_.emplace_back([this, t] { add_loop(t); });
  }
  if (o_.checkouts) {
    threads_.emplace_back([this] { checkout_loop(); });
  }
  if (o_.browsing) {
    threads_.emplace_back([this] { browse_loop(); });
  }
}

void mixed_load::stop() {
  run_ = false;
  for (auto& t : threads_) {
    t.join();
  }
  threads_.clear();
}

http_client& mixed_load::client_for(std::unique_ptr<http_client>& c, std::uint16_t& at) {
  if (!c || at != port_.load()) {
    at = port_.load();
    c = std::make_unique<http_client>(at);
  }
  return *c;
}

void mixed_load::note(const std::string& op, const http_reply* r, bool expected_refusal) {
  const auto what = describe(op, r);
  std::lock_guard<std::mutex> lock{m_};
  ++tally_[what];
  if (r == nullptr) {
    ++disturbed_;
    return;
  }
  if (r->status < 400 || expected_refusal) {
    return;
  }
  ++disturbed_;
  // A fault may make the node say "not now" (503), or cancel a checkout whose payment could not be
  // made in time (504 payment_timeout: nothing charged, stock released), as problem+json; nothing else.
  const bool not_now = r->status == 503 || (r->status == 504 && code_of(*r) == "payment_timeout");
  if (!not_now || !is_problem(*r)) {
    unexpected_.push_back(what + ": " + r->body.substr(0, 300));
  }
}

// A shopper told "not now" (503) waits as the answer's Retry-After says (at most a second here) before
// the next add, as a storefront client should: without it, an outage of a few seconds made thousands of
// refused adds, each to be settled afterwards with its key, more than settling can do in its time.
static void back_off_after(const http_reply& r) {
  if (r.status != 503) {
    return;
  }
  long seconds = 1;
  try {
    seconds = std::stol(r.header("retry-after"));
  } catch (const std::exception&) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp(seconds, 0L, 1L) * 1000));
}

void mixed_load::add_loop(int t) {
  std::unique_ptr<http_client> c;
  std::uint16_t at = 0;
  for (int n = 0; run_.load(); ++n) {
    const int i = (n * o_.add_threads + t) % o_.shoppers;
    const auto key = "drill-add-" + std::to_string(t) + "-" + std::to_string(n);
    const auto idx = static_cast<std::size_t>(i);
    try {
      auto r = add_one(client_for(c, at), shoppers_[idx], carts_[idx], o_.plenty_product, key);
      note("add", &r);
      std::unique_lock<std::mutex> lock{m_};
      if (r.status == 200) {
        acked_keys_[idx].insert(key);
        ++acked_adds_;
      } else {
        pending_adds_.emplace_back(i, key);
      }
      lock.unlock();
      back_off_after(r);
    } catch (const std::exception&) {
      note("add", nullptr);
      {
        std::lock_guard<std::mutex> lock{m_};
        pending_adds_.emplace_back(i, key);
      }
      c.reset();
      std::this_thread::sleep_for(transport_backoff);
    }
  }
}

void mixed_load::checkout_loop() {
  std::unique_ptr<http_client> c;
  std::uint16_t at = 0;
  for (int n = 0; run_.load(); ++n) {
    customer buyer;
    const auto key = "drill-checkout-" + std::to_string(n);
    std::string cart;
    try {
      auto& via = client_for(c, at);
      auto made = via.request("POST", "/api/v1/carts", {}, bearer(buyer.token));
      note("cart", &made);
      if (made.status != 201) {
        continue;  // an abandoned attempt: no cart, nothing to check
      }
      cart = str(made.json(), "id");
      auto line = add_one(via, buyer, cart, o_.scarce_product, key + "-line");
      // Sold out already: a refusal the mix asks for.
      note("add", &line, line.status == 409 && code_of(line) == "insufficient_stock");
      if (line.status != 200) {
        continue;  // a cart with or without the line, never checked out: holds no stock
      }
      auto order = checkout(via, buyer, cart, "tok_ok", key);
      const bool refused = order.status == 409 && code_of(order) == "insufficient_stock";
      note("checkout", &order, refused);
      // A canceled checkout's answer is final for its key (a repeat replays it).
      const bool canceled = order.status == 504 && code_of(order) == "payment_timeout";
      std::lock_guard<std::mutex> lock{m_};
      if (order.status == 201) {
        paid_.emplace_back(buyer, str(order.json(), "id"));
      } else if (refused || canceled) {
        refused_.push_back(buyer);
      } else {
        pending_checkouts_.push_back({buyer, cart, key});
      }
    } catch (const std::exception&) {
      note(cart.empty() ? "cart" : "checkout", nullptr);
      if (!cart.empty()) {
        std::lock_guard<std::mutex> lock{m_};
        // Whether the line or the checkout was lost: retrying the checkout settles it either way (an
        // empty cart is refused, a full one is checked out once).
        pending_checkouts_.push_back({buyer, cart, key});
      }
      c.reset();
      std::this_thread::sleep_for(transport_backoff);
    }
  }
}

void mixed_load::browse_loop() {
  std::unique_ptr<http_client> c;
  std::uint16_t at = 0;
  const char* queries[] = {"lamp", "coffee", "shirt", "book"};
  // Paced (a few hundred reads a second), so that reads served from the cache do not starve the rest.
  auto next = std::chrono::steady_clock::now();
  for (int n = 0; run_.load(); ++n) {
    next += browse_interval;
    std::this_thread::sleep_until(next);
    try {
      auto& via = client_for(c, at);
      auto r = n % 3 == 0 ? via.get(std::string{"/api/v1/products?q="} + queries[n % 4] + "&limit=10")
                          : via.get("/api/v1/products/" + (n % 2 ? o_.plenty_product : o_.scarce_product));
      note("browse", &r);
      if (r.status == 200) {
        ++browsed_;
      }
    } catch (const std::exception&) {
      note("browse", nullptr);
      c.reset();
      std::this_thread::sleep_for(transport_backoff);
    }
  }
}

bool mixed_load::settle(std::chrono::seconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  std::vector<std::pair<int, std::string>> adds;
  std::vector<pending_checkout> checkouts;
  {
    std::lock_guard<std::mutex> lock{m_};
    adds.swap(pending_adds_);
    checkouts.swap(pending_checkouts_);
  }
  std::unique_ptr<http_client> c;
  std::uint16_t at = 0;
  // Asks again (same key) until `done` accepts the answer or the deadline passes.
  std::string last;  // the last answer to an unsettled request, for the failure message
  auto retry = [&](auto&& request, auto&& done) {
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        auto r = request(client_for(c, at));
        if (done(r)) {
          return true;
        }
        last = describe("", &r) + " " + r.body.substr(0, 200);
      } catch (const std::exception& e) {
        last = e.what();
        c.reset();
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  bool ok = true;
  for (const auto& [i, key] : adds) {
    const auto idx = static_cast<std::size_t>(i);
    const bool got = retry([&](http_client& via) { return add_one(via, shoppers_[idx], carts_[idx], o_.plenty_product, key); },
                           [](const http_reply& r) { return r.status == 200; });
    std::lock_guard<std::mutex> lock{m_};
    if (got) {
      acked_keys_[idx].insert(key);
      ++acked_adds_;
    } else {
      ok = false;
      failures_.push_back("add " + key + " still without an answer; last:" + last);
    }
  }
  for (const auto& p : checkouts) {
    std::string order;
    bool refused = false;
    const bool got = retry([&](http_client& via) { return checkout(via, p.buyer, p.cart, "tok_ok", p.key); },
                           [&](const http_reply& r) {
                             if (r.status == 201) {
                               order = str(r.json(), "id");
                               return true;
                             }
                             // Out of stock, or the cart never got its line (an empty cart is refused
                             // as a conflict).
                             // A payment timed out: canceled, final for this key.
                             const auto code = code_of(r);
                             refused = (r.status == 409 && (code == "insufficient_stock" || code == "conflict")) ||
                                       (r.status == 504 && code == "payment_timeout");
                             return refused;
                           });
    std::lock_guard<std::mutex> lock{m_};
    if (!got) {
      ok = false;
      failures_.push_back("checkout " + p.key + " still without an answer; last:" + last);
    } else if (!order.empty()) {
      paid_.emplace_back(p.buyer, order);
    } else {
      refused_.push_back(p.buyer);
    }
  }
  return ok;
}

std::vector<std::string> mixed_load::violations() {
  std::vector<std::string> out;
  http_client c{port_.load()};
  for (std::size_t i = 0; i < shoppers_.size(); ++i) {
    auto r = c.get("/api/v1/carts/" + carts_[i], bearer(shoppers_[i].token));
    if (r.status != 200) {
      out.push_back("cart " + carts_[i] + " unreadable: " + std::to_string(r.status));
      continue;
    }
    const auto have = quantity_in(r.json());
    std::lock_guard<std::mutex> lock{m_};
    const auto want = static_cast<std::int64_t>(acked_keys_[i].size());
    if (have != want) {
      std::ostringstream s;
      s << "cart " << carts_[i] << " holds " << have << " units, " << want << " adds were acknowledged";
      out.push_back(s.str());
    }
  }
  if (!o_.checkouts) {
    return out;
  }
  std::lock_guard<std::mutex> lock{m_};
  for (const auto& [buyer, order] : paid_) {
    const auto orders = scalar(o_.dsn, "SELECT count(*) FROM orders WHERE customer_id = $1::uuid", buyer.id);
    const auto paid = scalar(o_.dsn, "SELECT count(*) FROM orders WHERE id = '" + order + "'::uuid AND status = 'paid'");
    if (orders != 1 || paid != 1) {
      out.push_back("buyer " + buyer.id + " has " + std::to_string(orders) + " orders; order " + order +
                    (paid == 1 ? " paid" : " not paid"));
    }
  }
  for (const auto& buyer : refused_) {
    if (scalar(o_.dsn, "SELECT count(*) FROM orders WHERE customer_id = $1::uuid AND status = 'paid'", buyer.id) != 0) {
      out.push_back("buyer " + buyer.id + " was refused, yet has a paid order");
    }
  }
  // Stock: exactly one unit sold per paid order, none held once every checkout has its answer (a
  // refused or canceled checkout releases its reservations before it answers).
  const auto available = available_of(c, o_.scarce_product);
  const auto reserved = reserved_of(c, o_.scarce_product);
  const auto sold = static_cast<std::int64_t>(paid_.size());
  if (available != scarce_initial_ - sold) {
    out.push_back("scarce product: " + std::to_string(available) + " available, expected " +
                  std::to_string(scarce_initial_) + " - " + std::to_string(sold) + " sold");
  }
  if (available < 0 || sold > scarce_initial_) {
    out.push_back("oversold: " + std::to_string(sold) + " sold of " + std::to_string(scarce_initial_));
  }
  if (reserved != 0) {
    out.push_back("scarce product: " + std::to_string(reserved) + " units still reserved");
  }
  return out;
}

std::map<std::string, int> mixed_load::tally() const {
  std::lock_guard<std::mutex> lock{m_};
  return tally_;
}

std::vector<std::string> mixed_load::unexpected() const {
  std::lock_guard<std::mutex> lock{m_};
  return unexpected_;
}

int mixed_load::disturbed() const { return disturbed_.load(); }

std::vector<std::string> mixed_load::failures() const {
  std::lock_guard<std::mutex> lock{m_};
  return failures_;
}

int mixed_load::paid() const {
  std::lock_guard<std::mutex> lock{m_};
  return static_cast<int>(paid_.size());
}

}  // namespace mercato::test
