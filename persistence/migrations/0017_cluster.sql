-- Cluster membership (cluster/): every node registers here and heartbeats; a node whose heartbeat is
-- older than the node timeout is down. `incarnation` tells a restarted node from its predecessor;
-- `active_entities` is what the node reported with its last heartbeat (GET /api/v1/admin/cluster).
CREATE TABLE cluster_nodes (
  id              TEXT PRIMARY KEY,
  host            TEXT NOT NULL,
  port            INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
  http_port       INTEGER NOT NULL DEFAULT 0,
  incarnation     UUID NOT NULL,
  started_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  heartbeat_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  state           VARCHAR(12) NOT NULL CHECK (state IN ('up', 'leaving', 'down')),
  active_entities JSONB NOT NULL DEFAULT '{}'  -- per entity kind: {"cart": 12, "order": 3}
);

-- Shard leases now expire and are renewed (they were taken for 100 years by the single node): end
-- the old ones, so the first node of the cluster takes them afresh under a new epoch.
UPDATE shard_leases SET expires_at = NOW() WHERE expires_at > NOW() + INTERVAL '1 day';
