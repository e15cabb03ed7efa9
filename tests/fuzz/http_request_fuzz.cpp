// An HTTP/1.x request as bytes (head and body) through Beast's parser with the server's limits, then the
// real pipeline and routes (edge_harness.hpp). What the session itself answers before the pipeline
// (413, 431, malformed requests, the Host rule) is checked by the same rule.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "edge_harness.hpp"

namespace bhttp = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& edge = mercato::fuzz::the_edge();
  if (size == 0) {
    return 0;
  }
  bhttp::request_parser<bhttp::string_body> parser;
  // The server's defaults (config::http_settings); bodies beyond 64 KiB only cost time here.
  parser.body_limit(1024 * 1024);
  parser.header_limit(16 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (!parser.is_done() && used < size) {
    const auto n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == bhttp::error::need_more) {
      ec = {};
      break;
    }
    if (ec || n == 0) {
      break;
    }
    used += n;
  }
  if (!ec && !parser.is_done() && parser.got_some()) {
    parser.put_eof(ec);  // the peer closed: a body delimited by the end of the stream is complete
  }
  if (ec || !parser.is_done()) {
    return 0;  // the session answers these itself (400, 413, 431) or waits for more bytes
  }
  const auto& head = parser.get();
  const auto hosts = head.count(bhttp::field::host);
  if (hosts > 1 || (hosts == 0 && head.version() >= 11)) {
    return 0;  // the session's 400 (RFC 9112 §3.2)
  }
  auto ctx = std::make_shared<mercato::http::request_context>();
  ctx->raw = parser.release();
  ctx->client_ip = "192.0.2.1";
  edge.sign_in(*ctx);
  auto answer = edge.run(ctx);
  mercato::fuzz::check_answer(*ctx, answer);
  return 0;
}
