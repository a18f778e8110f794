-- Change-based schedules: a datastore folder polled for files added or changed.
--
-- A change schedule keeps what it watches in `datastore` and `path_pattern` (migration
-- 0013), `polling_seconds`, and here whether subfolders count (`recursive`) and the
-- data-path parameter that gets the changed file. Changes count from `watch_since` (its
-- creation, or when it was last enabled or pointed elsewhere): the first poll after it
-- records what is older as seen without firing. `next_poll_at` is when the watcher
-- polls it next (NULL while disabled, or for a time schedule), answered by the partial
-- index `schedules_polls`; `poll_failures` counts polls failed in a row, for the backoff.
ALTER TABLE schedules ADD COLUMN recursive INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN data_path_parameter TEXT;
ALTER TABLE schedules ADD COLUMN watch_since TEXT;
ALTER TABLE schedules ADD COLUMN last_poll_at TEXT;
ALTER TABLE schedules ADD COLUMN next_poll_at TEXT;
ALTER TABLE schedules ADD COLUMN poll_failures INTEGER NOT NULL DEFAULT 0;
CREATE INDEX schedules_polls ON schedules (next_poll_at)
    WHERE status = 'Active' AND kind = 'change' AND next_poll_at IS NOT NULL;

-- The file a change fired for (NULL for a tick of a time schedule).
ALTER TABLE schedule_fires ADD COLUMN path TEXT;

-- Every object a watcher has seen, with the version it saw: its e-tag, or its
-- last-modified time and size when the datastore gives none. A change is recorded by
-- moving this row from the version the watcher read to the new one (compare and set),
-- in the transaction that starts the change's run: a change fires once, across restarts
-- and nodes. `watcher_id` is a change schedule's id; rows go with their schedule.
CREATE TABLE watched_objects (
    watcher_id     TEXT NOT NULL,
    path           TEXT NOT NULL,
    version        TEXT NOT NULL,
    size           INTEGER NOT NULL,
    last_modified  TEXT NOT NULL,
    seen_at        TEXT NOT NULL,
    PRIMARY KEY (watcher_id, path)
);
