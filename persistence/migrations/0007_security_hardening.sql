-- Security hardening (issue 16): the MFA attempt cap and recovery codes.

-- Wrong second factors (TOTP or recovery codes at login, verification, disabling) and wrong passwords
-- when re-authenticating count here, in the database, so the cap holds on every node and does not depend
-- on the (switchable) rate limits: after 5 in a row the account's second-factor checks wait until
-- mfa_locked_until. A success resets the count.
ALTER TABLE users ADD COLUMN mfa_failures INT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN mfa_locked_until TIMESTAMPTZ;

-- One-time recovery codes, shown once at enrolment; only the SHA-256 of each is kept. Replaced by a new
-- enrolment, deleted when MFA is turned off.
CREATE TABLE mfa_recovery_codes (
  user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  code_hash  CHAR(64) NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  used_at    TIMESTAMPTZ,
  PRIMARY KEY (user_id, code_hash)
);
