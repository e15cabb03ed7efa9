#include "http/ws/hub.hpp"

#include <map>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "telemetry/logging.hpp"

namespace mercato::http::ws {
namespace {

prometheus::Gauge* gauge(prometheus::Registry* reg, const char* name, const char* help) {
  return reg ? &prometheus::BuildGauge().Name(name).Help(help).Register(*reg).Add({}) : nullptr;
}

prometheus::Counter* counter(prometheus::Registry* reg, const char* name, const char* help) {
  return reg ? &prometheus::BuildCounter().Name(name).Help(help).Register(*reg).Add({}) : nullptr;
}

}  // namespace

hub::hub(hub_options opts, value_loader loader, prometheus::Registry* registry)
    : opts_(opts), loader_(std::move(loader)) {
  instruments_.connections = gauge(registry, "mercato_ws_connections", "Open live-updates WebSocket connections");
  instruments_.subscriptions =
      gauge(registry, "mercato_ws_subscriptions", "Items (and order feeds) subscribed, over all connections");
  instruments_.messages_sent =
      counter(registry, "mercato_ws_messages_sent_total", "Live-updates messages written to clients");
  instruments_.messages_coalesced = counter(
      registry, "mercato_ws_messages_coalesced_total",
      "Messages replaced by a newer one for the same item before a slow client could be sent them");
  instruments_.closed_slow = counter(registry, "mercato_ws_closed_slow_total",
                                     "Connections closed with 1008 because their bounded queue was full");
  instruments_.bad_messages =
      counter(registry, "mercato_ws_bad_messages_total", "Client messages answered with an error message");
  instruments_.updates_published = counter(registry, "mercato_ws_updates_published_total",
                                           "Committed changes the hub fanned out to at least its own state");
}

hub::~hub() = default;

persistence::outbox_filter hub::filter() { return {{"inventory", "product", "order"}, live_event_types()}; }

persistence::outbox_dispatcher::handler hub::subscriber() {
  return [this](const std::vector<persistence::outbox_event>& events) {
    // Only the last change of an item in a batch matters (one serialisation, one fan-out); events come
    // in commit order per aggregate, so the last one seen is the newest.
    std::vector<live_update> updates;
    std::unordered_map<live_item, std::size_t, live_item_hash> index;
    for (const auto& e : events) {
      auto u = update_from_event(e);
      if (!u) {
        continue;
      }
      auto [it, fresh] = index.emplace(u->item, updates.size());
      if (fresh) {
        updates.push_back(std::move(*u));
      } else if (supersedes(u->at, updates[it->second].at)) {
        updates[it->second] = std::move(*u);
      }
    }
    publish(updates);
  };
}

void hub::publish(const std::vector<live_update>& updates) {
  std::lock_guard<std::mutex> lock{mutex_};
  for (const auto& u : updates) {
    if (u.item.kind == topic::orders) {
      shared_message msg;
      for (const auto* who : {&u.customer_id, static_cast<const std::string*>(nullptr)}) {
        auto it = order_watchers_.find(who ? *who : std::string());
        if (it == order_watchers_.end()) {
          continue;
        }
        if (!msg) {
          msg = std::make_shared<const std::string>(u.message);
        }
        for (auto* sink : it->second) {
          sink->offer(u.item, u.at, msg);
        }
      }
      if (msg && instruments_.updates_published) {
        instruments_.updates_published->Increment();
      }
      continue;
    }
    auto it = channels_.find(u.item);
    if (it == channels_.end()) {
      continue;  // nobody subscribed: nothing kept
    }
    auto& ch = it->second;
    if (ch.latest && !supersedes(u.at, ch.at)) {
      continue;  // a redelivery, or older than what a load already found
    }
    ch.at = u.at;
    ch.latest = std::make_shared<const std::string>(u.message);
    for (auto* sink : ch.subscribers) {
      sink->offer(u.item, ch.at, ch.latest);
    }
    if (instruments_.updates_published) {
      instruments_.updates_published->Increment();
    }
  }
}

bool hub::register_connection(const std::shared_ptr<live_sink>& sink) {
  std::lock_guard<std::mutex> lock{mutex_};
  if (connections_.size() >= opts_.max_connections) {
    return false;
  }
  connections_.emplace(sink.get(), sink);
  if (instruments_.connections) {
    instruments_.connections->Set(static_cast<double>(connections_.size()));
  }
  return true;
}

void hub::unregister_connection(const live_sink* sink) {
  std::lock_guard<std::mutex> lock{mutex_};
  connections_.erase(sink);
  if (instruments_.connections) {
    instruments_.connections->Set(static_cast<double>(connections_.size()));
  }
}

std::size_t hub::connections() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return connections_.size();
}

std::size_t hub::items() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return channels_.size();
}

void hub::close_all() {
  std::vector<std::shared_ptr<live_sink>> live;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    for (auto& [ptr, weak] : connections_) {
      if (auto s = weak.lock()) {
        live.push_back(std::move(s));
      }
    }
  }
  for (auto& s : live) {
    s->going_away();
  }
}

void hub::count_subscriptions(std::ptrdiff_t delta) {
  subscriptions_ += delta;
  if (instruments_.subscriptions) {
    instruments_.subscriptions->Set(static_cast<double>(subscriptions_));
  }
}

