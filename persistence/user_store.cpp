#include "persistence/user_store.hpp"

#include <algorithm>

#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/row>
#include <pqxx/transaction>

#include "security/jwt.hpp"

namespace mercato::persistence::user_store {
namespace {

#define MERCATO_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

constexpr const char* user_columns =
    "u.id::text, u.email, u.name, u.password_hash, array_to_string(u.roles, ','), u.vendor_id::text,"
    " u.preferences::text, u.email_verified, u.totp_enabled, u.totp_secret, u.totp_pending_secret,"
    " u.totp_last_step, u.status, u.version, " MERCATO_TS("u.created_at") ", " MERCATO_TS("u.updated_at");

constexpr const char* address_columns =
    "id::text, label, name, line1, line2, city, region, postal_code, country, phone, is_default, " MERCATO_TS(
        "created_at");

template <class T>
std::optional<T> opt(const pqxx::field& f) {
  if (f.is_null()) {
    return std::nullopt;
  }
  return f.as<T>();
}

std::vector<std::string> split_roles(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size() && !s.empty()) {
    auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) {
      break;
    }
    start = comma + 1;
  }
  return out;
}

user_record read_user(const pqxx::row& r) {
  user_record u;
  u.id = r[0].as<std::string>();
  u.email = r[1].as<std::string>();
  u.name = r[2].as<std::string>();
  u.password_hash = r[3].as<std::string>();
  u.roles = split_roles(r[4].as<std::string>());
  u.vendor_id = opt<std::string>(r[5]);
  u.preferences = r[6].as<std::string>();
  u.email_verified = r[7].as<bool>();
  u.totp_enabled = r[8].as<bool>();
  u.totp_secret = opt<std::string>(r[9]);
  u.totp_pending_secret = opt<std::string>(r[10]);
  u.totp_last_step = opt<std::int64_t>(r[11]);
  u.status = r[12].as<std::string>();
  u.version = r[13].as<std::int64_t>();
  u.created_at = r[14].as<std::string>();
  u.updated_at = r[15].as<std::string>();
  return u;
}

address_record read_address(const pqxx::row& r) {
  address_record a;
  a.id = r[0].as<std::string>();
  a.label = opt<std::string>(r[1]);
  a.name = r[2].as<std::string>();
  a.line1 = r[3].as<std::string>();
  a.line2 = opt<std::string>(r[4]);
  a.city = r[5].as<std::string>();
  a.region = opt<std::string>(r[6]);
  a.postal_code = r[7].as<std::string>();
  a.country = r[8].as<std::string>();
  a.phone = opt<std::string>(r[9]);
  a.is_default = r[10].as<bool>();
  a.created_at = r[11].as<std::string>();
  return a;
}

std::optional<user_record> one_user(const pqxx::result& rows) {
  if (rows.empty()) {
    return std::nullopt;
  }
  return read_user(rows[0]);
}

std::string select_user(const char* where) { return std::string("SELECT ") + user_columns + " FROM users u WHERE " + where; }

issued_refresh insert_token(pqxx::work& tx, const std::string& family_id, std::chrono::seconds ttl) {
  issued_refresh out;
  out.token = security::random_token(32);
  out.family_id = family_id;
  const auto expires = tx.exec_params1(
      "INSERT INTO refresh_tokens (token_hash, family_id, expires_at)"
      " VALUES ($1, $2::uuid, NOW() + make_interval(secs => $3)) RETURNING extract(epoch FROM expires_at)::bigint",
      security::sha256_hex(out.token), family_id, static_cast<std::int64_t>(ttl.count()));
  out.expires_at = std::chrono::system_clock::time_point(std::chrono::seconds(expires[0].as<std::int64_t>()));
  return out;
}

