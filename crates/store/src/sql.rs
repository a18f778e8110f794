//! SQL that reads the same on both backends, written once.
//!
//! Both databases take these statements as they are: PostgreSQL's numbered parameters
//! (`$1`, `$2`, ...) are also SQLite's `$NNN` parameters, which the SQLite driver binds
//! by their number (a number used twice is one argument, as on PostgreSQL). Statements
//! that differ (casts PostgreSQL needs, `FOR UPDATE`, `GREATEST` against `max`, how
//! batches are bound) stay in each backend's module. The hot paths (appends, claims,
//! attempt records) keep their own statements, tuned per backend.
//!
//! Besides the statements: how both backends bind the store's numbers ([`to_i64`]), and
//! the conditions of a dead-letter filter, written once for both query builders.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::delivery::DeadLetterFilter;

/// A number the store gives out (sequence, version, token, byte count) as both
/// databases bind it: their integers are signed, and none of these comes near
/// `i64::MAX`.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// Sources and the access keys of topics.

pub(crate) const SOURCE_NAME: &str = "SELECT name FROM sources WHERE kind = $1 AND lower(name) = lower($2)";

pub(crate) const INSERT_SOURCE: &str = "\
    INSERT INTO sources (kind, name, subscription_id, resource_group, created_at, retention_seconds, \
    retention_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *";

pub(crate) const INSERT_TOPIC_KEY: &str = "\
    INSERT INTO topic_keys (source_id, key_name, salt, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)";

pub(crate) const SOURCE: &str = "SELECT * FROM sources WHERE kind = $1 AND lower(name) = lower($2)";

pub(crate) const SOURCES: &str = "SELECT * FROM sources WHERE kind = $1 ORDER BY name";

pub(crate) const TOPIC_KEYS: &str = "\
    SELECT key_name, salt, key_hash FROM topic_keys WHERE source_id = $1 ORDER BY key_name";

pub(crate) const REPLACE_TOPIC_KEY: &str = "\
    UPDATE topic_keys SET salt = $1, key_hash = $2, created_at = $3 WHERE source_id = $4 AND key_name = $5";

// Principals, their API keys and role assignments.

/// Role assignments with the names of their principal and source.
pub(crate) const GRANT_SELECT: &str = "\
    SELECT a.id, p.name AS principal, s.kind AS source_kind, s.name AS source_name, a.role, a.created_at FROM \
    role_assignments a JOIN principals p ON p.id = a.principal_id LEFT JOIN sources s ON s.id = a.source_id";

pub(crate) const PRINCIPAL_NAME: &str = "SELECT name FROM principals WHERE lower(name) = lower($1)";

pub(crate) const INSERT_PRINCIPAL: &str = "INSERT INTO principals (name, created_at) VALUES ($1, $2) RETURNING *";

pub(crate) const INSERT_PRINCIPAL_KEY: &str = "\
    INSERT INTO principal_keys (key_id, principal_id, key_hash, created_at) VALUES ($1, $2, $3, $4)";

pub(crate) const INSERT_ROLE_ASSIGNMENT: &str = "\
    INSERT INTO role_assignments (principal_id, source_id, role, created_at) VALUES ($1, $2, $3, $4) RETURNING id";

pub(crate) const COUNT_PRINCIPALS: &str = "SELECT count(*) FROM principals";

pub(crate) const ANY_PRINCIPAL: &str = "SELECT 1 FROM principals LIMIT 1";

pub(crate) const PRINCIPAL_BY_KEY_ID: &str = "\
    SELECT p.id, p.name, p.created_at, k.key_id, k.key_hash FROM principal_keys k JOIN principals p ON p.id = \
    k.principal_id WHERE k.key_id = $1";

pub(crate) const ROLE_ASSIGNMENTS: &str = "\
    SELECT principal_id, source_id, role FROM role_assignments WHERE principal_id = $1";

pub(crate) const PRINCIPAL: &str = "SELECT * FROM principals WHERE lower(name) = lower($1)";

pub(crate) const PRINCIPALS: &str = "\
    SELECT p.*, (SELECT count(*) FROM principal_keys k WHERE k.principal_id = p.id) AS keys FROM principals p \
    ORDER BY p.name";

