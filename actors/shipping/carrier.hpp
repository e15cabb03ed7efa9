#pragma once
// What a shipping carrier does for mercato, as a real one would implement it: create the shipment of
// an order (carrier name, tracking number, label URL) and, for carriers whose labels mercato serves,
// render the label document. Creation answers through `done`, exactly once, on any thread.

#include <functional>
#include <optional>
#include <string>

#include <caf/expected.hpp>

#include "actors/protocol/order_messages.hpp"

namespace mercato::actors {

struct shipment_request {
  std::string order_id;
  std::string order_number;
  std::string shipping_address;  // JSON object text
  std::string label_base_url;    // where the API serves labels: <base>/<shipment id>/label
};

class carrier {
 public:
  using callback = std::function<void(caf::expected<protocol::order_shipment>)>;
  virtual ~carrier() = default;

  virtual std::string name() const = 0;
  virtual void create_shipment(const shipment_request& request, callback done) = 0;
  // The label document of a shipment this carrier made, and its media type; nullopt when the carrier
  // hosts its labels itself (its label_url points there).
  struct document {
    std::string media_type;
    std::string body;
  };
  virtual std::optional<document> label(const protocol::order_view& order, const protocol::order_shipment& s) const = 0;
};

// The built-in `sandbox` carrier: deterministic (shipment id and tracking number from the order id),
// answers at once, and renders an SVG label (carrier, tracking number, order number, address).
class sandbox_carrier final : public carrier {
 public:
  std::string name() const override { return "sandbox"; }
  void create_shipment(const shipment_request& request, callback done) override;
  std::optional<document> label(const protocol::order_view& order, const protocol::order_shipment& s) const override;
};

}  // namespace mercato::actors
