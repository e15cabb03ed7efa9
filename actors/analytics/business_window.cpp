#include "actors/analytics/business_window.hpp"

#include <algorithm>
#include <functional>
#include <cctype>
#include <ctime>

#include <boost/json.hpp>

namespace mercato::actors {
namespace json = boost::json;

namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

bool is_currency(std::string_view c) {
  return c.size() == 3 && std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
}

std::optional<std::string> string_field(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string() || v->as_string().empty()) {
    return std::nullopt;
  }
  return std::string(v->as_string());
}

std::optional<std::int64_t> int_field(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (!v) {
    return std::nullopt;
  }
  if (v->is_int64()) {
    return v->as_int64();
  }
  if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v->as_uint64());
  }
  return std::nullopt;
}

double per(double amount, double divisor) { return divisor > 0 ? amount / divisor : 0.0; }

}  // namespace

const std::vector<std::string>& business_event_types() {
  static const std::vector<std::string> types{"OrderPlaced", "PaymentProcessed", "PaymentFailed", "CartItemAdded",
                                              "CartCheckedOut"};
  return types;
}

const std::vector<std::string>& business_aggregate_kinds() {
  static const std::vector<std::string> kinds{"order", "payment", "cart"};
  return kinds;
}

std::optional<std::int64_t> parse_rfc3339_seconds(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS, then an optional fraction, then Z or +HH:MM / -HH:MM.
  if (text.size() < 20) {
    return std::nullopt;
  }
  auto digits = [&](std::size_t at, std::size_t n) -> std::optional<int> {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (i >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i]))) {
        return std::nullopt;
      }
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  const auto y = digits(0, 4), mo = digits(5, 2), d = digits(8, 2), h = digits(11, 2), mi = digits(14, 2),
             s = digits(17, 2);
  if (!y || !mo || !d || !h || !mi || !s || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't' &&
                                                                                 text[10] != ' ') ||
      text[13] != ':' || text[16] != ':' || *mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 || *mi > 59 ||
      *s > 60) {
    return std::nullopt;
  }
  std::size_t i = 19;
  if (i < text.size() && text[i] == '.') {
    ++i;
    const auto start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
    }
    if (i == start) {
      return std::nullopt;
    }
  }
  std::int64_t offset = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    const auto oh = digits(i + 1, 2), om = digits(i + 4, 2);
    if (!oh || !om || i + 3 >= text.size() || text[i + 3] != ':') {
      return std::nullopt;
    }
    offset = (text[i] == '+' ? 1 : -1) * (*oh * 3600 + *om * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != text.size()) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = *y - 1900;
  tm.tm_mon = *mo - 1;
  tm.tm_mday = *d;
  tm.tm_hour = *h;
  tm.tm_min = *mi;
  tm.tm_sec = *s;
  return static_cast<std::int64_t>(timegm(&tm)) - offset;
}

std::optional<std::int64_t> parse_window(std::string_view text, std::int64_t max_seconds) {
  if (text.size() < 2 || text.size() > 8 || text.front() == '0') {
    return std::nullopt;
  }
  std::int64_t n = 0;
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      return std::nullopt;
    }
    n = n * 10 + (text[i] - '0');
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return std::nullopt;
  }
  const auto seconds = n * unit;
  if (seconds < 60 || seconds > max_seconds) {
    return std::nullopt;
  }
  return seconds;
}

std::optional<business_event> parse_business_event(std::string_view id, std::string_view aggregate_kind,
                                                   std::string_view aggregate_id, std::string_view event_type,
                                                   std::string_view occurred_at, std::string_view data_json,
                                                   std::int64_t fallback_now_s) {
  if (id.empty() || aggregate_id.empty()) {
    return std::nullopt;
  }
  business_event e;
  if (event_type == "OrderPlaced" && aggregate_kind == "order") {
    e.kind = business_event_kind::order_placed;
  } else if (event_type == "PaymentProcessed" && aggregate_kind == "payment") {
    e.kind = business_event_kind::payment_processed;
  } else if (event_type == "PaymentFailed" && aggregate_kind == "payment") {
    e.kind = business_event_kind::payment_failed;
  } else if (event_type == "CartItemAdded" && aggregate_kind == "cart") {
    e.kind = business_event_kind::cart_item_added;
  } else if (event_type == "CartCheckedOut" && aggregate_kind == "cart") {
    e.kind = business_event_kind::cart_checked_out;
  } else {
    return std::nullopt;
  }
  e.id = std::string(id);
  e.subject = std::string(aggregate_id);
  e.occurred_s = parse_rfc3339_seconds(occurred_at).value_or(fallback_now_s);
  if (e.kind == business_event_kind::order_placed) {
    boost::system::error_code ec;
    auto v = json::parse(json::string_view(data_json.data(), data_json.size()), ec);
    if (ec || !v.is_object()) {
      return std::nullopt;
    }
    const auto& o = v.as_object();
    auto currency = string_field(o, "currency");
    auto amount = int_field(o, "total_amount");
    if (!currency || !is_currency(*currency) || !amount || *amount < 0) {
      return std::nullopt;
    }
    e.currency = std::move(*currency);
    e.amount = *amount;
  }
  return e;
}

