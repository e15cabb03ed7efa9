#pragma once
// One cluster node: owns every module and the order in which they start and stop.
// main() builds one from settings; tests can build several in one process.

#include <chrono>
#include <cstdint>
#include <memory>

#include "config/settings.hpp"

namespace mercato::app {

class entity_runtime;

class node {
 public:
  explicit node(config::settings s);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  // Starts everything and opens the HTTP port. Throws std::runtime_error when it cannot.
  void start();
  // Stops accepting, drains in-flight requests within the configured grace, then stops the rest.
  void stop();

  std::uint16_t http_port() const;
  std::uint16_t cluster_port() const;
  // The node's entity runtime (tests: the cluster member's test hooks); null before start().
  entity_runtime* runtime();

 private:
  struct parts;
  config::settings settings_;
  std::unique_ptr<parts> parts_;
};

}  // namespace mercato::app
