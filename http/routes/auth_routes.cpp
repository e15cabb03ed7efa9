#include "http/routes/auth_routes.hpp"

#include <algorithm>
#include <cctype>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include "http/body_reader.hpp"
#include "http/codec.hpp"
#include "http/rate_gate.hpp"
#include "http/routes/db_call.hpp"
#include "http/routes/query_params.hpp"
#include "http/worker_pool.hpp"
#include "persistence/catalog_store.hpp"
#include "security/totp.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

using persistence::user_record;
namespace store = persistence::user_store;
using auth_ptr = std::shared_ptr<const auth_context>;
using clock = std::chrono::system_clock;

constexpr std::size_t max_password_bytes = 1024;  // hashing cost is bounded; the policy says 128 characters

problem unauthorized(std::string code, std::string detail) {
  return problem{401, std::move(code), "Unauthorized", std::move(detail), {}};
}

problem conflict(std::string code, std::string detail) {
  return problem{409, std::move(code), "Conflict", std::move(detail), {}};
}

// The session behind an access token ended (logout, reuse, role change) or the account is disabled.
response session_revoked(std::string detail) {
  return response::from(problem{401, "session_revoked", "Unauthorized", std::move(detail), {}})
      .with_header("WWW-Authenticate", "Bearer realm=\"mercato\", error=\"invalid_token\"");
}

response mfa_throttled(std::chrono::seconds wait) {
  return response::from(problem{429, "mfa_throttled", "Too many failed attempts",
                                "too many wrong codes or passwords for this account; retry after " +
                                    std::to_string(wait.count()) + " s",
                                {}})
      .with_header("Retry-After", std::to_string(wait.count()));
}

// Recovery codes: 64 random bits each, written as four groups of four hex digits. Compared without
// dashes, spaces or case; only their SHA-256 is stored.
constexpr std::size_t recovery_code_count = 10;

std::vector<std::string> new_recovery_codes() {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < recovery_code_count; ++i) {
    const auto hex = security::sha256_hex(security::random_token(32)).substr(0, 16);
    out.push_back(hex.substr(0, 4) + "-" + hex.substr(4, 4) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4));
  }
  return out;
}

std::string recovery_code_hash(std::string_view code) {
  std::string plain;
  for (char c : code) {
    if (c == '-' || c == ' ') {
      continue;
    }
    plain += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return security::sha256_hex(plain);
}

// Runs `work` on the worker pool; a full queue answers 503.
void run_work(worker_pool& workers, const responder& respond, std::function<void()> work) {
  if (!workers.submit(std::move(work))) {
    respond(response::from(service_unavailable("overloaded", "too many requests are waiting; try again shortly"))
                .with_header("Retry-After", "1"));
  }
}

boost::json::value parse_or_empty(const std::string& text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return ec ? boost::json::value(boost::json::object{}) : v;
}

template <class T>
boost::json::value or_null(const std::optional<T>& v) {
  return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

// The answer of register, login and refresh.
response token_response(unsigned status, const auth_context& auth, const user_record& user,
                        const persistence::issued_refresh& refresh) {
  auto claims =
      security::make_access_claims(user.id, user.roles, user.vendor_id.value_or(""), auth.jwt, clock::now());
  claims.session_id = refresh.family_id;  // ties the access token to this login (logout, revocation)
  boost::json::object body{
      {"user", user_json(user)},
      {"access_token", security::sign_access_token(claims, auth.jwt)},
      {"token_type", "Bearer"},
      {"expires_in", static_cast<std::int64_t>(auth.jwt.access_ttl.count())},
      {"refresh_token", refresh.token},
      {"refresh_expires_in",
       static_cast<std::int64_t>(
           std::chrono::duration_cast<std::chrono::seconds>(refresh.expires_at - clock::now()).count())},
  };
  return response::json(status, body).with_header("Cache-Control", "no-store");
}

// --- POST /auth/register ------------------------------------------------------------------------

void register_account(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"email", "password", "name"});
  auto email_text = body.text("email", true, 3, 254);
  auto password = body.text("password", true, 1, 4096);
  auto name = body.text("name", true, 1, 200);
  std::optional<std::string> email;
  if (email_text) {
    email = security::normalize_email(*email_text);
    if (!email) {
      body.error("email", "is not a valid email address");
    }
  }
  if (password && email) {
    if (auto why = security::password_problem(*password, *email)) {
      body.error("password", *why);
    }
  }
  if (name && name->find_first_not_of(' ') == std::string::npos) {
    body.error("name", "must not be blank");
  }
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  run_work(auth->workers, respond, [auth, respond, email = *email, password = *password, name = *name] {
    auto hash = security::hash_password(password, auth->password);
    run_db(auth->pool, respond, [auth, email, name, hash](pqxx::connection& conn) {
      auto reg = store::register_user(conn, email, name, hash, {"customer"}, auth->refresh_ttl);
      if (!reg) {
        return response::from(conflict("email_taken", "an account with this email already exists"));
      }
      telemetry::log_info("account registered", {{"user_id", reg->user.id}});
      return token_response(201, *auth, reg->user, reg->refresh)
          .with_header("Location", "/api/v1/me");
    });
  });
}