issued_refresh new_family(pqxx::work& tx, const std::string& user_id, std::chrono::seconds ttl) {
  const auto fam = tx.exec_params1("INSERT INTO refresh_token_families (user_id) VALUES ($1::uuid) RETURNING id::text",
                                   user_id);
  return insert_token(tx, fam[0].as<std::string>(), ttl);
}

}  // namespace

std::string roles_literal(const std::vector<std::string>& roles) {
  std::string out = "{";
  for (const auto& r : roles) {
    if (out.size() > 1) {
      out += ',';
    }
    out += r;  // role names are validated identifiers (a-z)
  }
  return out + "}";
}

std::optional<user_record> find_by_email(pqxx::connection& conn, const std::string& email) {
  pqxx::nontransaction tx{conn};
  return one_user(tx.exec_params(select_user("u.email = $1"), email));
}

std::optional<user_record> find_by_id(pqxx::connection& conn, const std::string& id) {
  pqxx::nontransaction tx{conn};
  return one_user(tx.exec_params(select_user("u.id = $1::uuid"), id));
}

std::optional<registration> register_user(pqxx::connection& conn, const std::string& email, const std::string& name,
                                          const std::string& password_hash, const std::vector<std::string>& roles,
                                          std::chrono::seconds refresh_ttl) {
  pqxx::work tx{conn};
  const auto inserted = tx.exec_params(
      "INSERT INTO users (email, name, password_hash, roles) VALUES ($1, $2, $3, $4::text[])"
      " ON CONFLICT (email) DO NOTHING RETURNING id::text",
      email, name, password_hash, roles_literal(roles));
  if (inserted.empty()) {
    return std::nullopt;
  }
  const auto id = inserted[0][0].as<std::string>();
  auto user = one_user(tx.exec_params(select_user("u.id = $1::uuid"), id));
  auto refresh = new_family(tx, id, refresh_ttl);
  tx.commit();
  return registration{std::move(*user), std::move(refresh)};
}

issued_refresh start_family(pqxx::connection& conn, const std::string& user_id, std::chrono::seconds refresh_ttl) {
  pqxx::work tx{conn};
  auto out = new_family(tx, user_id, refresh_ttl);
  tx.commit();
  return out;
}

refresh_rotation rotate(pqxx::connection& conn, const std::string& token, std::chrono::seconds refresh_ttl) {
  refresh_rotation out;
  const auto hash = security::sha256_hex(token);
  pqxx::work tx{conn};
  // Claim the token with a conditional update: of any number of concurrent uses exactly one sees
  // rotated_at still NULL (the others wait for its row lock, then re-check the condition and match
  // nothing). A SELECT ... FOR UPDATE of the family alone did not do this: under READ COMMITTED the
  // waiting statement re-reads the locked family row but not the token row it joined, so both callers
  // saw the token unused and both rotated it.
  const auto claimed = tx.exec_params(
      "UPDATE refresh_tokens t SET rotated_at = NOW() FROM refresh_token_families f"
      " WHERE t.token_hash = $1 AND f.id = t.family_id AND t.rotated_at IS NULL AND t.expires_at > NOW()"
      " AND f.revoked_at IS NULL RETURNING t.family_id::text, f.user_id::text",
      hash);
  if (claimed.empty()) {
    // Why not: unknown, already used (reuse: a copy is in someone else's hands), revoked or expired.
    const auto rows = tx.exec_params(
        "SELECT t.family_id::text, t.rotated_at IS NOT NULL, t.expires_at <= NOW(), f.revoked_at IS NOT NULL"
        " FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id WHERE t.token_hash = $1",
        hash);
    if (rows.empty()) {
      out.outcome = refresh_outcome::unknown;
    } else if (rows[0][1].as<bool>()) {
      // A used token presented again is reuse even when its family is already revoked, so every loser
      // of a race gets the same answer as the first.
      tx.exec_params("UPDATE refresh_token_families SET revoked_at = NOW(), revoked_reason = 'reuse'"
                     " WHERE id = $1::uuid AND revoked_at IS NULL",
                     rows[0][0].as<std::string>());
      tx.commit();
      out.outcome = refresh_outcome::reused;
    } else if (rows[0][3].as<bool>()) {
      out.outcome = refresh_outcome::revoked;
    } else {
      out.outcome = refresh_outcome::expired;
    }
    return out;
  }
  const auto family = claimed[0][0].as<std::string>();
  const auto user_id = claimed[0][1].as<std::string>();
  auto user = one_user(tx.exec_params(select_user("u.id = $1::uuid AND u.status = 'active'"), user_id));
  if (!user) {
    out.outcome = refresh_outcome::revoked;  // rolled back: the token stays unused
    return out;
  }
  out.next = insert_token(tx, family, refresh_ttl);
  tx.commit();
  out.outcome = refresh_outcome::rotated;
  out.user = std::move(user);
  return out;
}

