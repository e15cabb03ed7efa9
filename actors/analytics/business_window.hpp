#pragma once
// Business analytics over the committed domain events (issue 11): per-minute counters of the last
// 24 hours and the figures derived from them over a window ending now. Pure computation, no actor, no
// clock: the caller passes `now` (unix seconds), so tests drive time. The analytics actor owns one.
//
// What is counted (each event once: delivery is at least once, so ids seen recently are remembered):
//   OrderPlaced       an order (the saga's `paid`), its total_amount in minor units, by currency
//   PaymentProcessed  a captured payment;  PaymentFailed: a declined or failed one
//   CartItemAdded     the cart (aggregate id) had items added in that minute
//   CartCheckedOut    the cart (aggregate id) became an order in that minute
// An event is counted in the minute of its occurred_at (clamped to now when it lies ahead), so a
// redelivery after a crash lands where the event happened; one older than the span is not counted.
//
// Derived over a window of N minutes (the N most recent minute buckets, the current one included):
//   orders_per_minute    orders / N
//   revenue_per_hour     revenue of the window's main currency (most orders; ties: lowest code) / (N / 60)
//   average_order_value  that currency's revenue / its orders
//   conversion_rate      distinct carts checked out / distinct carts that had items added or were checked
//                        out in the window (so it stays within [0, 1]; a cart counts once however often)
//   payment_failure_rate failed / (failed + processed)
// Every rate is 0 when its denominator is 0.

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "actors/analytics/distinct_count.hpp"
#include <vector>

namespace mercato::actors {

enum class business_event_kind { order_placed, payment_processed, payment_failed, cart_item_added, cart_checked_out };

struct business_event {
  std::string id;  // the outbox event id (deduplication)
  business_event_kind kind = business_event_kind::order_placed;
  std::string subject;   // order, payment or cart id
  std::string currency;  // OrderPlaced only: ISO 4217
  std::int64_t amount = 0;  // OrderPlaced only: total_amount in minor units (>= 0)
  std::int64_t occurred_s = 0;  // unix seconds
};

// The event types and aggregate kinds analytics reads (the outbox subscription's filter).
const std::vector<std::string>& business_event_types();
const std::vector<std::string>& business_aggregate_kinds();

// One outbox row as a business event; nullopt when it is not one of the types above or its data is not
// what the entity writes (a missing id, a negative amount, a currency that is not three capitals).
// `fallback_now_s` stands in for an occurred_at that does not parse.
std::optional<business_event> parse_business_event(std::string_view id, std::string_view aggregate_kind,
                                                   std::string_view aggregate_id, std::string_view event_type,
                                                   std::string_view occurred_at, std::string_view data_json,
                                                   std::int64_t fallback_now_s);

// "2024-05-01T12:00:00.123456Z" (fraction and offset optional) -> unix seconds.
std::optional<std::int64_t> parse_rfc3339_seconds(std::string_view text);

// "5m", "1h", "24h", "1d": the window length in seconds, a whole number of minutes from 1 minute to the
// span (24 h); nullopt otherwise.
std::optional<std::int64_t> parse_window(std::string_view text, std::int64_t max_seconds = 24 * 3600);

struct currency_figures {
  std::string currency;
  std::int64_t orders = 0;
  std::int64_t revenue = 0;  // minor units
  double revenue_per_hour = 0;
  double average_order_value = 0;
};

struct business_figures {
  std::int64_t window_s = 0;
  std::int64_t from_s = 0;  // start of the oldest minute counted
  std::int64_t to_s = 0;    // now
  std::int64_t coverage_s = 0;  // how much of the window this process has been counting (it starts empty)
  std::int64_t orders = 0;
  std::int64_t payments_processed = 0;
  std::int64_t payments_failed = 0;
  std::int64_t carts_with_items = 0;   // distinct carts with items added or checked out
  std::int64_t carts_checked_out = 0;  // distinct carts checked out
  double orders_per_minute = 0;
  std::string currency;  // the main currency (empty: no orders in the window)
  double revenue_per_hour = 0;
  double average_order_value = 0;
  double conversion_rate = 0;
  double payment_failure_rate = 0;
  double cart_abandonment_rate = 0;  // not computed here: the analytics actor fills it in
  std::vector<currency_figures> by_currency;  // ordered by currency code
};

class business_window {
 public:
  static constexpr std::int64_t span_minutes = 24 * 60;

  enum class outcome { counted, duplicate, too_old };

  // `started_s`: when counting began (coverage); `dedup_capacity`: how many recent event ids are
  // remembered (the oldest is forgotten first).
  explicit business_window(std::int64_t started_s, std::size_t dedup_capacity = 65'536);

  outcome add(const business_event& e, std::int64_t now_s);
  // `window_s` is rounded up to whole minutes and capped at the span.
  business_figures figures(std::int64_t window_s, std::int64_t now_s) const;

  std::size_t remembered_ids() const { return seen_.size(); }

 private:
  struct per_currency {
    std::int64_t orders = 0;
    std::int64_t revenue = 0;
  };
  struct bucket {
    std::int64_t minute = -1;  // unix minute this bucket holds; -1: empty
    std::int64_t orders = 0;
    std::map<std::string, per_currency> revenue;
    std::int64_t payments_processed = 0;
    std::int64_t payments_failed = 0;
    distinct_count carts_active;
    distinct_count carts_checked_out;
  };

  bucket& bucket_for(std::int64_t minute);
  const bucket* bucket_at(std::int64_t minute) const;
  bool remember(const std::string& id);

  std::int64_t started_s_;
  std::size_t dedup_capacity_;
  std::vector<bucket> buckets_;  // ring, indexed by minute % span_minutes
  // Recent event ids by their 64-bit hash (a collision among 65,536 is about one in 10^9, and would
  // only skip one event): a fixed ~2.5 MB instead of the ids themselves.
  std::unordered_set<std::uint64_t> seen_;
  std::deque<std::uint64_t> seen_order_;
};

}  // namespace mercato::actors
