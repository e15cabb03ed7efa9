#pragma once
// Database failures as values, classified once here so every caller maps them the same way.

#include <string>

namespace mercato::persistence {

enum class db_error_kind {
  unavailable,    // cannot connect, connection lost, queue wait expired: retry later (503)
  timeout,        // statement_timeout hit (503)
  conflict,       // unique / exclusion violation (409 at the edge, if the caller lets it through)
  invalid,        // check / foreign key / data exception: caller sent something the schema rejects
  shutting_down,  // the pool is stopping
  internal,       // anything else: a bug (500)
};

struct db_error {
  db_error_kind kind = db_error_kind::internal;
  std::string message;
  std::string sqlstate;  // empty when not from the server
};

const char* to_string(db_error_kind k);

// Classifies the exception currently being handled (call inside a catch block).
db_error classify_current_exception();

}  // namespace mercato::persistence
