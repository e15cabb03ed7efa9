#include "actors/inventory/inventory_model.hpp"

#include "actors/domain_event.hpp"
#include "actors/snapshot_fields.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <fmt/format.h>

#include "actors/protocol/type_ids.hpp"

namespace mercato::actors {
namespace {

using protocol::errc;
using clock = inventory_model::clock;
using state = inventory_model::state;
const auto& str = text_field;
const auto& num = int_field;



// A reservation id the entity accepts: 1..64 printable ASCII characters without spaces.
bool valid_reservation_id(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// A change being built: the next state and its events, in order.
struct change {
  state next;
  std::vector<protocol::domain_event> events;
  const protocol::command_meta& meta;
  const std::string& product_id;
  std::string at;  // when (RFC 3339), the same for every event of the change

  void emit(const char* type, boost::json::object data) {
    data["product_id"] = product_id;
    data["user_id"] = meta.user_id;
    data["at"] = at;
    events.push_back(make_event(meta, type, data));
  }

  // Re-evaluates the low flag; LowStock once per downward crossing of the threshold.
  void check_low() {
    const auto available = next.on_hand - next.reserved;
    const bool low_now = available <= next.low_stock_threshold;
    if (low_now && !next.low) {
      emit("LowStock", {{"available", available}, {"on_hand", next.on_hand}, {"reserved", next.reserved},
                        {"low_stock_threshold", next.low_stock_threshold}});
    }
    next.low = low_now;
  }

  // Moves on_hand/reserved to new values: one StockChanged (with old and new available), then LowStock
  // if available crossed the threshold downwards.
  void move(const char* cause, std::int64_t on_hand, std::int64_t reserved, boost::json::object extra = {}) {
    const auto old_on_hand = next.on_hand;
    const auto old_reserved = next.reserved;
    next.on_hand = on_hand;
    next.reserved = reserved;
    extra["cause"] = cause;
    extra["on_hand_old"] = old_on_hand;
    extra["on_hand_new"] = on_hand;
    extra["reserved_old"] = old_reserved;
    extra["reserved_new"] = reserved;
    extra["available_old"] = old_on_hand - old_reserved;
    extra["available_new"] = on_hand - reserved;
    extra["low_stock_threshold"] = next.low_stock_threshold;  // with available, the stock status (live updates)
    emit("StockChanged", std::move(extra));
    check_low();
  }

  void settle(const inventory_model::reservation& r, const char* outcome) {
    next.settled.push_back({r.id, outcome, r.quantity, at});
    if (next.settled.size() > inventory_model::settled_kept) {
      next.settled.erase(next.settled.begin(),
                         next.settled.end() - static_cast<std::ptrdiff_t>(inventory_model::settled_kept));
    }
  }

  // Drops the reservations whose deadline has passed.
  void drop_expired(clock::time_point now) {
    std::int64_t freed = 0;
    std::vector<inventory_model::reservation> kept;
    kept.reserve(next.reservations.size());
    for (auto& r : next.reservations) {
      if (r.expires_at <= now) {
        emit("ReservationExpired", {{"reservation_id", r.id},
                                    {"quantity", r.quantity},
                                    {"expires_at", inventory_model::format_time(r.expires_at)}});
        settle(r, "expired");
        freed += r.quantity;
      } else {
        kept.push_back(std::move(r));
      }
    }
    next.reservations = std::move(kept);
    if (freed > 0) {
      move("expire", next.on_hand, next.reserved - freed, {{"quantity", freed}});
    }
  }
};

inventory_model::reservation* find_open(state& s, const std::string& id) {
  for (auto& r : s.reservations) {
    if (r.id == id) {
      return &r;
    }
  }
  return nullptr;
}

const inventory_model::settled_reservation* find_settled(const state& s, const std::string& id) {
  // Newest first: an id settles at most once, but be exact anyway.
  for (auto it = s.settled.rbegin(); it != s.settled.rend(); ++it) {
    if (it->id == id) {
      return &*it;
    }
  }
  return nullptr;
}

template <class Command>
const Command* as(const caf::message& msg) {
  return msg.match_elements<Command>() ? &msg.get_as<Command>(0) : nullptr;
}

}  // namespace

std::string inventory_model::format_time(clock::time_point t) {
  using namespace std::chrono;
  const auto secs = time_point_cast<seconds>(t);
  auto micros = duration_cast<microseconds>(t - secs).count();
  auto whole = secs;
  if (micros < 0) {  // before 1970: keep the fraction positive
    micros += 1'000'000;
    whole -= seconds(1);
  }
  const std::time_t tt = clock::to_time_t(whole);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

clock::time_point inventory_model::parse_time(const std::string& s) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    throw std::invalid_argument("not an RFC 3339 time: " + s);
  }
  std::size_t pos = static_cast<std::size_t>(consumed);
  std::int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (digits < 6) {
        micros = micros * 10 + (s[pos] - '0');
      }
      ++digits;
      ++pos;
    }
    for (; digits < 6; ++digits) {
      micros *= 10;
    }
  }
  if (pos + 1 != s.size() || (s[pos] != 'Z' && s[pos] != 'z')) {
    throw std::invalid_argument("not an RFC 3339 UTC time: " + s);
  }
  // Fields out of range (which timegm would silently carry over) and years the clock's nanoseconds cannot
  // hold (system_clock spans about 1678..2262; its from_time_t overflows outside) are not a time we wrote.
  if (tm.tm_year < 1900 || tm.tm_year > 2200 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
      tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
      tm.tm_sec > 60) {
    throw std::invalid_argument("not a time of this era: " + s);
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const std::time_t t = timegm(&tm);
  return clock::from_time_t(t) + std::chrono::microseconds(micros);
}

