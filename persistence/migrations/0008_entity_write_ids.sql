-- Entity runtime correctness (issue 9): compare-and-set writes, write ids for in-doubt commits,
-- and the command ids an entity has applied (a retried command is applied once).
--
-- prev_version: the version the row held before the commit that wrote it. A write is conditional on
--   it (ON CONFLICT ... WHERE s.version = EXCLUDED.prev_version), so a write built on a version that
--   is not the stored one never lands.
-- write_id: unique per write; after a COMMIT whose outcome is unknown, the retry asks whether the
--   stored row carries this write's id (version and epoch alone can repeat across incarnations).
-- recent_commands: the last command ids applied, space separated, newest last.
ALTER TABLE entity_snapshots
  ADD COLUMN prev_version BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN write_id UUID,
  ADD COLUMN recent_commands TEXT NOT NULL DEFAULT '';