std::optional<caller_state> current_caller(pqxx::connection& conn, const std::string& user_id,
                                           const std::string& family_id) {
  pqxx::nontransaction tx{conn};
  // family_id comes from a signed token, but is checked as a UUID by the caller; a NULL family (no sid)
  // simply finds nothing.
  const auto rows = tx.exec_params(
      "SELECT array_to_string(u.roles, ','), u.vendor_id::text, u.status = 'active',"
      " EXISTS (SELECT 1 FROM refresh_token_families f WHERE f.id = $2::uuid AND f.user_id = u.id"
      "         AND f.revoked_at IS NULL)"
      " FROM users u WHERE u.id = $1::uuid",
      user_id, family_id.empty() ? std::optional<std::string>{} : std::optional<std::string>{family_id});
  if (rows.empty()) {
    return std::nullopt;
  }
  caller_state out;
  out.roles = split_roles(rows[0][0].as<std::string>());
  out.vendor_id = opt<std::string>(rows[0][1]);
  out.active = rows[0][2].as<bool>();
  out.session_live = rows[0][3].as<bool>();
  return out;
}

bool revoke_family_of(pqxx::connection& conn, const std::string& token, const std::string& reason) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params(
      "UPDATE refresh_token_families f SET revoked_at = COALESCE(f.revoked_at, NOW()),"
      " revoked_reason = COALESCE(f.revoked_reason, $2)"
      " FROM refresh_tokens t WHERE t.token_hash = $1 AND f.id = t.family_id RETURNING f.id",
      security::sha256_hex(token), reason);
  tx.commit();
  return !r.empty();
}

void revoke_all_families(pqxx::connection& conn, const std::string& user_id, const std::string& reason) {
  pqxx::work tx{conn};
  tx.exec_params("UPDATE refresh_token_families SET revoked_at = NOW(), revoked_reason = $2"
                 " WHERE user_id = $1::uuid AND revoked_at IS NULL",
                 user_id, reason);
  tx.commit();
}

void update_password_hash(pqxx::connection& conn, const std::string& user_id, const std::string& password_hash) {
  pqxx::work tx{conn};
  tx.exec_params("UPDATE users SET password_hash = $2, updated_at = NOW() WHERE id = $1::uuid", user_id,
                 password_hash);
  tx.commit();
}

std::optional<user_record> update_profile(pqxx::connection& conn, const std::string& user_id,
                                          const std::optional<std::string>& name,
                                          const std::optional<std::string>& preferences) {
  pqxx::work tx{conn};
  const auto rows = tx.exec_params(
      "UPDATE users SET name = COALESCE($2, name), preferences = COALESCE($3::jsonb, preferences),"
      " version = version + 1, updated_at = NOW() WHERE id = $1::uuid RETURNING id",
      user_id, name, preferences);
  if (rows.empty()) {
    return std::nullopt;
  }
  auto user = one_user(tx.exec_params(select_user("u.id = $1::uuid"), user_id));
  tx.commit();
  return user;
}

