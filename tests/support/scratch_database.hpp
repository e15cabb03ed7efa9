#pragma once
// A throw-away database in the test PostgreSQL, dropped again at scope exit, for tests that need
// an empty schema (migrations) without disturbing the shared test database.

#include <string>

namespace mercato::test {

class scratch_database {
 public:
  scratch_database();
  ~scratch_database();
  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;

  const std::string& dsn() const { return dsn_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string dsn_;
};

// The test DSN with its database name replaced.
std::string dsn_with_database(const std::string& dsn, const std::string& database);

}  // namespace mercato::test
