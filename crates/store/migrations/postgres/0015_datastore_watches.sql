-- Datastore watches: a datastore folder polled for files added or changed, each
-- published as a `Microsoft.Storage.BlobCreated` event into a custom topic (`topic_id`),
-- whose subscriptions take it from there.
--
-- A watch polls as a change schedule does (migration 0014): `next_poll_at` is its next
-- poll, answered by `datastore_watches_polls`; `poll_failures` counts polls failed in a
-- row, for the backoff. What it has seen is in `watched_objects` under its id (a UUID, as
-- schedules' ids are, so the two never share rows); an event is appended in the
-- transaction that moves the file's seen row. Changes count from `created_at`. A watch
-- goes with its workspace or its topic (deleting either deletes it); a datastore that
-- watches use cannot be deleted.
CREATE TABLE datastore_watches (
    source_id         BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    id                TEXT NOT NULL PRIMARY KEY,
    name              TEXT NOT NULL,
    datastore         TEXT NOT NULL,
    path              TEXT NOT NULL,
    recursive         BOOLEAN NOT NULL,
    polling_seconds   BIGINT NOT NULL,
    topic_id          BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    next_poll_at      TIMESTAMPTZ NOT NULL,
    last_poll_at      TIMESTAMPTZ,
    poll_failures     BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_event_at     TIMESTAMPTZ,
    events_published  BIGINT NOT NULL DEFAULT 0,
    created_at        TIMESTAMPTZ NOT NULL,
    etag              TEXT NOT NULL
);
CREATE UNIQUE INDEX datastore_watches_by_name ON datastore_watches (source_id, lower(datastore), lower(name));
CREATE INDEX datastore_watches_polls ON datastore_watches (next_poll_at);
CREATE INDEX datastore_watches_by_topic ON datastore_watches (topic_id);
