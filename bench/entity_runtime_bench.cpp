// mercato_entity_bench: the entity runtime (snapshot writer, activation, memory, durable commands) measured
// in one run against raw libpqxx baselines taken in the same run, on a scratch database it creates and drops.
//
//   mercato_entity_bench [--dsn URI] [--quick | --scale F] [--json] [--only 1,2,3,4] [--mem-entities M]
//                        [--mem-seconds S] [--mem-passivate-max P] [--passivate-seconds S] [--pool N]
//                        [--park-after MS]
//
// See bench/README.md ("Entity runtime benchmark") for what each row means.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <caf/all.hpp>
#include <pqxx/pqxx>

#include "actors/cart/cart_model.hpp"
#include "app/entity_runtime.hpp"
#include "actors/protocol/atoms.hpp"
#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/protocol.hpp"
#include "actors/protocol/type_ids.hpp"
#include "latency_histogram.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity.hpp"
#include "supervisors/entity_router.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace {

using namespace mercato;
using steady = std::chrono::steady_clock;
using bench::latency_histogram;

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

void progress(const std::string& s) { std::cerr << "[bench] " << s << std::endl; }

// ---------------------------------------------------------------------------------------------------------------
// Options

struct options {
  std::string dsn;
  double scale = 1.0;
  double time_scale = 1.0;
  bool json = false;
  std::string only = "1,2,3,4";
  std::size_t mem_entities = 1'000'000;
  double mem_seconds = 180;
  std::size_t mem_passivate_max = 50'000;
  double passivate_seconds = 240;
  unsigned pool = 8;
  unsigned hot_senders = 32;
  long long park_after_ms = -1;  // -1: the runtime's default (runtime_limits::park_after); 0: no parking

  std::size_t n(std::size_t full) const {
    return std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(static_cast<double>(full) * scale)));
  }
  std::chrono::milliseconds dur(double full_seconds) const {
    return std::chrono::milliseconds(std::max<long long>(500, std::llround(full_seconds * time_scale * 1000)));
  }
  bool runs(char m) const { return only.find(m) != std::string::npos; }
};

void usage() {
  std::cout << "usage: mercato_entity_bench [options]\n"
               "  --dsn URI          admin DSN (default $MERCATO_PG_DSN, else postgresql://mercato@127.0.0.1:55432/mercato);\n"
               "                     a scratch database mercato_bench_<random> is created there and dropped at the end\n"
               "  --quick            10x smaller sizes, 5x shorter timed runs (same as --scale 0.1 plus shorter runs)\n"
               "  --scale F          multiply every size by F (default 1)\n"
               "  --json             print one JSON object on stdout (the table goes to stderr)\n"
               "  --only LIST        measurements to run, e.g. 1,3 (default 1,2,3,4)\n"
               "  --mem-entities M   entities to activate for the memory measurement (default 1000000 x scale)\n"
               "  --mem-seconds S    stop activating for the memory measurement after S seconds (default 180)\n"
               "  --mem-passivate-max P  passivate the memory set only up to P entities; above, tear down and\n"
               "                     passivate P entities in a fresh runtime instead (default 50000 x scale)\n"
               "  --passivate-seconds S  give up waiting for a passivation after S seconds (default 240)\n"
               "  --pool N           pg_pool size of the runtime (default 8)\n"
               "  --hot-senders K    concurrent senders on the hot entity (default 32)\n"
               "  --park-after MS    park entities quiet for MS ms (default: the runtime's, 5000); 0 = never park,\n"
               "                     one live actor per active entity\n";
}

options parse(int argc, char** argv) {
  options o;
  const char* env = std::getenv("MERCATO_PG_DSN");
  o.dsn = env && *env ? env : "postgresql://mercato@127.0.0.1:55432/mercato";
  bool mem_set = false;
  bool pmax_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        throw std::invalid_argument(a + " needs a value");
      }
      return argv[++i];
    };
    if (a == "--dsn") {
      o.dsn = value();
    } else if (a == "--quick") {
      o.scale = 0.1;
      o.time_scale = 0.2;
    } else if (a == "--scale") {
      o.scale = std::stod(value());
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--only") {
      o.only = value();
    } else if (a == "--mem-entities") {
      o.mem_entities = std::stoull(value());
      mem_set = true;
    } else if (a == "--mem-seconds") {
      o.mem_seconds = std::stod(value());
    } else if (a == "--mem-passivate-max") {
      o.mem_passivate_max = std::stoull(value());
      pmax_set = true;
    } else if (a == "--passivate-seconds") {
      o.passivate_seconds = std::stod(value());
    } else if (a == "--pool") {
      o.pool = static_cast<unsigned>(std::stoul(value()));
    } else if (a == "--hot-senders") {
      o.hot_senders = static_cast<unsigned>(std::stoul(value()));
    } else if (a == "--park-after") {
      o.park_after_ms = std::stoll(value());
    } else if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown option " + a);
    }
  }
  if (!(o.scale > 0)) {
    throw std::invalid_argument("--scale must be positive");
  }
  if (!mem_set) {
    o.mem_entities = o.n(o.mem_entities);
  }
  if (!pmax_set) {
    o.mem_passivate_max = o.n(o.mem_passivate_max);
  }
  // Loopback only: this is a benchmark, not a load generator for other machines.
  const auto at = o.dsn.find('@');
  const auto host_start = at == std::string::npos ? o.dsn.find("://") + 3 : at + 1;
  const std::string host = o.dsn.substr(host_start, o.dsn.find_first_of(":/?", host_start) - host_start);
  if (host != "127.0.0.1" && host != "localhost" && host != "[::1]" && !host.empty()) {
    throw std::invalid_argument("the DSN must point at a loopback PostgreSQL (127.0.0.1, localhost, ::1), not " + host);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch database, dropped on every exit (normal, exception, SIGINT/SIGTERM/SIGHUP).

std::string dsn_with_database(const std::string& dsn, const std::string& database) {
  const auto scheme = dsn.find("://");
  const auto slash = dsn.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme == std::string::npos || slash == std::string::npos) {
    throw std::invalid_argument("the DSN must be a postgresql:// URI with a database: " + dsn);
  }
  const auto query = dsn.find('?', slash);
  return dsn.substr(0, slash + 1) + database + (query == std::string::npos ? "" : dsn.substr(query));
}

std::mutex g_scratch_mutex;
std::string g_admin_dsn;
std::string g_scratch_name;  // empty when there is nothing to drop

void drop_scratch() {
  std::string name;
  {
    std::lock_guard<std::mutex> lock{g_scratch_mutex};
    name.swap(g_scratch_name);
  }
  if (name.empty()) {
    return;
  }
  try {
    pqxx::connection admin{g_admin_dsn};
    pqxx::nontransaction tx{admin};
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name) + " WITH (FORCE)");
    progress("dropped scratch database " + name);
  } catch (const std::exception& e) {
    std::cerr << "[bench] could not drop scratch database " << name << ": " << e.what() << "\n";
  }
}

std::string create_scratch(const std::string& admin_dsn) {
  std::random_device rd;
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08x%08x", rd(), rd());
  const std::string name = std::string("mercato_bench_") + suffix;
  {
    std::lock_guard<std::mutex> lock{g_scratch_mutex};
    g_admin_dsn = admin_dsn;
    pqxx::connection admin{admin_dsn};
    pqxx::nontransaction tx{admin};
    tx.exec("CREATE DATABASE " + tx.quote_name(name));
    g_scratch_name = name;
  }
  const std::string dsn = dsn_with_database(admin_dsn, name);
  pqxx::connection conn{dsn};
  persistence::apply_migrations(conn, persistence::bundled_migrations());
  progress("scratch database " + name + " migrated");
  return dsn;
}

// Blocks the termination signals in every thread (called before any thread starts) and drops the
// scratch database from a dedicated thread when one arrives.
void install_signal_cleanup() {
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([] {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) {
      std::cerr << "\n[bench] signal " << sig << ": cleaning up\n";
      drop_scratch();
      _exit(128 + sig);
    }
  }).detach();
}

// ---------------------------------------------------------------------------------------------------------------
// Process memory