/// The principal's name if it is the last Owner of everything with a usable key.
pub(crate) const LAST_OWNER_WITH_KEYS: &str = "\
    SELECT p.name FROM principals p WHERE p.id = $1 AND EXISTS (SELECT 1 FROM role_assignments a WHERE \
    a.principal_id = $1 AND a.source_id IS NULL AND a.role = 'Owner') AND EXISTS (SELECT 1 FROM principal_keys k \
    WHERE k.principal_id = $1) AND NOT EXISTS (SELECT 1 FROM role_assignments a WHERE a.principal_id != $1 AND \
    a.source_id IS NULL AND a.role = 'Owner' AND EXISTS (SELECT 1 FROM principal_keys k WHERE k.principal_id = \
    a.principal_id))";

pub(crate) const DELETE_PRINCIPAL_KEYS: &str = "DELETE FROM principal_keys WHERE principal_id = $1";

pub(crate) const ROLE_ASSIGNMENT: &str = "SELECT source_id, role FROM role_assignments WHERE id = $1";

pub(crate) const DELETE_ROLE_ASSIGNMENT: &str = "DELETE FROM role_assignments WHERE id = $1";

/// Owners of everything that hold a key.
pub(crate) const USABLE_GLOBAL_OWNERS: &str = "\
    SELECT count(*) FROM role_assignments a WHERE a.source_id IS NULL AND a.role = 'Owner' AND EXISTS (SELECT 1 \
    FROM principal_keys k WHERE k.principal_id = a.principal_id)";

pub(crate) const PRINCIPAL_ID_BY_NAME: &str = "SELECT id, name FROM principals WHERE lower(name) = lower($1)";

pub(crate) const GRANT_OWNER_OF_EVERYTHING: &str = "\
    INSERT INTO role_assignments (principal_id, source_id, role, created_at) VALUES ($1, NULL, 'Owner', $2) ON \
    CONFLICT DO NOTHING";

// Event logs.

pub(crate) const READ_EVENTS: &str = "\
    SELECT sequence, event_id, schema, event_type, subject, published_at, body FROM events WHERE source_id = $1 \
    AND sequence > $2 AND sequence > (SELECT pruned_through FROM sources WHERE id = $1) ORDER BY sequence LIMIT $3";

/// What a source's resource path is made of.
pub(crate) const SOURCE_PATH: &str = "SELECT kind, name, subscription_id, resource_group FROM sources WHERE id = $1";

// Retention.

/// The first attempt (by id) made at or after a time (`$1`): attempts are numbered as they are
/// recorded, so those before it are the old ones, found without an index on time.
pub(crate) const YOUNG_ATTEMPT: &str = "\
    coalesce((SELECT id FROM delivery_attempts WHERE attempted_at >= $1 ORDER BY id LIMIT 1), 9223372036854775807)";

/// The ids of the oldest `$2` attempts (by id) that were made before a time (`$1`). Attempts
/// are numbered as they are recorded, so the old ones come first: a batch looks at `$2`
/// rows, never at the whole table, and one that finds fewer than `$2` has reached the
/// young ones (a straggler recorded out of order goes with the next pass).
pub(crate) const OLD_ATTEMPTS: &str = "\
    SELECT id FROM (SELECT id, attempted_at FROM delivery_attempts ORDER BY id LIMIT $2) AS first \
    WHERE attempted_at < $1";

pub(crate) const SET_RETENTION: &str = "\
    UPDATE sources SET retention_seconds = $1, retention_bytes = $2 WHERE id = $3 RETURNING *";

// Experiments, runs and metrics.

/// Selects runs with their experiment's name.
pub(crate) const RUN_SELECT: &str = "\
    SELECT r.*, e.name AS experiment_name FROM runs r \
    JOIN experiments e ON e.source_id = r.source_id AND e.id = r.experiment_id";

/// One run, with its experiment's name.
pub(crate) const RUN: &str = "\
    SELECT r.*, e.name AS experiment_name FROM runs r \
    JOIN experiments e ON e.source_id = r.source_id AND e.id = r.experiment_id \
    WHERE r.source_id = $1 AND r.run_id = $2";

pub(crate) const EXPERIMENTS: &str = "SELECT * FROM experiments WHERE source_id = $1 ORDER BY name";

pub(crate) const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE source_id = $1 AND run_id = $2";

