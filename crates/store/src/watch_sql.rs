//! The SQL of datastore watches, the same on both backends (see [`crate::sql`] for how
//! one statement serves both).

/// A watch with its workspace's and its topic's names.
const WATCH: &str = "\
    SELECT w.*, t.name AS topic_name, ws.name AS workspace_name FROM datastore_watches w \
    JOIN sources t ON t.id = w.topic_id JOIN sources ws ON ws.id = w.source_id";

pub(crate) const INSERT_WATCH: &str = "\
    INSERT INTO datastore_watches (source_id, id, name, datastore, path, recursive, polling_seconds, topic_id, \
    next_poll_at, created_at, etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id";

pub(crate) fn watch_by_id() -> String {
    format!("{WATCH} WHERE w.id = $1")
}

pub(crate) fn watch_by_name() -> String {
    format!("{WATCH} WHERE w.source_id = $1 AND lower(w.datastore) = lower($2) AND lower(w.name) = lower($3)")
}

pub(crate) fn watches_of_datastore() -> String {
    format!("{WATCH} WHERE w.source_id = $1 AND lower(w.datastore) = lower($2) ORDER BY lower(w.name)")
}

/// Watches due a poll, the longest due first; the index `datastore_watches_polls`
/// answers it.
pub(crate) fn due_watches() -> String {
    format!("{WATCH} WHERE w.next_poll_at <= $1 ORDER BY w.next_poll_at LIMIT $2")
}

pub(crate) const DELETE_WATCH: &str = "DELETE FROM datastore_watches WHERE id = $1";

/// The names of the watches of a datastore, for the refusal to delete it.
pub(crate) const WATCHES_OF_DATASTORE: &str = "\
    SELECT name FROM datastore_watches WHERE source_id = $1 AND lower(datastore) = lower($2) ORDER BY lower(name)";

/// What a poll leaves on its watch: a watch has no other errors than its polls', so each
/// poll's replaces the last.
pub(crate) const AFTER_WATCH_POLL: &str = "\
    UPDATE datastore_watches SET last_poll_at = $1, next_poll_at = $2, last_error = $3, poll_failures = $4 \
    WHERE id = $5";

/// What a published event leaves on its watch.
pub(crate) const AFTER_ARRIVAL: &str = "\
    UPDATE datastore_watches SET last_event_at = $1, events_published = events_published + 1 WHERE id = $2";