inventory_model::state inventory_model::empty(const std::string&) { return state{}; }

inventory_model::state inventory_model::decode(const boost::json::value& v) {
  const auto& o = v.as_object();
  const auto schema = num(o, "schema");
  if (schema != 1) {
    throw std::invalid_argument("unknown inventory snapshot schema " + std::to_string(schema));
  }
  state s;
  s.on_hand = num(o, "on_hand");
  s.low_stock_threshold = num(o, "low_stock_threshold");
  if (auto it = o.find("low"); it != o.end() && it->value().is_bool()) {
    s.low = it->value().as_bool();
  } else {
    s.low = s.on_hand <= s.low_stock_threshold;
  }
  if (auto it = o.find("reservations"); it != o.end()) {
    for (const auto& r : it->value().as_array()) {
      const auto& ro = r.as_object();
      s.reservations.push_back({str(ro, "id"), num(ro, "quantity"), parse_time(str(ro, "expires_at")),
                                str(ro, "reserved_at")});
      s.reserved += s.reservations.back().quantity;
    }
  }
  if (auto it = o.find("settled"); it != o.end()) {
    for (const auto& r : it->value().as_array()) {
      const auto& ro = r.as_object();
      s.settled.push_back({str(ro, "id"), str(ro, "outcome"), num(ro, "quantity"), str(ro, "at")});
    }
  }
  s.updated_at = str(o, "updated_at");
  return s;
}

boost::json::value inventory_model::encode(const state& s) {
  boost::json::array reservations;
  reservations.reserve(s.reservations.size());
  for (const auto& r : s.reservations) {
    reservations.push_back(boost::json::object{{"id", r.id},
                                               {"quantity", r.quantity},
                                               {"expires_at", format_time(r.expires_at)},
                                               {"reserved_at", r.reserved_at}});
  }
  boost::json::array settled;
  settled.reserve(s.settled.size());
  for (const auto& r : s.settled) {
    settled.push_back(
        boost::json::object{{"id", r.id}, {"outcome", r.outcome}, {"quantity", r.quantity}, {"at", r.at}});
  }
  return boost::json::object{{"schema", schema_version},
                             {"on_hand", s.on_hand},
                             {"reserved", s.reserved},
                             {"low_stock_threshold", s.low_stock_threshold},
                             {"reservations", std::move(reservations)},
                             {"low", s.low},
                             {"settled", std::move(settled)},
                             {"updated_at", s.updated_at}};
}

// When the earliest open reservation runs out: the periodic sweep (app/housekeeping) finds the entities
// with something to expire through this column.
namespace {
std::optional<std::string> next_expiry(const inventory_model::state& s) {
  if (s.reservations.empty()) {
    return std::nullopt;
  }
  auto earliest = s.reservations.front().expires_at;
  for (const auto& r : s.reservations) {
    earliest = std::min(earliest, r.expires_at);
  }
  return inventory_model::format_time(earliest);
}
}  // namespace

