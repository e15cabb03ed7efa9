-- The outbox dispatcher's retention sweep deletes dispatched events oldest first. Without this index it
-- would scan the whole table each sweep; with it the sweep reads only the rows it deletes.
CREATE INDEX idx_outbox_dispatched ON outbox(dispatched_at) WHERE dispatched_at IS NOT NULL;