std::optional<user_record> set_roles(pqxx::connection& conn, const std::string& user_id,
                                     const std::vector<std::string>& roles, const std::optional<std::string>& vendor_id) {
  pqxx::work tx{conn};
  const auto rows = tx.exec_params(
      "UPDATE users SET roles = $2::text[], vendor_id = $3::uuid, version = version + 1, updated_at = NOW()"
      " WHERE id = $1::uuid RETURNING id",
      user_id, roles_literal(roles), vendor_id);
  if (rows.empty()) {
    return std::nullopt;
  }
  // Tokens minted from now on carry the new roles; old refresh tokens must not mint the old ones.
  tx.exec_params("UPDATE refresh_token_families SET revoked_at = NOW(), revoked_reason = 'roles_changed'"
                 " WHERE user_id = $1::uuid AND revoked_at IS NULL",
                 user_id);
  auto user = one_user(tx.exec_params(select_user("u.id = $1::uuid"), user_id));
  tx.commit();
  return user;
}

user_record ensure_admin(pqxx::connection& conn, const std::string& email, const std::string& name,
                         const std::string& password_hash) {
  pqxx::work tx{conn};
  tx.exec_params(
      "INSERT INTO users (email, name, password_hash, roles, email_verified) VALUES ($1, $2, $3, ARRAY['admin'], true)"
      " ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
      " roles = CASE WHEN 'admin' = ANY(users.roles) THEN users.roles ELSE users.roles || ARRAY['admin'] END,"
      " version = users.version + 1, updated_at = NOW()",
      email, name, password_hash);
  auto user = one_user(tx.exec_params(select_user("u.email = $1"), email));
  tx.commit();
  return *user;
}

void set_pending_totp(pqxx::connection& conn, const std::string& user_id, const std::string& secret,
                      const std::vector<std::string>& recovery_code_hashes) {
  pqxx::work tx{conn};
  tx.exec_params("UPDATE users SET totp_pending_secret = $2, updated_at = NOW() WHERE id = $1::uuid", user_id, secret);
  tx.exec_params("DELETE FROM mfa_recovery_codes WHERE user_id = $1::uuid", user_id);
  for (const auto& h : recovery_code_hashes) {
    tx.exec_params("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1::uuid, $2)", user_id, h);
  }
  tx.commit();
}

bool consume_recovery_code(pqxx::connection& conn, const std::string& user_id, const std::string& code_hash) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params(
      "UPDATE mfa_recovery_codes c SET used_at = NOW() FROM users u"
      " WHERE c.user_id = $1::uuid AND c.code_hash = $2 AND c.used_at IS NULL AND u.id = c.user_id"
      " AND u.totp_enabled RETURNING c.user_id",
      user_id, code_hash);
  tx.commit();
  return !r.empty();
}

bool disable_totp(pqxx::connection& conn, const std::string& user_id) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params(
      "UPDATE users SET totp_enabled = false, totp_secret = NULL, totp_pending_secret = NULL,"
      " version = version + 1, updated_at = NOW() WHERE id = $1::uuid AND totp_enabled RETURNING id",
      user_id);
  tx.exec_params("DELETE FROM mfa_recovery_codes WHERE user_id = $1::uuid", user_id);
  tx.commit();
  return !r.empty();
}

std::optional<std::chrono::seconds> mfa_locked_for(pqxx::connection& conn, const std::string& user_id) {
  pqxx::nontransaction tx{conn};
  const auto r = tx.exec_params(
      "SELECT ceil(extract(epoch FROM mfa_locked_until - NOW()))::bigint FROM users"
      " WHERE id = $1::uuid AND mfa_locked_until > NOW()",
      user_id);
  if (r.empty()) {
    return std::nullopt;
  }
  return std::chrono::seconds(std::max<std::int64_t>(1, r[0][0].as<std::int64_t>()));
}

