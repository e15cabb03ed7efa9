-- Inventory as entities (issue 10): one `inventory` entity per product holds on_hand, reserved and the
-- reservations; this table is its projection (query table), written in the entity's transaction.
-- Catalog reads take stock from here; products.stock_quantity / reserved_quantity are no longer written.
CREATE TABLE inventory (
  product_id          UUID PRIMARY KEY REFERENCES products(id),
  on_hand             INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved            INTEGER NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
  low_stock_threshold INTEGER NOT NULL CHECK (low_stock_threshold >= 0),
  version             BIGINT NOT NULL,
  updated_at          TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_inventory_available ON inventory ((on_hand - reserved));

-- Products that exist already (a demo catalog loaded before this migration) become inventory entities
-- at version 1 with their stock (persistence/inventory_seed does the same for new products).
INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state)
SELECT 'inventory', p.id::text, 1, 0,
       jsonb_build_object('schema', 1, 'on_hand', p.stock_quantity, 'reserved', 0,
                          'low_stock_threshold', p.low_stock_threshold, 'reservations', '[]'::jsonb,
                          'low', p.stock_quantity <= p.low_stock_threshold)
FROM products p
ON CONFLICT (kind, id) DO NOTHING;
INSERT INTO inventory (product_id, on_hand, reserved, low_stock_threshold, version)
SELECT p.id, p.stock_quantity, 0, p.low_stock_threshold, 1 FROM products p
ON CONFLICT (product_id) DO NOTHING;
