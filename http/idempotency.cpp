#include "http/idempotency.hpp"

#include <algorithm>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <pqxx/pqxx>

#include "http/routes/db_call.hpp"
#include "security/jwt.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

// The headers of an answer worth replaying (the pipeline adds the request's own identity headers).
bool kept_header(const std::string& name) {
  return name == "ETag" || name == "Location" || name == "Retry-After" || name == "Cache-Control";
}

std::string scope_of(const request_context& ctx) {
  if (ctx.caller) {
    return "user:" + ctx.caller->user_id;
  }
  const auto token = ctx.header("X-Cart-Token");
  if (!token.empty()) {
    return "token:" + security::sha256_hex(token);
  }
  return "ip:" + (ctx.client_ip.empty() ? std::string("unknown") : ctx.client_ip);
}

bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > 255) {
    return false;
  }
  for (unsigned char c : key) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

response replay(const pqxx::row& row) {
  response r;
  r.status = row["status_code"].as<unsigned>();
  r.body = row["response_body"].is_null() ? std::string{} : pqxx::binarystring(row["response_body"]).str();
  if (!row["response_headers"].is_null()) {
    const auto headers = boost::json::parse(row["response_headers"].c_str()).as_object();
    for (const auto& [name, value] : headers) {
      if (name == "Content-Type") {
        r.content_type = std::string(value.as_string());
      } else {
        r.headers.emplace_back(std::string(name), std::string(value.as_string()));
      }
    }
  }
  r.headers.emplace_back("Idempotent-Replayed", "true");
  return r;
}

}  // namespace

idempotency_gate::idempotency_gate(persistence::pg_pool& pool, std::string node_id, std::chrono::seconds stale_after,
                                   std::chrono::hours ttl)
    : pool_(pool),
      node_id_(std::move(node_id)),
      boot_id_(security::random_token(16)),
      stale_after_(stale_after),
      ttl_(ttl) {}

void idempotency_gate::run(std::shared_ptr<request_context> ctx, responder respond, handler_fn handle) const {
  const std::string key{ctx->header("Idempotency-Key")};
  if (!valid_key(key)) {
    respond(invalid_request("Idempotency-Key must be 1 to 255 printable ASCII characters",
                            {{"/header/Idempotency-Key", "must be 1 to 255 printable ASCII characters"}}));
    return;
  }
  const std::string scope = scope_of(*ctx);
  const std::string target{ctx->raw.target()};
  const std::string request_hash =
      security::sha256_hex(std::string(ctx->raw.method_string()) + ' ' + target + '\n' + ctx->raw.body());
  auto& pool = pool_;
  const auto ttl_hours = std::to_string(ttl_.count());
  const auto node = node_id_;
  const auto boot = boot_id_;
  const auto stale = std::to_string(stale_after_.count());
  with_db(pool, respond, [this, &pool, ctx, respond, handle, key, scope, request_hash, ttl_hours, node, boot,
                          stale](pqxx::connection& conn) {
    pay_releases(conn);
    // Whether a request of this process is running this key now; if not, a running claim of this
    // process is an abandoned one (see the header) and this request takes it over.
    const std::string running_id = running_key(scope, key);
    const bool idle_here = begin_running(running_id);
    struct mark_guard {
      const idempotency_gate* gate;
      const std::string& id;
      bool active;
      ~mark_guard() {
        if (active) {
          gate->end_running(id);
        }
      }
    } guard{this, running_id, idle_here};
    std::string created_at;
    {
      pqxx::work tx{conn};
      // Claim the key (or take over an expired claim).
      // Claim the key, take over an expired claim, or take over a running claim its runner abandoned
      // (an earlier life of this node, or older than stale_after) for the same request.
      const auto claimed = tx.exec_params(
          "INSERT INTO idempotency_keys (scope, key, request_hash, state, expires_at, owner_node, owner_boot) "
          "VALUES ($1, $2, decode($3, 'hex'), 'running', now() + ($4 || ' hours')::interval, $5, $6) "
          "ON CONFLICT (scope, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, state = 'running', "
          "  status_code = NULL, response_headers = NULL, response_body = NULL, created_at = now(), "
          "  expires_at = EXCLUDED.expires_at, owner_node = EXCLUDED.owner_node, owner_boot = EXCLUDED.owner_boot "
          "WHERE idempotency_keys.expires_at <= now() "
          "   OR (idempotency_keys.state = 'running' AND idempotency_keys.request_hash = EXCLUDED.request_hash "
          "       AND ((idempotency_keys.owner_node = EXCLUDED.owner_node "
          "             AND (idempotency_keys.owner_boot IS DISTINCT FROM EXCLUDED.owner_boot OR $8)) "
          "            OR idempotency_keys.created_at < now() - ($7 || ' seconds')::interval)) "
          "RETURNING created_at::text",
          scope, key, request_hash, ttl_hours, node, boot, stale, idle_here);
      if (claimed.empty()) {
        const auto row = tx.exec_params1(
            "SELECT encode(request_hash, 'hex') AS request_hash, state, status_code, response_headers::text "
            "  AS response_headers, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2",
            scope, key);
        tx.commit();
        if (row["request_hash"].as<std::string>() != request_hash) {
          respond(problem{422, "idempotency_key_reused",
                          "Idempotency-Key reused",
                          "this Idempotency-Key was used with another request; use a new key",
                          {}});
          return;
        }
        if (row["state"].as<std::string>() != "completed") {
          respond(response::from(problem{409, "idempotency_key_in_use", "Request in progress",
                                         "a request with this Idempotency-Key is still running; retry shortly",
                                         {}})
                      .with_header("Retry-After", "1"));
          return;
        }
        respond(replay(row));
        return;
      }
      created_at = claimed[0][0].as<std::string>();
      try {
        tx.commit();
      } catch (...) {
        // The claim may have committed though the answer was lost (a connection cut in COMMIT): the
        // client gets 503, so drop whichever running claim of this process the key has.
        owe_release({scope, key, {}});
        throw;
      }
    }
    // Ours: run the request; its answer is stored before the client sees it (5xx: the claim is dropped).
    // The mark ends when that is done (or given up), no longer with this scope.
    guard.active = false;
    // Not idle here yet the claim is ours: the other request of this key gave up its claim meanwhile.
    const bool marked = idle_here || begin_running(running_id);
    responder keep{[this, &pool, respond, key, scope, created_at, running_id, marked](response r) {
      const bool keep_it = r.status < 500;
      boost::json::object headers{{"Content-Type", r.content_type}};
      for (const auto& [name, value] : r.headers) {
        if (kept_header(name)) {
          headers[name] = value;
        }
      }
      auto shared = std::make_shared<response>(std::move(r));
      const bool queued = pool.submit(
          [this, shared, respond, key, scope, keep_it, running_id, marked,
           headers_json = boost::json::serialize(headers)](pqxx::connection& c) {
            pqxx::work tx{c};
            if (keep_it) {
              tx.exec_params(
                  "UPDATE idempotency_keys SET state = 'completed', status_code = $3, response_headers = $4::jsonb, "
                  "  response_body = $5 WHERE scope = $1 AND key = $2",
                  scope, key, static_cast<int>(shared->status), headers_json,
                  pqxx::binarystring(shared->body.data(), shared->body.size()));
            } else {
              tx.exec_params("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", scope, key);
            }
            tx.commit();
            if (marked) {
              end_running(running_id);
            }
            respond(std::move(*shared));
          },
          [this, shared, respond, key, scope, created_at, running_id, marked](const persistence::db_error& err) {
            // Neither kept nor dropped: drop it as soon as the database answers again. A retry then
            // runs the request once more, and the entities apply its command once.
            telemetry::log_warn("idempotency record not stored", {{"error", err.message}});
            owe_release({scope, key, created_at});
            if (marked) {
              end_running(running_id);
            }
            respond(std::move(*shared));
          });
      if (!queued) {
        owe_release({scope, key, created_at});
        if (marked) {
          end_running(running_id);
        }
        respond(std::move(*shared));
      }
    }};
    try {
      handle(ctx, keep);
    } catch (const std::exception& e) {
      telemetry::log_error("handler threw", {{"request_id", ctx->request_id}, {"error", e.what()}});
    }
  });
}

