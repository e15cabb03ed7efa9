#include <cstdint>
#include <cstdio>

#include <boost/json/parse.hpp>

#include "actors/shipping/carrier.hpp"

namespace mercato::actors {
namespace {

// FNV-1a: a stable 64-bit hash (the same shipment for the same order on every node and run).
std::uint64_t fnv1a(const std::string& text, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string xml_escape(const std::string& v) {
  std::string out;
  for (char ch : v) {
    switch (ch) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(ch);
    }
  }
  return out;
}

}  // namespace

void sandbox_carrier::create_shipment(const shipment_request& request, callback done) {
  const auto a = fnv1a(request.order_id, 1);
  const auto b = fnv1a(request.order_id, 2);
  char id[40];
  std::snprintf(id, sizeof id, "%08llx-%04llx-4%03llx-8%03llx-%012llx", static_cast<unsigned long long>(a >> 32),
                static_cast<unsigned long long>((a >> 16) & 0xffff), static_cast<unsigned long long>(a & 0xfff),
                static_cast<unsigned long long>(b >> 52), static_cast<unsigned long long>(b & 0xffffffffffffull));
  char tracking[24];
  std::snprintf(tracking, sizeof tracking, "SBX%012llu", static_cast<unsigned long long>(b % 1000000000000ull));
  protocol::order_shipment s;
  s.id = id;
  s.carrier = name();
  s.tracking_number = tracking;
  s.label_url = request.label_base_url + "/" + s.id + "/label";
  done(std::move(s));
}

std::optional<carrier::document> sandbox_carrier::label(const protocol::order_view& order,
                                                        const protocol::order_shipment& s) const {
  boost::system::error_code ec;
  const auto to = boost::json::parse(order.shipping_address, ec);
  auto field = [&](const char* k) {
    return !ec && to.is_object() && to.as_object().contains(k) && to.at(k).is_string()
               ? std::string(to.at(k).as_string())
               : std::string{};
  };
  const std::string text = "<text x=\"16\" font-family=\"monospace\" ";
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"240\" viewBox=\"0 0 400 240\">"
                    "<rect x=\"1\" y=\"1\" width=\"398\" height=\"238\" fill=\"white\" stroke=\"black\"/>" +
                    text + "y=\"32\" font-size=\"18\">" + xml_escape(s.carrier + " " + s.tracking_number) + "</text>" +
                    text + "y=\"64\" font-size=\"14\">Order " + xml_escape(order.order_number) + "</text>" + text +
                    "y=\"104\" font-size=\"14\">" + xml_escape(field("name")) + "</text>" + text +
                    "y=\"124\" font-size=\"14\">" + xml_escape(field("line1")) + "</text>" + text +
                    "y=\"144\" font-size=\"14\">" +
                    xml_escape(field("postal_code") + " " + field("city") + " " + field("country")) + "</text></svg>";
  return document{"image/svg+xml", std::move(svg)};
}

}  // namespace mercato::actors