pub(crate) const INSERT_EXPERIMENT: &str = "\
    INSERT INTO experiments (source_id, id, name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (source_id, \
    name) DO NOTHING";

pub(crate) const EXPERIMENT_ID: &str = "SELECT id FROM experiments WHERE source_id = $1 AND name = $2";

pub(crate) const INSERT_RUN: &str = "\
    INSERT INTO runs (source_id, run_id, experiment_id, parent_run_id, run_type, status, tags, properties, \
    created_at, start_time, etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(crate) const UPDATE_RUN: &str = "\
    UPDATE runs SET status = $1, tags = $2, properties = $3, error = $4, start_time = $5, end_time = $6, etag = $7 \
    WHERE source_id = $8 AND run_id = $9";

// Models, deployments and datasets.

pub(crate) const INSERT_MODEL: &str = "\
    INSERT INTO models (source_id, name, version, path, description, tags, properties, created_at, updated_at, \
    etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING *";

pub(crate) const UPDATE_MODEL: &str = "\
    UPDATE models SET description = $1, tags = $2, properties = $3, archived = $4, updated_at = $5, etag = $6 \
    WHERE source_id = $7 AND name = $8 AND version = $9";

pub(crate) const UPSERT_DEPLOYMENT: &str = "\
    INSERT INTO deployments (source_id, name, compute_type, models, tags, properties, created_at, updated_at, \
    etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) ON CONFLICT (source_id, name) DO UPDATE SET compute_type = \
    excluded.compute_type, models = excluded.models, tags = excluded.tags, properties = excluded.properties, \
    updated_at = excluded.updated_at, etag = excluded.etag RETURNING *";

pub(crate) const DEPLOYMENT: &str = "SELECT * FROM deployments WHERE source_id = $1 AND name = $2";

pub(crate) const DEPLOYMENTS: &str = "SELECT * FROM deployments WHERE source_id = $1 ORDER BY name";

pub(crate) const DELETE_DEPLOYMENT: &str = "DELETE FROM deployments WHERE source_id = $1 AND name = $2";

pub(crate) const INSERT_DATASET: &str = "\
    INSERT INTO datasets (source_id, name, version, path, description, tags, created_at, etag) VALUES ($1, $2, $3, \
    $4, $5, $6, $7, $8) RETURNING *";

// Published pipelines, their endpoints, pipeline runs and their steps. Boolean
// literals are `TRUE`/`FALSE`, which SQLite reads as 1 and 0; an optional text parameter
// is `CAST($N AS TEXT)`, which PostgreSQL can type.

pub(crate) const WORKSPACE_NAME: &str = "SELECT name FROM sources WHERE id = $1";

pub(crate) const PIPELINE_VERSIONS: &str = "SELECT version FROM pipelines WHERE source_id = $1 AND name = $2";

pub(crate) const INSERT_PIPELINE: &str = "\
    INSERT INTO pipelines (source_id, id, name, version, description, definition, enabled, created_at, \
    updated_at, etag) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7, $8) RETURNING *";

pub(crate) const PIPELINE: &str = "SELECT * FROM pipelines WHERE source_id = $1 AND id = $2";

pub(crate) const PIPELINES: &str = "\
    SELECT * FROM pipelines WHERE source_id = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2) \
    ORDER BY created_at, id";

pub(crate) const SET_PIPELINE_ENABLED: &str = "\
    UPDATE pipelines SET enabled = $1, updated_at = $2, etag = $3 WHERE source_id = $4 AND id = $5 RETURNING *";

pub(crate) const INSERT_PIPELINE_ENDPOINT: &str = "\
    INSERT INTO pipeline_endpoints (source_id, name, description, default_pipeline_id, created_at, updated_at, \
    etag) VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING *";

pub(crate) const PIPELINE_ENDPOINT: &str = "SELECT * FROM pipeline_endpoints WHERE source_id = $1 AND name = $2";

pub(crate) const PIPELINE_ENDPOINTS: &str = "SELECT * FROM pipeline_endpoints WHERE source_id = $1 ORDER BY name";

pub(crate) const SET_PIPELINE_ENDPOINT_DEFAULT: &str = "\
    UPDATE pipeline_endpoints SET default_pipeline_id = $1, updated_at = $2, etag = $3 WHERE source_id = $4 \
    AND name = $5 RETURNING *";

