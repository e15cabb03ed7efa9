#pragma once
// A WebSocket client for end-to-end tests of the live updates (GET /api/v1/ws), on Beast: every read
// has a deadline (its own io_context runs only for that long), and the close code the server sent is
// kept. Not thread-safe; one per test thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

namespace mercato::test {

class ws_client {
 public:
  using headers = std::vector<std::pair<std::string, std::string>>;

  // Connects to 127.0.0.1:`port` and upgrades `target`. `receive_buffer`: SO_RCVBUF before connecting
  // (a small one makes a client that stops reading fill up quickly); 0 keeps the system's.
  // Throws std::runtime_error when the upgrade fails (with the HTTP status in the message).
  explicit ws_client(std::uint16_t port, std::string target = "/api/v1/ws", headers extra = {},
                     int receive_buffer = 0);
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  void send(const std::string& text);
  void send_binary(const std::string& bytes);

  // The next message within `timeout`; nullopt when the connection closed (see close_code()) or nothing
  // came in time (timed_out() then; the connection is not usable afterwards).
  std::optional<std::string> read(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // read() parsed as JSON; fails the test when nothing came.
  boost::json::value read_json(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads until a message whose "type" is `type` (skipping others, which are kept in `skipped`).
  boost::json::value read_until(const std::string& type, std::vector<boost::json::value>* skipped = nullptr,
                                std::chrono::milliseconds timeout = std::chrono::seconds(20));

  bool closed() const { return closed_; }
  bool timed_out() const { return timed_out_; }
  int close_code() const { return close_code_; }  // 0 until a close frame arrived
  std::string error() const { return error_; }    // why the last read ended without a message

  void close();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  bool closed_ = false;
  bool timed_out_ = false;
  int close_code_ = 0;
  std::string error_;
};

// Upgrade attempts that must fail: the HTTP status the node answered instead of 101.
unsigned ws_refused_status(std::uint16_t port, const std::string& target, const ws_client::headers& extra = {});

// VmRSS of a process in KiB (0 if unreadable).
long rss_kib(int pid);

}  // namespace mercato::test
