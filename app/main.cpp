// mercatod: one process, one cluster node.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <pthread.h>
#include <sys/resource.h>

#ifdef MERCATO_WITH_MIMALLOC
#include <mimalloc.h>
#endif

#include "app/admin_command.hpp"
#include "app/node.hpp"
#include "config/settings.hpp"
#include "telemetry/logging.hpp"

namespace {

// Every connection is a descriptor. Raise the soft open-files limit to the hard one (nginx's
// worker_rlimit_nofile does the same by configuration), and say so when even that is below what the
// connection limits allow: accepts would then fail (EMFILE) before http.max_connections answers 503.
void raise_open_files_limit(const mercato::config::settings& s) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return;
  }
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      lim = raised;
    }
  }
  // The listeners, the database pool, Redis, the cluster and logs: a margin of 256 covers them.
  const auto wanted = static_cast<rlim_t>(s.http.max_connections + s.websocket.max_connections + 256);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < wanted) {
    mercato::telemetry::log_warn(
        "the open-files limit is below what http.max_connections and websocket.max_connections allow; raise it "
        "(ulimit -n, LimitNOFILE=) or lower them",
        {{"open_files_limit", static_cast<std::uint64_t>(lim.rlim_cur)},
         {"http_max_connections", s.http.max_connections},
         {"websocket_max_connections", s.websocket.max_connections}});
  }
}

// Logs which malloc serves this process. A build with mimalloc checks that a malloc() really comes
// from it (mimalloc must own the probe's block): linked into the executable it comes before the C
// library's malloc, and a build where it did not would say so here.
void report_allocator() {
#ifdef MERCATO_WITH_MIMALLOC
  void* volatile probe = std::malloc(64);
  const bool ours = mi_is_in_heap_region(probe);
  std::free(probe);
  const int v = mi_version();  // e.g. 209 for 2.0.9
  const std::string version = std::to_string(v / 100) + "." + std::to_string(v / 10 % 10) + "." + std::to_string(v % 10);
  if (ours) {
    mercato::telemetry::log_info("allocator", {{"malloc", "mimalloc"}, {"version", version}});
  } else {
    mercato::telemetry::log_warn("built with mimalloc, but malloc() does not go through it; running on the C "
                                 "library's malloc",
                                 {{"mimalloc_version", version}});
  }
#else
  mercato::telemetry::log_info("allocator", {{"malloc", "system"}});
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (mercato::app::is_admin_command(argc, argv)) {
    return mercato::app::run_admin_command(argc, argv);
  }
  // Block the stop signals before any thread exists, so every thread inherits the mask and only
  // the sigwait below receives them: shutdown runs in one known place, in order.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto loaded = mercato::config::load(argc, argv, mercato::config::process_environment());
  if (loaded.help_requested) {
    std::cout << loaded.help_text;
    return 0;
  }
  if (!loaded.errors.empty() || !loaded.value) {
    for (const auto& e : loaded.errors) {
      std::cerr << e.to_string() << '\n';
    }
    return 2;
  }
  const auto settings = *loaded.value;
  mercato::telemetry::configure_logging(settings.log);
  report_allocator();
  raise_open_files_limit(settings);

  mercato::app::node node{settings};
  try {
    node.start();
  } catch (const std::exception& e) {
    mercato::telemetry::log_error("start-up failed", {{"error", e.what()}});
    return 1;
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  mercato::telemetry::log_info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  node.stop();
  mercato::telemetry::flush_logging();  // the access-log lines still queued, before the last line
  if (const auto dropped = mercato::telemetry::dropped_access_lines(); dropped > 0) {
    mercato::telemetry::log_warn("access log lines dropped (stderr too slow)", {{"lines", dropped}});
  }
  mercato::telemetry::log_info("stopped");
  return 0;
}
