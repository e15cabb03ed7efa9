#include "support/http_client.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include "support/contract_proxy.hpp"

namespace mercato::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

std::string http_reply::header(const std::string& name) const {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  auto it = headers.find(lower);
  return it == headers.end() ? std::string{} : it->second;
}

boost::json::value http_reply::json() const { return boost::json::parse(body); }

// One keep-alive connection to one port.
struct connection {
  std::uint16_t port = 0;
  std::unique_ptr<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  void connect(net::io_context& ioc, const std::string& host, const std::string& source) {
    stream = std::make_unique<beast::tcp_stream>(ioc);
    stream->expires_after(std::chrono::seconds(10));
    if (!source.empty()) {
      const auto from = net::ip::make_address(source);
      stream->socket().open(from.is_v4() ? tcp::v4() : tcp::v6());
      stream->socket().bind(tcp::endpoint(from, 0));
    }
    stream->connect(tcp::endpoint(net::ip::make_address(host), port));
    buffer.clear();
  }

  // `head`: the answer to a HEAD request, whose Content-Length announces a body that never comes.
  // Read asynchronously so that the stream's timeout applies (a synchronous read would wait for ever
  // on a server that never answers).
  http_reply read_one(net::io_context& ioc, bool head = false) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    parser.skip(head);
    stream->expires_after(std::chrono::seconds(30));
    boost::system::error_code failed;
    bhttp::async_read(*stream, buffer, parser, [&failed](boost::system::error_code ec, std::size_t) { failed = ec; });
    ioc.restart();
    ioc.run();
    if (failed) {
      throw boost::system::system_error(failed);
    }
    auto res = parser.release();
    http_reply out;
    out.status = res.result_int();
    for (const auto& f : res) {
      std::string name{f.name_string()};
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      out.headers[name] = std::string(f.value());
    }
    out.body = std::move(res.body());
    if (!res.keep_alive()) {
      stream.reset();
    }
    return out;
  }
};

struct http_client::impl {
  std::string host;
  std::string source;
  net::io_context ioc;
  connection direct;                  // the port the client was given, or the node behind a contract proxy
  std::optional<connection> proxied;  // the contract proxy, when the port given is one

  http_reply exchange(connection& conn, const std::string& method, const std::string& target, const std::string& body,
                      const std::vector<std::pair<std::string, std::string>>& headers) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!conn.stream) {
        conn.connect(ioc, host, source);
      }
      bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
      req.set(bhttp::field::host, host);
      for (const auto& [k, v] : headers) {
        req.set(k, v);
      }
      if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
        req.body() = body;
        req.prepare_payload();
      }
      try {
        conn.stream->expires_after(std::chrono::seconds(30));
        bhttp::write(*conn.stream, req);
        return conn.read_one(ioc, method == "HEAD");
      } catch (const boost::system::system_error&) {
        // The server may have closed an idle keep-alive connection: reconnect once.
        conn.stream.reset();
        if (attempt == 1) {
          throw;
        }
      }
    }
    throw std::logic_error("unreachable");
  }
};

http_client::http_client(std::uint16_t port, std::string host, std::string source)
    : impl_(std::make_unique<impl>()) {
  auto loopback = [](const std::string& a) { return a.rfind("127.", 0) == 0 || a == "::1"; };
  if (!loopback(host) || (!source.empty() && !loopback(source))) {
    throw std::invalid_argument("tests talk to loopback only");
  }
  impl_->host = std::move(host);
  impl_->source = std::move(source);
  impl_->direct.port = port;
  if (const auto node = contract::node_behind(port)) {
    impl_->direct.port = *node;
    impl_->proxied.emplace();
    impl_->proxied->port = port;
  }
}

http_client::~http_client() = default;

http_reply http_client::request(const std::string& method, const std::string& target, const std::string& body,
                                const std::vector<std::pair<std::string, std::string>>& headers) {
  if (impl_->proxied && contract::forwards_unchanged(method, target, body, headers)) {
    auto reply = impl_->exchange(*impl_->proxied, method, target, body, headers);
    contract::count_exchange(true);
    const auto problems = contract::violations(reply);
    if (!problems.empty()) {
      contract::report(method, target, reply, problems);
    }
    return reply;
  }
  if (impl_->proxied) {
    contract::count_exchange(false);
  }
  return impl_->exchange(impl_->direct, method, target, body, headers);
}

// Always to the node itself: raw bytes (malformed requests, pipelining) cannot go through a proxy.
std::vector<http_reply> http_client::raw(const std::string& bytes, std::size_t responses) {
  auto& conn = impl_->direct;
  conn.connect(impl_->ioc, impl_->host, impl_->source);
  net::write(conn.stream->socket(), net::buffer(bytes));
  std::vector<http_reply> out;
  for (std::size_t i = 0; i < responses; ++i) {
    out.push_back(conn.read_one(impl_->ioc));
    if (!conn.stream) {
      break;
    }
  }
  conn.stream.reset();
  return out;
}

double metric(http_client& c, const std::string& series) {
  const auto body = c.get("/metrics").body;
  const auto at = body.find("\n" + series + " ");
  if (at == std::string::npos) {
    return -1;
  }
  return std::stod(body.substr(at + series.size() + 2));
}

bool wait_for_status(std::uint16_t port, const std::string& path, unsigned status, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      http_client c{port};
      if (c.get(path).status == status) {
        return true;
      }
    } catch (const std::exception&) {
      // not listening yet
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace mercato::test
