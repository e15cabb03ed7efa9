-- Notifications fed from the outbox (issue 11) and outbox deliveries parked after repeated failure.

-- The table itself is 0006's; a notification now names the domain event it came from. Delivery is at least
-- once, so the same event can reach a handler twice: (user, source event, kind) is unique and the handlers
-- insert with ON CONFLICT DO NOTHING. Rows without a source event (none yet) are not constrained (NULLs differ).
ALTER TABLE notifications ADD COLUMN source_event_id UUID;
CREATE UNIQUE INDEX idx_notifications_source ON notifications(user_id, source_event_id, kind);
-- GET /me/notifications?unread=true walks the caller's unread ones newest first.
CREATE INDEX idx_notifications_unread ON notifications(user_id, created_at DESC, id DESC) WHERE read_at IS NULL;

-- Events a subscriber could not take after outbox.max_attempts tries: the dispatcher parks them here for that
-- subscriber and marks the batch dispatched for the others. The event is copied (the outbox row is deleted after
-- the retention period), so it can be inspected and replayed later.
CREATE TABLE outbox_parked (
  subscriber     VARCHAR(100) NOT NULL,
  event_id       UUID NOT NULL,
  seq            BIGINT NOT NULL,
  aggregate_kind VARCHAR(40) NOT NULL,
  aggregate_id   TEXT NOT NULL,
  event_type     VARCHAR(80) NOT NULL,
  event_version  VARCHAR(10) NOT NULL,
  occurred_at    TIMESTAMPTZ NOT NULL,
  data           JSONB NOT NULL,
  metadata       JSONB NOT NULL,
  attempts       INTEGER NOT NULL CHECK (attempts > 0),
  last_error     TEXT NOT NULL,
  parked_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX idx_outbox_parked_time ON outbox_parked(parked_at);
