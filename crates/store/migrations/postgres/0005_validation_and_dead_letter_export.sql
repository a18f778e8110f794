-- When a dead-lettered delivery was written to its subscription's dead-letter
-- destination; NULL while it still has to be (or the subscription names none).
ALTER TABLE deliveries ADD COLUMN dead_letter_exported_at TIMESTAMPTZ;
CREATE INDEX deliveries_dead_unexported ON deliveries (subscription_id, sequence)
    WHERE state = 'dead' AND dead_letter_exported_at IS NULL;
