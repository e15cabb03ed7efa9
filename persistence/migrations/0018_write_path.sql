-- The write path of every entity command (issue 14). Rows rewritten by every command — a snapshot, a
-- cart's projection — are updated in place as heap-only tuples when no indexed column changes and their
-- page has room: no new index entries, and the old version is pruned within the page. So:
--  * room in the pages (applies to pages written from now on);
--  * the carts projection loses its (status, updated_at) index: updated_at changes with every cart
--    command, which made every projection update a new index entry in two indexes. Its one reader, the
--    housekeeping's cart gauges, counts every open cart with items and reads them all either way.
ALTER TABLE entity_snapshots SET (fillfactor = 80);
ALTER TABLE carts SET (fillfactor = 80);
DROP INDEX IF EXISTS idx_carts_status_updated;
