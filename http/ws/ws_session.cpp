#include "http/ws/ws_session.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <prometheus/counter.h>

#include "http/ws/coalescing_queue.hpp"
#include "http/ws/hub.hpp"
#include "http/ws/live_messages.hpp"

namespace mercato::http::ws {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using steady = std::chrono::steady_clock;

// Control messages (pong, error) waiting at once; a client that pings without reading fills it.
constexpr std::size_t max_control_waiting = 32;

void bump(prometheus::Counter* c) {
  if (c) {
    c->Increment();
  }
}

class ws_session final : public live_sink, public std::enable_shared_from_this<ws_session> {
 public:
  ws_session(beast::tcp_stream&& stream, std::optional<principal> caller, hub& live, const session_options& opts)
      : ws_(std::move(stream)),
        hub_(live),
        opts_(opts),
        caller_(std::move(caller)),
        expiry_(ws_.get_executor()),
        queue_(opts.send_queue_items, max_control_waiting, 4 * opts.send_queue_items + 64) {}

  ~ws_session() override { detach(); }

  void start(bhttp::request<bhttp::string_body>&& req) {
    beast::get_lowest_layer(ws_).expires_never();  // the websocket stream keeps its own timeouts
    if (opts_.send_buffer_bytes > 0) {
      // A bounded kernel send buffer: a client that stops reading shows as a stuck write soon, and the kernel
      // memory per connection stays bounded too (autotuning would let it grow to MiBs).
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().set_option(
          net::socket_base::send_buffer_size(static_cast<int>(opts_.send_buffer_bytes)), ignored);
    }
    websocket::stream_base::timeout t{};
    t.handshake_timeout = opts_.handshake_timeout;
    t.idle_timeout = opts_.idle_timeout;
    t.keep_alive_pings = true;  // a ping at half the idle timeout; a client that never answers is closed
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(bhttp::field::server, "mercato"); }));
    ws_.read_message_max(opts_.max_message_bytes);
    req_ = std::move(req);
    ws_.async_accept(req_, [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  // live_sink: called by the hub with its lock held, from any thread.
  void offer(const live_item& item, item_position at, const shared_message& msg) override {
    std::lock_guard<std::mutex> lock{mutex_};
    if (closing_) {
      return;
    }
    if (writing_ && steady::now() - write_started_ > opts_.write_timeout) {
      slow_locked("the client stopped reading");
      return;
    }
    switch (queue_.push(item, at, msg)) {
      case coalescing_queue::push_result::overflow:
        slow_locked("too many messages waiting for the client");
        return;
      case coalescing_queue::push_result::coalesced:
        bump(hub_.instruments().messages_coalesced);
        break;
      case coalescing_queue::push_result::stale:
        return;
      case coalescing_queue::push_result::queued:
        break;
    }
    schedule_flush_locked();
  }

  void refused(std::vector<live_item> items, const std::string& code, const std::string& detail) override {
    auto self = weak_from_this().lock();
    if (!self) {
      return;
    }
    net::post(ws_.get_executor(), [self, items = std::move(items), msg = error_message(code, detail)] {
      if (items.empty()) {
        self->orders_key_.reset();  // the order feed could not start
      }
      for (const auto& item : items) {
        self->subscribed_.erase(item);
      }
      self->control(msg);
    });
  }

  void going_away() override {
    if (auto self = weak_from_this().lock()) {
      net::post(ws_.get_executor(),
                [self] { self->close_with(websocket::close_code::going_away, "the node is shutting down"); });
    }
  }

 private:
  void on_accept(beast::error_code ec) {
    req_ = {};
    if (ec) {
      return;
    }
    if (!hub_.register_connection(shared_from_this())) {
      close_with(websocket::close_code::try_again_later, "too many live-updates connections on this node");
      do_read();
      return;
    }
    registered_ = true;
    watch_expiry();
    do_read();
  }

  // A signed-in connection lasts as long as its access token: at its exp the session is closed (1008),
  // and the client reconnects with a fresh token, as its HTTP requests would need one.
  void watch_expiry() {
    if (!caller_ || caller_->expires_at == std::chrono::system_clock::time_point{}) {
      return;
    }
    expiry_.expires_after(caller_->expires_at - std::chrono::system_clock::now());
    expiry_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) {
        self->close_with(websocket::close_code::policy_error, "the access token expired");
      }
    });
  }

  void do_read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      // Closed by the client or by us, too big (Beast answered 1009), idle timeout, reset: done.
      finish();
      return;
    }
    if (!close_started_) {
      if (!ws_.got_text()) {
        bad("invalid_message", "messages are JSON text frames");
      } else {
        const auto data = buffer_.data();
        handle(std::string_view(static_cast<const char*>(data.data()), data.size()));
      }
    }
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > 4096) {
      buffer_.shrink_to_fit();  // one large message must not keep its buffer for the connection's life
    }
    do_read();  // after a close is sent, reading goes on until the client's close arrives
  }

  void handle(std::string_view text) {
    auto parsed = parse_client_message(text, opts_.max_subscriptions);
    if (!parsed.message) {
      bad(parsed.error.code, parsed.error.detail);
      return;
    }
    auto& m = *parsed.message;
    auto self = shared_from_this();
    switch (m.op) {
      case client_message::op_kind::ping:
        control(pong_message());
        return;
      case client_message::op_kind::subscribe:
        if (m.topic == topic::orders) {
          if (!caller_) {
            bad("unauthorized",
                "orders need a signed-in connection (an access token in the Authorization header or ?access_token=)");
            return;
          }
          const bool everyone = caller_->is_admin() || caller_->has_role("support");
          const std::string key = everyone ? std::string() : caller_->user_id;
          if (orders_key_) {
            return;
          }
          orders_key_ = key;
          hub_.watch_orders(self, key);
          return;
        }
        {
          std::vector<live_item> fresh;
          for (const auto& item : m.items) {
            if (subscribed_.count(item) == 0) {
              fresh.push_back(item);
            }
          }
          if (subscribed_.size() + fresh.size() > opts_.max_subscriptions) {
            bad("too_many_subscriptions", "a connection may subscribe to at most " +
                                              std::to_string(opts_.max_subscriptions) + " stock and price items");
            return;
          }
          subscribed_.insert(fresh.begin(), fresh.end());
          hub_.subscribe(self, m.topic, fresh);
        }
        return;
      case client_message::op_kind::unsubscribe:
        if (m.topic == topic::orders) {
          if (orders_key_) {
            hub_.unwatch_orders(this, *orders_key_);
            orders_key_.reset();
          }
          return;
        }
        {
          std::vector<live_item> gone;
          for (const auto& item : m.items) {
            if (subscribed_.erase(item) > 0) {
              gone.push_back(item);
            }
          }
          hub_.unsubscribe(this, gone);
          std::lock_guard<std::mutex> lock{mutex_};
          for (const auto& item : gone) {
            queue_.forget(item);
          }
        }
        return;
    }
  }

  // An error answer; too many within the window and the connection is closed (1008).
  void bad(const std::string& code, const std::string& detail) {
    bump(hub_.instruments().bad_messages);
    const auto now = steady::now();
    if (now - window_started_ > opts_.bad_message_window) {
      window_started_ = now;
      bad_in_window_ = 0;
    }
    if (++bad_in_window_ > opts_.max_bad_messages) {
      close_with(websocket::close_code::policy_error, "too many messages that could not be accepted");
      return;
    }
    control(error_message(code, detail));
  }

  void control(std::string text) {
    std::lock_guard<std::mutex> lock{mutex_};
    if (closing_) {
      return;
    }
    if (queue_.push_control(std::make_shared<const std::string>(std::move(text))) ==
        coalescing_queue::push_result::overflow) {
      slow_locked("too many answers waiting for the client");
      return;
    }
    schedule_flush_locked();
  }

  void schedule_flush_locked() {
    if (writing_ || flush_posted_) {
      return;
    }
    auto self = weak_from_this().lock();
    if (!self) {
      return;
    }
    flush_posted_ = true;
    net::post(ws_.get_executor(), [self = std::move(self)] { self->flush(); });
  }

  void slow_locked(const char* why) {
    closing_ = true;
    bump(hub_.instruments().closed_slow);
    if (auto self = weak_from_this().lock()) {
      net::post(ws_.get_executor(), [self, why] { self->close_with(websocket::close_code::policy_error, why); });
    }
  }

  void flush() {
    shared_message msg;
    {
      std::lock_guard<std::mutex> lock{mutex_};
      flush_posted_ = false;
      if (writing_ || closing_) {
        return;
      }
      msg = queue_.pop();
      if (!msg) {
        return;
      }
      writing_ = true;
      write_started_ = steady::now();
    }
    ws_.text(true);
    ws_.async_write(net::buffer(*msg), [self = shared_from_this(), msg](beast::error_code ec, std::size_t) {
      {
        std::lock_guard<std::mutex> lock{self->mutex_};
        self->writing_ = false;
      }
      if (ec) {
        return;  // the read side ends the session
      }
      bump(self->hub_.instruments().messages_sent);
      self->flush();
    });
  }

  // Sends a close frame once; a client that does not read it is cut off after the handshake timeout.
  void close_with(websocket::close_code code, const char* why) {
    if (close_started_) {
      return;
    }
    close_started_ = true;
    {
      std::lock_guard<std::mutex> lock{mutex_};
      closing_ = true;
    }
    beast::get_lowest_layer(ws_).expires_after(opts_.handshake_timeout);
    ws_.async_close(websocket::close_reason(code, why), [self = shared_from_this()](beast::error_code) {});
  }

  void finish() {
    {
      std::lock_guard<std::mutex> lock{mutex_};
      closing_ = true;
    }
    expiry_.cancel();
    detach();
  }

  // Leaves the hub: no offer reaches this session afterwards.
  void detach() {
    if (detached_) {
      return;
    }
    detached_ = true;
    if (!subscribed_.empty()) {
      hub_.unsubscribe(this, std::vector<live_item>(subscribed_.begin(), subscribed_.end()));
      subscribed_.clear();
    }
    if (orders_key_) {
      hub_.unwatch_orders(this, *orders_key_);
      orders_key_.reset();
    }
    if (registered_) {
      hub_.unregister_connection(this);
      registered_ = false;
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  hub& hub_;
  const session_options opts_;
  std::optional<principal> caller_;
  net::steady_timer expiry_;  // the caller's token expiry (on the strand)
  bhttp::request<bhttp::string_body> req_;  // until the upgrade is answered
  beast::flat_buffer buffer_;

  // On the strand only.
  std::unordered_set<live_item, live_item_hash> subscribed_;
  std::optional<std::string> orders_key_;  // whose orders ("" = all) this connection watches
  bool registered_ = false;
  bool detached_ = false;
  bool close_started_ = false;
  steady::time_point window_started_{};
  std::size_t bad_in_window_ = 0;

  // Shared with the hub's threads.
  std::mutex mutex_;
  coalescing_queue queue_;
  bool writing_ = false;
  bool flush_posted_ = false;
  bool closing_ = false;
  steady::time_point write_started_{};
};

}  // namespace

void start_session(boost::beast::tcp_stream&& stream, bhttp::request<bhttp::string_body>&& req,
                   std::optional<principal> caller, hub& live, const session_options& opts) {
  std::make_shared<ws_session>(std::move(stream), std::move(caller), live, opts)->start(std::move(req));
}

}  // namespace mercato::http::ws