std::vector<protocol::projection_row> inventory_model::project(const std::string& id, const state& s,
                                                               std::int64_t version) {
  using protocol::column_type;
  return {protocol::projection_row{
      "inventory",
      {{"product_id", column_type::uuid, id},
       {"on_hand", column_type::integer, std::to_string(s.on_hand)},
       {"reserved", column_type::integer, std::to_string(s.reserved)},
       {"low_stock_threshold", column_type::integer, std::to_string(s.low_stock_threshold)},
       {"version", column_type::bigint, std::to_string(version)},
       {"updated_at", column_type::timestamptz, s.updated_at.empty() ? format_time(clock::now()) : s.updated_at},
       {"next_expiry", column_type::timestamptz, next_expiry(s)}}}};
}

const protocol::command_meta* inventory_model::meta_of(const caf::message& msg) {
  return protocol::meta_among<protocol::inventory_get, protocol::inventory_adjust, protocol::inventory_reserve,
                              protocol::inventory_commit, protocol::inventory_release, protocol::inventory_expire,
                              protocol::inventory_set_threshold>(msg);
}

caf::error inventory_model::admit(const state&, std::int64_t, const caf::message&, const protocol::command_meta&) {
  return {};
}

caf::message inventory_model::current(const std::string& id, const state& s, std::int64_t version) {
  return caf::make_message(view(id, s, version));
}

protocol::inventory_view inventory_model::view(const std::string& id, const state& s, std::int64_t version) {
  return protocol::inventory_view{id, s.on_hand, s.reserved, s.on_hand - s.reserved, s.low_stock_threshold, version};
}

