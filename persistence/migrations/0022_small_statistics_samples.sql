-- Smaller ANALYZE samples for the two tables every write appends to or rewrites (issue 14, after 0021).
--
-- ANALYZE reads 300 rows per unit of the largest statistics target among a table's columns: 30,000 rows at
-- the default of 100, on pages spread over the whole table. entity_snapshots is only ever read by its key
-- (kind, id), and the outbox by seq (the dispatcher), by occurred_at (the retention sweep, a range that ten
-- histogram buckets describe) and not otherwise; neither needs more than the ten most common values and a
-- ten-bucket histogram per column. With a target of 10, ANALYZE samples 3,000 rows. Measured on 100,000 cart
-- snapshots and 220,000 events, after 0021: entity_snapshots 290-345 ms -> 25 ms, outbox 270-370 ms -> 40 ms.
-- Autovacuum analyzes each of them about once a minute under load, on the cores that serve the requests.
ALTER TABLE entity_snapshots
  ALTER COLUMN kind SET STATISTICS 10,
  ALTER COLUMN id SET STATISTICS 10,
  ALTER COLUMN version SET STATISTICS 10,
  ALTER COLUMN owner_epoch SET STATISTICS 10,
  ALTER COLUMN updated_at SET STATISTICS 10,
  ALTER COLUMN prev_version SET STATISTICS 10,
  ALTER COLUMN write_id SET STATISTICS 10;
ALTER TABLE outbox
  ALTER COLUMN seq SET STATISTICS 10,
  ALTER COLUMN id SET STATISTICS 10,
  ALTER COLUMN aggregate_kind SET STATISTICS 10,
  ALTER COLUMN aggregate_id SET STATISTICS 10,
  ALTER COLUMN event_type SET STATISTICS 10,
  ALTER COLUMN event_version SET STATISTICS 10,
  ALTER COLUMN occurred_at SET STATISTICS 10;
