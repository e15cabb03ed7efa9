#include "support/ws_client.hpp"

#include <fstream>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

namespace mercato::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

struct ws_client::impl {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buffer;
};

ws_client::ws_client(std::uint16_t port, std::string target, headers extra, int receive_buffer)
    : impl_(std::make_unique<impl>()) {
  auto& sock = impl_->ws.next_layer();
  const tcp::endpoint ep{net::ip::make_address("127.0.0.1"), port};
  sock.open(ep.protocol());
  if (receive_buffer > 0) {
    sock.set_option(net::socket_base::receive_buffer_size(receive_buffer));
  }
  sock.connect(ep);
  impl_->ws.set_option(websocket::stream_base::decorator([extra](websocket::request_type& req) {
    for (const auto& [k, v] : extra) {
      req.set(k, v);
    }
  }));
  websocket::response_type res;
  beast::error_code ec;
  impl_->ws.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
  if (ec) {
    throw std::runtime_error("websocket upgrade of " + target + " refused: HTTP " +
                             std::to_string(res.result_int()) + " " + res.body() + " (" + ec.message() + ")");
  }
  // Every message goes out as one frame in one write (masking buffer included), so an oversized message
  // reaches the server whole instead of as 4 KiB pieces the server may stop reading halfway.
  impl_->ws.auto_fragment(false);
  impl_->ws.write_buffer_bytes(64 * 1024);
  impl_->ws.text(true);
}

ws_client::~ws_client() = default;

void ws_client::send(const std::string& text) {
  impl_->ws.text(true);
  impl_->ws.write(net::buffer(text));
}

void ws_client::send_binary(const std::string& bytes) {
  impl_->ws.binary(true);
  impl_->ws.write(net::buffer(bytes));
  impl_->ws.text(true);
}

std::optional<std::string> ws_client::read(std::chrono::milliseconds timeout) {
  if (closed_ || timed_out_) {
    return std::nullopt;
  }
  bool done = false;
  beast::error_code result;
  impl_->buffer.clear();
  impl_->ws.async_read(impl_->buffer, [&](beast::error_code ec, std::size_t) {
    done = true;
    result = ec;
  });
  impl_->ioc.restart();
  impl_->ioc.run_for(timeout);
  if (!done) {
    timed_out_ = true;
    error_ = "no message within " + std::to_string(timeout.count()) + " ms";
    beast::error_code ignored;
    impl_->ws.next_layer().cancel(ignored);
    impl_->ioc.restart();
    impl_->ioc.run_for(std::chrono::seconds(1));
    return std::nullopt;
  }
  if (result) {
    closed_ = true;
    error_ = result.message();
    close_code_ = impl_->ws.reason().code;
    return std::nullopt;
  }
  return beast::buffers_to_string(impl_->buffer.data());
}

boost::json::value ws_client::read_json(std::chrono::milliseconds timeout) {
  auto m = read(timeout);
  REQUIRE_MESSAGE(m.has_value(), "no websocket message: " << error_ << " (close code " << close_code_ << ")");
  return boost::json::parse(*m);
}

boost::json::value ws_client::read_until(const std::string& type, std::vector<boost::json::value>* skipped,
                                         std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    REQUIRE_MESSAGE(left.count() > 0, "no \"" << type << "\" message in time");
    auto v = read_json(left);
    if (v.as_object().at("type").as_string() == type) {
      return v;
    }
    if (skipped) {
      skipped->push_back(std::move(v));
    }
  }
}

void ws_client::close() {
  if (closed_ || timed_out_) {
    return;
  }
  beast::error_code ec;
  impl_->ws.close(websocket::close_code::normal, ec);
  closed_ = true;
}

unsigned ws_refused_status(std::uint16_t port, const std::string& target, const ws_client::headers& extra) {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  ws.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
  ws.set_option(websocket::stream_base::decorator([extra](websocket::request_type& req) {
    for (const auto& [k, v] : extra) {
      req.set(k, v);
    }
  }));
  websocket::response_type res;
  beast::error_code ec;
  ws.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
  return ec ? res.result_int() : 101;
}

long rss_kib(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return 0;
}

}  // namespace mercato::test