business_window::business_window(std::int64_t started_s, std::size_t dedup_capacity)
    : started_s_(started_s), dedup_capacity_(std::max<std::size_t>(1, dedup_capacity)), buckets_(span_minutes) {}

bool business_window::remember(const std::string& id) {
  const std::uint64_t h = std::hash<std::string>{}(id);
  if (!seen_.insert(h).second) {
    return false;
  }
  seen_order_.push_back(h);
  while (seen_order_.size() > dedup_capacity_) {
    seen_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
  return true;
}

business_window::bucket& business_window::bucket_for(std::int64_t minute) {
  auto& b = buckets_[static_cast<std::size_t>(((minute % span_minutes) + span_minutes) % span_minutes)];
  if (b.minute != minute) {
    b = bucket{};  // a minute more than the span ago: reused
    b.minute = minute;
  }
  return b;
}

const business_window::bucket* business_window::bucket_at(std::int64_t minute) const {
  const auto& b = buckets_[static_cast<std::size_t>(((minute % span_minutes) + span_minutes) % span_minutes)];
  return b.minute == minute ? &b : nullptr;
}

business_window::outcome business_window::add(const business_event& e, std::int64_t now_s) {
  if (!remember(e.id)) {
    return outcome::duplicate;
  }
  const auto now_minute = floor_div(now_s, 60);
  const auto minute = std::min(floor_div(e.occurred_s, 60), now_minute);
  if (minute <= now_minute - span_minutes) {
    return outcome::too_old;
  }
  auto& b = bucket_for(minute);
  switch (e.kind) {
    case business_event_kind::order_placed: {
      ++b.orders;
      auto& c = b.revenue[e.currency];
      ++c.orders;
      c.revenue += e.amount;
      break;
    }
    case business_event_kind::payment_processed: ++b.payments_processed; break;
    case business_event_kind::payment_failed: ++b.payments_failed; break;
    case business_event_kind::cart_item_added: b.carts_active.insert(e.subject); break;
    case business_event_kind::cart_checked_out:
      b.carts_active.insert(e.subject);
      b.carts_checked_out.insert(e.subject);
      break;
  }
  return outcome::counted;
}

business_figures business_window::figures(std::int64_t window_s, std::int64_t now_s) const {
  const auto minutes = std::clamp<std::int64_t>((std::max<std::int64_t>(window_s, 1) + 59) / 60, 1, span_minutes);
  const auto now_minute = floor_div(now_s, 60);
  business_figures f;
  f.window_s = minutes * 60;
  f.from_s = (now_minute - minutes + 1) * 60;
  f.to_s = now_s;
  // Complete when counting began before the oldest minute; else the time counted so far.
  f.coverage_s = started_s_ <= f.from_s ? f.window_s : std::clamp<std::int64_t>(now_s - started_s_, 0, f.window_s);

  std::map<std::string, per_currency> revenue;
  distinct_count active;
  distinct_count checked_out;
  for (auto m = now_minute - minutes + 1; m <= now_minute; ++m) {
    const auto* b = bucket_at(m);
    if (!b) {
      continue;
    }
    f.orders += b->orders;
    f.payments_processed += b->payments_processed;
    f.payments_failed += b->payments_failed;
    for (const auto& [currency, c] : b->revenue) {
      auto& r = revenue[currency];
      r.orders += c.orders;
      r.revenue += c.revenue;
    }
    active.merge(b->carts_active);
    checked_out.merge(b->carts_checked_out);
  }
  f.carts_with_items = active.size();
  // Estimated past 128 carts: never more checked out than had items.
  f.carts_checked_out = std::min(checked_out.size(), f.carts_with_items);

  const double hours = static_cast<double>(minutes) / 60.0;
  f.orders_per_minute = per(static_cast<double>(f.orders), static_cast<double>(minutes));
  f.conversion_rate = per(static_cast<double>(f.carts_checked_out), static_cast<double>(f.carts_with_items));
  f.payment_failure_rate = per(static_cast<double>(f.payments_failed),
                               static_cast<double>(f.payments_failed + f.payments_processed));
  std::int64_t main_orders = 0;
  for (const auto& [currency, c] : revenue) {
    currency_figures cf;
    cf.currency = currency;
    cf.orders = c.orders;
    cf.revenue = c.revenue;
    cf.revenue_per_hour = per(static_cast<double>(c.revenue), hours);
    cf.average_order_value = per(static_cast<double>(c.revenue), static_cast<double>(c.orders));
    if (c.orders > main_orders) {  // map order: the lowest code wins a tie
      main_orders = c.orders;
      f.currency = currency;
      f.revenue_per_hour = cf.revenue_per_hour;
      f.average_order_value = cf.average_order_value;
    }
    f.by_currency.push_back(std::move(cf));
  }
  return f;
}

}  // namespace mercato::actors
