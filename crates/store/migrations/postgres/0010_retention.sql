-- Retention of each source's event log: its own time (seconds) and size (bytes of event
-- bodies); NULL time is the server's default, NULL size no size limit.
ALTER TABLE sources ADD COLUMN retention_seconds BIGINT;
ALTER TABLE sources ADD COLUMN retention_bytes BIGINT;
-- Events up to this sequence are pruned: reads start after it. Some stay while a
-- delivery still needs them (pending, leased or dead-lettered).
ALTER TABLE sources ADD COLUMN pruned_through BIGINT NOT NULL DEFAULT 0;
-- Bytes of the bodies of the source's stored events, kept by appends and pruning.
ALTER TABLE sources ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE sources SET stored_bytes =
    (SELECT coalesce(sum(octet_length(body)), 0) FROM events WHERE events.source_id = sources.id);
-- The highest sequence whose delivery row of the subscription was pruned: what it
-- matched up to here is no longer listed.
ALTER TABLE event_subscriptions ADD COLUMN pruned_through BIGINT NOT NULL DEFAULT 0;
-- Whether a delivery still holds an event, and finished deliveries by age, for pruning.
CREATE INDEX deliveries_by_source ON deliveries (source_id, sequence);
CREATE INDEX deliveries_delivered ON deliveries (finished_at) WHERE state = 'delivered';
CREATE INDEX deliveries_dead ON deliveries (finished_at) WHERE state = 'dead';
