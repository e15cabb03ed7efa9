#include "http/server.hpp"

#include "http/client_address.hpp"

#include <algorithm>
#include <ctime>
#include <sstream>
#include <stdexcept>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/version.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "http/ws/hub.hpp"

#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::http {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {

// RFC 9110 IMF-fixdate, recomputed at most once a second per thread.
const std::string& http_date() {
  thread_local std::time_t cached_at = 0;
  thread_local std::string cached;
  const std::time_t now = std::time(nullptr);
  if (now != cached_at) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = buf;
    cached_at = now;
  }
  return cached;
}

// A problem+json answer that closes its connection: the headers every answer of the node carries. Used where
// no request was routed (a malformed request, a connection refused at the limit).
bhttp::response<bhttp::string_body> closing_problem_response(const problem& p) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(p.status), 11};
  res.set(bhttp::field::server, "mercato");
  res.set(bhttp::field::date, http_date());
  res.set("X-Content-Type-Options", "nosniff");
  res.set(bhttp::field::content_type, "application/problem+json");
  res.keep_alive(false);
  res.body() = p.to_json();
  res.prepare_payload();
  return res;
}

}  // namespace

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& socket, server& owner)
      : stream_(std::move(socket)), executor_(stream_.get_executor()), owner_(owner) {
    beast::error_code ec;
    auto peer = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      auto addr = peer.address();
      // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; key it as a.b.c.d.
      if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
        addr = net::ip::make_address_v4(net::ip::v4_mapped, addr.to_v6());
      }
      client_ip_ = addr.to_string();
      // Decided once per connection: only a trusted proxy's requests read X-Forwarded-For.
      peer_is_proxy_ = owner_.trusted_proxies().contains(addr);
    }
  }

  void start() {
    net::dispatch(executor_, [self = shared_from_this()] { self->do_read(); });
  }

  // Called on shutdown: an idle connection closes now, a busy one after its response.
  void drain() {
    net::post(executor_, [self = shared_from_this()] {
      self->closing_ = true;
      if (self->reading_ && !self->parser_->got_some()) {
        self->close();
      }
    });
  }

  void force_close() {
    net::post(executor_, [self = shared_from_this()] { self->close(); });
  }

  ~session() { owner_.unregister_session(this); }

 private:
  void do_read() {
    if (closing_) {
      close();
      return;
    }
    parser_.emplace();
    parser_->body_limit(owner_.settings().max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(owner_.settings().max_header_bytes));
    // Waiting for the next request on a fresh or kept-alive connection may take the idle timeout; a
    // request whose bytes already started arriving (here, or in read_header_bytes when its first bytes
    // come) must complete within the read timeout.
    stream_.expires_after(buffer_.size() > 0 ? owner_.settings().read_timeout : owner_.settings().idle_timeout);
    reading_ = true;
    read_header_bytes();
  }

  // RFC 9112 §5.2: a server must reject obsolete line folding (a header line continued by one starting
  // with a space or tab) or replace it; Beast replaces it silently, so the header block is looked at
  // before Beast parses it: the bytes stay in buffer_ and the parser reads them from there. Reads go on
  // under the deadline set in do_read until the blank line arrives or the header limit is reached.
  void read_header_bytes() {
    const auto data = buffer_.data();
    const std::string_view bytes(static_cast<const char*>(data.data()), data.size());
    const auto end = bytes.find("\r\n\r\n");
    const auto limit = owner_.settings().max_header_bytes;
    if (end == std::string_view::npos && bytes.size() < limit) {
      stream_.async_read_some(buffer_.prepare(std::min<std::size_t>(limit - bytes.size() + 4, 16384)),
                              [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                if (ec) {
                                  self->on_read(ec);
                                  return;
                                }
                                // The request's first bytes: from now on the whole request must arrive
                                // within the read timeout, not the (longer) idle timeout a fresh or
                                // kept-alive connection waits under.
                                const bool first_bytes = self->buffer_.size() == 0 && n > 0;
                                self->buffer_.commit(n);
                                if (first_bytes) {
                                  self->stream_.expires_after(self->owner_.settings().read_timeout);
                                }
                                self->read_header_bytes();
                              });
      return;
    }
    // Skip the empty lines a client may send before the request line (RFC 9112 §2.2).
    const auto first = bytes.find_first_not_of("\r\n");
    const auto head = bytes.substr(0, end == std::string_view::npos ? bytes.size() : end + 2);
    for (auto at = head.find("\r\n", first); at != std::string_view::npos && at + 2 < head.size();
         at = head.find("\r\n", at + 2)) {
      if (head[at + 2] == ' ' || head[at + 2] == '\t') {
        reading_ = false;
        write_error_and_close(invalid_request("obsolete line folding (a header line starting with a space or tab) "
                                              "is not accepted"));
        return;
      }
    }
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec == bhttp::error::end_of_stream || ec == net::error::operation_aborted || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      close();
      return;
    }
    if (ec == bhttp::error::body_limit) {
      write_error_and_close(payload_too_large("the body exceeds the limit of " +
                                              std::to_string(owner_.settings().max_body_bytes) + " bytes"));
      return;
    }
    if (ec == bhttp::error::header_limit) {
      problem p{431, "headers_too_large", "Request header fields too large",
                "the request headers exceed " + std::to_string(owner_.settings().max_header_bytes) + " bytes", {}};
      write_error_and_close(p);
      return;
    }
    if (ec) {
      write_error_and_close(invalid_request("malformed HTTP request: " + ec.message()));
      return;
    }

    // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with more than one, is a 400.
    {
      const auto& req = parser_->get();
      const auto hosts = req.count(bhttp::field::host);
      if (hosts > 1 || (hosts == 0 && req.version() >= 11)) {
        write_error_and_close(invalid_request(hosts > 1 ? "a request must not carry more than one Host header"
                                                        : "an HTTP/1.1 request must carry a Host header"));
        return;
      }
    }
    auto ctx = std::make_shared<request_context>();
    ctx->raw = parser_->release();
    keep_alive_ = ctx->raw.keep_alive();
    head_ = ctx->raw.method() == bhttp::verb::head;
    version_ = ctx->raw.version();
    ctx->client_ip = client_ip_;
    if (peer_is_proxy_) {
      std::string forwarded_for;
      const auto headers = ctx->raw.base().equal_range("X-Forwarded-For");
      for (auto it = headers.first; it != headers.second; ++it) {
        if (!forwarded_for.empty()) {
          forwarded_for.push_back(',');
        }
        forwarded_for.append(it->value().data(), it->value().size());
      }
      ctx->client_ip = client_address(owner_.trusted_proxies(), client_ip_, forwarded_for);
    }
    auto self = shared_from_this();
    // A WebSocket upgrade the live-updates route accepts (101) leaves HTTP: the request and the caller the
    // pipeline authenticated go with the connection.
    auto upgrade = owner_.live_hub() != nullptr && beast::websocket::is_upgrade(ctx->raw) ? ctx : nullptr;
    owner_.handler().dispatch(std::move(ctx), [self, upgrade](response r) {
      net::post(self->executor_, [self, upgrade, r = std::move(r)]() mutable {
        if (upgrade && r.status == 101) {
          self->hand_over(*upgrade);
          return;
        }
        self->write(std::move(r));
      });
    });
  }

  void hand_over(request_context& ctx) {
    upgraded_ = true;
    ws::start_session(std::move(stream_), std::move(ctx.raw), std::move(ctx.caller), *owner_.live_hub(),
                      owner_.live_options());
  }

  template <class Body>
  std::shared_ptr<bhttp::response<Body>> make_response(const response& r, bool keep) const {
    auto res = std::make_shared<bhttp::response<Body>>(static_cast<bhttp::status>(r.status), version_);
    res->set(bhttp::field::server, "mercato");
    res->set(bhttp::field::date, http_date());
    res->set("X-Content-Type-Options", "nosniff");
    if (!r.content_type.empty()) {
      res->set(bhttp::field::content_type, r.content_type);
    }
    for (const auto& [k, v] : r.headers) {
      res->insert(k, v);
    }
    res->keep_alive(keep);
    return res;
  }

  void write(response r) {
    const bool keep = keep_alive_ && !closing_ && !owner_.draining();
    stream_.expires_after(owner_.settings().read_timeout);
    auto on_write = [self = shared_from_this(), keep](beast::error_code ec, std::size_t) {
      if (ec || !keep) {
        self->close();
        return;
      }
      self->do_read();
    };
    if (head_) {
      // HEAD: the GET answer's headers, Content-Length included, and no body.
      auto res = make_response<bhttp::empty_body>(r, keep);
      if (r.status != 204 && r.status != 304) {
        res->content_length(r.body.size());
      }
      bhttp::async_write(stream_, *res, [res, on_write](beast::error_code ec, std::size_t n) { on_write(ec, n); });
      return;
    }
    auto res = make_response<bhttp::string_body>(r, keep);
    res->body() = std::move(r.body);
    if (r.status == 304 || r.status == 204) {
      res->content_length(boost::none);
    } else {
      res->prepare_payload();
    }
    bhttp::async_write(stream_, *res, [res, on_write](beast::error_code ec, std::size_t n) { on_write(ec, n); });
  }

  void write_error_and_close(const problem& p) {
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(closing_problem_response(p));
    res->set("X-Request-Id", generate_request_id());
    res->set("traceparent", "00-" + random_hex(32) + "-" + random_hex(16) + "-01");
    if (owner_.metrics()) {
      owner_.metrics()->observe_http_request("unmatched", "UNKNOWN", p.status, 0.0);
    }
    stream_.expires_after(owner_.settings().read_timeout);
    bhttp::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec) {
        self->close();
        return;
      }
      self->linger();
    });
  }

  // After an error answer the client may still be sending: half-close, then discard what arrives
  // for a moment, so the client reads our answer instead of a connection reset.
  void linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(1));
    discard_ = std::make_shared<std::array<char, 16384>>();
    discard_more();
  }

  void discard_more() {
    stream_.async_read_some(net::buffer(*discard_), [self = shared_from_this()](beast::error_code e, std::size_t) {
      if (e) {
        self->close();
      } else {
        self->discard_more();
      }
    });
  }

  void close() {
    if (upgraded_) {
      return;  // the stream belongs to a live-updates session now
    }
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::tcp_stream::executor_type executor_;  // the connection's strand; stays valid when the stream is handed over
  server& owner_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<std::array<char, 16384>> discard_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool head_ = false;
  bool reading_ = false;
  std::string client_ip_;  // the peer address, for rate limits and logs
  bool peer_is_proxy_ = false;  // the peer is one of http.trusted_proxies
  bool closing_ = false;
  bool upgraded_ = false;
};

