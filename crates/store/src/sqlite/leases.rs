//! Leases with fencing tokens on SQLite, and the settings a database is set up with.
//! The writer serialises every acquisition, so the upsert below decides alone who holds
//! a lease.

use chrono::{DateTime, Utc};
use mlgrid_core::time::format_event_time;
use sqlx::{SqliteConnection, SqlitePool};

use super::db::{db, to_i64};
use crate::SECRET_FINGERPRINT;
use crate::error::Result;
use crate::sql;

/// Takes the lease if it is free, expired or already `holder`'s; a change of holder
/// (including taking back a released lease) bumps the token, a renewal keeps it.
pub(super) async fn acquire(
    conn: &mut SqliteConnection,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<u64>> {
    let token: Option<i64> = db(sqlx::query_scalar(
        "INSERT INTO leases (name, holder, token, expires_at) VALUES (?1, ?2, 1, ?4) \
         ON CONFLICT (name) DO UPDATE SET \
         token = CASE WHEN leases.holder IS excluded.holder THEN leases.token ELSE leases.token + 1 END, \
         holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder IS NULL OR leases.holder = excluded.holder OR leases.expires_at <= ?3 \
         RETURNING token",
    )
    .bind(name)
    .bind(holder)
    .bind(format_event_time(now))
    .bind(format_event_time(until))
    .fetch_optional(&mut *conn)
    .await)?;
    Ok(token.map(|t| t as u64))
}

/// Releases the lease if `holder` holds it with `token`; keeps the row (and its token).
pub(super) async fn release(conn: &mut SqliteConnection, name: &str, holder: &str, token: u64) -> Result<()> {
    db(sqlx::query(sql::RELEASE_LEASE)
        .bind(name)
        .bind(holder)
        .bind(to_i64(token))
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

pub(super) async fn is_current(pool: &SqlitePool, name: &str, token: u64) -> Result<bool> {
    let current: Option<i64> = db(sqlx::query_scalar(sql::LEASE_IS_CURRENT)
        .bind(name)
        .bind(to_i64(token))
        .fetch_optional(pool)
        .await)?;
    Ok(current.is_some())
}

/// The recorded fingerprint of the server secret, recording `ours` first if there is
/// none.
pub(super) async fn secret_fingerprint(conn: &mut SqliteConnection, ours: &str) -> Result<String> {
    db(sqlx::query(sql::RECORD_SETTING)
        .bind(SECRET_FINGERPRINT)
        .bind(ours)
        .execute(&mut *conn)
        .await)?;
    db(sqlx::query_scalar(sql::SETTING)
        .bind(SECRET_FINGERPRINT)
        .fetch_one(&mut *conn)
        .await)
}
