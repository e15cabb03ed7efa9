-- Carts as a query table (projection of the cart entity): listings, abandonment analytics.
CREATE TABLE carts (
  id             TEXT PRIMARY KEY,
  owner_user_id  UUID,
  status         VARCHAR(20) NOT NULL,
  item_count     INTEGER NOT NULL CHECK (item_count >= 0),
  subtotal       BIGINT NOT NULL CHECK (subtotal >= 0),   -- minor units
  currency       VARCHAR(3) NOT NULL,
  version        BIGINT NOT NULL,
  updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_carts_owner ON carts(owner_user_id) WHERE owner_user_id IS NOT NULL;
CREATE INDEX idx_carts_status_updated ON carts(status, updated_at);
