-- The entity runtime's source of truth, its outbox and the idempotency store (ARCHITECTURE.md "Persistence").

CREATE TABLE entity_snapshots (
  kind        VARCHAR(40) NOT NULL,
  id          TEXT NOT NULL,
  version     BIGINT NOT NULL CHECK (version > 0),
  owner_epoch BIGINT NOT NULL,
  state       JSONB NOT NULL,
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (kind, id)
);

-- Domain events, appended in the same transaction as the snapshot, dispatched at least once.
CREATE TABLE outbox (
  seq            BIGSERIAL PRIMARY KEY,
  id             UUID NOT NULL UNIQUE,
  aggregate_kind VARCHAR(40) NOT NULL,
  aggregate_id   TEXT NOT NULL,
  event_type     VARCHAR(80) NOT NULL,
  event_version  VARCHAR(10) NOT NULL DEFAULT '1',
  occurred_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  data           JSONB NOT NULL,
  metadata       JSONB NOT NULL,
  dispatched_at  TIMESTAMPTZ
);
CREATE INDEX idx_outbox_pending ON outbox(seq) WHERE dispatched_at IS NULL;
CREATE INDEX idx_outbox_aggregate ON outbox(aggregate_kind, aggregate_id, seq);

-- Shard ownership leases (one node holds them all until the cluster arrives).
CREATE TABLE shard_leases (
  kind        VARCHAR(40) NOT NULL,
  shard       INTEGER NOT NULL,
  owner_node  TEXT NOT NULL,
  epoch       BIGINT NOT NULL,
  expires_at  TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (kind, shard)
);

CREATE TABLE idempotency_keys (
  scope          TEXT NOT NULL,          -- caller identity (user id or cart token hash)
  key            VARCHAR(255) NOT NULL,
  request_hash   BYTEA NOT NULL,         -- SHA-256 of method, path and body
  state          VARCHAR(12) NOT NULL CHECK (state IN ('running', 'completed')),
  status_code    INTEGER,
  response_headers JSONB,
  response_body  BYTEA,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  expires_at     TIMESTAMPTZ NOT NULL DEFAULT NOW() + INTERVAL '24 hours',
  PRIMARY KEY (scope, key)
);
CREATE INDEX idx_idempotency_expiry ON idempotency_keys(expires_at);
