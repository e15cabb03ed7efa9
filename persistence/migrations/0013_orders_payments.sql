-- Checkout, orders and payments (issue 11). Orders and payments are entities; these are their query
-- tables, written in the snapshot's transaction.

-- Projection rows carry the entity version that wrote them (the writer keeps the newest).
ALTER TABLE order_items ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- Every order with its checkout step: an unfinished checkout (reserving, pending_payment) is found
-- here and driven to its end after a crash.
CREATE TABLE order_sagas (
  order_id    UUID PRIMARY KEY,
  customer_id UUID NOT NULL,
  step        VARCHAR(30) NOT NULL,
  version     BIGINT NOT NULL,
  updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_order_sagas_open ON order_sagas (updated_at) WHERE step IN ('reserving', 'pending_payment');

CREATE TABLE payments (
  id                 UUID PRIMARY KEY,
  order_id           UUID NOT NULL UNIQUE,
  customer_id        UUID NOT NULL,
  status             VARCHAR(30) NOT NULL CHECK (status IN ('pending', 'authorized', 'captured', 'failed', 'voided',
                                                           'refunded', 'partially_refunded')),
  amount             DECIMAL(12,2) NOT NULL CHECK (amount >= 0),
  refunded_amount    DECIMAL(12,2) NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
  currency           VARCHAR(3) NOT NULL,
  provider           VARCHAR(30) NOT NULL,
  provider_reference TEXT,
  failure_code       TEXT,
  version            BIGINT NOT NULL,
  created_at         TIMESTAMPTZ NOT NULL,
  updated_at         TIMESTAMPTZ NOT NULL
);

-- The sandbox payment provider's own ledger (persistence/sandbox_payments): every operation by its
-- idempotency key, as a real provider keeps it. Tests read it to prove nothing was charged twice.
CREATE TABLE sandbox_payment_operations (
  key          TEXT PRIMARY KEY,
  operation    VARCHAR(12) NOT NULL CHECK (operation IN ('authorize', 'capture', 'void', 'refund')),
  target       TEXT NOT NULL,
  amount       BIGINT NOT NULL,
  approved     BOOLEAN NOT NULL,
  reference    TEXT NOT NULL,
  decline_code TEXT NOT NULL DEFAULT '',
  created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_sandbox_ops_reference ON sandbox_payment_operations (reference);
CREATE INDEX idx_sandbox_ops_target ON sandbox_payment_operations (target);
