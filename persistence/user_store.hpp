#pragma once
// Accounts, refresh-token families and addresses as plain SQL (notifications: notification_store). Runs on pg_pool
// threads; knows nothing about HTTP. Every function that changes something commits before it
// returns, so a caller that answers "done" afterwards answers for committed state.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/connection>

namespace mercato::persistence {

struct user_record {
  std::string id;
  std::string email;
  std::string name;
  std::string password_hash;
  std::vector<std::string> roles;
  std::optional<std::string> vendor_id;
  std::string preferences;  // JSON object text
  bool email_verified = false;
  bool totp_enabled = false;
  std::optional<std::string> totp_secret;
  std::optional<std::string> totp_pending_secret;
  std::optional<std::int64_t> totp_last_step;
  std::string status;
  std::int64_t version = 0;
  std::string created_at;  // RFC 3339 UTC
  std::string updated_at;

  bool has_role(const std::string& r) const {
    for (const auto& mine : roles) {
      if (mine == r) return true;
    }
    return false;
  }
};

// A refresh token as handed to the client (the clear token) and what the database keeps of it.
struct issued_refresh {
  std::string token;
  std::string family_id;
  std::chrono::system_clock::time_point expires_at;
};

enum class refresh_outcome {
  rotated,   // ok: `next` is the new token, the presented one stops working
  unknown,   // no such token
  expired,
  revoked,   // its family was revoked (logout, earlier reuse)
  reused,    // already rotated: a copy is in someone else's hands; the family is now revoked
};

struct refresh_rotation {
  refresh_outcome outcome = refresh_outcome::unknown;
  std::optional<user_record> user;  // set when rotated
  issued_refresh next;              // set when rotated
};

struct address_record {
  std::string id;
  std::optional<std::string> label;
  std::string name;
  std::string line1;
  std::optional<std::string> line2;
  std::string city;
  std::optional<std::string> region;
  std::string postal_code;
  std::string country;
  std::optional<std::string> phone;
  bool is_default = false;
  std::string created_at;
};

namespace user_store {

inline constexpr std::size_t max_addresses_per_user = 20;

std::optional<user_record> find_by_email(pqxx::connection& conn, const std::string& email);
std::optional<user_record> find_by_id(pqxx::connection& conn, const std::string& id);

// Creates the account and its first refresh-token family in one transaction.
// nullopt when the email is taken.
struct registration {
  user_record user;
  issued_refresh refresh;
};
std::optional<registration> register_user(pqxx::connection& conn, const std::string& email, const std::string& name,
                                          const std::string& password_hash, const std::vector<std::string>& roles,
                                          std::chrono::seconds refresh_ttl);

// Starts a refresh-token family (a login).
issued_refresh start_family(pqxx::connection& conn, const std::string& user_id, std::chrono::seconds refresh_ttl);

// Exchanges a refresh token for a new one of the same family. Use is atomic and single: of any number of
// concurrent uses of one token exactly one rotates; every other use of it (concurrent or later) is reuse
// and revokes the family.
refresh_rotation rotate(pqxx::connection& conn, const std::string& token, std::chrono::seconds refresh_ttl);

// What a privileged or account-changing request must know of its caller now, not as of the token: the
// account's current roles and vendor link, and whether the login (refresh-token family) that minted the
// token is still live (not logged out, not revoked by reuse or a role change). nullopt: no such account.
struct caller_state {
  std::vector<std::string> roles;
  std::optional<std::string> vendor_id;
  bool active = false;        // status 'active'
  bool session_live = false;  // the family exists, belongs to the user and is not revoked
};
std::optional<caller_state> current_caller(pqxx::connection& conn, const std::string& user_id,
                                           const std::string& family_id);

// Revokes the family the token belongs to; false when the token is unknown.
bool revoke_family_of(pqxx::connection& conn, const std::string& token, const std::string& reason);
// Revokes every family of a user (roles changed, account disabled).
void revoke_all_families(pqxx::connection& conn, const std::string& user_id, const std::string& reason);

void update_password_hash(pqxx::connection& conn, const std::string& user_id, const std::string& password_hash);

// PATCH /me: only name and preferences (JSON object text); returns the updated record.
std::optional<user_record> update_profile(pqxx::connection& conn, const std::string& user_id,
                                          const std::optional<std::string>& name,
                                          const std::optional<std::string>& preferences);

// Admin: sets roles (and the vendor link); revokes the user's refresh families so new tokens carry the
// new roles. nullopt when the user does not exist; throws pqxx data exceptions for an unknown vendor.
std::optional<user_record> set_roles(pqxx::connection& conn, const std::string& user_id,
                                     const std::vector<std::string>& roles, const std::optional<std::string>& vendor_id);

// Creates or updates the account of `email` with the admin role (bootstrap admin). Returns the user.
user_record ensure_admin(pqxx::connection& conn, const std::string& email, const std::string& name,
                         const std::string& password_hash);

// TOTP: the enrolment secret, its confirmation and the replay guard. Enrolment also replaces the
// account's recovery codes (SHA-256 hex of each).
void set_pending_totp(pqxx::connection& conn, const std::string& user_id, const std::string& secret,
                      const std::vector<std::string>& recovery_code_hashes);
// Turns MFA on with the pending secret if it is still `secret` and `step` is newer than the last one.
bool activate_totp(pqxx::connection& conn, const std::string& user_id, const std::string& secret, std::int64_t step);
// Records `step` as used; false when it (or a later one) was used already: the code is a replay.
bool consume_totp_step(pqxx::connection& conn, const std::string& user_id, std::int64_t step);
// Marks one unused recovery code of an MFA account as used; false when there is none with this hash.
bool consume_recovery_code(pqxx::connection& conn, const std::string& user_id, const std::string& code_hash);
// Turns MFA off: secrets and recovery codes are removed. False when MFA was not on.
bool disable_totp(pqxx::connection& conn, const std::string& user_id);

// The attempt cap of second factors (and re-authentication), kept in the database so it holds on every
// node whether or not rate limits are on: `max_failures` failures in a row lock them for `lock_for`.
inline constexpr int mfa_max_failures = 5;
inline constexpr std::chrono::seconds mfa_lock_duration{300};
// Remaining lock time, or nullopt when not locked.
std::optional<std::chrono::seconds> mfa_locked_for(pqxx::connection& conn, const std::string& user_id);
// Counts a failure; returns the lock it started (nullopt: not locked yet).
std::optional<std::chrono::seconds> record_mfa_failure(pqxx::connection& conn, const std::string& user_id);
void clear_mfa_failures(pqxx::connection& conn, const std::string& user_id);

std::vector<address_record> addresses(pqxx::connection& conn, const std::string& user_id);
// nullopt when the user already has max_addresses_per_user addresses.
std::optional<address_record> add_address(pqxx::connection& conn, const std::string& user_id, const address_record& a);
// Only the owner's address is deleted; false when `user_id` has no address `id` (someone else's included).
bool delete_address(pqxx::connection& conn, const std::string& user_id, const std::string& id);

std::string roles_literal(const std::vector<std::string>& roles);  // {customer,admin}

}  // namespace user_store
}  // namespace mercato::persistence
