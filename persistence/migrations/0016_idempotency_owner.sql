-- Idempotency-Key claims record who runs them (http/idempotency): a claim left `running` by a node
-- that died is taken over by the same request repeated on the restarted node (or by anyone after
-- the stale period), instead of answering 409 until the key expires.
ALTER TABLE idempotency_keys ADD COLUMN owner_node TEXT;
ALTER TABLE idempotency_keys ADD COLUMN owner_boot TEXT;
