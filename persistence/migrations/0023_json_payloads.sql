-- Snapshot states and outbox payloads as json, not jsonb (issue 14).
--
-- These columns are written by every entity write and read back whole, as text: a snapshot when its
-- entity is activated, an event when the dispatcher delivers it. No statement looks inside them, filters
-- on them or compares them, so jsonb's decomposed form bought nothing and cost at both ends: parsing
-- and re-encoding every value on the way in, rendering it back to text on the way out. json checks the
-- syntax and stores the text as the node wrote it.
--
-- Measured by replaying the writer's one-statement cart batch (7 writes: snapshot, event, projection)
-- against the same rows, jsonb and json alternating three times: 222/186/233 against 196/169/192 us of
-- the backend's CPU per write (-12 %).
--
-- The rewrite takes each table's exclusive lock while it copies it (the outbox is bounded by its
-- retention). Parked events (outbox_parked) stay jsonb: rare, and an operator may want to query them.
-- Their copy from the outbox converts with the assignment cast.
ALTER TABLE entity_snapshots ALTER COLUMN state TYPE json USING state::json;
ALTER TABLE outbox
  ALTER COLUMN data TYPE json USING data::json,
  ALTER COLUMN metadata TYPE json USING metadata::json;
