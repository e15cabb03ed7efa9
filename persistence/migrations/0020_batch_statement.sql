-- The snapshot writer commits a batch as one statement (issue 14): the snapshot upsert, the outbox
-- events and the projections as data-modifying CTEs, outside a transaction block, so PostgreSQL commits
-- it on its own in one round trip. A write built on a stored version must not create a missing row;
-- the statement's last step calls this for such a row, which rolls the whole statement back, and the
-- writer runs the batch again stepwise (a transaction that takes such rows back out). No product code
-- deletes snapshot rows, so this is the rare path.
CREATE FUNCTION mercato_snapshot_row_missing(kind text, id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION 'snapshot row %/% is missing, but the write was built on a stored version', kind, id
    USING ERRCODE = 'MS001';
END
$$;
