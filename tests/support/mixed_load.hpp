#pragma once
// A storefront's mixed load over HTTP for fault drills: shoppers adding to their carts (each add with its
// own Idempotency-Key), buyers checking out a scarce product, and browsers reading products and searching.
// It keeps every request whose outcome it does not know (no answer, a 503, a 5xx) and, once the fault is
// over, retries each with the same key until it has a definite answer (settle). Then every invariant can
// be checked exactly: each acknowledged add is in its cart once, each checkout is one paid order or a
// clean refusal, stock sold equals orders paid, nothing is left reserved.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/shop.hpp"

namespace mercato::test {

struct mixed_load_options {
  std::uint16_t port = 0;
  std::string dsn;               // the node's database, to check orders
  std::string plenty_product;    // what shoppers add (stock that never runs out)
  std::string scarce_product;    // what buyers check out, one unit each (stock that runs out)
  int shoppers = 24;             // carts filled by the add threads
  int add_threads = 3;
  bool checkouts = true;
  bool browsing = true;
};

class mixed_load {
 public:
  explicit mixed_load(mixed_load_options o);
  ~mixed_load();
  mixed_load(const mixed_load&) = delete;
  mixed_load& operator=(const mixed_load&) = delete;

  void start();
  void stop();  // stops and joins the load threads
  // Where the load goes from now on (a node restarted on another port).
  void retarget(std::uint16_t port) { port_ = port; }

  // Retries every request of unknown outcome with its own key until it has a definite answer.
  // False (and why in `failures()`) when something is still unknown at the deadline.
  bool settle(std::chrono::seconds within);

  // Every invariant, checked through `port` and the database; each violation as a sentence.
  std::vector<std::string> violations();

  // Answers seen, as "add 200", "checkout 409 insufficient_stock", "browse 503 unavailable",
  // "add no answer" ...; answers that no fault may produce ("... 500", a 4xx the mix did not ask for,
  // a 503 that is not problem+json) also go to unexpected().
  std::map<std::string, int> tally() const;
  std::vector<std::string> unexpected() const;
  // Whether any answer other than a success or an expected refusal was seen (503s, no answer).
  int disturbed() const;
  std::vector<std::string> failures() const;

  int acknowledged_adds() const { return acked_adds_.load(); }
  int paid() const;
  int browsed() const { return browsed_.load(); }

 private:
  struct pending_checkout {
    shop::customer buyer;
    std::string cart;
    std::string key;
  };
  void add_loop(int t);
  void checkout_loop();
  void browse_loop();
  void note(const std::string& op, const http_reply* r, bool expected_refusal = false);
  http_client& client_for(std::unique_ptr<http_client>& c, std::uint16_t& at);

  mixed_load_options o_;
  std::atomic<std::uint16_t> port_;
  std::atomic<bool> run_{false};
  std::vector<std::thread> threads_;
  std::vector<shop::customer> shoppers_;
  std::vector<std::string> carts_;

  mutable std::mutex m_;
  std::vector<std::set<std::string>> acked_keys_;                 // per shopper
  std::vector<std::pair<int, std::string>> pending_adds_;         // shopper, key
  std::vector<pending_checkout> pending_checkouts_;
  std::vector<std::pair<shop::customer, std::string>> paid_;      // buyer, order id
  std::vector<shop::customer> refused_;                           // insufficient_stock
  std::map<std::string, int> tally_;
  std::vector<std::string> unexpected_;
  std::vector<std::string> failures_;
  std::atomic<int> acked_adds_{0};
  std::atomic<int> browsed_{0};
  std::atomic<int> disturbed_{0};
  std::int64_t scarce_initial_ = 0;
};

}  // namespace mercato::test
