#include "http/ws/coalescing_queue.hpp"

namespace mercato::http::ws {

coalescing_queue::coalescing_queue(std::size_t max_items, std::size_t max_control, std::size_t max_marks)
    : max_items_(max_items), max_control_(max_control), max_marks_(max_marks) {}

coalescing_queue::push_result coalescing_queue::push(const live_item& item, item_position at, shared_message msg) {
  auto mark = marks_.find(item);
  if (mark != marks_.end() && !supersedes(at, mark->second)) {
    return push_result::stale;
  }
  auto waiting = waiting_.find(item);
  if (waiting != waiting_.end()) {
    waiting->second->msg = std::move(msg);
    mark->second = at;
    return push_result::coalesced;
  }
  if (waiting_.size() >= max_items_) {
    return push_result::overflow;
  }
  if (mark == marks_.end()) {
    if (marks_.size() >= max_marks_) {
      // Only order items accumulate marks without a subscription naming them (a support agent sees every
      // order): forget the ones with nothing waiting. What could follow is an older version arriving
      // after a newer one of an order not seen for a long time, which the order topic tolerates.
      for (auto it = marks_.begin(); it != marks_.end();) {
        if (it->first.kind == topic::orders && waiting_.count(it->first) == 0) {
          it = marks_.erase(it);
        } else {
          ++it;
        }
      }
    }
    marks_.emplace(item, at);
  } else {
    mark->second = at;
  }
  slots_.push_back(slot{true, item, std::move(msg)});
  waiting_.emplace(item, std::prev(slots_.end()));
  return push_result::queued;
}

coalescing_queue::push_result coalescing_queue::push_control(shared_message msg) {
  if (control_waiting_ >= max_control_) {
    return push_result::overflow;
  }
  ++control_waiting_;
  slots_.push_back(slot{false, live_item{}, std::move(msg)});
  return push_result::queued;
}

shared_message coalescing_queue::pop() {
  if (slots_.empty()) {
    return nullptr;
  }
  auto& front = slots_.front();
  shared_message msg = std::move(front.msg);
  if (front.keyed) {
    waiting_.erase(front.item);
  } else {
    --control_waiting_;
  }
  slots_.pop_front();
  return msg;
}

void coalescing_queue::forget(const live_item& item) {
  auto waiting = waiting_.find(item);
  if (waiting != waiting_.end()) {
    slots_.erase(waiting->second);
    waiting_.erase(waiting);
  }
  marks_.erase(item);
}

}  // namespace mercato::http::ws