// Registered datastores. Names are found ignoring case (a unique index on `lower(name)`).

pub(crate) const INSERT_DATASTORE: &str = "\
    INSERT INTO datastores (source_id, name, kind, settings, credentials, secret, created_at, updated_at, etag) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING *";

pub(crate) const DATASTORE: &str = "SELECT * FROM datastores WHERE source_id = $1 AND lower(name) = lower($2)";

pub(crate) const DATASTORES: &str = "SELECT * FROM datastores WHERE source_id = $1 ORDER BY lower(name)";

/// The names of the change schedules that watch a datastore, enabled or not.
pub(crate) const CHANGE_SCHEDULES_OF_DATASTORE: &str = "\
    SELECT name FROM schedules WHERE source_id = $1 AND kind = 'change' AND lower(datastore) = lower($2) \
    ORDER BY lower(name)";

pub(crate) const DELETE_DATASTORE: &str = "DELETE FROM datastores WHERE source_id = $1 AND name = $2";

/// The pipelines that may use a datastore: the enabled ones (a disabled pipeline takes
/// no submissions, so it reads nothing).
pub(crate) const ENABLED_PIPELINES: &str = "\
    SELECT * FROM pipelines WHERE source_id = $1 AND enabled = TRUE ORDER BY name, version";

pub(crate) const IDEMPOTENT_PIPELINE_RUN: &str = "\
    SELECT run_id FROM pipeline_runs WHERE source_id = $1 AND idempotency_key = $2";

