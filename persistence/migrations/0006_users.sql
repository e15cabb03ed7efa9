-- Users, credentials and what hangs off an account (issue 5, seed "Security Architecture").

CREATE TABLE users (
  id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  email               VARCHAR(254) NOT NULL,           -- normalised: trimmed, lower-case
  name                VARCHAR(200) NOT NULL,
  password_hash       TEXT NOT NULL,                   -- "$argon2id$v=19$m=...,t=...,p=...$salt$hash"
  roles               TEXT[] NOT NULL DEFAULT ARRAY['customer'],
  vendor_id           UUID REFERENCES vendors(id),
  preferences         JSONB NOT NULL DEFAULT '{}'::jsonb,
  email_verified      BOOLEAN NOT NULL DEFAULT false,
  totp_secret         TEXT,                            -- base32; MFA is on when totp_enabled
  totp_pending_secret TEXT,                            -- enrolment started, not yet verified
  totp_enabled        BOOLEAN NOT NULL DEFAULT false,
  totp_last_step      BIGINT,                          -- the last accepted time step: a code works once
  status              VARCHAR(20) NOT NULL DEFAULT 'active',
  version             BIGINT NOT NULL DEFAULT 1,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  CONSTRAINT users_roles_known CHECK (cardinality(roles) >= 1 AND
                                      roles <@ ARRAY['customer', 'vendor', 'support', 'admin']::TEXT[]),
  CONSTRAINT users_vendor_needs_role CHECK (vendor_id IS NULL OR 'vendor' = ANY(roles)),
  CONSTRAINT users_totp_has_secret CHECK (NOT totp_enabled OR totp_secret IS NOT NULL),
  CONSTRAINT users_status_known CHECK (status IN ('active', 'disabled'))
);
CREATE UNIQUE INDEX idx_users_email ON users(email);

-- A refresh token family starts at login; every refresh rotates to a new token of the same family.
-- Presenting a token that was already rotated (a stolen copy) revokes the whole family, as does logout.
CREATE TABLE refresh_token_families (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  revoked_at      TIMESTAMPTZ,
  revoked_reason  VARCHAR(30)                          -- logout, reuse, roles_changed
);
CREATE INDEX idx_refresh_families_user ON refresh_token_families(user_id);

CREATE TABLE refresh_tokens (
  token_hash   CHAR(64) PRIMARY KEY,                   -- SHA-256 hex of the token; the token itself is never stored
  family_id    UUID NOT NULL REFERENCES refresh_token_families(id) ON DELETE CASCADE,
  issued_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  expires_at   TIMESTAMPTZ NOT NULL,
  rotated_at   TIMESTAMPTZ                             -- exchanged for a newer token
);
CREATE INDEX idx_refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX idx_refresh_tokens_expiry ON refresh_tokens(expires_at);

CREATE TABLE addresses (
  id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  label        VARCHAR(50),
  name         VARCHAR(200) NOT NULL,
  line1        VARCHAR(200) NOT NULL,
  line2        VARCHAR(200),
  city         VARCHAR(100) NOT NULL,
  region       VARCHAR(100),
  postal_code  VARCHAR(20) NOT NULL,
  country      CHAR(2) NOT NULL,                       -- ISO 3166-1 alpha-2, upper case
  phone        VARCHAR(30),
  is_default   BOOLEAN NOT NULL DEFAULT false,
  created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  CONSTRAINT addresses_country_code CHECK (country ~ '^[A-Z]{2}$')
);
CREATE INDEX idx_addresses_user ON addresses(user_id, created_at, id);
CREATE UNIQUE INDEX idx_addresses_one_default ON addresses(user_id) WHERE is_default;

-- Notifications addressed to a user (order confirmation, shipping, refunds), written by the domain.
CREATE TABLE notifications (
  id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  kind        VARCHAR(50) NOT NULL,
  title       VARCHAR(200) NOT NULL,
  body        TEXT NOT NULL DEFAULT '',
  data        JSONB NOT NULL DEFAULT '{}'::jsonb,
  read_at     TIMESTAMPTZ,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_notifications_user ON notifications(user_id, created_at DESC, id DESC);
