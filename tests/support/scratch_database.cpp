#include "support/scratch_database.hpp"

#include <random>
#include <stdexcept>

#include <pqxx/pqxx>

#include "support/node_process.hpp"

namespace mercato::test {

std::string dsn_with_database(const std::string& dsn, const std::string& database) {
  // postgresql://user@host:port/dbname[?params]
  const auto scheme = dsn.find("://");
  const auto slash = dsn.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme == std::string::npos || slash == std::string::npos) {
    throw std::invalid_argument("test DSN must be a postgresql:// URI: " + dsn);
  }
  const auto query = dsn.find('?', slash);
  return dsn.substr(0, slash + 1) + database + (query == std::string::npos ? "" : dsn.substr(query));
}

scratch_database::scratch_database() {
  std::random_device rd;
  name_ = "mercato_scratch_" + std::to_string(rd()) + std::to_string(rd() % 1000);
  pqxx::connection admin{test_pg_dsn()};
  pqxx::nontransaction tx{admin};
  tx.exec("CREATE DATABASE " + tx.quote_name(name_));
  dsn_ = dsn_with_database(test_pg_dsn(), name_);
}

scratch_database::~scratch_database() {
  try {
    pqxx::connection admin{test_pg_dsn()};
    pqxx::nontransaction tx{admin};
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (...) {
    // Left behind only if PostgreSQL went away; the next services start wipes nothing, so say so.
  }
}

}  // namespace mercato::test