// --- POST /auth/login ---------------------------------------------------------------------------

response throttled(std::chrono::seconds wait) {
  return response::from(problem{429, "login_throttled", "Too many failed logins",
                                "too many failed logins for this account; retry after " +
                                    std::to_string(wait.count()) + " s",
                                {}})
      .with_header("Retry-After", std::to_string(wait.count()));
}

// The failed-login back-off is kept per account and client address: an attacker's failures slow the
// attacker's address down, never the owner's (see docs/architecture.md).
std::string backoff_key(const std::string& email, const std::string& client_ip) { return email + "|" + client_ip; }

void login(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"email", "password", "totp_code", "recovery_code"});
  auto email_text = body.text("email", true, 1, 320);
  auto password = body.text("password", true, 1, max_password_bytes);
  auto totp_code = body.text("totp_code", false, 1, 16);
  auto recovery_code = body.text("recovery_code", false, 1, 64);
  if (totp_code && recovery_code) {
    body.error("recovery_code", "send either totp_code or recovery_code, not both");
  }
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  // An address that cannot exist still costs a hash: the answer time must not tell it apart.
  const auto email = security::normalize_email(*email_text).value_or(std::string{});
  const auto key = backoff_key(email, ctx->client_ip);
  run_work(auth->workers, respond, [auth, respond, email, key, password = *password, totp_code, recovery_code] {
    if (auth->limits != nullptr && auth->limits->enabled() && !email.empty()) {
      if (auto wait = auth->limits->logins().blocked_for(key)) {
        respond(throttled(*wait));
        return;
      }
    }
    with_db(auth->pool, respond, [auth, respond, email, key, password, totp_code, recovery_code](pqxx::connection& conn) {
      auto user = email.empty() ? std::nullopt : store::find_by_email(conn, email);
      // Hand the slow part back to the workers: this thread holds a database connection.
      run_work(auth->workers, respond, [auth, respond, email, key, password, totp_code, recovery_code, user] {
        const bool active = user && user->status == "active";
        const bool good = active ? security::verify_password(password, user->password_hash)
                                 : security::verify_password_dummy(password, auth->password);
        if (!good) {
          if (auth->limits != nullptr && auth->limits->enabled() && !email.empty()) {
            if (auto wait = auth->limits->logins().record_failure(key)) {
              telemetry::log_warn("login throttled", {{"wait_s", wait->count()}});
            }
          }
          respond(unauthorized("invalid_credentials", "the email or the password is wrong"));
          return;
        }
        std::optional<std::int64_t> step;
        if (user->totp_enabled) {
          if (!totp_code && !recovery_code) {
            // The password was right; the client asks for the code and sends both again.
            respond(unauthorized("mfa_required", "this account needs a TOTP code: send totp_code with the login"));
            return;
          }
          if (totp_code) {
            step = security::verify_totp(user->totp_secret.value_or(""), *totp_code, clock::now(), 1);
          }
        }
        std::optional<std::string> rehash;
        if (security::needs_rehash(user->password_hash, auth->password)) {
          rehash = security::hash_password(password, auth->password);
        }
        run_db(auth->pool, respond,
               [auth, key, user, step, totp_code, recovery_code, rehash](pqxx::connection& conn) {
                 if (user->totp_enabled) {
                   // The attempt cap of codes lives in the database: it holds with rate limits off too.
                   if (auto wait = store::mfa_locked_for(conn, user->id)) {
                     return mfa_throttled(*wait);
                   }
                   if (totp_code && (!step || !store::consume_totp_step(conn, user->id, *step))) {
                     (void)store::record_mfa_failure(conn, user->id);
                     return response::from(unauthorized(
                         "invalid_totp_code", step ? "this TOTP code was used already; wait for the next one"
                                                   : "the TOTP code is wrong or expired"));
                   }
                   if (recovery_code &&
                       !store::consume_recovery_code(conn, user->id, recovery_code_hash(*recovery_code))) {
                     (void)store::record_mfa_failure(conn, user->id);
                     return response::from(
                         unauthorized("invalid_recovery_code", "the recovery code is wrong or was used already"));
                   }
                   store::clear_mfa_failures(conn, user->id);
                 }
                 if (rehash) {
                   store::update_password_hash(conn, user->id, *rehash);
                 }
                 auto refresh = store::start_family(conn, user->id, auth->refresh_ttl);
                 if (auth->limits != nullptr && auth->limits->enabled()) {
                   // Clearing the failure count blocks on Redis: leave that to the workers.
                   (void)auth->workers.submit([auth, key] { auth->limits->logins().record_success(key); });
                 }
                 return token_response(200, *auth, *user, refresh);
               });
      });
    });
  });
}

