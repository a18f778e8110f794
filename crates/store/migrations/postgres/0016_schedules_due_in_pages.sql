-- The scheduler reads due schedules a page at a time, each page after the last one's
-- (next tick, id), so that it reads the next page while it records the one before:
-- the index that answers it is ordered by both.
DROP INDEX schedules_due;
CREATE INDEX schedules_due ON schedules (next_fire_at, id)
    WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL;