pub(crate) const INSERT_PIPELINE_RUN: &str = "\
    INSERT INTO pipeline_runs (source_id, run_id, pipeline_id, description, parameters, data_paths, \
    continue_on_step_failure, run_source, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(crate) const INSERT_STEP: &str = "\
    INSERT INTO pipeline_steps (source_id, pipeline_run_id, name, ordinal, run_id, state, depends_on, retries, \
    ready_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A pipeline run (its run's columns, its experiment's name and its own), for
/// `pipeline_run_from_row`.
pub(crate) const PIPELINE_RUN: &str = "\
    SELECT r.*, e.name AS experiment_name, p.pipeline_id, p.description, p.parameters, p.data_paths, \
    p.continue_on_step_failure FROM pipeline_runs p \
    JOIN runs r ON r.source_id = p.source_id AND r.run_id = p.run_id \
    JOIN experiments e ON e.source_id = r.source_id AND e.id = r.experiment_id \
    WHERE p.source_id = $1 AND p.run_id = $2";

/// Whether a pipeline run goes on after a step fails: the row that write locks on
/// PostgreSQL take first, so that the ends of one run's steps apply one after another.
pub(crate) const CONTINUES_ON_STEP_FAILURE: &str = "\
    SELECT continue_on_step_failure FROM pipeline_runs WHERE source_id = $1 AND run_id = $2";

/// The steps of a pipeline run in the definition's order.
pub(crate) const STEPS: &str = "\
    SELECT * FROM pipeline_steps WHERE source_id = $1 AND pipeline_run_id = $2 ORDER BY ordinal";

pub(crate) const STEP_PIPELINE_RUN: &str = "\
    SELECT pipeline_run_id FROM pipeline_steps WHERE source_id = $1 AND run_id = $2";

/// Saves a step's state and what its attempts recorded; a step that no longer runs
/// holds no lease.
pub(crate) const SAVE_STEP: &str = "\
    UPDATE pipeline_steps SET state = $1, ready_at = $2, finished_at = $3, exit_code = $4, error = $5, \
    reuse_key = $6, reused_from = $7, cancel_requested = $8, started_at = $11, \
    lease_holder = CASE WHEN $1 = 'Running' THEN lease_holder END, \
    lease_until = CASE WHEN $1 = 'Running' THEN lease_until END \
    WHERE source_id = $9 AND run_id = $10";

/// Ready steps of any workspace, the longest ready first.
pub(crate) const READY_STEPS: &str = "\
    SELECT source_id, run_id FROM pipeline_steps WHERE state = 'Ready' \
    ORDER BY ready_at, source_id, run_id LIMIT $1";

/// Claims a ready step: its next attempt starts, under a lease whose token is the
/// attempt's number.
pub(crate) const CLAIM_STEP: &str = "\
    UPDATE pipeline_steps SET state = 'Running', attempts = attempts + 1, started_at = $1, lease_holder = $2, \
    lease_until = $3 WHERE source_id = $4 AND run_id = $5 AND state = 'Ready'";

/// A claimed step with its pipeline run's assignment and experiment, for
/// `claimed_step_from_row`.
pub(crate) const CLAIMED_STEP: &str = "\
    SELECT s.*, p.pipeline_id, p.parameters, p.data_paths, e.name AS experiment_name FROM pipeline_steps s \
    JOIN pipeline_runs p ON p.source_id = s.source_id AND p.run_id = s.pipeline_run_id \
    JOIN runs r ON r.source_id = s.source_id AND r.run_id = s.run_id \
    JOIN experiments e ON e.source_id = r.source_id AND e.id = r.experiment_id \
    WHERE s.source_id = $1 AND s.run_id = $2";

/// Extends a lease its holder still has; says whether a person asked to cancel the step.
pub(crate) const RENEW_STEP: &str = "\
    UPDATE pipeline_steps SET lease_until = $1 WHERE source_id = $2 AND run_id = $3 AND state = 'Running' \
    AND lease_holder = $4 AND attempts = $5 RETURNING cancel_requested";

/// Running steps whose lease ran out at `$1` (or that lost it with their process),
/// with their lease.
pub(crate) const EXPIRED_STEPS: &str = "\
    SELECT source_id, run_id, attempts FROM pipeline_steps WHERE state = 'Running' \
    AND (lease_until IS NULL OR lease_until <= $1)";

/// Whether a step still runs under lease `$3` and that lease ran out at `$4`.
pub(crate) const STEP_EXPIRED: &str = "\
    SELECT run_id FROM pipeline_steps WHERE source_id = $1 AND run_id = $2 AND state = 'Running' \
    AND attempts = $3 AND (lease_until IS NULL OR lease_until <= $4)";

/// The latest completed step with a reuse key, with its pipeline run.
pub(crate) const REUSABLE_STEP: &str = "\
    SELECT * FROM pipeline_steps WHERE source_id = $1 AND reuse_key = $2 AND state = 'Completed' \
    ORDER BY finished_at DESC, run_id DESC LIMIT 1";

// Event subscriptions and the fan-out.

pub(crate) const BUMP_SUBSCRIPTIONS_VERSION: &str = "\
    UPDATE subscription_versions SET version = version + 1 WHERE id = 1";

/// Creates or replaces a subscription; a new one starts after the source's last event.
pub(crate) const PUT_SUBSCRIPTION: &str = "\
    INSERT INTO event_subscriptions (source_id, name, spec, provisioning_state, expires_at, start_sequence, \
    created_at, updated_at, etag, secret_salt) VALUES ($1, $2, $3, $4, $5, (SELECT last_sequence FROM sources \
    WHERE id = $1), $6, $6, $7, $8) ON CONFLICT (source_id, name) DO UPDATE SET spec = excluded.spec, \
    provisioning_state = excluded.provisioning_state, expires_at = excluded.expires_at, updated_at = \
    excluded.updated_at, etag = excluded.etag RETURNING *";

pub(crate) const SUBSCRIPTION: &str = "SELECT * FROM event_subscriptions WHERE source_id = $1 AND name = $2";

pub(crate) const ROTATE_SUBSCRIPTION_SECRET: &str = "\
    UPDATE event_subscriptions SET previous_salt = secret_salt, previous_until = $1, secret_salt = $2, etag = $3, \
    updated_at = $4 WHERE source_id = $5 AND name = $6 RETURNING *";

/// Moves a subscription whose definition still has an etag from one provisioning state
/// to another; becoming `Succeeded` moves its start to the source's last sequence.
pub(crate) const TRANSITION_SUBSCRIPTION: &str = "\
    UPDATE event_subscriptions SET provisioning_state = $1, updated_at = $2, start_sequence = CASE WHEN $1 = \
    'Succeeded' THEN (SELECT last_sequence FROM sources WHERE id = source_id) ELSE start_sequence END WHERE id = \
    $3 AND etag = $4 AND provisioning_state = $5 RETURNING *";

pub(crate) const DELETE_SUBSCRIPTION: &str = "DELETE FROM event_subscriptions WHERE id = $1";

pub(crate) const DELETE_EXPIRED_SUBSCRIPTIONS: &str = "\
    DELETE FROM event_subscriptions WHERE expires_at IS NOT NULL AND expires_at <= $1";

pub(crate) const SUBSCRIPTIONS_VERSION: &str = "SELECT version FROM subscription_versions WHERE id = 1";

pub(crate) const FANOUT_CURSOR: &str = "SELECT last_sequence FROM fanout_cursors WHERE source_id = $1";

// Delivery.

pub(crate) const ATTEMPTS: &str = "\
    SELECT * FROM delivery_attempts WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2";

pub(crate) const FAILED_ATTEMPTS: &str = "\
    SELECT count(*), (SELECT coalesce(error, outcome) FROM delivery_attempts WHERE subscription_id = $1 AND \
    outcome != 'Delivered' ORDER BY id DESC LIMIT 1) FROM delivery_attempts WHERE subscription_id = $1 AND outcome \
    != 'Delivered'";

/// Dead-lettered deliveries with their events, for `dead_letter_from_row`.
pub(crate) const DEAD_LETTERS: &str = "\
    SELECT d.sequence, d.attempts, d.dead_letter_reason, d.last_outcome, d.last_status, d.last_attempt_at, \
    e.schema, e.body, e.published_at FROM deliveries d JOIN events e ON e.source_id = d.source_id AND e.sequence = \
    d.sequence";

// Leases and settings.

pub(crate) const RELEASE_LEASE: &str = "UPDATE leases SET holder = NULL WHERE name = $1 AND holder = $2 AND token = $3";

pub(crate) const LEASE_IS_CURRENT: &str = "SELECT 1 FROM leases WHERE name = $1 AND token = $2 AND holder IS NOT NULL";

pub(crate) const RECORD_SETTING: &str = "\
    INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

pub(crate) const SETTING: &str = "SELECT value FROM settings WHERE name = $1";

/// `AND` the conditions of a dead-letter filter on what a dead letter holds (its reason,
/// its event's type, its last status) to a statement on the `deliveries` row named `row`.
/// The sequences are each backend's to add: PostgreSQL binds the list as one array,
/// SQLite one parameter each.
///
/// Names compare ignoring ASCII case only, as `eq_ignore_ascii_case` does: the value is
/// lowered here and the column by `ascii_lower`, which is SQLite's `lower` (ASCII only)
/// or, on PostgreSQL, whose `lower` follows the locale, a `translate` of A-Z. The event's
/// type is the events table's column: Event Grid's `eventType` or CloudEvents' `type`,
/// recorded when the event was published.
pub(crate) fn push_dead_letter_conditions<DB: Database>(
    query: &mut QueryBuilder<DB>,
    row: &str,
    filter: &DeadLetterFilter,
    ascii_lower: fn(&str) -> String,
) where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    if let Some(reason) = &filter.reason {
        query
            .push(format_args!(
                " AND {} = ",
                ascii_lower(&format!("{row}.dead_letter_reason"))
            ))
            .push_bind(reason.to_ascii_lowercase());
    }
    if let Some(status) = filter.status_code {
        query
            .push(format_args!(" AND {row}.last_status = "))
            .push_bind(i64::from(status));
    }
    if let Some(event_type) = &filter.event_type {
        query
            .push(format_args!(
                " AND EXISTS (SELECT 1 FROM events typed WHERE typed.source_id = {row}.source_id \
                 AND typed.sequence = {row}.sequence AND {} = ",
                ascii_lower("typed.event_type")
            ))
            .push_bind(event_type.to_ascii_lowercase())
            .push(")");
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    /// What the shared statements rely on: the SQLite driver binds `$N` by its number, as
    /// PostgreSQL does, in whatever order the numbers appear and however often; and `$N`
    /// may stand beside SQLite's `?N` in one statement.
    #[tokio::test]
    async fn sqlite_binds_numbered_parameters_by_their_number() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let row: (i64, String, i64) = sqlx::query_as("SELECT $2, $3 || $1, $2 + 1")
            .bind("b")
            .bind(41_i64)
            .bind("a")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row, (41, "ab".to_owned(), 42));
        let row: (i64, i64) = sqlx::query_as("SELECT $1, ?2")
            .bind(1_i64)
            .bind(2_i64)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row, (1, 2));
    }
}