std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages_total = 0, pages_resident = 0;
  f >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// Lets threads finish what they free, then returns free heap pages to the system (baselines and "after" figures).
void settle_memory() {
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  malloc_trim(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  malloc_trim(0);
}

std::size_t heap_in_use() {
  const auto mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// ---------------------------------------------------------------------------------------------------------------
// Results table

struct row {
  std::string key;       // JSON key
  std::string name;      // table label
  double value = 0;
  std::string unit;
  std::string baseline;  // label of the baseline row ("" = none)
  double baseline_value = 0;
  double ratio = NAN;    // value / baseline_value
  std::string target;    // e.g. ">= 0.5"
  std::string note;
  boost::json::object extra;
};

std::vector<row> g_rows;
std::vector<std::string> g_notes;

row& add_row(std::string key, std::string name, double value, std::string unit, std::string baseline,
             double baseline_value, std::string target, std::string note) {
  row r;
  r.key = std::move(key);
  r.name = std::move(name);
  r.value = value;
  r.unit = std::move(unit);
  r.baseline = std::move(baseline);
  r.baseline_value = baseline_value;
  r.target = std::move(target);
  r.note = std::move(note);
  if (!r.baseline.empty() && r.baseline_value > 0 && std::isnan(r.ratio)) {
    r.ratio = r.value / r.baseline_value;
  }
  g_rows.push_back(std::move(r));
  const auto& b = g_rows.back();
  std::ostringstream s;
  s << b.name << ": " << b.value << " " << b.unit;
  if (!std::isnan(b.ratio)) {
    s << " (ratio " << b.ratio << " vs " << b.baseline << ")";
  }
  progress(s.str());
  return g_rows.back();
}

std::string fmt_num(double v) {
  if (std::isnan(v)) {
    return "—";
  }
  char buf[64];
  const double a = std::fabs(v);
  if (a >= 1000) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 100) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else if (a >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", v);
  }
  return buf;
}

void print_table(std::ostream& out) {
  out << "| measurement | value | unit | baseline (same run) | baseline value | ratio | target | notes |\n";
  out << "|---|---:|---|---|---:|---:|---|---|\n";
  for (const auto& r : g_rows) {
    out << "| " << r.name << " | " << fmt_num(r.value) << " | " << r.unit << " | "
        << (r.baseline.empty() ? "—" : r.baseline) << " | " << (r.baseline.empty() ? "—" : fmt_num(r.baseline_value))
        << " | " << (std::isnan(r.ratio) ? "—" : fmt_num(r.ratio)) << " | " << (r.target.empty() ? "—" : r.target)
        << " | " << r.note << " |\n";
  }
  for (const auto& n : g_notes) {
    out << "\n- " << n;
  }
  if (!g_notes.empty()) {
    out << "\n";
  }
}

boost::json::object json_report(const options& o, double total_seconds) {
  boost::json::object root;
  root["nproc"] = std::thread::hardware_concurrency();
  root["scale"] = o.scale;
  root["time_scale"] = o.time_scale;
  root["seconds"] = total_seconds;
  boost::json::object rows;
  for (const auto& r : g_rows) {
    boost::json::object j;
    j["name"] = r.name;
    j["value"] = r.value;
    j["unit"] = r.unit;
    if (!r.baseline.empty()) {
      j["baseline"] = r.baseline;
      j["baseline_value"] = r.baseline_value;
    }
    if (!std::isnan(r.ratio)) {
      j["ratio"] = r.ratio;
    }
    if (!r.target.empty()) {
      j["target"] = r.target;
    }
    if (!r.note.empty()) {
      j["note"] = r.note;
    }
    for (const auto& kv : r.extra) {
      j[kv.key()] = kv.value();
    }
    rows[r.key] = std::move(j);
  }
  root["results"] = std::move(rows);
  boost::json::array notes;
  for (const auto& n : g_notes) {
    notes.emplace_back(n);
  }
  root["notes"] = std::move(notes);
  return root;
}

std::string pct(const latency_histogram& h, double p) {
  return fmt_num(static_cast<double>(h.percentile(p)) / 1e6);
}

std::string latency_note(const latency_histogram& h) {
  return "p50 " + pct(h, 50) + " ms, p99 " + pct(h, 99) + " ms, max " + fmt_num(static_cast<double>(h.max()) / 1e6) +
         " ms";
}

void latency_extra(row& r, const latency_histogram& h) {
  r.extra["p50_ms"] = static_cast<double>(h.percentile(50)) / 1e6;
  r.extra["p99_ms"] = static_cast<double>(h.percentile(99)) / 1e6;
  r.extra["max_ms"] = static_cast<double>(h.max()) / 1e6;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared data shapes

constexpr int shards = 64;
const std::string node_id = "bench-node";

// ~200 bytes of JSON (as in the writer benchmark a colleague wrote before).
std::string state_of(std::size_t e, long long v) {
  return "{\"items\":[{\"sku\":\"SKU-" + std::to_string(e) + "\",\"qty\":" + std::to_string(v) +
         ",\"price\":\"19.99\"}],\"customer\":\"user-" + std::to_string(e) +
         "\",\"currency\":\"EUR\",\"note\":\"some text to make it about two hundred bytes long.....\",\"v\":" +
         std::to_string(v) + "}";
}

constexpr const char* bench_owner = "b0000000-0000-4000-8000-00000000be7c";

protocol::command_meta bench_meta(std::size_t i) {
  protocol::command_meta m;
  m.request_id = "bench-" + std::to_string(i);
  m.user_id = bench_owner;
  // As the edge will send them: every command carries an id of its own (so it is deduplicable).
  static std::atomic<std::uint64_t> next_command{1};
  m.command_id = "bench-cmd-" + std::to_string(next_command.fetch_add(1, std::memory_order_relaxed));
  m.source = "bench";
  return m;
}

protocol::cart_line product_line(std::size_t p, std::int32_t quantity = 1) {
  char id[48];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012zu", p);
  return protocol::cart_line{id, "SKU-" + std::to_string(p), "Product " + std::to_string(p), quantity,
                             static_cast<std::int64_t>(1000 + p)};
}

std::string error_code(const caf::error& e) {
  if (e.category() == caf::atom("mercato")) {
    return protocol::to_string(static_cast<protocol::errc>(e.code()));
  }
  return caf::to_string(e);
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement 1: snapshot writer vs. raw multi-row upserts

struct writer_shape {
  std::size_t writes;
  std::size_t entities;
  bool with_extras;  // one event and the cart projection per write
};

std::string entity_id(const char* prefix, std::size_t e) { return prefix + std::to_string(e); }

void reset_writer_tables(pqxx::connection& c) {
  {
    pqxx::work t{c};
    t.exec("TRUNCATE entity_snapshots, outbox, carts");
    t.commit();
  }
  pqxx::nontransaction n{c};
  n.exec("VACUUM ANALYZE entity_snapshots");
  n.exec("VACUUM ANALYZE outbox");
  n.exec("VACUUM ANALYZE carts");
  n.exec("CHECKPOINT");
}

// The cart projection statement for a ~200-byte write (the same SQL the cart entity uses).
protocol::projection_row projection_for(const std::string& id, std::size_t e, long long v) {
  actors::cart_model::state s;
  s.items.push_back(product_line(e % 1000, static_cast<std::int32_t>(v % 999 + 1)));
  s.updated_at = "2026-01-01T00:00:00.000000Z";
  return actors::cart_model::project(id, s, v)[0];
}

std::string event_id(std::size_t i) {
  char id[48];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012zu", i);
  return id;
}

const char* event_data = "{\"product_id\":\"p\",\"quantity\":1,\"unit_price\":1999,\"cart_id\":\"c\"}";
const char* event_metadata = "{\"correlation_id\":\"bench\",\"causation_id\":\"bench\",\"source\":\"bench\"}";

double raw_multirow(const std::string& dsn, const writer_shape& shape, std::int64_t epoch, unsigned conns) {
  std::vector<std::thread> ts;
  std::atomic<bool> failed{false};
  std::string error;
  std::mutex error_mutex;
  const auto t0 = steady::now();
  for (unsigned k = 0; k < conns; ++k) {
    ts.emplace_back([&, k] {
      try {
        pqxx::connection c{dsn};
        std::vector<std::size_t> mine;  // connection k owns the entities e % conns == k
        for (std::size_t i = 0; i < shape.writes; ++i) {
          if ((i % shape.entities) % conns == k) {
            mine.push_back(i);
          }
        }
        // 1000 rows per statement; fewer when a connection owns fewer entities (a statement may not
        // upsert one row twice).
        const std::size_t batch = std::max<std::size_t>(1, std::min<std::size_t>(1000, shape.entities / conns));
        for (std::size_t b = 0; b < mine.size(); b += batch) {
          const std::size_t n = std::min<std::size_t>(batch, mine.size() - b);
          std::string sql = "INSERT INTO entity_snapshots AS s (kind,id,version,owner_epoch,state) VALUES ";
          std::vector<std::string> p;
          p.reserve(n * 5);
          for (std::size_t j = 0; j < n; ++j) {
            const std::size_t i = mine[b + j];
            const std::size_t e = i % shape.entities;
            const long long v = static_cast<long long>(i / shape.entities) + 1;
            const std::size_t q = j * 5;
            if (j) {
              sql += ',';
            }
            sql += "($" + std::to_string(q + 1) + ",$" + std::to_string(q + 2) + ",$" + std::to_string(q + 3) +
                   "::bigint,$" + std::to_string(q + 4) + "::bigint,$" + std::to_string(q + 5) + "::jsonb)";
            p.push_back("benchw");
            p.push_back(entity_id("w-", e));
            p.push_back(std::to_string(v));
            p.push_back(std::to_string(epoch));
            p.push_back(state_of(e, v));
          }
          sql +=
              " ON CONFLICT (kind,id) DO UPDATE SET version=EXCLUDED.version, owner_epoch=EXCLUDED.owner_epoch, "
              "state=EXCLUDED.state, updated_at=now() WHERE s.version < EXCLUDED.version";
          pqxx::work t{c};
          t.exec_params(sql, pqxx::prepare::make_dynamic_params(p));
          if (shape.with_extras) {
            // The same events and projection rows, batched the same way (multi-row statements).
            std::string ev = "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, event_version, data, "
                             "metadata) VALUES ";
            std::string pr = "INSERT INTO carts (id, owner_user_id, status, item_count, subtotal, currency, version, "
                             "updated_at) VALUES ";
            std::vector<std::string> ep, pp;
            for (std::size_t j = 0; j < n; ++j) {
              const std::size_t i = mine[b + j];
              const std::size_t e = i % shape.entities;
              const long long v = static_cast<long long>(i / shape.entities) + 1;
              const std::size_t q = j * 7;
              if (j) {
                ev += ',';
                pr += ',';
              }
              ev += "($" + std::to_string(q + 1) + "::uuid,$" + std::to_string(q + 2) + ",$" + std::to_string(q + 3) +
                    ",$" + std::to_string(q + 4) + ",$" + std::to_string(q + 5) + ",$" + std::to_string(q + 6) +
                    "::jsonb,$" + std::to_string(q + 7) + "::jsonb)";
              ep.insert(ep.end(), {event_id(i), "benchw", entity_id("w-", e), "CartItemAdded", "1", event_data,
                                   event_metadata});
              const std::size_t r = j * 6;
              pr += "($" + std::to_string(r + 1) + ",NULL,'open',$" + std::to_string(r + 2) + "::integer,$" +
                    std::to_string(r + 3) + "::bigint,$" + std::to_string(r + 4) + ",$" + std::to_string(r + 5) +
                    "::bigint,$" + std::to_string(r + 6) + "::timestamptz)";
              pp.insert(pp.end(), {entity_id("w-", e), std::to_string(v % 999 + 1), std::to_string(1999 * (v % 999 + 1)),
                                   "USD", std::to_string(v), "2026-01-01T00:00:00Z"});
            }
            pr += " ON CONFLICT (id) DO UPDATE SET owner_user_id = EXCLUDED.owner_user_id, status = EXCLUDED.status, "
                  "item_count = EXCLUDED.item_count, subtotal = EXCLUDED.subtotal, currency = EXCLUDED.currency, "
                  "version = EXCLUDED.version, updated_at = EXCLUDED.updated_at WHERE carts.version < EXCLUDED.version";
            t.exec_params(ev, pqxx::prepare::make_dynamic_params(ep));
            t.exec_params(pr, pqxx::prepare::make_dynamic_params(pp));
          }
          t.commit();
        }
      } catch (const std::exception& e) {
        failed = true;
        std::lock_guard<std::mutex> lock{error_mutex};
        error = e.what();
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  if (failed) {
    throw std::runtime_error("raw multi-row upsert failed: " + error);
  }
  return static_cast<double>(shape.writes) / seconds_since(t0);
}

struct writer_run {
  double rows_per_s = 0;
  persistence::snapshot_writer_stats stats;
  std::size_t not_committed = 0;
};

writer_run writer_throughput(const std::string& dsn, const writer_shape& shape, std::int64_t epoch) {
  persistence::snapshot_writer_options o;  // defaults: 2 lanes, 1000 per batch, 0.5 ms linger
  o.dsn = dsn;
  o.node_id = node_id;
  o.queue_limit = std::max(o.queue_limit, shape.writes);
  persistence::snapshot_writer w{o, nullptr};
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // lanes connected
  std::atomic<std::size_t> done{0}, ok{0};
  const auto t0 = steady::now();
  for (std::size_t i = 0; i < shape.writes; ++i) {
    const std::size_t e = i % shape.entities;
    const long long v = static_cast<long long>(i / shape.entities) + 1;
    persistence::pending_write pw;
    const std::string id = entity_id("w-", e);
    pw.snap = {"benchw", id, v, epoch, supervisors::shard_of(id, shards), state_of(e, v), v - 1, {}, {}};
    if (shape.with_extras) {
      pw.events.push_back({event_id(i), "CartItemAdded", "1", event_data, event_metadata});
      pw.projections.push_back(projection_for(id, e, v));
    }
    pw.done = [&](persistence::write_outcome r) {
      if (r == persistence::write_outcome::committed) {
        ok.fetch_add(1, std::memory_order_relaxed);
      }
      done.fetch_add(1, std::memory_order_release);
    };
    if (w.enqueue(std::move(pw)) != persistence::write_outcome::committed) {
      throw std::runtime_error("snapshot writer refused a write (overloaded)");
    }
  }
  while (done.load(std::memory_order_acquire) < shape.writes) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  writer_run r;
  r.rows_per_s = static_cast<double>(shape.writes) / seconds_since(t0);
  r.stats = w.stats();
  r.not_committed = shape.writes - ok.load();
  w.stop();
  return r;
}

void measure_writer(const options& opt, const std::string& dsn) {
  progress("1. snapshot writer vs. raw multi-row upserts");
  pqxx::connection c{dsn};
  const std::int64_t epoch = persistence::acquire_all_leases(c, "benchw", shards, node_id);
  const writer_shape plain{opt.n(100'000), std::max<std::size_t>(1, opt.n(10'000)), false};
  const writer_shape extras{plain.writes, plain.entities, true};

  reset_writer_tables(c);
  const double raw = raw_multirow(dsn, plain, epoch, 2);
  reset_writer_tables(c);
  const auto w = writer_throughput(dsn, plain, epoch);
  {
    auto& r = add_row("writer_rows_per_s", "1. snapshot writer, " + std::to_string(plain.writes) + " writes / " +
                                                std::to_string(plain.entities) + " entities (2 lanes, defaults)",
                       w.rows_per_s, "rows/s", "raw 1000-row upserts, 2 conns", raw, ">= 0.5",
                       std::to_string(w.stats.transactions) + " transactions");
    r.extra["transactions"] = w.stats.transactions;
    r.extra["not_committed"] = w.not_committed;
    if (w.not_committed) {
      r.note += "; " + std::to_string(w.not_committed) + " NOT committed";
    }
  }

  reset_writer_tables(c);
  const double raw_x = raw_multirow(dsn, extras, epoch, 2);
  reset_writer_tables(c);
  const auto wx = writer_throughput(dsn, extras, epoch);
  {
    auto& r = add_row("writer_with_event_projection_rows_per_s",
                       "1b. snapshot writer + 1 event + cart projection per write", wx.rows_per_s, "rows/s",
                       "raw, same rows + events + projections, 1000-row stmts, 2 conns", raw_x, "",
                       std::to_string(wx.stats.transactions) + " transactions");
    r.extra["transactions"] = wx.stats.transactions;
    r.extra["not_committed"] = wx.not_committed;
    if (wx.not_committed) {
      r.note += "; " + std::to_string(wx.not_committed) + " NOT committed";
    }
  }
  reset_writer_tables(c);
}

// ---------------------------------------------------------------------------------------------------------------
// The entity runtime, in-process (as tests/support/cart_runtime does it)

class runtime {
 public:
  runtime(const std::string& dsn, unsigned pool_size, long long park_after_ms = -1) {
    pool_ = std::make_unique<persistence::pg_pool>(
        persistence::pg_pool_options{dsn, pool_size, 100'000, std::chrono::milliseconds(5000),
                                     std::chrono::milliseconds(2000), std::chrono::milliseconds(10'000)},
        &metrics_);
    // The runtime exactly as the node assembles it (writer defaults, one host per scheduler worker).
    app::entity_runtime_options ro;
    ro.dsn = dsn;
    ro.node_id = node_id;
    ro.shards = shards;
    ro.scheduler_threads = std::max(1u, std::thread::hardware_concurrency());
    // No passivation by idleness while measuring: the memory set is filled for up to 3 minutes, longer than the
    // default 60 s, and the idle scan would start passivating it meanwhile (see README, "Findings").
    ro.limits.passivate_after = std::chrono::hours(1);
    if (park_after_ms >= 0) {
      ro.limits.park_after = std::chrono::milliseconds(park_after_ms);
    }
    // The outbox is not dispatched here: the figures compare the runtime's own cost with earlier runs
    // (which had no dispatcher); dispatching adds one marking UPDATE per batch of events.
    ro.dispatch_outbox = false;
    runtime_ = std::make_unique<app::entity_runtime>(ro, *pool_, &metrics_);
    runtime_->start_cluster();
    if (!runtime_->await_leases(std::chrono::seconds(30))) {
      throw std::runtime_error("no shard leases");
    }
    router_ = runtime_->router(actors::cart_model::kind);
    hosts_ = static_cast<int>(runtime_->system().scheduler().num_workers());
    // Warm the pool connections so the first measured activations do not pay for connecting.
    std::atomic<unsigned> warmed{0};
    for (unsigned i = 0; i < pool_size; ++i) {
      (void)pool_->submit(
          [&warmed](pqxx::connection&) {
            warmed++;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          },
          [&warmed](const persistence::db_error&) { warmed++; });
    }
    while (warmed.load() < pool_size) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  ~runtime() {
    const auto t0 = steady::now();
    router_ = caf::actor{};
    runtime_->stop();  // actors, then the writer drains
    const auto t1 = steady::now();
    pool_->stop();
    const auto t2 = steady::now();
    runtime_.reset();
    progress("runtime down: actors " + fmt_num(std::chrono::duration<double>(t1 - t0).count()) + " s, writer+pool " +
             fmt_num(std::chrono::duration<double>(t2 - t1).count()) + " s, actor system " + fmt_num(seconds_since(t2)) +
             " s");
  }

  caf::actor_system& system() { return runtime_->system(); }
  const caf::actor& router() const { return router_; }
  persistence::snapshot_writer& writer() { return runtime_->writer(); }
  int hosts() const { return hosts_; }

  std::pair<std::uint64_t, std::uint64_t> stats() {
    caf::scoped_actor self{runtime_->system()};
    std::pair<std::uint64_t, std::uint64_t> out{UINT64_MAX, UINT64_MAX};
    self->request(router_, std::chrono::seconds(60), protocol::stats_atom::value)
        .receive([&](std::uint64_t a, std::uint64_t w) { out = {a, w}; },
                 [&](caf::error& e) { progress("stats failed: " + error_code(e)); });
    return out;
  }

  bool parking() const { return runtime_->env(actors::cart_model::kind).limits.park_after.count() > 0; }
  std::chrono::milliseconds park_after() const { return runtime_->env(actors::cart_model::kind).limits.park_after; }

  // (active, parked, unparks) over all hosts; active includes the parked entities.
  std::array<std::uint64_t, 3> park_stats() {
    caf::scoped_actor self{runtime_->system()};
    std::array<std::uint64_t, 3> out{UINT64_MAX, UINT64_MAX, UINT64_MAX};
    self->request(router_, std::chrono::seconds(60), protocol::stats_atom::value, supervisors::parked_atom::value)
        .receive([&](std::uint64_t a, std::uint64_t p, std::uint64_t u) { out = {a, p, u}; },
                 [&](caf::error& e) { progress("park stats failed: " + error_code(e)); });
    return out;
  }

  struct passivation {
    double seconds = 0;            // until none was active (or the limit)
    double half_seconds = 0;       // until half of them were gone
    std::uint64_t before = 0;      // active when asked
    std::uint64_t remaining = 0;   // still active at the end (0 unless the limit was reached)
    std::string describe() const {
      std::string s = "passivated " + std::to_string(before - remaining) + "/" + std::to_string(before) + " in " +
                      fmt_num(seconds) + " s";
      if (before > 1 && half_seconds > 0) {
        s += " (half of them after " + fmt_num(half_seconds) + " s)";
      }
      return s;
    }
  };

  // Asks every entity to passivate and waits until none is active (or `limit` passes). Polls the
  // mercato_entities_active gauge the hosts keep, not (stats_atom): the hosts are busy with the
  // exits, and the router counts a host that does not answer its stats request within 10 s as 0.
  passivation passivate_all(std::chrono::seconds limit = std::chrono::seconds(300)) {
    passivation p;
    p.before = static_cast<std::uint64_t>(counter("mercato_entities_active"));
    const auto t0 = steady::now();
    {
      caf::scoped_actor self{runtime_->system()};
      self->request(router_, std::chrono::seconds(60), protocol::idle_atom::value, caf::timespan{0})
          .receive([](std::uint64_t) {}, [](caf::error& e) { progress("idle failed: " + error_code(e)); });
    }
    auto last_report = t0;
    for (;;) {
      const auto active = static_cast<std::uint64_t>(counter("mercato_entities_active"));
      if (p.half_seconds == 0 && active <= p.before / 2) {
        p.half_seconds = seconds_since(t0);
      }
      if (active == 0) {
        const auto s = stats();  // confirm: nothing active, nothing held
        if (s.first == 0 && s.second == 0) {
          p.seconds = seconds_since(t0);
          return p;
        }
      }
      if (steady::now() - t0 > limit) {
        p.seconds = seconds_since(t0);
        p.remaining = active;
        return p;
      }
      if (steady::now() - last_report > std::chrono::seconds(10)) {
        last_report = steady::now();
        progress("  passivating: " + std::to_string(active) + " of " + std::to_string(p.before) +
                 " still active after " + fmt_num(seconds_since(t0)) + " s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  double counter(const std::string& family) {
    double sum = 0;
    for (const auto& f : metrics_.registry().Collect()) {
      if (f.name != family) {
        continue;
      }
      for (const auto& m : f.metric) {
        for (const auto& l : m.label) {
          if (l.name == "kind" && l.value == "cart") {
            sum += f.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
          }
        }
      }
    }
    return sum;
  }

 private:
  telemetry::metrics metrics_;
  std::unique_ptr<persistence::pg_pool> pool_;
  std::unique_ptr<app::entity_runtime> runtime_;
  caf::actor router_;
  int hosts_ = 1;
};

// ---------------------------------------------------------------------------------------------------------------
// Load drivers: event-based actors that keep a bounded number of requests in flight.

struct request_spec {
  std::string id;
  caf::message command;
};

struct drive_job {
  // Inputs (read-only while the drivers run; make and on_reply are called on scheduler threads).
  caf::actor target;
  std::size_t first = 0, step = 1, end = 0;  // indices first, first+step, ... < end
  std::size_t window = 1;
  steady::time_point stop_issuing_at;
  std::function<request_spec(std::size_t)> make;
  std::function<void(std::size_t, const protocol::cart_view&)> on_reply;  // optional
  // Outputs, owned by the driver until `done` is set.
  std::size_t issued = 0, ok = 0, failed = 0;
  std::map<std::string, std::size_t> errors;
  latency_histogram latency;
  steady::time_point finished;
  std::promise<void> done;
};

class driver_actor : public caf::event_based_actor {
 public:
  driver_actor(caf::actor_config& cfg, std::shared_ptr<drive_job> job)
      : caf::event_based_actor(cfg), job_(std::move(job)), next_(job_->first) {}

  caf::behavior make_behavior() override {
    pump();
    return {[](protocol::tick_atom) {}};
  }

 private:
  void pump() {
    auto& j = *job_;
    while (in_flight_ < j.window && next_ < j.end && steady::now() < j.stop_issuing_at) {
      const std::size_t i = next_;
      next_ += j.step;
      ++in_flight_;
      ++j.issued;
      auto spec = j.make(i);
      const auto t0 = steady::now();
      // No request timeout: in CAF 0.17 every timeout is an entry in the clock thread, and cancelling one scans
      // the requester's entries (linear in what it has in flight). drive() has a watchdog instead.
      request(j.target, caf::infinite, protocol::to_entity_atom::value, std::move(spec.id),
              std::move(spec.command))
          .then(
              [this, i, t0](protocol::cart_view& v) {
                job_->latency.record(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count());
                ++job_->ok;
                if (job_->on_reply) {
                  job_->on_reply(i, v);
                }
                --in_flight_;
                pump();
              },
              [this, t0](caf::error& e) {
                job_->latency.record(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count());
                ++job_->failed;
                ++job_->errors[error_code(e)];
                --in_flight_;
                pump();
              });
    }
    if (in_flight_ == 0 && !finished_) {
      finished_ = true;
      j.finished = steady::now();
      auto job = job_;
      quit();
      job->done.set_value();
    }
  }

  std::shared_ptr<drive_job> job_;
  std::size_t next_;
  std::size_t in_flight_ = 0;
  bool finished_ = false;
};

struct drive_result {
  std::size_t issued = 0, ok = 0, failed = 0;
  std::map<std::string, std::size_t> errors;
  latency_histogram latency;
  double seconds = 0;

  double rate() const { return seconds > 0 ? static_cast<double>(issued) / seconds : 0; }
  double ok_rate() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0; }
  std::string error_summary() const {
    std::string s;
    for (const auto& [k, n] : errors) {
      s += (s.empty() ? "" : ", ") + k + " " + std::to_string(n);
    }
    return s;
  }
};

// Sends requests 0..count-1 (make(i)) to `target` with at most `window` in flight, split over `drivers`
// actors; stops issuing after `max_time`. Returns when every issued request is answered.
drive_result drive(caf::actor_system& sys, const caf::actor& target, std::size_t count, std::size_t window,
                   unsigned drivers, std::chrono::milliseconds max_time, std::function<request_spec(std::size_t)> make,
                   std::function<void(std::size_t, const protocol::cart_view&)> on_reply = {},
                   std::function<void(double)> tick = {}) {
  drivers = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(drivers, window)));
  std::vector<std::shared_ptr<drive_job>> jobs;
  std::vector<std::future<void>> futures;
  const auto t0 = steady::now();
  for (unsigned d = 0; d < drivers; ++d) {
    auto j = std::make_shared<drive_job>();
    j->target = target;
    j->first = d;
    j->step = drivers;
    j->end = count;
    j->window = window / drivers + (d < window % drivers ? 1 : 0);
    j->stop_issuing_at = t0 + max_time;
    j->make = make;
    j->on_reply = on_reply;
    futures.push_back(j->done.get_future());
    jobs.push_back(j);
  }
  std::vector<caf::actor> actors;
  for (auto& j : jobs) {
    actors.push_back(sys.spawn<driver_actor>(j));
  }
  const auto watchdog = max_time + std::chrono::seconds(120);
  for (auto& f : futures) {
    while (f.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
      if (tick) {
        tick(seconds_since(t0));
      }
      if (steady::now() - t0 > watchdog) {
        for (auto& a : actors) {
          caf::anon_send_exit(a, caf::exit_reason::kill);
        }
        throw std::runtime_error("requests still unanswered 120 s after the load stopped");
      }
    }
  }
  drive_result r;
  steady::time_point last = t0;
  for (auto& j : jobs) {
    r.issued += j->issued;
    r.ok += j->ok;
    r.failed += j->failed;
    for (const auto& [k, n] : j->errors) {
      r.errors[k] += n;
    }
    r.latency.merge(j->latency);
    last = std::max(last, j->finished);
  }
  r.seconds = std::chrono::duration<double>(last - t0).count();
  return r;
}

request_spec get_request(const std::string& id, std::size_t i) {
  return {id, caf::make_message(protocol::cart_get{bench_meta(i)})};
}

request_spec open_request(const std::string& id, std::size_t i) {
  protocol::cart_open cmd;
  cmd.meta = bench_meta(i);
  cmd.owner_user_id = bench_owner;  // every command speaks for this owner (bench_meta)
  return {id, caf::make_message(std::move(cmd))};
}

request_spec add_request(const std::string& id, std::size_t i, std::size_t product) {
  return {id, caf::make_message(protocol::cart_add_item{bench_meta(i), product_line(product)})};
}

void expect_clean(const std::string& what, const drive_result& r, const std::vector<std::string>& allowed = {}) {
  for (const auto& [k, n] : r.errors) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      g_notes.push_back(what + ": " + std::to_string(n) + " requests answered " + k);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Raw libpqxx baselines for measurements 2 and 4

// Point reads by primary key, exactly load_snapshot's query, `conns` threads with a connection each.
double raw_point_reads(const std::string& dsn, const std::vector<std::string>& ids, unsigned conns) {
  std::vector<std::thread> ts;
  std::atomic<std::size_t> next{0}, found{0};
  std::atomic<bool> failed{false};
  std::vector<std::unique_ptr<pqxx::connection>> cs;
  for (unsigned k = 0; k < conns; ++k) {
    cs.push_back(persistence::open_connection(dsn, std::chrono::milliseconds(2000), std::chrono::milliseconds(5000)));
  }
  const auto t0 = steady::now();
  for (unsigned k = 0; k < conns; ++k) {
    ts.emplace_back([&, k] {
      try {
        for (;;) {
          const std::size_t i = next.fetch_add(1);
          if (i >= ids.size()) {
            return;
          }
          if (persistence::load_snapshot(*cs[k], "cart", ids[i])) {
            found++;
          }
        }
      } catch (const std::exception& e) {
        failed = true;
        progress(std::string("raw read failed: ") + e.what());
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  if (failed) {
    throw std::runtime_error("raw point reads failed");
  }
  return static_cast<double>(ids.size()) / seconds_since(t0);
}

struct raw_tx_result {
  double tx_per_s = 0;
  latency_histogram latency;
};

// Single-row upserts, each its own transaction (autocommit), `conns` connections for `duration`;
// ids chosen by pick(thread, n).
raw_tx_result raw_single_row_tx(const std::string& dsn, unsigned conns, std::chrono::milliseconds duration,
                                std::function<std::string(unsigned, std::size_t)> pick) {
  std::vector<std::thread> ts;
  std::vector<std::size_t> counts(conns, 0);
  std::vector<latency_histogram> hists(conns);
  std::atomic<bool> failed{false};
  std::vector<std::unique_ptr<pqxx::connection>> cs;
  for (unsigned k = 0; k < conns; ++k) {
    cs.push_back(persistence::open_connection(dsn, std::chrono::milliseconds(2000), std::chrono::milliseconds(5000)));
    cs.back()->prepare("raw_upsert",
                       "INSERT INTO entity_snapshots AS s (kind, id, version, owner_epoch, state) "
                       "VALUES ('rawc', $1, 1, 1, $2::jsonb) "
                       "ON CONFLICT (kind, id) DO UPDATE SET version = s.version + 1, state = EXCLUDED.state, "
                       "updated_at = now()");
  }
  const auto t0 = steady::now();
  const auto until = t0 + duration;
  for (unsigned k = 0; k < conns; ++k) {
    ts.emplace_back([&, k] {
      try {
        std::size_t n = 0;
        while (steady::now() < until) {
          const auto s = steady::now();
          pqxx::nontransaction tx{*cs[k]};  // autocommit: one statement, one transaction
          tx.exec_prepared("raw_upsert", pick(k, n), state_of(n, static_cast<long long>(n)));
          hists[k].record(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - s).count());
          ++n;
        }
        counts[k] = n;
      } catch (const std::exception& e) {
        failed = true;
        progress(std::string("raw upsert failed: ") + e.what());
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  if (failed) {
    throw std::runtime_error("raw single-row upserts failed");
  }
  const double secs = seconds_since(t0);
  raw_tx_result r;
  std::size_t total = 0;
  for (unsigned k = 0; k < conns; ++k) {
    total += counts[k];
    r.latency.merge(hists[k]);
  }
  r.tx_per_s = static_cast<double>(total) / secs;
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement 2: activations

void measure_activations(const options& opt, const std::string& dsn, runtime& rt) {
  auto& sys = rt.system();
  const std::size_t n = opt.n(20'000);
  const std::size_t window = 1000;
  const unsigned drivers = 2;

  progress("2a. activations from empty: cart_get on " + std::to_string(n) + " new ids");
  const double act0 = rt.counter("mercato_entity_activations_total");
  auto a = drive(sys, rt.router(), n, window, drivers, std::chrono::minutes(10),
                 [](std::size_t i) { return get_request("e-" + std::to_string(i), i); });
  const double activations = rt.counter("mercato_entity_activations_total") - act0;
  expect_clean("2a", a, {"not_found"});
  std::vector<std::string> miss_ids;
  for (std::size_t i = 0; i < n; ++i) {
    miss_ids.push_back("x-" + std::to_string(i));
  }
  const double raw_miss = raw_point_reads(dsn, miss_ids, opt.pool);
  {
    auto& r = add_row("activations_empty_per_s", "2a. activations from empty (cart_get, new ids)", a.rate(),
                       "activations/s", "raw PK reads (miss), " + std::to_string(opt.pool) + " conns", raw_miss,
                       "", std::to_string(n) + " ids, " + std::to_string(static_cast<long long>(activations)) +
                               " activations counted; " + latency_note(a.latency));
    r.extra["activations_counted"] = activations;
    latency_extra(r, a.latency);
  }
  const auto pas_a = rt.passivate_all();
  {
    auto& r = add_row("passivation_2a_per_s", "2c. passivation of the " + std::to_string(n) + " entities of 2a",
                      pas_a.seconds > 0 ? static_cast<double>(pas_a.before - pas_a.remaining) / pas_a.seconds : 0,
                      "passivations/s", "", 0, "", pas_a.describe());
    r.extra["seconds"] = pas_a.seconds;
  }

  progress("2b. activations from cold snapshots: open " + std::to_string(n) + " carts, passivate, cart_get");
  auto o = drive(sys, rt.router(), n, window, drivers, std::chrono::minutes(10),
                 [](std::size_t i) { return open_request("c-" + std::to_string(i), i); });
  expect_clean("2b open", o);
  const auto pas_b = rt.passivate_all();
  const double act1 = rt.counter("mercato_entity_activations_total");
  auto g = drive(sys, rt.router(), n, window, drivers, std::chrono::minutes(10),
                 [](std::size_t i) { return get_request("c-" + std::to_string(i), i); });
  const double activations_cold = rt.counter("mercato_entity_activations_total") - act1;
  expect_clean("2b get", g);
  std::vector<std::string> hit_ids;
  for (std::size_t i = 0; i < n; ++i) {
    hit_ids.push_back("c-" + std::to_string(i));
  }
  const double raw_hit = raw_point_reads(dsn, hit_ids, opt.pool);
  {
    auto& r = add_row("activations_cold_per_s", "2b. activations from cold snapshots (cart_get)", g.rate(),
                       "activations/s", "raw PK reads (hit), " + std::to_string(opt.pool) + " conns", raw_hit,
                       "", std::to_string(g.ok) + "/" + std::to_string(n) + " carts found, " +
                               std::to_string(static_cast<long long>(activations_cold)) + " activations; " +
                               latency_note(g.latency));
    r.extra["activations_counted"] = activations_cold;
    latency_extra(r, g.latency);
  }
  {
    auto& r = add_row("cart_open_per_s", "2d. cart_open on new ids (activation + durable write)", o.rate(),
                       "commands/s", "", 0, "",
                       std::to_string(o.ok) + " opened, then " + pas_b.describe() + "; " +
                           latency_note(o.latency));
    latency_extra(r, o.latency);
  }
  rt.passivate_all();
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement 3: resident memory per active entity

// Fills `rt` with `m` entities from empty (cart_get on new ids, <= 2000 in flight), for at most `seconds`.
struct fill_result {
  drive_result load;
  std::uint64_t active = 0;
  boost::json::array intervals;  // activation rate per ~10 s, to see whether it degrades as the hosts fill
};

fill_result fill(runtime& rt, const std::string& prefix, std::size_t m, double seconds) {
  fill_result f;
  double last_t = 0, last_n = rt.counter("mercato_entity_activations_total");
  const double first_n = last_n;
  f.load = drive(
      rt.system(), rt.router(), m, 2000, 2, std::chrono::milliseconds(static_cast<long long>(seconds * 1000)),
      [prefix](std::size_t i) { return get_request(prefix + std::to_string(i), i); }, {},
      [&](double t) {
        if (t - last_t < 10) {
          return;
        }
        const double n = rt.counter("mercato_entity_activations_total");
        const double rate = (n - last_n) / (t - last_t);
        f.intervals.push_back(boost::json::object{{"t", t}, {"activated", n - first_n}, {"per_s", rate}});
        progress("  " + std::to_string(static_cast<long long>(n - first_n)) + " activated after " + fmt_num(t) +
                 " s (" + fmt_num(rate) + "/s in the last interval), RSS " +
                 fmt_num(static_cast<double>(rss_bytes()) / 1048576) + " MiB");
        last_t = t;
        last_n = n;
      });
  f.active = static_cast<std::uint64_t>(rt.counter("mercato_entities_active"));
  return f;
}

double mib_over(std::size_t x, std::size_t base) {
  return (static_cast<double>(x) - static_cast<double>(base)) / 1048576;
}

// Passivates everything in `rt` (bounded) and reports the rate and the RSS left over `rss0`.
void passivation_round(const options& opt, std::unique_ptr<runtime>& rt, std::size_t rss0, std::uint64_t active) {
  const auto limit = std::chrono::seconds(static_cast<long long>(opt.passivate_seconds));
  const auto pas = rt->passivate_all(limit);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::size_t rss2 = rss_bytes();
  malloc_trim(0);
  const std::size_t rss3 = rss_bytes();
  {
    auto& r = add_row("passivation_per_s", "3c. passivation of " + std::to_string(active) + " active entities (idle 0)",
                      pas.seconds > 0 ? static_cast<double>(pas.before - pas.remaining) / pas.seconds : 0,
                      "passivations/s", "", 0, "", pas.describe() + (pas.remaining ? " — LIMIT reached" : ""));
    r.extra["seconds"] = pas.seconds;
    r.extra["half_seconds"] = pas.half_seconds;
    r.extra["before"] = pas.before;
    r.extra["remaining"] = pas.remaining;
  }
  if (pas.remaining) {
    g_notes.push_back("3c: " + std::to_string(pas.remaining) + " entities were still active after " +
                      fmt_num(pas.seconds) + " s of passivation (limit --passivate-seconds); teardown then waits for "
                      "the hosts to work off the exits already queued");
  }
  const auto teardown0 = steady::now();
  rt.reset();
  const double teardown = seconds_since(teardown0);
  const std::size_t rss4 = rss_bytes();
  settle_memory();
  const std::size_t rss5 = rss_bytes();
  auto& r = add_row("rss_after_passivation_mib", "3d. RSS above baseline after passivating them (no trim)",
                    mib_over(rss2, rss0), "MiB", "", 0, "~0",
                    "after malloc_trim(0): " + fmt_num(mib_over(rss3, rss0)) + " MiB; after runtime teardown (" +
                        fmt_num(teardown) + " s) and trim: " + fmt_num(mib_over(rss5, rss0)) + " MiB");
  r.extra["rss_after_passivation_bytes"] = rss2;
  r.extra["rss_after_passivation_trim_bytes"] = rss3;
  r.extra["rss_after_teardown_bytes"] = rss4;
  r.extra["rss_after_teardown_trim_bytes"] = rss5;
  r.extra["teardown_seconds"] = teardown;
}

void measure_memory(const options& opt, const std::string& dsn) {
  auto rt = std::make_unique<runtime>(dsn, opt.pool, opt.park_after_ms);
  const std::size_t m = opt.mem_entities;
  progress("3. memory: activate up to " + std::to_string(m) + " carts (cart_get on new ids, <= 2000 in flight, <= " +
           fmt_num(opt.mem_seconds) + " s)");
  settle_memory();
  const std::size_t rss0 = rss_bytes();
  const std::size_t heap0 = heap_in_use();
  auto f = fill(*rt, "m-", m, opt.mem_seconds);
  expect_clean("3", f.load, {"not_found"});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::size_t rss1 = rss_bytes();
  const std::size_t heap1 = heap_in_use();
  const auto active = f.active;
  auto per_entity = [active](std::size_t x, std::size_t base) {
    return active ? (static_cast<double>(x) - static_cast<double>(base)) / static_cast<double>(active) : 0;
  };
  const bool complete = f.load.issued >= m;
  const std::string count_note = std::to_string(active) + " active" +
                                 (complete ? "" : " (time limit reached before " + std::to_string(m) + ")");
  auto fill_note = [&](std::size_t rss, std::size_t heap) {
    return "RSS " + fmt_num(static_cast<double>(rss0) / 1048576) + " -> " + fmt_num(static_cast<double>(rss) / 1048576) +
           " MiB; malloc'd " + fmt_num(per_entity(heap, heap0)) + " B/entity; fill took " + fmt_num(f.load.seconds) +
           " s";
  };
  // With parking, the steady state of a node holding `active` quiet carts is "all parked": wait for it (the
  // entities activated last are still live actors at the end of the fill), then measure row 3 there; row 3f is the
  // figure at the end of the fill. Without parking, row 3 is taken at the end of the fill (every entity is a live
  // actor).
  bool all_parked = false;
  if (rt->parking()) {
    const auto ps0 = rt->park_stats();
    {
      auto& r = add_row("rss_per_active_entity_end_of_fill_bytes",
                        "3f. resident memory per active cart entity at the end of the fill (parking on)",
                        per_entity(rss1, rss0), "bytes", "", 0, "",
                        count_note + ", " + std::to_string(ps0[1]) + " of them parked, the rest live actors; " +
                            fill_note(rss1, heap1));
      r.extra["parked"] = ps0[1];
      r.extra["rss_active_bytes"] = rss1;
      r.extra["heap_bytes_per_entity"] = per_entity(heap1, heap0);
    }
    progress("3. waiting for the entities to park (" + std::to_string(ps0[1]) + " of " + std::to_string(active) +
             " parked)");
    const auto limit = steady::now() + rt->park_after() + std::chrono::seconds(60);
    auto ps = ps0;
    while (steady::now() < limit) {
      ps = rt->park_stats();
      if (ps[1] == active && ps[0] == active) {
        all_parked = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the last actors finish their cleanup
    const std::size_t rss2 = rss_bytes();
    const std::size_t heap2 = heap_in_use();
    malloc_trim(0);
    const std::size_t rss3 = rss_bytes();
    auto& r = add_row("rss_per_active_entity_bytes",
                      "3. resident memory per active cart entity (parked, " + fmt_num(rt->park_after().count()) +
                          " ms quiet)",
                      per_entity(rss2, rss0), "bytes", "", 0, "<= 1024",
                      count_note + ", " + std::to_string(ps[1]) + " parked" +
                          (all_parked ? "" : " (NOT all parked in time)") + "; " + fill_note(rss2, heap2) +
                          "; after malloc_trim(0): " + fmt_num(per_entity(rss3, rss0)) + " B/entity");
    r.extra["active"] = active;
    r.extra["parked"] = ps[1];
    r.extra["target_count"] = m;
    r.extra["complete"] = complete;
    r.extra["rss_baseline_bytes"] = rss0;
    r.extra["rss_active_bytes"] = rss2;
    r.extra["rss_active_trim_bytes"] = rss3;
    r.extra["heap_bytes_per_entity"] = per_entity(heap2, heap0);
    r.extra["seconds"] = f.load.seconds;
    // Unparking: one command to each of a sample of the parked carts brings it back without a database read.
    const std::size_t sample = std::min<std::size_t>(active, opt.n(20'000));
    const double act0 = rt->counter("mercato_entity_activations_total");
    auto u = drive(rt->system(), rt->router(), sample, 2000, 2, std::chrono::seconds(120),
                   [](std::size_t i) { return get_request("m-" + std::to_string(i), i); });
    expect_clean("3g", u, {"not_found"});
    const auto ps4 = rt->park_stats();
    auto& ur = add_row("unparks_per_s", "3g. unparking (cart_get on parked carts)", u.rate(), "unparks/s", "", 0, "",
                       std::to_string(sample) + " carts, " + std::to_string(ps4[2] - ps[2]) + " unparked, " +
                           fmt_num(rt->counter("mercato_entity_activations_total") - act0) +
                           " activations (database reads); " + latency_note(u.latency));
    ur.extra["unparked"] = ps4[2] - ps[2];
  } else {
    auto& r = add_row("rss_per_active_entity_bytes", "3. resident memory per active cart entity (no parking)",
                      per_entity(rss1, rss0), "bytes", "", 0, "<= 1024", count_note + "; " + fill_note(rss1, heap1));
    r.extra["active"] = active;
    r.extra["target_count"] = m;
    r.extra["complete"] = complete;
    r.extra["rss_baseline_bytes"] = rss0;
    r.extra["rss_active_bytes"] = rss1;
    r.extra["heap_bytes_per_entity"] = per_entity(heap1, heap0);
    r.extra["seconds"] = f.load.seconds;
  }
  if (!complete) {
    g_notes.push_back("3: activated " + std::to_string(active) + " of " + std::to_string(m) + " entities in " +
                      fmt_num(f.load.seconds) + " s (time limit " + fmt_num(opt.mem_seconds) +
                      " s); the per-entity figure is over the count reached");
  }
  {
    auto& r = add_row("memory_activation_per_s", "3b. activation rate while filling memory", f.load.rate(),
                      "activations/s", "", 0, "", latency_note(f.load.latency));
    r.extra["intervals"] = f.intervals;
  }

  // Passivating parked entities is a table erase, so the whole set is passivated then, whatever its size.
  if (active <= opt.mem_passivate_max || all_parked) {
    passivation_round(opt, rt, rss0, active);
    return;
  }
  // Passivating this many does not end in bounded time (quadratic in the entities per host: see README), so the
  // runtime is torn down instead (linear), and the passivation round runs on a smaller set in a fresh runtime.
  const auto teardown0 = steady::now();
  rt.reset();
  const double teardown = seconds_since(teardown0);
  const std::size_t rss4 = rss_bytes();
  settle_memory();
  const std::size_t rss5 = rss_bytes();
  {
    auto& r = add_row("rss_after_teardown_mib",
                      "3e. RSS above baseline after tearing the runtime down with " + std::to_string(active) +
                          " active (no trim)",
                      mib_over(rss4, rss0), "MiB", "", 0, "~0",
                      "after malloc_trim(0): " + fmt_num(mib_over(rss5, rss0)) + " MiB; teardown took " +
                          fmt_num(teardown) + " s");
    r.extra["teardown_seconds"] = teardown;
  }
  g_notes.push_back("3c/3d: passivating " + std::to_string(active) + " entities was not attempted (more than "
                    "--mem-passivate-max " + std::to_string(opt.mem_passivate_max) + "); measured on " +
                    std::to_string(opt.mem_passivate_max) + " in a fresh runtime instead");
  rt = std::make_unique<runtime>(dsn, opt.pool, opt.park_after_ms);
  settle_memory();
  const std::size_t rss_b = rss_bytes();
  auto g = fill(*rt, "p-", opt.mem_passivate_max, opt.mem_seconds);
  expect_clean("3c fill", g.load, {"not_found"});
  passivation_round(opt, rt, rss_b, g.active);
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement 4: durable commands

void measure_commands(const options& opt, const std::string& dsn, runtime& rt) {
  auto& sys = rt.system();

  // 4a: one hot entity, K senders. Each command adds one unit of one of 4 products; when a line nears
  // the 999-unit limit (the senders learn its quantity from the replies) it is set back to 1 instead.
  {
    const unsigned k = opt.hot_senders;
    const auto dur = opt.dur(5);
    progress("4a. hot entity: cart_add_item on one cart from " + std::to_string(k) + " senders for " +
             std::to_string(dur.count()) + " ms");
    const std::string hot = "hot-1";
    auto o = drive(sys, rt.router(), 1, 1, 1, std::chrono::seconds(30),
                   [&](std::size_t i) { return open_request(hot, i); });
    expect_clean("4a open", o);
    constexpr std::size_t products = 4;
    auto quantity = std::make_shared<std::array<std::atomic<int>, products>>();
    for (auto& q : *quantity) {
      q = 0;
    }
    const auto before = rt.writer().stats();
    auto r = drive(
        sys, rt.router(), SIZE_MAX, k, 1, dur,
        [hot, quantity](std::size_t i) {
          const std::size_t p = i % products;
          int q = (*quantity)[p].load();
          if (q > 900 && (*quantity)[p].compare_exchange_strong(q, 0)) {
            return request_spec{hot, caf::make_message(protocol::cart_set_quantity{
                                         bench_meta(i), product_line(p).product_id, 1})};
          }
          return add_request(hot, i, p);
        },
        [quantity](std::size_t, const protocol::cart_view& v) {
          for (std::size_t p = 0; p < products; ++p) {
            const auto pid = product_line(p).product_id;
            for (const auto& l : v.items) {
              if (l.product_id == pid) {
                int cur = (*quantity)[p].load();
                // Only raise: a reset (0) wins until a reply after it arrives with a small quantity.
                if (cur != 0 ? l.quantity > cur : l.quantity < 100) {
                  (*quantity)[p].store(l.quantity);
                }
              }
            }
          }
        });
    const auto after = rt.writer().stats();
    expect_clean("4a", r);
    const auto tx = after.transactions - before.transactions;
    const double per_tx = tx ? static_cast<double>(after.committed - before.committed) / static_cast<double>(tx) : 0;
    const auto raw = raw_single_row_tx(dsn, 4, dur, [](unsigned, std::size_t) { return std::string("raw-hot"); });
    auto& row = add_row("hot_entity_commands_per_s",
                         "4a. durable commands, one hot entity (" + std::to_string(k) + " senders)", r.ok_rate(),
                         "commands/s", "raw 1-row upsert tx, 4 conns, same row", raw.tx_per_s, "",
                         fmt_num(per_tx) + " versions per commit; " + latency_note(r.latency) + "; raw " +
                             latency_note(raw.latency));
    row.extra["versions_per_commit"] = per_tx;
    row.extra["commands"] = r.ok;
    latency_extra(row, r.latency);
  }

  // 4b: spread over many carts.
  {
    const std::size_t carts = opt.n(100'000);
    const auto dur = opt.dur(10);
    progress("4b. spread: open " + std::to_string(carts) + " carts, then cart_add_item over them for <= " +
             std::to_string(dur.count()) + " ms");
    auto o = drive(sys, rt.router(), carts, 2000, 2, std::chrono::minutes(10),
                   [](std::size_t i) { return open_request("s-" + std::to_string(i), i); });
    expect_clean("4b open", o);
    progress("4b. opened " + std::to_string(o.ok) + " carts at " + fmt_num(o.rate()) + "/s");
    const auto before = rt.writer().stats();
    auto r = drive(sys, rt.router(), carts, 2000, 2, dur,
                   [](std::size_t i) { return add_request("s-" + std::to_string(i), i, i % 1000); });
    const auto after = rt.writer().stats();
    expect_clean("4b", r);
    const auto tx = after.transactions - before.transactions;
    const double per_tx = tx ? static_cast<double>(after.committed - before.committed) / static_cast<double>(tx) : 0;
    {
      pqxx::connection c{dsn};
      pqxx::work t{c};
      t.exec_params("INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state) "
                    "SELECT 'rawc', 'raw-' || g, 1, 1, '{}'::jsonb FROM generate_series(0, $1 - 1) g "
                    "ON CONFLICT DO NOTHING",
                    static_cast<long long>(carts));
      t.commit();
    }
    const std::size_t per_conn = carts / 4 + 1;
    const auto raw = raw_single_row_tx(dsn, 4, dur, [per_conn, carts](unsigned k, std::size_t n) {
      return "raw-" + std::to_string((k * per_conn + n) % carts);
    });
    auto& row = add_row("spread_commands_per_s",
                         "4b. durable commands spread over " + std::to_string(carts) + " carts (<= 2000 in flight)",
                         r.ok_rate(), "commands/s", "raw 1-row upsert tx, 4 conns, distinct rows", raw.tx_per_s,
                         "",
                         std::to_string(r.ok) + " commands in " + fmt_num(r.seconds) + " s, " + fmt_num(per_tx) +
                             " per commit; " + latency_note(r.latency) + "; raw " + latency_note(raw.latency));
    row.extra["versions_per_commit"] = per_tx;
    row.extra["commands"] = r.ok;
    latency_extra(row, r.latency);
    auto& orow = add_row("spread_open_per_s", "4c. cart_open of those carts (activation + durable write)",
                          o.ok_rate(), "commands/s", "raw 1-row upsert tx, 4 conns, distinct rows", raw.tx_per_s,
                          "", latency_note(o.latency));
    latency_extra(orow, o.latency);
  }
}

double load_average() {
  std::ifstream f("/proc/loadavg");
  double l = 0;
  f >> l;
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  try {
    opt = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    usage();
    return 2;
  }
  install_signal_cleanup();
  {
    config::log_settings ls;
    ls.level = "warn";
    telemetry::configure_logging(ls);
  }
  const auto t0 = steady::now();
  const double load_before = load_average();
  int rc = 0;
  try {
    const std::string dsn = create_scratch(opt.dsn);
    if (opt.runs('1')) {
      measure_writer(opt, dsn);
    }
    if (opt.runs('3')) {
      measure_memory(opt, dsn);
    }
    if (opt.runs('2') || opt.runs('4')) {
      runtime rt{dsn, opt.pool, opt.park_after_ms};
      if (opt.runs('2')) {
        measure_activations(opt, dsn, rt);
      }
      if (opt.runs('4')) {
        measure_commands(opt, dsn, rt);
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "[bench] failed: " << e.what() << "\n";
    g_notes.push_back(std::string("run FAILED: ") + e.what());
    rc = 1;
  }
  drop_scratch();
  // Execution order is 1, 3, 2, 4 (memory before the other runtime measurements leave their garbage); print by label.
  std::stable_sort(g_rows.begin(), g_rows.end(), [](const row& a, const row& b) {
    return a.name.substr(0, a.name.find('.')) < b.name.substr(0, b.name.find('.'));
  });
  const double total = seconds_since(t0);
  g_notes.insert(g_notes.begin(), "nproc " + std::to_string(std::thread::hardware_concurrency()) + ", scale " +
                                      fmt_num(opt.scale) + ", time scale " + fmt_num(opt.time_scale) + ", pg pool " +
                                      std::to_string(opt.pool) + ", load average before " + fmt_num(load_before) +
                                      ", whole run " + fmt_num(total) + " s");
  if (opt.json) {
    print_table(std::cerr);
    std::cout << boost::json::serialize(json_report(opt, total)) << std::endl;
  } else {
    print_table(std::cout);
  }
  return rc;
}
