#include "http/routes/db_call.hpp"

#include "telemetry/logging.hpp"

namespace mercato::http {

problem problem_for(const persistence::db_error& err) {
  using persistence::db_error_kind;
  switch (err.kind) {
    case db_error_kind::unavailable:
      return service_unavailable("database_unavailable", "the database is unavailable; try again shortly");
    case db_error_kind::timeout:
      return service_unavailable("database_timeout", "the database did not answer in time; try again shortly");
    case db_error_kind::shutting_down:
      return service_unavailable("shutting_down", "the node is shutting down");
    case db_error_kind::conflict:
      return problem{409, "conflict", "Conflict", "the change conflicts with the current state", {}};
    case db_error_kind::invalid:
      return invalid_request("the request was rejected by a data constraint");
    case db_error_kind::internal:
      break;
  }
  return internal_error("an unexpected database error occurred");
}

void run_db(persistence::pg_pool& pool, const responder& respond, std::function<response(pqxx::connection&)> work) {
  with_db(pool, respond, [respond, work = std::move(work)](pqxx::connection& conn) { respond(work(conn)); });
}

void with_db(persistence::pg_pool& pool, const responder& respond, std::function<void(pqxx::connection&)> work) {
  const bool queued = pool.submit(
      std::move(work),
      [respond](const persistence::db_error& err) {
        if (err.kind == persistence::db_error_kind::internal) {
          telemetry::log_error("database error", {{"error", err.message}, {"sqlstate", err.sqlstate}});
        }
        respond(problem_for(err));
      });
  if (!queued) {
    respond(response::from(service_unavailable("overloaded", "too many requests are waiting for the database"))
                .with_header("Retry-After", "1"));
  }
}

}  // namespace mercato::http