std::string idempotency_gate::running_key(const std::string& scope, const std::string& key) {
  return scope + '\n' + key;
}

bool idempotency_gate::begin_running(const std::string& id) const {
  std::lock_guard<std::mutex> lock{running_m_};
  return running_.insert(id).second;
}

void idempotency_gate::end_running(const std::string& id) const {
  std::lock_guard<std::mutex> lock{running_m_};
  running_.erase(id);
}

std::size_t idempotency_gate::owed_releases() const {
  std::lock_guard<std::mutex> lock{owed_m_};
  return owed_.size();
}

void idempotency_gate::owe_release(claim c) const {
  constexpr std::size_t most_owed = 10'000;
  std::lock_guard<std::mutex> lock{owed_m_};
  if (owed_.size() >= most_owed) {
    owed_.erase(owed_.begin());
  }
  owed_.push_back(std::move(c));
}

void idempotency_gate::pay_releases(pqxx::connection& conn) const {
  std::vector<claim> owed;
  {
    std::lock_guard<std::mutex> lock{owed_m_};
    owed.swap(owed_);
  }
  {
    // A key a request of this process runs now has a live claim (one that took over the owed one):
    // that request stores or drops it, and dropping it here would let a retry run beside it.
    std::lock_guard<std::mutex> lock{running_m_};
    owed.erase(std::remove_if(owed.begin(), owed.end(),
                              [this](const claim& c) { return running_.count(running_key(c.scope, c.key)) > 0; }),
               owed.end());
  }
  if (owed.empty()) {
    return;
  }
  // One statement for all of them (after an outage there can be thousands, and this runs on a request's
  // way); the claims travel as one JSON array, so nothing in a key needs escaping.
  boost::json::array rows;
  rows.reserve(owed.size());
  for (const auto& c : owed) {
    rows.push_back(boost::json::object{{"scope", c.scope}, {"key", c.key}, {"created_at", c.created_at}});
  }
  try {
    pqxx::nontransaction tx{conn};
    // Only the claim this process made, still running: never a later claim of the same key.
    tx.exec_params(
        "DELETE FROM idempotency_keys k USING jsonb_to_recordset($1::jsonb) AS o(scope text, key text, created_at text) "
        "WHERE k.scope = o.scope AND k.key = o.key AND k.state = 'running' AND k.owner_boot = $2 "
        "AND (o.created_at = '' OR k.created_at::text = o.created_at)",
        boost::json::serialize(rows), boot_id_);
  } catch (...) {
    std::lock_guard<std::mutex> lock{owed_m_};
    owed_.insert(owed_.begin(), owed.begin(), owed.end());
    throw;
  }
}

}  // namespace mercato::http
