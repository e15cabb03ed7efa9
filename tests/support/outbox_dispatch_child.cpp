// A dispatcher process for tests/integration/outbox_dispatch_test (the kill -9 case):
//
//   mercato_outbox_child <dsn> <output file> <batch size> <delay ms per batch>
//
// Runs an outbox_dispatcher whose one subscriber appends "<seq> <event id> <aggregate id>\n" per event
// to the output file, one write and one fsync per batch, before the dispatcher marks the batch; then
// it waits `delay` ms (a slow subscriber, so the test can kill it mid-stream). SIGTERM or SIGINT stop
// the dispatcher cleanly and exit 0; SIGKILL is what the test is about.
#include <csignal>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "persistence/outbox_dispatcher.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <dsn> <output file> <batch size> <delay ms per batch>\n", argv[0]);
    return 2;
  }
  // Before any thread exists, so every thread inherits the mask and sigwait below gets the signal.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const int fd = ::open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open output file");
    return 1;
  }
  const auto delay = std::chrono::milliseconds(std::atol(argv[4]));

  mercato::persistence::outbox_dispatcher_options opts;
  opts.dsn = argv[1];
  opts.batch_size = static_cast<std::size_t>(std::atol(argv[3]));
  opts.poll_interval = std::chrono::milliseconds(10);
  opts.lock_retry = std::chrono::milliseconds(20);
  opts.retry_backoff = std::chrono::milliseconds(20);
  opts.max_retry_backoff = std::chrono::milliseconds(200);

  mercato::persistence::outbox_dispatcher dispatcher{opts, nullptr};
  dispatcher.subscribe("recorder", [fd, delay](const std::vector<mercato::persistence::outbox_event>& batch) {
    std::string lines;
    for (const auto& e : batch) {
      lines += std::to_string(e.seq) + " " + e.id + " " + e.aggregate_id + "\n";
    }
    std::size_t done = 0;
    while (done < lines.size()) {
      const ssize_t n = ::write(fd, lines.data() + done, lines.size() - done);
      if (n < 0) {
        throw std::runtime_error("write failed");  // the batch is delivered again
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
      throw std::runtime_error("fsync failed");
    }
    if (delay.count() > 0) {
      std::this_thread::sleep_for(delay);
    }
  });
  dispatcher.start();

  int sig = 0;
  sigwait(&signals, &sig);
  dispatcher.stop();
  ::close(fd);
  return 0;
}
