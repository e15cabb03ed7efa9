#pragma once
// Versioned SQL migrations (persistence/migrations/NNNN_name.sql, compiled into the binary), applied
// at start-up under a PostgreSQL advisory lock and recorded in schema_migrations.

#include <string>
#include <string_view>
#include <vector>

#include <pqxx/connection>

namespace mercato::persistence {

struct migration {
  int version = 0;
  std::string name;
  std::string_view sql;
};

// The migrations built into this binary, ordered by version. Throws on a malformed file name or a
// duplicate version (a build mistake, caught by the unit tests).
const std::vector<migration>& bundled_migrations();

struct migration_report {
  std::vector<int> applied;  // versions applied by this call (empty when the schema was current)
  int schema_version = 0;    // highest version recorded afterwards
};

// Applies every migration not yet recorded, each in its own transaction, while holding the advisory
// lock so that nodes starting together apply each migration exactly once.
migration_report apply_migrations(pqxx::connection& conn, const std::vector<migration>& all);

// True when every bundled migration is recorded (readiness check); never takes the lock.
bool migrations_current(pqxx::connection& conn, const std::vector<migration>& all);

// Loads the demo catalog (vendors, categories, products) unless it is there already.
// Returns the number of products inserted.
int load_demo_catalog(pqxx::connection& conn);

}  // namespace mercato::persistence