void hub::subscribe(const std::shared_ptr<live_sink>& sink, topic t, const std::vector<live_item>& items) {
  std::vector<live_item> to_load;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    for (const auto& item : items) {
      auto& ch = channels_[item];
      if (!ch.subscribers.insert(sink.get()).second) {
        continue;
      }
      count_subscriptions(1);
      if (ch.latest) {
        sink->offer(item, ch.at, ch.latest);
      } else if (!ch.loading) {
        ch.loading = true;
        to_load.push_back(item);
      }
    }
  }
  if (to_load.empty()) {
    return;
  }
  auto asked = to_load;
  loader_(t, std::move(to_load), std::string(),
          [this, t, asked = std::move(asked)](load_result r) { loaded(t, asked, std::move(r)); });
}

void hub::loaded(topic t, const std::vector<live_item>& asked, load_result r) {
  std::lock_guard<std::mutex> lock{mutex_};
  if (!r.ok) {
    // Everyone waiting for these values is told; the items are dropped (a new subscribe loads again).
    std::map<live_sink*, std::vector<live_item>> refused;
    for (const auto& item : asked) {
      auto it = channels_.find(item);
      if (it == channels_.end() || it->second.latest) {
        if (it != channels_.end()) {
          it->second.loading = false;
        }
        continue;
      }
      for (auto* sink : it->second.subscribers) {
        refused[sink].push_back(item);
      }
      count_subscriptions(-static_cast<std::ptrdiff_t>(it->second.subscribers.size()));
      channels_.erase(it);
    }
    for (auto& [sink, items] : refused) {
      sink->refused(std::move(items), "unavailable",
                    std::string("the current ") + to_string(t) + " could not be read; subscribe again later");
    }
    return;
  }
  for (const auto& u : r.values) {
    auto it = channels_.find(u.item);
    if (it == channels_.end()) {
      continue;  // everyone unsubscribed meanwhile
    }
    auto& ch = it->second;
    ch.loading = false;
    if (ch.latest && !supersedes(u.at, ch.at)) {
      continue;  // a change arrived while loading: its subscribers have it already
    }
    ch.at = u.at;
    ch.latest = std::make_shared<const std::string>(u.message);
    for (auto* sink : ch.subscribers) {
      sink->offer(u.item, ch.at, ch.latest);
    }
  }
  for (const auto& item : asked) {
    auto it = channels_.find(item);
    if (it == channels_.end()) {
      continue;
    }
    it->second.loading = false;
    if (it->second.subscribers.empty()) {
      channels_.erase(it);  // everyone left while it loaded
    }
  }
  std::map<live_sink*, std::vector<live_item>> refused;
  for (const auto& item : r.missing) {
    auto it = channels_.find(item);
    if (it == channels_.end()) {
      continue;
    }
    for (auto* sink : it->second.subscribers) {
      refused[sink].push_back(item);
    }
    count_subscriptions(-static_cast<std::ptrdiff_t>(it->second.subscribers.size()));
    channels_.erase(it);
  }
  for (auto& [sink, items] : refused) {
    std::string detail = "no such product";
    detail += items.size() == 1 ? ": " + items.front().uuid() : " (" + std::to_string(items.size()) + " ids)";
    sink->refused(std::move(items), "not_found", detail);
  }
}

void hub::unsubscribe(const live_sink* sink, const std::vector<live_item>& items) {
  std::lock_guard<std::mutex> lock{mutex_};
  for (const auto& item : items) {
    auto it = channels_.find(item);
    if (it == channels_.end()) {
      continue;
    }
    if (it->second.subscribers.erase(const_cast<live_sink*>(sink)) > 0) {
      count_subscriptions(-1);
    }
    if (it->second.subscribers.empty() && !it->second.loading) {
      channels_.erase(it);  // memory follows what is subscribed
    }
  }
}

void hub::watch_orders(const std::shared_ptr<live_sink>& sink, const std::string& customer) {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (!order_watchers_[customer].insert(sink.get()).second) {
      return;
    }
    count_subscriptions(1);
  }
  std::weak_ptr<live_sink> weak = sink;
  loader_(topic::orders, {}, customer, [this, weak, customer](load_result r) {
    auto sink = weak.lock();
    if (!sink) {
      return;
    }
    std::lock_guard<std::mutex> lock{mutex_};
    auto it = order_watchers_.find(customer);
    if (it == order_watchers_.end() || it->second.count(sink.get()) == 0) {
      return;  // unwatched meanwhile
    }
    if (!r.ok) {
      sink->refused({}, "unavailable", "the current orders could not be read; subscribe again later");
      return;
    }
    for (const auto& u : r.values) {
      sink->offer(u.item, u.at, std::make_shared<const std::string>(u.message));
    }
  });
}

void hub::unwatch_orders(const live_sink* sink, const std::string& customer) {
  std::lock_guard<std::mutex> lock{mutex_};
  auto it = order_watchers_.find(customer);
  if (it == order_watchers_.end()) {
    return;
  }
  if (it->second.erase(const_cast<live_sink*>(sink)) > 0) {
    count_subscriptions(-1);
  }
  if (it->second.empty()) {
    order_watchers_.erase(it);
  }
}

}  // namespace mercato::http::ws