std::optional<std::chrono::seconds> record_mfa_failure(pqxx::connection& conn, const std::string& user_id) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params(
      "UPDATE users SET"
      " mfa_locked_until = CASE WHEN mfa_failures + 1 >= $2 THEN NOW() + make_interval(secs => $3)"
      "                    ELSE mfa_locked_until END,"
      " mfa_failures = CASE WHEN mfa_failures + 1 >= $2 THEN 0 ELSE mfa_failures + 1 END"
      " WHERE id = $1::uuid RETURNING mfa_failures = 0 AND mfa_locked_until > NOW()",
      user_id, mfa_max_failures, static_cast<std::int64_t>(mfa_lock_duration.count()));
  tx.commit();
  if (!r.empty() && r[0][0].as<bool>()) {
    return mfa_lock_duration;
  }
  return std::nullopt;
}

void clear_mfa_failures(pqxx::connection& conn, const std::string& user_id) {
  pqxx::work tx{conn};
  tx.exec_params("UPDATE users SET mfa_failures = 0 WHERE id = $1::uuid AND mfa_failures <> 0", user_id);
  tx.commit();
}

bool activate_totp(pqxx::connection& conn, const std::string& user_id, const std::string& secret, std::int64_t step) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params(
      "UPDATE users SET totp_secret = totp_pending_secret, totp_pending_secret = NULL, totp_enabled = true,"
      " totp_last_step = $3, version = version + 1, updated_at = NOW()"
      " WHERE id = $1::uuid AND totp_pending_secret = $2 AND (totp_last_step IS NULL OR totp_last_step < $3)"
      " RETURNING id",
      user_id, secret, step);
  tx.commit();
  return !r.empty();
}

bool consume_totp_step(pqxx::connection& conn, const std::string& user_id, std::int64_t step) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params(
      "UPDATE users SET totp_last_step = $2 WHERE id = $1::uuid AND totp_enabled"
      " AND (totp_last_step IS NULL OR totp_last_step < $2) RETURNING id",
      user_id, step);
  tx.commit();
  return !r.empty();
}

std::vector<address_record> addresses(pqxx::connection& conn, const std::string& user_id) {
  pqxx::nontransaction tx{conn};
  std::vector<address_record> out;
  for (const auto& r : tx.exec_params(std::string("SELECT ") + address_columns +
                                          " FROM addresses WHERE user_id = $1::uuid ORDER BY created_at, id",
                                      user_id)) {
    out.push_back(read_address(r));
  }
  return out;
}

std::optional<address_record> add_address(pqxx::connection& conn, const std::string& user_id, const address_record& a) {
  pqxx::work tx{conn};
  // Serialise address changes of one user (the count check and the default flag).
  tx.exec_params("SELECT id FROM users WHERE id = $1::uuid FOR UPDATE", user_id);
  const auto count = tx.exec_params1("SELECT COUNT(*) FROM addresses WHERE user_id = $1::uuid", user_id)[0].as<std::size_t>();
  if (count >= max_addresses_per_user) {
    return std::nullopt;
  }
  const bool make_default = a.is_default || count == 0;
  if (make_default) {
    tx.exec_params("UPDATE addresses SET is_default = false WHERE user_id = $1::uuid AND is_default", user_id);
  }
  const auto rows = tx.exec_params(
      std::string("INSERT INTO addresses (user_id, label, name, line1, line2, city, region, postal_code, country,"
                  " phone, is_default) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ") +
          address_columns,
      user_id, a.label, a.name, a.line1, a.line2, a.city, a.region, a.postal_code, a.country, a.phone, make_default);
  auto out = read_address(rows[0]);
  tx.commit();
  return out;
}

bool delete_address(pqxx::connection& conn, const std::string& user_id, const std::string& id) {
  pqxx::work tx{conn};
  const auto r = tx.exec_params("DELETE FROM addresses WHERE id = $1::uuid AND user_id = $2::uuid RETURNING id", id,
                                user_id);
  tx.commit();
  return !r.empty();
}

}  // namespace mercato::persistence::user_store