// --- POST /auth/refresh, /auth/logout -----------------------------------------------------------

// The {refresh_token} body of refresh and logout; answers 400 itself when it is not one.
std::optional<std::string> refresh_token_of(const request_context& ctx, const responder& respond) {
  body_reader body(ctx);
  body.allow_only({"refresh_token"});
  auto token = body.text("refresh_token", true, 1, 512);
  if (!body.ok()) {
    respond(body.to_problem());
    return std::nullopt;
  }
  return token;
}

void refresh(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  auto token = refresh_token_of(*ctx, respond);
  if (!token) {
    return;
  }
  run_db(auth->pool, respond, [auth, token = *token](pqxx::connection& conn) {
    auto r = store::rotate(conn, token, auth->refresh_ttl);
    using persistence::refresh_outcome;
    switch (r.outcome) {
      case refresh_outcome::rotated:
        return token_response(200, *auth, *r.user, r.next);
      case refresh_outcome::reused:
        telemetry::log_warn("refresh token reused: family revoked", {});
        return response::from(unauthorized(
            "refresh_token_reused", "this refresh token was already used; every session of this login is revoked"));
      case refresh_outcome::expired:
        return response::from(unauthorized("invalid_refresh_token", "the refresh token has expired"));
      case refresh_outcome::revoked:
        return response::from(unauthorized("invalid_refresh_token", "the refresh token was revoked"));
      case refresh_outcome::unknown:
        break;
    }
    return response::from(unauthorized("invalid_refresh_token", "the refresh token is not valid"));
  });
}

void logout(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  auto token = refresh_token_of(*ctx, respond);
  if (!token) {
    return;
  }
  run_db(auth->pool, respond, [token = *token](pqxx::connection& conn) {
    // Unknown tokens are not reported: logout is idempotent and tells nothing about tokens.
    (void)store::revoke_family_of(conn, token, "logout");
    return response::empty(204);
  });
}

// --- MFA ----------------------------------------------------------------------------------------
// Changing credentials needs the password again (a stolen access token alone must not be able to lock
// the owner out) and a live session (the pipeline refuses tokens of a logged-out or revoked login on
// live routes). Wrong passwords here count toward the same cap as wrong codes.

using after_password = std::function<response(pqxx::connection&, const user_record&)>;