namespace {

config::network_list parsed_proxies(const std::string& list) {
  std::string bad;
  auto parsed = config::network_list::parse(list, &bad);
  if (!parsed) {
    throw std::invalid_argument("http.trusted_proxies: not an IP address or CIDR network: " + bad);
  }
  return *parsed;
}

}  // namespace

server::server(const config::http_settings& settings, const pipeline& handler, telemetry::metrics* metrics)
    : settings_(settings),
      trusted_proxies_(parsed_proxies(settings.trusted_proxies)),
      pipeline_(handler),
      metrics_(metrics),
      ioc_(static_cast<int>(settings.threads)),
      acceptor_(net::make_strand(ioc_)),
      accept_pause_(acceptor_.get_executor()) {}

server::~server() { shutdown(std::chrono::milliseconds(0)); }

void server::start() {
  beast::error_code ec;
  const auto address = net::ip::make_address(settings_.bind_address, ec);
  if (ec) {
    throw std::runtime_error("invalid bind address " + settings_.bind_address + ": " + ec.message());
  }
  tcp::endpoint ep{address, settings_.port};
  acceptor_.open(ep.protocol(), ec);
  if (!ec) {
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor_.bind(ep, ec);
  }
  if (!ec) {
    acceptor_.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    throw std::runtime_error("cannot listen on " + settings_.bind_address + ":" + std::to_string(settings_.port) +
                             ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  do_accept();
  work_.emplace(ioc_.get_executor());
  threads_.reserve(settings_.threads);
  for (unsigned i = 0; i < settings_.threads; ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
}

void server::do_accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
      return;
    }
    if (ec) {
      // Out of descriptors or buffers (EMFILE, ENFILE, ENOBUFS): the connection stays queued and the next
      // accept fails at once, so accepting again now would spin. Wait for connections to close.
      if (accept_failures_++ % 100 == 0) {
        telemetry::log_warn("accepting a connection failed; pausing accepts for 50 ms",
                            {{"error", ec.message()}, {"failures", accept_failures_}});
      }
      accept_pause_.expires_after(std::chrono::milliseconds(50));
      accept_pause_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && acceptor_.is_open()) {
          do_accept();
        }
      });
      return;
    }
    if (!draining()) {
      if (open_sessions() >= settings_.max_connections) {
        refuse(std::move(socket));
      } else {
        beast::error_code opt_ec;
        socket.set_option(tcp::no_delay(true), opt_ec);
        auto s = std::make_shared<session>(std::move(socket), *this);
        register_session(s);
        s->start();
      }
    }
    do_accept();
  });
}

