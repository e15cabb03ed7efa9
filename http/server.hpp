#pragma once
// The Beast HTTP/1.1 edge: an acceptor, one session per connection on its own strand, keep-alive and
// pipelining (requests are answered in order), timeouts and size limits on every read, and a
// graceful drain on shutdown.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/network_list.hpp"
#include "config/settings.hpp"
#include "http/pipeline.hpp"
#include "http/ws/ws_session.hpp"

namespace mercato::telemetry {
class metrics;
}

namespace mercato::http {

class session;
namespace ws {
class hub;
}

class server {
 public:
  server(const config::http_settings& settings, const pipeline& handler, telemetry::metrics* metrics);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Before start(): upgrades of GET /api/v1/ws that its route accepts (101) become live-updates sessions
  // of `live`; shutdown() closes them with 1001. `live` must outlive the server.
  void attach_live_updates(ws::hub& live, const ws::session_options& opts) {
    live_ = &live;
    live_options_ = opts;
  }
  ws::hub* live_hub() const { return live_; }
  const ws::session_options& live_options() const { return live_options_; }

  // Binds and starts the io threads. Throws std::runtime_error when the address cannot be bound.
  void start();

  // The bound port (useful with port 0 in tests).
  std::uint16_t port() const { return port_; }

  // Stops accepting, lets in-flight requests finish within `grace` (idle connections close at once,
  // busy ones after their response), then stops the io threads. Returns the number of connections
  // that had to be cut at the deadline. Blocking; call from outside the io threads.
  std::size_t shutdown(std::chrono::milliseconds grace);

  std::size_t open_sessions() const;

  // Used by sessions.
  void register_session(const std::shared_ptr<session>& s);
  void unregister_session(const session* s);
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  const config::http_settings& settings() const { return settings_; }
  const config::network_list& trusted_proxies() const { return trusted_proxies_; }
  const pipeline& handler() const { return pipeline_; }
  telemetry::metrics* metrics() const { return metrics_; }

 private:
  void do_accept();
  void refuse(boost::asio::ip::tcp::socket socket);

  config::http_settings settings_;
  config::network_list trusted_proxies_;  // http.trusted_proxies, parsed
  const pipeline& pipeline_;
  telemetry::metrics* metrics_;
  ws::hub* live_ = nullptr;
  ws::session_options live_options_;
  // Declared before the io_context: sessions still queued in it unregister while it is destroyed.
  mutable std::mutex sessions_mutex_;
  std::map<const session*, std::weak_ptr<session>> sessions_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_pause_;  // after a failed accept (out of descriptors); on the acceptor's strand
  std::uint64_t accept_failures_ = 0;       // acceptor's strand only
  // Keeps the io threads running while answers to in-flight requests are still on their way from
  // the database or an actor (during a drain, nothing else may be pending).
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::atomic<bool> draining_{false};
  bool stopped_ = false;
};

}  // namespace mercato::http
