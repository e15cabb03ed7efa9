-- A generated catalog for the search benchmark (bench/issue10_bench.sh): :products products (psql variable,
-- e.g. `psql -v products=100000 -f bench/seed_catalog.sql`) in a database whose schema the node's migrations
-- made. Deterministic: product g is the same in every run.
--
-- Names and descriptions are built from small word lists so that searches have a known selectivity:
--   name        "<adjective> <noun> Model <g>"            16 adjectives x 40 nouns: each pair is ~1/640 of the
--                                                         products (156 of 100k), an adjective 1/16, a noun 1/40
--   description "Bench product <g>, <colour> <material>."  12 colours, 10 materials
-- Prices: current_price 0.50 .. 40.49 (minor units 50 .. 4049), base_price 1.00 .. 50.99; one vendor of two,
-- one category of four leaves under one root; stock 0 .. 199 (about 1 product in 200 out of stock).
-- Every product also gets its inventory entity (snapshot version 1) and its `inventory` projection row, as
-- persistence/inventory_seed and migration 0010 write them.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO vendors (id, name) VALUES
  ('b0000000-0000-4000-8000-0000000000a1', 'Bench Vendor A'),
  ('b0000000-0000-4000-8000-0000000000a2', 'Bench Vendor B')
ON CONFLICT (id) DO NOTHING;
INSERT INTO categories (id, name) VALUES ('b0000000-0000-4000-8000-0000000000c0', 'Bench Root')
ON CONFLICT (id) DO NOTHING;
INSERT INTO categories (id, name, parent_id)
SELECT ('b0000000-0000-4000-8000-0000000000c' || i)::uuid, 'Bench Leaf ' || i, 'b0000000-0000-4000-8000-0000000000c0'::uuid
FROM generate_series(1, 4) i
ON CONFLICT (id) DO NOTHING;

INSERT INTO products (sku, name, description, category_id, vendor_id, base_price, current_price,
                      stock_quantity, low_stock_threshold, created_at, updated_at)
SELECT 'BENCH-' || g,
       (ARRAY['Amber','Brisk','Crimson','Dusky','Eager','Frosty','Gentle','Hollow',
              'Ivory','Jolly','Keen','Lunar','Misty','Noble','Olive','Polar'])[1 + g % 16] || ' ' ||
       (ARRAY['Anchor','Basket','Candle','Drum','Easel','Flask','Globe','Hammer','Jacket','Kettle',
              'Ladder','Mirror','Needle','Oven','Pillow','Quilt','Radio','Saddle','Tablet','Umbrella',
              'Vase','Wallet','Yacht','Zipper','Blanket','Compass','Dagger','Fountain','Guitar','Helmet',
              'Lantern','Magnet','Napkin','Orchard','Pepper','Rocket','Scarf','Teapot','Violin','Whistle'])[1 + (g / 16) % 40]
       || ' Model ' || g,
       'Bench product ' || g || ', ' ||
       (ARRAY['red','orange','yellow','green','teal','blue','indigo','violet','pink','brown','grey','black'])[1 + g % 12]
       || ' ' || (ARRAY['oak','steel','cotton','linen','glass','copper','wool','leather','bamboo','marble'])[1 + g % 10] || '.',
       ('b0000000-0000-4000-8000-0000000000c' || (1 + g % 4))::uuid,
       CASE WHEN g % 3 = 0 THEN 'b0000000-0000-4000-8000-0000000000a1'::uuid
            ELSE 'b0000000-0000-4000-8000-0000000000a2'::uuid END,
       ((g % 5000) + 100) / 100.0, ((g % 4000) + 50) / 100.0,
       CASE WHEN g % 200 = 0 THEN 0 ELSE (abs(hashtext('BENCH-' || g)) % 200) END, 10,
       NOW() - g * INTERVAL '1 second', NOW() - g * INTERVAL '1 second'
FROM generate_series(1, :products) g
ON CONFLICT (sku) DO NOTHING;

INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state)
SELECT 'inventory', p.id::text, 1, 0,
       jsonb_build_object('schema', 1, 'on_hand', p.stock_quantity, 'reserved', 0,
                          'low_stock_threshold', p.low_stock_threshold, 'reservations', '[]'::jsonb,
                          'low', p.stock_quantity <= p.low_stock_threshold)
FROM products p WHERE p.sku LIKE 'BENCH-%'
ON CONFLICT (kind, id) DO NOTHING;
INSERT INTO inventory (product_id, on_hand, reserved, low_stock_threshold, version)
SELECT p.id, p.stock_quantity, 0, p.low_stock_threshold, 1 FROM products p WHERE p.sku LIKE 'BENCH-%'
ON CONFLICT (product_id) DO NOTHING;

COMMIT;
-- VACUUM, not only ANALYZE: a bulk insert leaves most new entries of the full-text GIN index in its pending
-- list (fastupdate), which every search then scans linearly (measured: 21,672 pending tuples, 6 ms per
-- two-word search instead of 0.3 ms) until autovacuum gets to it.
VACUUM ANALYZE vendors;
VACUUM ANALYZE categories;
VACUUM ANALYZE products;
VACUUM ANALYZE inventory;
VACUUM ANALYZE entity_snapshots;