// Over http.max_connections: a 503 problem written straight into the new socket (a fresh connection's send
// buffer takes these few hundred bytes whole, so the write never waits) and the connection closed. No session,
// no read: the refusal costs the node nothing it keeps. A client that had already sent its request may see a
// reset instead of the answer (the kernel resets a connection closed with unread data); either way it is refused.
void server::refuse(tcp::socket socket) {
  if (metrics_) {
    metrics_->http_connections_refused.Increment();
  }
  auto res = closing_problem_response(service_unavailable(
      "overloaded", "this node has as many connections open as it accepts; try again shortly"));
  res.set(bhttp::field::retry_after, "1");
  std::ostringstream out;
  out << res;
  const auto bytes = out.str();
  beast::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(net::buffer(bytes), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

void server::register_session(const std::shared_ptr<session>& s) {
  std::lock_guard<std::mutex> lock{sessions_mutex_};
  sessions_[s.get()] = s;
  if (metrics_) {
    metrics_->http_connections.Set(static_cast<double>(sessions_.size()));
  }
}

void server::unregister_session(const session* s) {
  std::lock_guard<std::mutex> lock{sessions_mutex_};
  sessions_.erase(s);
  if (metrics_) {
    metrics_->http_connections.Set(static_cast<double>(sessions_.size()));
  }
}

std::size_t server::open_sessions() const {
  std::lock_guard<std::mutex> lock{sessions_mutex_};
  return sessions_.size();
}

std::size_t server::shutdown(std::chrono::milliseconds grace) {
  if (stopped_) {
    return 0;
  }
  stopped_ = true;
  draining_.store(true, std::memory_order_release);
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
    accept_pause_.cancel();
  });
  auto live = [this] {
    std::vector<std::shared_ptr<session>> out;
    std::lock_guard<std::mutex> lock{sessions_mutex_};
    for (auto& [ptr, weak] : sessions_) {
      if (auto s = weak.lock()) {
        out.push_back(std::move(s));
      }
    }
    return out;
  };
  for (auto& s : live()) {
    s->drain();
  }
  if (live_ != nullptr) {
    live_->close_all();  // 1001: clients reconnect elsewhere
  }
  auto busy = [this] { return open_sessions() > 0 || (live_ != nullptr && live_->connections() > 0); };
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (busy() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto remaining = live();
  const std::size_t cut = remaining.size();
  for (auto& s : remaining) {
    s->force_close();
  }
  remaining.clear();
  // Give forced closes a moment to run before the io threads stop.
  const auto hard_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (open_sessions() > 0 && std::chrono::steady_clock::now() < hard_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  work_.reset();
  ioc_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) {
      t.join();
    }
  }
  threads_.clear();
  return cut;
}

}  // namespace mercato::http
