//! What nodes coordinate through, on PostgreSQL: leases with fencing tokens, and the
//! settings they must agree on.
//!
//! Acquiring a lease is one upsert: concurrent acquirers on any node queue on the
//! lease's row (or its unique key, for a new lease) and each sees the winner's row, so
//! exactly one of them gets the lease.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::db::{db, to_i64};
use crate::SECRET_FINGERPRINT;
use crate::error::Result;
use crate::sql;

/// Takes the lease if it is free, expired or already `holder`'s; a change of holder
/// (including taking back a released lease) bumps the token, a renewal keeps it.
pub(super) async fn acquire(
    pool: &PgPool,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<u64>> {
    let token: Option<i64> = db(sqlx::query_scalar(
        "INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $4) \
         ON CONFLICT (name) DO UPDATE SET \
         token = CASE WHEN leases.holder IS NOT DISTINCT FROM excluded.holder THEN leases.token \
             ELSE leases.token + 1 END, \
         holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder IS NULL OR leases.holder = excluded.holder OR leases.expires_at <= $3 \
         RETURNING token",
    )
    .bind(name)
    .bind(holder)
    .bind(now)
    .bind(until)
    .fetch_optional(pool)
    .await)?;
    Ok(token.map(|t| t as u64))
}

/// Releases the lease if `holder` holds it with `token`; keeps the row (and its token).
pub(super) async fn release(pool: &PgPool, name: &str, holder: &str, token: u64) -> Result<()> {
    db(sqlx::query(sql::RELEASE_LEASE)
        .bind(name)
        .bind(holder)
        .bind(to_i64(token))
        .execute(pool)
        .await)?;
    Ok(())
}

pub(super) async fn is_current(pool: &PgPool, name: &str, token: u64) -> Result<bool> {
    let current: Option<i32> = db(sqlx::query_scalar(sql::LEASE_IS_CURRENT)
        .bind(name)
        .bind(to_i64(token))
        .fetch_optional(pool)
        .await)?;
    Ok(current.is_some())
}

/// The recorded fingerprint of the server secret, recording `ours` first if there is
/// none. Two statements, not one: an insert that loses a race to a concurrent first
/// insert does nothing, and only a statement started after that commit sees the winner.
pub(super) async fn secret_fingerprint(pool: &PgPool, ours: &str) -> Result<String> {
    db(sqlx::query(sql::RECORD_SETTING)
        .bind(SECRET_FINGERPRINT)
        .bind(ours)
        .execute(pool)
        .await)?;
    db(sqlx::query_scalar(sql::SETTING)
        .bind(SECRET_FINGERPRINT)
        .fetch_one(pool)
        .await)
}
