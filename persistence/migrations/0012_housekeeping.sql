-- Housekeeping (issue 10): the periodic sweep (app/housekeeping) expires stock reservations whose TTL
-- passed without other traffic on the product. The inventory projection says when each product's
-- earliest open reservation runs out, so the sweep reads only the products that have one due.
ALTER TABLE inventory ADD COLUMN next_expiry TIMESTAMPTZ;
CREATE INDEX idx_inventory_next_expiry ON inventory (next_expiry) WHERE next_expiry IS NOT NULL;

-- Open reservations taken before this column existed.
UPDATE inventory i
SET next_expiry = r.earliest
FROM (SELECT s.id, min((res->>'expires_at')::timestamptz) AS earliest
      FROM entity_snapshots s, jsonb_array_elements(s.state->'reservations') res
      WHERE s.kind = 'inventory'
      GROUP BY s.id) r
WHERE r.id = i.product_id::text;