bool inventory_model::handle(protocol::entity_context<state>& ctx, const caf::message& msg) {
  const protocol::command_meta* meta = meta_of(msg);
  if (!meta) {
    return false;
  }
  const auto& id = ctx.id();
  if (!ctx.exists()) {
    // Every product gets its inventory (version 1) in the transaction that creates it.
    ctx.reject(errc::not_found, "no inventory for product " + id);
    return true;
  }
  const auto now = clock::now();
  change c{ctx.state(), {}, *meta, id, format_time(now)};
  c.drop_expired(now);
  const bool expired = !c.events.empty();

  // An accepted change (the expiry before it included) under the next version.
  auto accept = [&] {
    c.next.updated_at = c.at;
    auto answer = caf::make_message(view(id, c.next, ctx.version() + 1));
    ctx.commit(std::move(c.next), std::move(c.events), std::move(answer));
  };
  // Nothing to change for the command itself: the current view (after writing the expiry, if any).
  auto unchanged = [&] {
    if (expired) {
      accept();
    } else {
      ctx.reply(caf::make_message(view(id, ctx.state(), ctx.version())));
    }
  };
  auto& s = c.next;

  if (as<protocol::inventory_get>(msg) || as<protocol::inventory_expire>(msg)) {
    unchanged();
    return true;
  }

  if (auto* cmd = as<protocol::inventory_adjust>(msg)) {
    if (cmd->delta == 0) {
      ctx.reject(errc::invalid, "delta must not be 0");
      return true;
    }
    if (cmd->reason.empty() || cmd->reason.size() > 500) {
      ctx.reject(errc::invalid, "an adjustment needs a reason of 1 to 500 characters");
      return true;
    }
    const std::int64_t on_hand = s.on_hand + cmd->delta;
    if (on_hand < s.reserved) {
      ctx.reject(errc::insufficient_stock,
                 fmt::format("adjusting on hand by {} would leave {} on hand, below the {} reserved (available {})",
                             cmd->delta, on_hand, s.reserved, s.on_hand - s.reserved));
      return true;
    }
    if (on_hand > max_on_hand) {
      ctx.reject(errc::invalid, fmt::format("on hand cannot exceed {}", max_on_hand));
      return true;
    }
    c.move("adjust", on_hand, s.reserved, {{"delta", cmd->delta}, {"reason", cmd->reason}});
    accept();
    return true;
  }

  if (auto* cmd = as<protocol::inventory_set_threshold>(msg)) {
    if (cmd->threshold < 0) {
      ctx.reject(errc::invalid, "the low-stock threshold must be >= 0");
      return true;
    }
    if (cmd->threshold == s.low_stock_threshold) {
      unchanged();
      return true;
    }
    const auto old = s.low_stock_threshold;
    s.low_stock_threshold = cmd->threshold;
    c.emit("LowStockThresholdChanged", {{"old", old}, {"new", cmd->threshold}, {"available", s.on_hand - s.reserved}});
    c.check_low();
    accept();
    return true;
  }

  if (auto* cmd = as<protocol::inventory_reserve>(msg)) {
    if (!valid_reservation_id(cmd->reservation_id)) {
      ctx.reject(errc::invalid, "a reservation id has 1 to 64 printable characters without spaces");
      return true;
    }
    if (cmd->quantity < 1 || cmd->quantity > max_reserve_quantity) {
      ctx.reject(errc::invalid, fmt::format("quantity must be from 1 to {}", max_reserve_quantity));
      return true;
    }
    if (cmd->ttl_ms < 1 || cmd->ttl_ms > max_ttl_ms) {
      ctx.reject(errc::invalid, "ttl_ms must be from 1 ms to 24 h");
      return true;
    }
    if (auto* open = find_open(s, cmd->reservation_id)) {
      if (open->quantity != cmd->quantity) {
        ctx.reject(errc::conflict, fmt::format("reservation {} holds {} units already, not {}", cmd->reservation_id,
                                               open->quantity, cmd->quantity));
      } else {
        unchanged();  // a repeat: reserves nothing more (the deadline stays)
      }
      return true;
    }
    if (auto* done = find_settled(s, cmd->reservation_id)) {
      if (done->outcome == "committed" && done->quantity == cmd->quantity) {
        unchanged();  // a late repeat of a reserve whose reservation was sold
      } else {
        ctx.reject(errc::conflict, fmt::format("reservation {} was {} already; a new reservation needs a new id",
                                               cmd->reservation_id, done->outcome));
      }
      return true;
    }
    const auto available = s.on_hand - s.reserved;
    if (cmd->quantity > available) {
      ctx.reject(errc::insufficient_stock,
                 fmt::format("{} requested, {} available", cmd->quantity, available));
      return true;
    }
    const auto expires_at = now + std::chrono::milliseconds(cmd->ttl_ms);
    s.reservations.push_back({cmd->reservation_id, cmd->quantity, expires_at, c.at});
    c.emit("StockReserved", {{"reservation_id", cmd->reservation_id},
                             {"quantity", cmd->quantity},
                             {"expires_at", format_time(expires_at)}});
    c.move("reserve", s.on_hand, s.reserved + cmd->quantity, {{"reservation_id", cmd->reservation_id}});
    accept();
    return true;
  }

  if (auto* cmd = as<protocol::inventory_commit>(msg)) {
    if (auto* open = find_open(s, cmd->reservation_id)) {
      const auto r = *open;
      s.reservations.erase(s.reservations.begin() + (open - s.reservations.data()));
      c.settle(r, "committed");
      c.emit("StockCommitted", {{"reservation_id", r.id}, {"quantity", r.quantity}});
      c.move("commit", s.on_hand - r.quantity, s.reserved - r.quantity, {{"reservation_id", r.id}});
      accept();
      return true;
    }
    if (auto* done = find_settled(s, cmd->reservation_id)) {
      if (done->outcome == "committed") {
        unchanged();  // committed before: harmless
      } else {
        ctx.reject(errc::conflict, fmt::format("reservation {} was {}; its units are no longer held",
                                               cmd->reservation_id, done->outcome));
      }
      return true;
    }
    ctx.reject(errc::not_found, "no reservation " + cmd->reservation_id + " for product " + id);
    return true;
  }

  if (auto* cmd = as<protocol::inventory_release>(msg)) {
    if (auto* open = find_open(s, cmd->reservation_id)) {
      const auto r = *open;
      s.reservations.erase(s.reservations.begin() + (open - s.reservations.data()));
      c.settle(r, "released");
      c.emit("StockReleased", {{"reservation_id", r.id}, {"quantity", r.quantity}});
      c.move("release", s.on_hand, s.reserved - r.quantity, {{"reservation_id", r.id}});
      accept();
      return true;
    }
    auto* done = find_settled(s, cmd->reservation_id);
    if (done && done->outcome == "committed") {
      ctx.reject(errc::conflict, "reservation " + cmd->reservation_id + " was committed; its units are sold");
      return true;
    }
    unchanged();  // released or expired already, or never reserved: nothing is held
    return true;
  }
  return false;
}

}  // namespace mercato::actors