void reauthenticate(const auth_ptr& auth, const responder& respond, const std::string& user_id,
                    const std::string& password, after_password next) {
  with_db(auth->pool, respond, [auth, respond, user_id, password, next](pqxx::connection& conn) {
    auto user = store::find_by_id(conn, user_id);
    if (!user) {
      respond(unauthorized("invalid_token", "the account of this token no longer exists"));
      return;
    }
    if (auto wait = store::mfa_locked_for(conn, user_id)) {
      respond(mfa_throttled(*wait));
      return;
    }
    run_work(auth->workers, respond, [auth, respond, user = *user, password, next] {
      const bool good = security::verify_password(password, user.password_hash);
      run_db(auth->pool, respond, [user, good, next](pqxx::connection& conn) {
        if (!good) {
          (void)store::record_mfa_failure(conn, user.id);
          return response::from(unauthorized("invalid_credentials", "the password is wrong"));
        }
        return next(conn, user);
      });
    });
  });
}

void totp_enrol(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"password"});
  auto password = body.text("password", true, 1, max_password_bytes);
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  reauthenticate(auth, respond, ctx->caller->user_id, *password, [auth](pqxx::connection& conn, const user_record& user) {
    if (user.totp_enabled) {
      return response::from(conflict("mfa_already_enabled", "TOTP is already active for this account"));
    }
    store::clear_mfa_failures(conn, user.id);
    auto secret = security::new_totp_secret();
    auto codes = new_recovery_codes();
    std::vector<std::string> hashes;
    boost::json::array shown;
    for (const auto& c : codes) {
      hashes.push_back(recovery_code_hash(c));
      shown.emplace_back(c);
    }
    store::set_pending_totp(conn, user.id, secret, hashes);
    return response::json(200, boost::json::object{{"secret", secret},
                                                   {"otpauth_uri", security::otpauth_uri(secret, user.email,
                                                                                         auth->jwt.issuer)},
                                                   {"recovery_codes", std::move(shown)}})
        .with_header("Cache-Control", "no-store");
  });
}

void totp_verify(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"code"});
  auto code = body.text("code", true, 1, 16);
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  run_db(auth->pool, respond, [user_id = ctx->caller->user_id, code = *code](pqxx::connection& conn) {
    auto user = store::find_by_id(conn, user_id);
    if (!user) {
      return response::from(unauthorized("invalid_token", "the account of this token no longer exists"));
    }
    if (user->totp_enabled) {
      return response::from(conflict("mfa_already_enabled", "TOTP is already active for this account"));
    }
    if (!user->totp_pending_secret) {
      return response::from(conflict("mfa_not_pending", "start the enrolment with POST /api/v1/auth/mfa/totp first"));
    }
    if (auto wait = store::mfa_locked_for(conn, user_id)) {
      return mfa_throttled(*wait);
    }
    auto step = security::verify_totp(*user->totp_pending_secret, code, clock::now(), 1);
    if (!step || !store::activate_totp(conn, user_id, *user->totp_pending_secret, *step)) {
      (void)store::record_mfa_failure(conn, user_id);
      return response::from(invalid_request("the code does not match", {{"/code", "is wrong or expired"}}));
    }
    store::clear_mfa_failures(conn, user_id);
    return response::empty(204);
  });
}

void totp_disable(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"password", "code", "recovery_code"});
  auto password = body.text("password", true, 1, max_password_bytes);
  auto code = body.text("code", false, 1, 16);
  auto recovery_code = body.text("recovery_code", false, 1, 64);
  if (body.ok() && !code && !recovery_code) {
    body.error("code", "send a current TOTP code (or recovery_code)");
  }
  if (code && recovery_code) {
    body.error("recovery_code", "send either code or recovery_code, not both");
  }
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  reauthenticate(auth, respond, ctx->caller->user_id, *password,
                 [code, recovery_code](pqxx::connection& conn, const user_record& user) {
                   if (!user.totp_enabled) {
                     return response::from(conflict("mfa_not_enabled", "TOTP is not active for this account"));
                   }
                   if (code) {
                     auto step = security::verify_totp(user.totp_secret.value_or(""), *code, clock::now(), 1);
                     if (!step || !store::consume_totp_step(conn, user.id, *step)) {
                       (void)store::record_mfa_failure(conn, user.id);
                       return response::from(unauthorized("invalid_totp_code", "the TOTP code is wrong, expired or used"));
                     }
                   } else if (!store::consume_recovery_code(conn, user.id, recovery_code_hash(*recovery_code))) {
                     (void)store::record_mfa_failure(conn, user.id);
                     return response::from(
                         unauthorized("invalid_recovery_code", "the recovery code is wrong or was used already"));
                   }
                   store::clear_mfa_failures(conn, user.id);
                   (void)store::disable_totp(conn, user.id);
                   telemetry::log_info("mfa disabled", {{"user_id", user.id}});
                   return response::empty(204);
                 });
}

