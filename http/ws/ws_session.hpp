#pragma once
// One live-updates WebSocket connection: reads client messages (subscribe, unsubscribe, ping) and
// writes what the hub offers, one write in flight, the rest in a bounded coalescing queue.

#include <chrono>
#include <cstddef>
#include <optional>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "http/request.hpp"

namespace mercato::http::ws {

class hub;

struct session_options {
  std::size_t max_subscriptions = 100;      // stock and price items per connection
  std::size_t max_message_bytes = 16 * 1024;  // a larger client message closes with 1009
  std::size_t send_queue_items = 256;       // items waiting for a slow client before it is closed (1008)
  std::chrono::milliseconds write_timeout{10'000};  // one write stuck this long: the client is not reading (1008)
  std::chrono::milliseconds idle_timeout{60'000};   // nothing from the client this long (a ping at half): closed
  std::chrono::milliseconds handshake_timeout{10'000};  // upgrade and closing handshakes
  std::size_t send_buffer_bytes = 64 * 1024;  // SO_SNDBUF of the socket (0: the system's autotuning, up to MiBs)
  std::size_t max_bad_messages = 20;        // error answers within bad_message_window before closing (1008)
  std::chrono::milliseconds bad_message_window{10'000};
};

// Takes over a connection whose request was accepted as an upgrade to /api/v1/ws.
void start_session(boost::beast::tcp_stream&& stream, boost::beast::http::request<boost::beast::http::string_body>&& req,
                   std::optional<principal> caller, hub& live, const session_options& opts);

}  // namespace mercato::http::ws
