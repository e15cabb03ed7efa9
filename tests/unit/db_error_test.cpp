// How database failures map to what the client is told: an outage or a server out of resources is
// "unavailable" (503, retried by the snapshot writer), never "internal" (500).
#include <doctest/doctest.h>

#include <pqxx/except>

#include "persistence/db_error.hpp"

using mercato::persistence::classify_current_exception;
using mercato::persistence::db_error_kind;

namespace {

db_error_kind kind_of(const char* sqlstate) {
  try {
    throw pqxx::sql_error("failed", "SELECT 1", sqlstate);
  } catch (...) {
    return classify_current_exception().kind;
  }
}

}  // namespace

TEST_CASE("a server out of disk, memory or connections is unavailable, not an internal error") {
  CHECK(kind_of("53100") == db_error_kind::unavailable);  // disk_full
  CHECK(kind_of("53200") == db_error_kind::unavailable);  // out_of_memory
  CHECK(kind_of("53300") == db_error_kind::unavailable);  // too_many_connections
  CHECK(kind_of("58030") == db_error_kind::unavailable);  // io_error
}

TEST_CASE("other SQLSTATEs keep their kinds") {
  CHECK(kind_of("57014") == db_error_kind::timeout);
  CHECK(kind_of("57P01") == db_error_kind::unavailable);
  CHECK(kind_of("08006") == db_error_kind::unavailable);
  CHECK(kind_of("23505") == db_error_kind::conflict);
  CHECK(kind_of("40001") == db_error_kind::conflict);
  CHECK(kind_of("22P02") == db_error_kind::invalid);
  CHECK(kind_of("XX000") == db_error_kind::internal);
  CHECK(kind_of("42P01") == db_error_kind::internal);
  try {
    throw pqxx::broken_connection("gone");
  } catch (...) {
    CHECK(classify_current_exception().kind == db_error_kind::unavailable);
  }
}