// The pipeline's check of live_caller routes (router::set_caller_check): the login behind the token must
// still be live and the account active; roles and vendor are read from the store, not the token. One
// primary-key read per privileged request, not cached, so a change is in force at once on every node.
void check_caller(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx,
                  const std::function<void(std::optional<response>)>& done) {
  const auto user_id = ctx->caller->user_id;
  const auto sid = ctx->caller->session_id;
  if (!is_uuid(user_id) || !is_uuid(sid)) {
    done(session_revoked("this access token belongs to no live session; sign in again"));
    return;
  }
  const bool queued = auth->pool.submit(
      [ctx, user_id, sid, done](pqxx::connection& conn) {
        auto state = store::current_caller(conn, user_id, sid);
        if (!state || !state->active || !state->session_live) {
          done(session_revoked("the session of this access token has ended (logout, revocation or a change of "
                               "roles); sign in again"));
          return;
        }
        ctx->caller->roles = state->roles;
        ctx->caller->vendor_id = state->vendor_id.value_or("");
        done(std::nullopt);
      },
      [done](const persistence::db_error& err) { done(response::from(problem_for(err))); });
  if (!queued) {
    done(response::from(service_unavailable("overloaded", "too many requests are waiting for the database"))
             .with_header("Retry-After", "1"));
  }
}

// --- /me ----------------------------------------------------------------------------------------

void get_me(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  run_db(auth->pool, respond, [user_id = ctx->caller->user_id](pqxx::connection& conn) {
    auto user = store::find_by_id(conn, user_id);
    if (!user) {
      return response::from(not_found("no such user"));
    }
    return response::json(200, user_json(*user)).with_header("ETag", etag_for_version(user->version));
  });
}

void patch_me(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"name", "preferences"}, "cannot be changed here");
  auto name = body.text("name", false, 1, 200);
  auto preferences = body.object_json("preferences", false, 16 * 1024);
  if (name && name->find_first_not_of(' ') == std::string::npos) {
    body.error("name", "must not be blank");
  }
  if (body.ok() && !name && !preferences) {
    body.error("", "nothing to change: send name and/or preferences");
  }
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  run_db(auth->pool, respond, [user_id = ctx->caller->user_id, name, preferences](pqxx::connection& conn) {
    auto user = store::update_profile(conn, user_id, name, preferences);
    if (!user) {
      return response::from(not_found("no such user"));
    }
    return response::json(200, user_json(*user)).with_header("ETag", etag_for_version(user->version));
  });
}

boost::json::object address_json(const persistence::address_record& a) {
  return {{"id", a.id},          {"label", or_null(a.label)},   {"name", a.name},
          {"line1", a.line1},    {"line2", or_null(a.line2)},   {"city", a.city},
          {"region", or_null(a.region)}, {"postal_code", a.postal_code}, {"country", a.country},
          {"phone", or_null(a.phone)},   {"is_default", a.is_default},   {"created_at", a.created_at}};
}

void list_addresses(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  // A book holds at most max_addresses_per_user entries, so a page is cut from the whole (small) list;
  // the cursor is the id of the last address of the previous page.
  query_reader q(*ctx);
  const auto limit = static_cast<std::size_t>(q.integer("limit", 20, 1, 100));
  std::optional<std::string> after;
  if (auto c = q.text("cursor", 1, 512)) {
    auto raw = base64url_decode(*c);
    if (!raw || raw->rfind("a1|", 0) != 0 || !is_uuid(raw->substr(3))) {
      q.fail("cursor", "is not a cursor of this list");
    } else {
      after = raw->substr(3);
    }
  }
  if (!q.ok()) {
    respond(q.to_problem());
    return;
  }
  run_db(auth->pool, respond, [user_id = ctx->caller->user_id, limit, after](pqxx::connection& conn) {
    auto all = store::addresses(conn, user_id);
    std::size_t start = 0;
    if (after) {
      auto it = std::find_if(all.begin(), all.end(), [&](const auto& a) { return a.id == *after; });
      start = it == all.end() ? all.size() : static_cast<std::size_t>(it - all.begin()) + 1;
    }
    boost::json::array data;
    for (std::size_t i = start; i < all.size() && data.size() < limit; ++i) {
      data.push_back(address_json(all[i]));
    }
    const bool more = start + data.size() < all.size();
    boost::json::value next = nullptr;
    if (more) {
      next = base64url_encode("a1|" + all[start + data.size() - 1].id);
    }
    return response::json(200, boost::json::object{{"data", std::move(data)},
                                                   {"meta", boost::json::object{{"next_cursor", next},
                                                                                {"has_more", more}}}});
  });
}

