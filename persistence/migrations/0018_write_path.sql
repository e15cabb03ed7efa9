-- The write path of every entity command (issue 14). A snapshot row is rewritten in place by each
-- command: with room left in its page, PostgreSQL updates it as a heap-only tuple (no new primary-key
-- entry, and the old version is pruned within the page) instead of moving it to another page. Applies
-- to pages written from now on.
ALTER TABLE entity_snapshots SET (fillfactor = 80);
