// The snapshot decoder of each entity kind: a snapshot row read back from PostgreSQL is input too (an
// older release wrote it, a person edited it, a disk flipped a bit). The first byte picks the kind
// (cart, inventory, order, payment); the rest is the stored JSON, parsed as the runtime parses it.
// Rules: decode either gives a state or throws a std::exception (the entity runtime turns that into a
// crashed entity, reported); a state it gives encodes to a snapshot that decodes and encodes to itself
// (what is written back is read the same way), and projects (the rows written with the next change).

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "actors/cart/cart_model.hpp"
#include "actors/inventory/inventory_model.hpp"
#include "actors/order/order_model.hpp"
#include "actors/payment/payment_model.hpp"
#include "fuzz_check.hpp"

namespace {

using mercato::fuzz::require;

template <class Model>
void drive(std::string_view text) {
  typename Model::state s;
  try {
    s = Model::decode(boost::json::parse(text));
  } catch (const std::exception&) {
    return;  // unreadable: the runtime reports the entity as crashed
  }
  const auto once = mercato::protocol::encode_state<Model>(s);
  std::string twice;
  try {
    twice = mercato::protocol::encode_state<Model>(Model::decode(boost::json::parse(once)));
  } catch (const std::exception& e) {
    require(false, "a snapshot we wrote can be read back", std::string(Model::kind) + ": " + once + ": " + e.what());
  }
  require(once == twice, "a snapshot we wrote reads back to the same state",
          std::string(Model::kind) + ": " + once + " then " + twice);
  try {
    (void)Model::project("0f0f0f0f-0000-4000-8000-000000000001", s, 2);
  } catch (const std::exception&) {
    // A state the projection refuses fails its write (the runtime answers the command with an error).
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      drive<mercato::actors::cart_model>(text);
      break;
    case 1:
      drive<mercato::actors::inventory_model>(text);
      break;
    case 2:
      drive<mercato::actors::order_model>(text);
      break;
    default:
      drive<mercato::actors::payment_model>(text);
      break;
  }
  return 0;
}