void add_address(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  body_reader body(*ctx);
  body.allow_only({"label", "name", "line1", "line2", "city", "region", "postal_code", "country", "phone", "is_default"});
  persistence::address_record a;
  a.label = body.text("label", false, 1, 50);
  auto name = body.text("name", true, 1, 200);
  auto line1 = body.text("line1", true, 1, 200);
  a.line2 = body.text("line2", false, 0, 200);
  auto city = body.text("city", true, 1, 100);
  a.region = body.text("region", false, 0, 100);
  auto postal = body.text("postal_code", true, 1, 20);
  auto country = body.text("country", true, 2, 2);
  a.phone = body.text("phone", false, 1, 30);
  a.is_default = body.boolean("is_default", false).value_or(false);
  if (country && !(std::isupper(static_cast<unsigned char>((*country)[0])) &&
                   std::isupper(static_cast<unsigned char>((*country)[1])))) {
    body.error("country", "must be an ISO 3166-1 alpha-2 code in upper case, like US");
  }
  if (a.phone && a.phone->find_first_not_of("+0123456789 -()") != std::string::npos) {
    body.error("phone", "may contain only digits, spaces, +, -, ( and )");
  }
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  a.name = *name;
  a.line1 = *line1;
  a.city = *city;
  a.postal_code = *postal;
  a.country = *country;
  run_db(auth->pool, respond, [user_id = ctx->caller->user_id, a](pqxx::connection& conn) {
    auto added = store::add_address(conn, user_id, a);
    if (!added) {
      return response::from(conflict("address_book_full", "an address book holds at most " +
                                                             std::to_string(store::max_addresses_per_user) +
                                                             " addresses; delete one first"));
    }
    return response::json(201, address_json(*added))
        .with_header("Location", "/api/v1/me/addresses/" + added->id);
  });
}

void delete_address(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  const auto* id = ctx->param("id");
  if (id == nullptr || !is_uuid(*id)) {
    respond(not_found("no such address"));
    return;
  }
  run_db(auth->pool, respond, [user_id = ctx->caller->user_id, id = *id](pqxx::connection& conn) {
    // Someone else's address is "not found" for this caller (no 403: it must not learn it exists).
    if (!store::delete_address(conn, user_id, id)) {
      return response::from(not_found("no such address"));
    }
    return response::empty(204);
  });
}

// --- PUT /admin/users/{id}/roles ----------------------------------------------------------------

