-- The outbox's undispatched events get a queue of their own (issue 14; the soak of issue 15).
-- Until now the dispatcher marked each event it delivered with `UPDATE outbox SET dispatched_at = now()`.
-- That column was in two partial indexes, so every mark was a non-heap-only update: a full copy of the
-- event row (its JSON included) plus a new entry in each of the outbox's four indexes, for every event,
-- and autovacuum passes over a table that grows by ~40k rows a minute under the soak's mix. The soak's
-- p99 grew 4-6x over 30 minutes with it.
--
-- Now `outbox` is written once and never updated. A row of `outbox_pending` (just the seq) stands for
-- each event not yet delivered: an AFTER INSERT statement trigger adds them in the same statement as the
-- events (one INSERT ... SELECT per statement, whatever inserts into the outbox), and the dispatcher
-- deletes them once every subscriber took the batch. Still no "seq > last" cursor: a lower seq can commit
-- after a higher one, and a pending row is visible exactly when its event is.
--
-- Retention: an event is deleted `outbox.retention_s` after it occurred, once it is no longer pending
-- (a BRIN index on occurred_at: the outbox is appended in time order, and BRIN costs next to nothing to keep).
CREATE TABLE outbox_pending (
  seq BIGINT PRIMARY KEY
);
INSERT INTO outbox_pending (seq) SELECT seq FROM outbox WHERE dispatched_at IS NULL;

CREATE FUNCTION outbox_pending_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO outbox_pending (seq) SELECT seq FROM new_events;
  RETURN NULL;
END
$$;
CREATE TRIGGER outbox_pending_add AFTER INSERT ON outbox
  REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION outbox_pending_add();

DROP INDEX IF EXISTS idx_outbox_pending;
DROP INDEX IF EXISTS idx_outbox_dispatched;
ALTER TABLE outbox DROP COLUMN dispatched_at;
CREATE INDEX idx_outbox_occurred ON outbox USING brin (occurred_at);
