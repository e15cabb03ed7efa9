#include "persistence/db_error.hpp"

#include <exception>

#include <pqxx/except>

namespace mercato::persistence {

const char* to_string(db_error_kind k) {
  switch (k) {
    case db_error_kind::unavailable: return "unavailable";
    case db_error_kind::timeout: return "timeout";
    case db_error_kind::conflict: return "conflict";
    case db_error_kind::invalid: return "invalid";
    case db_error_kind::shutting_down: return "shutting_down";
    case db_error_kind::internal: return "internal";
  }
  return "internal";
}

db_error classify_current_exception() {
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    return {db_error_kind::unavailable, e.what(), {}};
  } catch (const pqxx::in_doubt_error& e) {
    return {db_error_kind::unavailable, e.what(), {}};
  } catch (const pqxx::sql_error& e) {
    const std::string state = e.sqlstate();
    db_error_kind kind = db_error_kind::internal;
    if (state == "57014") {
      kind = db_error_kind::timeout;  // query_canceled by statement_timeout
    } else if (state == "23505" || state == "23P01" || state == "40001" || state == "40P01") {
      kind = db_error_kind::conflict;
    } else if (state.rfind("23", 0) == 0 || state.rfind("22", 0) == 0) {
      kind = db_error_kind::invalid;
    } else if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
      kind = db_error_kind::unavailable;  // connection exceptions, admin/crash shutdown, cannot connect now
    } else if (state.rfind("53", 0) == 0 || state == "58030") {
      // Insufficient resources (disk full, out of memory, too many connections) or an I/O error on the
      // server: the server cannot take this now, the request was fine (503, and the writer retries).
      kind = db_error_kind::unavailable;
    }
    return {kind, e.what(), state};
  } catch (const std::exception& e) {
    return {db_error_kind::internal, e.what(), {}};
  } catch (...) {
    return {db_error_kind::internal, "unknown exception", {}};
  }
}

}  // namespace mercato::persistence