void set_roles(const auth_ptr& auth, const std::shared_ptr<request_context>& ctx, const responder& respond) {
  const auto* id = ctx->param("id");
  if (id == nullptr || !is_uuid(*id)) {
    respond(not_found("no such user"));
    return;
  }
  body_reader body(*ctx);
  body.allow_only({"roles", "vendor_id"});
  auto roles = body.text_array("roles", true, 4);
  auto vendor_id = body.text("vendor_id", false, 36, 36);
  if (roles) {
    if (roles->empty()) {
      body.error("roles", "must name at least one role");
    }
    for (std::size_t i = 0; i < roles->size(); ++i) {
      if (!known_role((*roles)[i])) {
        body.error_at("/roles/" + std::to_string(i), "must be one of customer, vendor, support, admin");
      }
    }
    std::sort(roles->begin(), roles->end());
    roles->erase(std::unique(roles->begin(), roles->end()), roles->end());
    const bool vendor = std::find(roles->begin(), roles->end(), "vendor") != roles->end();
    if (vendor && !vendor_id) {
      body.error("vendor_id", "is required with the vendor role");
    }
    if (!vendor && vendor_id) {
      body.error("vendor_id", "is only allowed with the vendor role");
    }
  }
  if (vendor_id && !is_uuid(*vendor_id)) {
    body.error("vendor_id", "must be a UUID");
  }
  if (!body.ok()) {
    respond(body.to_problem());
    return;
  }
  run_db(auth->pool, respond,
         [id = *id, roles = *roles, vendor_id, admin = ctx->caller->user_id](pqxx::connection& conn) {
           if (vendor_id && !persistence::catalog_store::find_vendor(conn, *vendor_id)) {
             return response::from(invalid_request("unknown vendor", {{"/vendor_id", "no vendor has this id"}}));
           }
           auto user = store::set_roles(conn, id, roles, vendor_id);
           if (!user) {
             return response::from(not_found("no such user"));
           }
           telemetry::log_info("roles changed", {{"user_id", id}, {"by", admin}});
           return response::json(200, user_json(*user));
         });
}

}  // namespace

bool known_role(std::string_view role) {
  return role == "customer" || role == "vendor" || role == "support" || role == "admin";
}

boost::json::object user_json(const persistence::user_record& u) {
  boost::json::array roles;
  for (const auto& r : u.roles) {
    roles.emplace_back(r);
  }
  return {{"id", u.id},
          {"email", u.email},
          {"name", u.name},
          {"roles", std::move(roles)},
          {"vendor_id", or_null(u.vendor_id)},
          {"preferences", parse_or_empty(u.preferences)},
          {"email_verified", u.email_verified},
          {"mfa_enabled", u.totp_enabled},
          {"created_at", u.created_at},
          {"updated_at", u.updated_at}};
}

void add_auth_routes(router& routes, std::shared_ptr<const auth_context> auth) {
  using bhttp::verb;
  auto bind = [auth](void (*fn)(const auth_ptr&, const std::shared_ptr<request_context>&, const responder&)) {
    return [auth, fn](std::shared_ptr<request_context> ctx, responder respond) { fn(auth, ctx, respond); };
  };
  // The /auth routes answer credentials (token pairs, a TOTP secret, recovery codes) or change them:
  // Idempotency-Key is not honoured there (openapi.yaml says so), so no answer of theirs is stored in
  // idempotency_keys in clear, and a repeated refresh is reuse instead of a replay of the new pair.
  auto no_replay = [](route_options o) {
    o.replay_idempotency = false;
    return o;
  };
  routes.add(verb::post, "/api/v1/auth/register", bind(register_account), no_replay(json_route()));
  routes.add(verb::post, "/api/v1/auth/login", bind(login), no_replay(json_route()));
  routes.add(verb::post, "/api/v1/auth/refresh", bind(refresh), no_replay(json_route()));
  routes.add(verb::post, "/api/v1/auth/logout", bind(logout), no_replay(json_route()));
  routes.add(verb::post, "/api/v1/auth/mfa/totp", bind(totp_enrol), no_replay(live_route(true)));
  routes.add(verb::post, "/api/v1/auth/mfa/totp/verify", bind(totp_verify), no_replay(live_route(true)));
  routes.add(verb::post, "/api/v1/auth/mfa/totp/disable", bind(totp_disable), no_replay(live_route(true)));
  routes.add(verb::get, "/api/v1/me", bind(get_me), signed_in_route());
  routes.add(verb::patch, "/api/v1/me", bind(patch_me), live_route(true));
  routes.add(verb::get, "/api/v1/me/addresses", bind(list_addresses), signed_in_route());
  routes.add(verb::post, "/api/v1/me/addresses", bind(add_address), signed_in_route(true));
  routes.add(verb::delete_, "/api/v1/me/addresses/{id}", bind(delete_address), signed_in_route());
  routes.add(verb::put, "/api/v1/admin/users/{id}/roles", bind(set_roles), role_route({"admin"}, true));
  routes.set_caller_check([auth](std::shared_ptr<request_context> ctx, std::function<void(std::optional<response>)> done) {
    check_caller(auth, ctx, done);
  });
}

}  // namespace mercato::http
