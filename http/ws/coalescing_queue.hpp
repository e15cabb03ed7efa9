#pragma once
// The messages waiting for one WebSocket connection. Item messages are keyed by their item: while a
// message for an item waits, a newer one replaces it in place (the slow client gets only the latest
// value, in the place the first one queued), and one older than what the client already got or has
// waiting is dropped, so a client never sees an item's version go backwards. Control messages (pong,
// error) queue as they come. Both are bounded: a push that would need more room reports overflow and
// the connection is closed for slowness rather than grow.
//
// Not thread-safe: the session guards it.

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "http/ws/live_item.hpp"

namespace mercato::http::ws {

using shared_message = std::shared_ptr<const std::string>;

class coalescing_queue {
 public:
  enum class push_result { queued, coalesced, stale, overflow };

  // `max_items`: item messages waiting at once; `max_control`: control messages waiting at once;
  // `max_marks`: order items whose last version is remembered (stock and price items are remembered
  // while subscribed: forget() drops them).
  coalescing_queue(std::size_t max_items, std::size_t max_control, std::size_t max_marks = 4096);

  push_result push(const live_item& item, item_position at, shared_message msg);
  push_result push_control(shared_message msg);

  // The next message to write, or null when none waits.
  shared_message pop();

  // Drops what waits for `item` and its version mark (on unsubscribe).
  void forget(const live_item& item);

  bool empty() const { return slots_.empty(); }
  std::size_t size() const { return slots_.size(); }
  std::size_t items_waiting() const { return waiting_.size(); }
  std::size_t marks() const { return marks_.size(); }

 private:
  struct slot {
    bool keyed = false;
    live_item item;
    shared_message msg;
  };

  std::size_t max_items_;
  std::size_t max_control_;
  std::size_t max_marks_;
  std::size_t control_waiting_ = 0;
  std::list<slot> slots_;
  std::unordered_map<live_item, std::list<slot>::iterator, live_item_hash> waiting_;
  // The newest position accepted per item (sent or waiting).
  std::unordered_map<live_item, item_position, live_item_hash> marks_;
};

}  // namespace mercato::http::ws
