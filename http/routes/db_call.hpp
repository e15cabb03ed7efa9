#pragma once
// Runs a read on the database pool and answers from its result, never blocking an Asio thread.

#include <functional>

#include <pqxx/connection>

#include "http/request.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

// Maps a database failure to the problem a client sees (503 for outages, never a bare 500 for them).
problem problem_for(const persistence::db_error& err);

// `work` runs on a pool thread and returns the response; failures and a full queue answer 503.
void run_db(persistence::pg_pool& pool, const responder& respond, std::function<response(pqxx::connection&)> work);

// Like run_db, but `work` answers through `respond` itself (or hands it on, e.g. to the worker pool);
// a database failure is still answered here.
void with_db(persistence::pg_pool& pool, const responder& respond, std::function<void(pqxx::connection&)> work);

}  // namespace mercato::http
