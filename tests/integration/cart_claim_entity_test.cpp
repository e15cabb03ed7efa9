// The cart entity's side of a claim (POST /carts/{id}/claim) and of price refreshes, through the entity
// runtime on a real PostgreSQL: every step of a claim is idempotent, so a claim that stops between steps
// and is retried neither loses nor doubles a line; a merge caps at what is available and says so; a
// closed cart takes no more changes; a price refresh is a committed change only when a price differs.
#include <doctest/doctest.h>

#include <string>

#include <caf/all.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "support/cart_runtime.hpp"

using namespace mercato;
using namespace mercato::test;

namespace {

constexpr const char* guest_token_hash = "5f1c0a4b2e3d4c5b6a798877665544332211ffeeddccbbaa9988776655443322";
constexpr const char* other_user = "7f1a2b3c-0000-4000-8000-000000000002";

template <class Command>
Command as_guest(Command c) {
  c.meta.request_id = "req-guest";
  c.meta.command_id = fresh_command_id();
  c.meta.credential_hash = guest_token_hash;
  c.meta.user_id = test_owner;  // the signed-in user claiming it; the token is what admits them
  return c;
}

template <class Command>
Command as_owner(Command c) {
  c.meta.request_id = "req-owner";
  c.meta.command_id = fresh_command_id();
  c.meta.user_id = test_owner;
  return c;
}

protocol::cart_open guest_open() {
  protocol::cart_open c;
  c.token_hash = guest_token_hash;
  c.meta.request_id = "req-open-guest";
  c.meta.command_id = fresh_command_id();
  return c;
}

const protocol::cart_line* line_of(const protocol::cart_view& v, const std::string& product) {
  for (const auto& l : v.items) {
    if (l.product_id == product) {
      return &l;
    }
  }
  return nullptr;
}

std::string code(const caf::expected<protocol::cart_view>& r) { return r ? std::string("ok") : error_code(r.error()); }

}  // namespace

TEST_CASE_FIXTURE(cart_db_fixture, "claim steps: hand over, merge once, close; a retry at any step changes nothing") {
  cart_runtime rt{{db.dsn()}};
  const std::string guest = "c1a1a1a1-0000-4000-8000-000000000001";
  const std::string mine = "c1a1a1a1-0000-4000-8000-000000000002";
  REQUIRE(rt.ask(guest, guest_open()));
  REQUIRE(rt.ask(mine, open_cmd()));
  auto add_guest = [&](int n, std::int32_t q) {
    auto c = as_guest(protocol::cart_add_item{});
    c.line = demo_line(n, q);
    return rt.ask(guest, c);
  };
  REQUIRE(add_guest(1, 3));
  REQUIRE(add_guest(2, 1));
  REQUIRE(add_guest(3, 2));
  REQUIRE(rt.ask(mine, add_cmd(1, 2)));
  REQUIRE(rt.ask(mine, add_cmd(4, 1)));

  // Step 1: the guest cart stops taking changes and answers its lines.
  auto hand = as_guest(protocol::cart_hand_over{});
  hand.into_cart_id = mine;
  auto handed = rt.ask(guest, hand);
  REQUIRE_MESSAGE(handed, code(handed));
  CHECK(handed->status == "merging");
  CHECK(handed->merged_into == mine);
  CHECK(handed->items.size() == 3);
  // A change now is refused; a second hand-over (even to another cart) answers the first target.
  auto late = as_guest(protocol::cart_add_item{});
  late.line = demo_line(5, 1);
  CHECK(code(rt.ask(guest, late)) == "conflict");
  auto again = as_guest(protocol::cart_hand_over{});
  again.into_cart_id = "c1a1a1a1-0000-4000-8000-0000000000ff";
  auto handed_again = rt.ask(guest, again);
  REQUIRE(handed_again);
  CHECK(handed_again->merged_into == mine);
  CHECK(handed_again->version == handed->version);

  // Step 2: summed and capped. Product 1: 2 + 3 wanted, 4 available; product 2: no longer sold;
  // product 3: plenty.
  auto merge = as_owner(protocol::cart_merge{});
  merge.source_cart_id = guest;
  merge.lines = handed->items;
  merge.lines[0].unit_price = 2222;  // the catalog's price now
  merge.available = {4, -1, 100};
  auto merged = rt.ask(mine, merge);
  REQUIRE_MESSAGE(merged, code(merged));
  REQUIRE(line_of(*merged, demo_line(1).product_id));
  CHECK(line_of(*merged, demo_line(1).product_id)->quantity == 4);
  CHECK(line_of(*merged, demo_line(1).product_id)->unit_price == 2222);
  CHECK(line_of(*merged, demo_line(1).product_id)->previous_unit_price == demo_line(1).unit_price);
  CHECK(line_of(*merged, demo_line(2).product_id) == nullptr);
  CHECK(line_of(*merged, demo_line(3).product_id)->quantity == 2);
  CHECK(line_of(*merged, demo_line(4).product_id)->quantity == 1);
  REQUIRE(merged->adjustments.size() == 2);
  CHECK(merged->adjustments[0].product_id == demo_line(1).product_id);
  CHECK(merged->adjustments[0].requested == 5);
  CHECK(merged->adjustments[0].quantity == 4);
  CHECK(merged->adjustments[0].reason == "insufficient_stock");
  CHECK(merged->adjustments[1].product_id == demo_line(2).product_id);
  CHECK(merged->adjustments[1].quantity == 0);
  CHECK(merged->adjustments[1].reason == "unavailable");
  CHECK(stored_version(mine) == merged->version);

  // The same merge again (a claim retried after a crash before step 3): applied once only.
  merge.meta.command_id = fresh_command_id();
  auto remerged = rt.ask(mine, merge);
  REQUIRE(remerged);
  CHECK(remerged->version == merged->version);
  CHECK(line_of(*remerged, demo_line(1).product_id)->quantity == 4);
  CHECK(line_of(*remerged, demo_line(3).product_id)->quantity == 2);

  // Step 3, twice.
  auto closed = rt.ask(guest, as_guest(protocol::cart_close_merged{}));
  REQUIRE_MESSAGE(closed, code(closed));
  CHECK(closed->status == "merged");
  auto reclosed = rt.ask(guest, as_guest(protocol::cart_close_merged{}));
  REQUIRE(reclosed);
  CHECK(reclosed->version == closed->version);
  CHECK(stored_version(guest) == closed->version);
  CHECK(count("SELECT COUNT(*) FROM carts WHERE id = '" + guest + "' AND status = 'merged'") == 1);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = '" + mine + "' AND event_type = 'CartsMerged'") == 1);

  // A closed cart can be neither changed nor claimed.
  CHECK(code(rt.ask(guest, late)) == "conflict");
  auto claim = as_guest(protocol::cart_claim{});
  claim.owner_user_id = test_owner;
  CHECK(code(rt.ask(guest, claim)) == "conflict");
}

