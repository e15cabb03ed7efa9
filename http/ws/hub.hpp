#pragma once
// The live-updates hub of a node: the committed domain events the outbox dispatcher delivers become
// one serialised, immutable message per change, shared by every connection subscribed to its item.
// Per stock or price item the hub keeps the latest message (so a new subscriber gets the current
// value at once) and who is subscribed; per customer, who watches their orders (support and admin
// watch all). Current values it does not know yet are loaded from the query tables.
//
// Thread-safe: the dispatcher thread publishes, connections subscribe from their strands, loads
// complete on database threads. Sinks are called with the hub's lock held and only queue.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "http/ws/coalescing_queue.hpp"
#include "http/ws/live_item.hpp"
#include "http/ws/live_messages.hpp"
#include "persistence/outbox_dispatcher.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Registry;
}  // namespace prometheus

namespace mercato::http::ws {

// One connection as the hub sees it.
class live_sink {
 public:
  virtual ~live_sink() = default;
  // A message for `item`. Called with the hub's lock held: queue it, never call the hub.
  virtual void offer(const live_item& item, item_position at, const shared_message& msg) = 0;
  // Items the hub dropped for this sink (no such product, or its value could not be loaded); the
  // client is told with an error message. Called with the hub's lock held.
  virtual void refused(std::vector<live_item> items, const std::string& code, const std::string& detail) = 0;
  // The node is shutting down: close with 1001.
  virtual void going_away() = 0;
};

// Current values from the database. `customer`: for orders, whose orders ("" = all, newest first, bounded).
struct load_result {
  bool ok = true;                  // false: the database did not answer
  std::vector<live_update> values;
  std::vector<live_item> missing;  // asked for and not found
};
using value_loader = std::function<void(topic t, std::vector<live_item> items, std::string customer,
                                        std::function<void(load_result)> done)>;

struct hub_options {
  std::size_t max_connections = 10'000;
};

// The hub's counters (null without a registry). Sessions count what they send and coalesce.
struct hub_instruments {
  prometheus::Gauge* connections = nullptr;
  prometheus::Gauge* subscriptions = nullptr;
  prometheus::Counter* messages_sent = nullptr;
  prometheus::Counter* messages_coalesced = nullptr;
  prometheus::Counter* closed_slow = nullptr;
  prometheus::Counter* bad_messages = nullptr;
  prometheus::Counter* updates_published = nullptr;
};

class hub {
 public:
  hub(hub_options opts, value_loader loader, prometheus::Registry* registry);
  ~hub();
  hub(const hub&) = delete;
  hub& operator=(const hub&) = delete;

  // The outbox subscription feeding the hub.
  persistence::outbox_dispatcher::handler subscriber();
  static persistence::outbox_filter filter();
  // Updates of one batch in commit order per item (the subscriber's path; tests call it directly).
  void publish(const std::vector<live_update>& updates);

  // Connections. register_connection is false when the node has max_connections already.
  [[nodiscard]] bool register_connection(const std::shared_ptr<live_sink>& sink);
  void unregister_connection(const live_sink* sink);
  std::size_t connections() const;
  bool full() const { return connections() >= opts_.max_connections; }
  // Asks every connection to close with 1001 (node shutdown).
  void close_all();

  // Stock or price items: the current value of each comes first (from memory, else loaded), then changes.
  void subscribe(const std::shared_ptr<live_sink>& sink, topic t, const std::vector<live_item>& items);
  void unsubscribe(const live_sink* sink, const std::vector<live_item>& items);
  // Orders of `customer` ("" = every order): the current ones first (loaded), then changes.
  void watch_orders(const std::shared_ptr<live_sink>& sink, const std::string& customer);
  void unwatch_orders(const live_sink* sink, const std::string& customer);

  const hub_instruments& instruments() const { return instruments_; }
  // Items the hub holds a channel for (tests: memory stays bounded by what is subscribed).
  std::size_t items() const;

 private:
  struct channel {
    item_position at;
    shared_message latest;
    bool loading = false;
    std::unordered_set<live_sink*> subscribers;
  };

  void loaded(topic t, const std::vector<live_item>& asked, load_result r);
  void count_subscriptions(std::ptrdiff_t delta);

  hub_options opts_;
  value_loader loader_;
  hub_instruments instruments_;

  mutable std::mutex mutex_;
  std::unordered_map<live_item, channel, live_item_hash> channels_;
  std::unordered_map<std::string, std::unordered_set<live_sink*>> order_watchers_;
  std::unordered_map<const live_sink*, std::weak_ptr<live_sink>> connections_;
  std::int64_t subscriptions_ = 0;
};

}  // namespace mercato::http::ws
