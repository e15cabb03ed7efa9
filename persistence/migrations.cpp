#include "persistence/migrations.hpp"

#include <algorithm>
#include <charconv>
#include <set>
#include <stdexcept>

#include <pqxx/pqxx>

#include "config/embedded_file.hpp"

namespace mercato {
const std::vector<embedded_file>& bundled_migration_files();
const std::vector<embedded_file>& bundled_demo_files();
}  // namespace mercato

namespace mercato::persistence {
namespace {

// Arbitrary but fixed: every mercato node contends on the same key.
constexpr long long migration_lock_key = 0x6d6572636174'6f01LL;

migration parse_migration(const embedded_file& f) {
  // NNNN_description.sql
  const auto name = f.name;
  const auto underscore = name.find('_');
  if (underscore == std::string_view::npos || underscore == 0 || name.size() < 5 ||
      name.substr(name.size() - 4) != ".sql") {
    throw std::logic_error("migration file name must look like 0001_name.sql: " + std::string(name));
  }
  int version = 0;
  auto [ptr, ec] = std::from_chars(name.data(), name.data() + underscore, version);
  if (ec != std::errc{} || ptr != name.data() + underscore || version <= 0) {
    throw std::logic_error("migration file name must start with a positive number: " + std::string(name));
  }
  return migration{version, std::string(name.substr(underscore + 1, name.size() - underscore - 5)), f.content};
}

void ensure_table(pqxx::connection& conn) {
  pqxx::nontransaction tx{conn};
  tx.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version INTEGER PRIMARY KEY,"
      " name TEXT NOT NULL,"
      " applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())");
}

std::set<int> recorded_versions(pqxx::connection& conn) {
  pqxx::nontransaction tx{conn};
  std::set<int> versions;
  for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
    versions.insert(row[0].as<int>());
  }
  return versions;
}

class advisory_lock {
 public:
  explicit advisory_lock(pqxx::connection& conn) : conn_(conn) {
    pqxx::nontransaction tx{conn_};
    tx.exec("SELECT pg_advisory_lock(" + std::to_string(migration_lock_key) + ")");
  }
  ~advisory_lock() {
    try {
      pqxx::nontransaction tx{conn_};
      tx.exec("SELECT pg_advisory_unlock(" + std::to_string(migration_lock_key) + ")");
    } catch (...) {
      // The session lock dies with the connection anyway.
    }
  }
  advisory_lock(const advisory_lock&) = delete;
  advisory_lock& operator=(const advisory_lock&) = delete;

 private:
  pqxx::connection& conn_;
};

}  // namespace

const std::vector<migration>& bundled_migrations() {
  static const std::vector<migration> all = [] {
    std::vector<migration> out;
    for (const auto& f : bundled_migration_files()) {
      out.push_back(parse_migration(f));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.version < b.version; });
    for (std::size_t i = 1; i < out.size(); ++i) {
      if (out[i].version == out[i - 1].version) {
        throw std::logic_error("duplicate migration version " + std::to_string(out[i].version));
      }
    }
    return out;
  }();
  return all;
}

migration_report apply_migrations(pqxx::connection& conn, const std::vector<migration>& all) {
  migration_report report;
  // The lock comes first: two nodes racing on CREATE TABLE IF NOT EXISTS can still collide.
  advisory_lock lock{conn};
  ensure_table(conn);
  const auto done = recorded_versions(conn);
  for (const auto& m : all) {
    if (done.count(m.version) != 0) {
      continue;
    }
    pqxx::work tx{conn};
    tx.exec(std::string(m.sql));
    tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name);
    tx.commit();
    report.applied.push_back(m.version);
  }
  pqxx::nontransaction tx{conn};
  report.schema_version = tx.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0].as<int>();
  return report;
}

bool migrations_current(pqxx::connection& conn, const std::vector<migration>& all) {
  pqxx::nontransaction tx{conn};
  const auto exists = tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0].as<bool>();
  if (!exists) {
    return false;
  }
  std::set<int> versions;
  for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
    versions.insert(row[0].as<int>());
  }
  return std::all_of(all.begin(), all.end(), [&](const migration& m) { return versions.count(m.version) != 0; });
}

int load_demo_catalog(pqxx::connection& conn) {
  pqxx::work tx{conn};
  const auto before = tx.exec("SELECT COUNT(*) FROM products")[0][0].as<int>();
  for (const auto& f : bundled_demo_files()) {
    tx.exec(std::string(f.content));
  }
  const auto after = tx.exec("SELECT COUNT(*) FROM products")[0][0].as<int>();
  tx.commit();
  return after - before;
}

}  // namespace mercato::persistence