TEST_CASE_FIXTURE(cart_db_fixture, "claim without an open cart: the guest cart becomes the user's, its token stops working") {
  cart_runtime rt{{db.dsn()}};
  const std::string guest = "c1a1a1a1-0000-4000-8000-000000000011";
  REQUIRE(rt.ask(guest, guest_open()));
  auto add = as_guest(protocol::cart_add_item{});
  add.line = demo_line(7, 2);
  REQUIRE(rt.ask(guest, add));

  auto claim = as_guest(protocol::cart_claim{});
  claim.owner_user_id = test_owner;
  auto claimed = rt.ask(guest, claim);
  REQUIRE_MESSAGE(claimed, code(claimed));
  CHECK(claimed->owner_user_id == test_owner);
  CHECK(claimed->items.size() == 1);
  CHECK(count("SELECT COUNT(*) FROM carts WHERE id = '" + guest + "' AND owner_user_id = '" + test_owner + "'") == 1);

  // The token alone no longer opens it (another user holding it is told it does not exist) ...
  auto by_token = as_guest(protocol::cart_get{});
  by_token.meta.user_id = other_user;
  by_token.meta.command_id.clear();
  CHECK(code(rt.ask(guest, by_token)) == "not_found");
  // ... and a repeat of the claim by the same user answers the cart unchanged.
  claim.meta.command_id = fresh_command_id();
  auto repeat = rt.ask(guest, claim);
  REQUIRE(repeat);
  CHECK(repeat->version == claimed->version);
}

TEST_CASE_FIXTURE(cart_db_fixture, "a price refresh changes only lines whose price differs, and only then the version") {
  cart_runtime rt{{db.dsn()}};
  const std::string id = "c1a1a1a1-0000-4000-8000-000000000021";
  REQUIRE(rt.ask(id, open_cmd()));
  REQUIRE(rt.ask(id, add_cmd(1, 2)));
  auto before = rt.ask(id, add_cmd(2, 1));
  REQUIRE(before);

  auto same = as_owner(protocol::cart_reprice{});
  same.prices = {demo_line(1), demo_line(2)};
  auto unchanged = rt.ask(id, same);
  REQUIRE(unchanged);
  CHECK(unchanged->version == before->version);
  CHECK(stored_version(id) == before->version);

  auto change = as_owner(protocol::cart_reprice{});
  auto dearer = demo_line(2);
  dearer.unit_price = 5000;
  change.prices = {demo_line(1), dearer};
  auto changed = rt.ask(id, change);
  REQUIRE_MESSAGE(changed, code(changed));
  CHECK(changed->version == before->version + 1);
  CHECK(changed->subtotal == 2 * demo_line(1).unit_price + 5000);
  CHECK(line_of(*changed, dearer.product_id)->unit_price == 5000);
  CHECK(line_of(*changed, dearer.product_id)->previous_unit_price == demo_line(2).unit_price);
  CHECK(line_of(*changed, demo_line(1).product_id)->previous_unit_price == 0);
  CHECK(stored_version(id) == changed->version);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = '" + id +
              "' AND event_type = 'CartPricesRefreshed' AND data->'changes'->0->>'new_unit_price' = '5000'") == 1);

  // The shopper setting the line's quantity has seen the price: the mark goes.
  auto set = as_owner(protocol::cart_set_quantity{});
  set.product_id = dearer.product_id;
  set.quantity = 2;
  auto seen = rt.ask(id, set);
  REQUIRE(seen);
  CHECK(line_of(*seen, dearer.product_id)->previous_unit_price == 0);

  // Another user cannot refresh (or learn of) the cart.
  auto foreign = as_owner(protocol::cart_reprice{});
  foreign.meta.user_id = other_user;
  foreign.prices = {dearer};
  CHECK(code(rt.ask(id, foreign)) == "not_found");
}
