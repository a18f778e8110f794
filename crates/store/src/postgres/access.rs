//! Principals, their API keys and role assignments on PostgreSQL.

use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

use super::db::{all, begin, commit, db, now, optional, unique};
use crate::access::{LAST_OWNER_ROLE, Recovered, last_owner_keys};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{
    principal_from_row, principal_key_from_row, principal_summary_from_row, role_assignment_from_row,
    role_grant_from_row,
};
use crate::sql::{self, GRANT_SELECT};

async fn insert_principal(conn: &mut PgConnection, name: &str, key: &ApiKeyHash) -> Result<Principal> {
    let existing: Option<String> = db(sqlx::query_scalar(sql::PRINCIPAL_NAME)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await)?;
    if let Some(existing) = existing {
        return Err(StoreError::Conflict(crate::names::taken("principal", &existing)));
    }
    let row = unique(
        sqlx::query(sql::INSERT_PRINCIPAL)
            .bind(name)
            .bind(now())
            .fetch_one(&mut *conn)
            .await,
        || crate::names::taken("principal", name),
    )?;
    let principal = principal_from_row(&row)?;
    insert_key(conn, principal.id, key).await?;
    Ok(principal)
}

async fn insert_key(conn: &mut PgConnection, principal: PrincipalId, key: &ApiKeyHash) -> Result<()> {
    db(sqlx::query(sql::INSERT_PRINCIPAL_KEY)
        .bind(&key.key_id)
        .bind(principal)
        .bind(&key.hash)
        .bind(now())
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

async fn grant(
    conn: &mut PgConnection,
    principal: PrincipalId,
    source: Option<SourceId>,
    role: Role,
) -> Result<RoleGrant> {
    let id: i64 = unique(
        sqlx::query_scalar(sql::INSERT_ROLE_ASSIGNMENT)
            .bind(principal)
            .bind(source)
            .bind(role.as_str())
            .bind(now())
            .fetch_one(&mut *conn)
            .await,
        || format!("the principal already holds {} there", role.as_str()),
    )?;
    let row = db(sqlx::query(AssertSqlSafe(format!("{GRANT_SELECT} WHERE a.id = $1")))
        .bind(id)
        .fetch_one(&mut *conn)
        .await)?;
    role_grant_from_row(&row)
}

/// Creates the first principal as Owner of everything, unless any principal exists.
/// Nodes starting together may all try: the table lock lets one decide at a time.
pub(super) async fn create_bootstrap_owner(pool: &PgPool, name: &str, key: &ApiKeyHash) -> Result<bool> {
    let mut tx = begin(pool).await?;
    db(sqlx::query("LOCK TABLE principals IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await)?;
    let existing: i64 = db(sqlx::query_scalar(sql::COUNT_PRINCIPALS).fetch_one(&mut *tx).await)?;
    if existing > 0 {
        return Ok(false);
    }
    let principal = insert_principal(&mut tx, name, key).await?;
    grant(&mut tx, principal.id, None, Role::Owner).await?;
    commit(tx).await?;
    Ok(true)
}

pub(super) async fn has_principals(pool: &PgPool) -> Result<bool> {
    let any: Option<i32> = db(sqlx::query_scalar(sql::ANY_PRINCIPAL).fetch_optional(pool).await)?;
    Ok(any.is_some())
}

pub(super) async fn principal_by_key_id(pool: &PgPool, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>> {
    let query = sqlx::query(sql::PRINCIPAL_BY_KEY_ID);
    optional(pool, query.bind(key_id), principal_key_from_row).await
}

pub(super) async fn role_assignments(pool: &PgPool, principal: PrincipalId) -> Result<Vec<RoleAssignment>> {
    let query = sqlx::query(sql::ROLE_ASSIGNMENTS);
    all(pool, query.bind(principal), role_assignment_from_row).await
}

pub(super) async fn create_principal(pool: &PgPool, name: &str, key: &ApiKeyHash) -> Result<Principal> {
    let mut tx = begin(pool).await?;
    let principal = insert_principal(&mut tx, name, key).await?;
    commit(tx).await?;
    Ok(principal)
}

pub(super) async fn principal(pool: &PgPool, name: &str) -> Result<Principal> {
    let query = sqlx::query(sql::PRINCIPAL).bind(name);
    optional(pool, query, principal_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("principal `{name}`")))
}

pub(super) async fn list_principals(pool: &PgPool) -> Result<Vec<PrincipalSummary>> {
    let query = sqlx::query(sql::PRINCIPALS);
    all(pool, query, principal_summary_from_row).await
}

pub(super) async fn add_principal_key(pool: &PgPool, principal: PrincipalId, key: &ApiKeyHash) -> Result<()> {
    let mut tx = begin(pool).await?;
    insert_key(&mut tx, principal, key).await?;
    commit(tx).await
}

/// Revokes every key of a principal, unless that would leave no Owner of everything
/// with a usable key. The table lock (the one [`delete_role_assignment`] takes) makes
/// two nodes revoking the keys of the last two Owners decide one after the other, and
/// the check, a statement after the lock, sees what the first committed.
pub(super) async fn revoke_principal_keys(pool: &PgPool, principal: PrincipalId) -> Result<u64> {
    let mut tx = begin(pool).await?;
    db(sqlx::query("LOCK TABLE role_assignments IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await)?;
    let last: Option<String> = db(sqlx::query_scalar(sql::LAST_OWNER_WITH_KEYS)
        .bind(principal)
        .fetch_optional(&mut *tx)
        .await)?;
    if let Some(name) = last {
        return Err(StoreError::Conflict(last_owner_keys(&name)));
    }
    let deleted = db(sqlx::query(sql::DELETE_PRINCIPAL_KEYS)
        .bind(principal)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await?;
    Ok(deleted.rows_affected())
}

pub(super) async fn create_role_assignment(
    pool: &PgPool,
    principal: PrincipalId,
    source: Option<SourceId>,
    role: Role,
) -> Result<RoleGrant> {
    let mut tx = begin(pool).await?;
    let granted = grant(&mut tx, principal, source, role).await?;
    commit(tx).await?;
    Ok(granted)
}

pub(super) async fn list_role_assignments(pool: &PgPool) -> Result<Vec<RoleGrant>> {
    let query = sqlx::query(AssertSqlSafe(format!("{GRANT_SELECT} ORDER BY p.name, a.id")));
    all(pool, query, role_grant_from_row).await
}

/// Deletes a role assignment unless it is the last usable Owner of everything. The
/// table lock makes two nodes deleting two such Owners at once decide one after the
/// other, so that they cannot both see the other's Owner and leave none.
pub(super) async fn delete_role_assignment(pool: &PgPool, id: i64) -> Result<()> {
    let mut tx = begin(pool).await?;
    db(sqlx::query("LOCK TABLE role_assignments IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await)?;
    let found: Option<(Option<i64>, String)> = db(sqlx::query_as(sql::ROLE_ASSIGNMENT)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await)?;
    let (source, role) = found.ok_or_else(|| StoreError::NotFound(format!("role assignment {id}")))?;
    if source.is_none() && role == Role::Owner.as_str() && usable_global_owners(&mut tx).await? <= 1 {
        return Err(StoreError::Conflict(LAST_OWNER_ROLE.to_owned()));
    }
    db(sqlx::query(sql::DELETE_ROLE_ASSIGNMENT)
        .bind(id)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await
}

/// Owners of every source that hold at least one API key.
async fn usable_global_owners(conn: &mut PgConnection) -> Result<i64> {
    db(sqlx::query_scalar(sql::USABLE_GLOBAL_OWNERS)
        .fetch_one(&mut *conn)
        .await)
}

/// Gives `name` (created if missing) `key` and Owner on everything, on one connection of
/// its own; see [`crate::recover_owner`]. Takes the lock that revocations and role
/// removals take, so that it is not lost between their check and their write.
pub(super) async fn recover_owner(url: &str, name: &str, key: &ApiKeyHash) -> Result<Recovered> {
    let mut conn = db(super::options(url)?.connect().await)?;
    let mut tx = db(conn.begin().await)?;
    db(sqlx::query("LOCK TABLE role_assignments IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await)?;
    let existing: Option<(PrincipalId, String)> = db(sqlx::query_as(sql::PRINCIPAL_ID_BY_NAME)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await)?;
    let (id, principal, created) = match existing {
        Some((id, stored)) => {
            insert_key(&mut tx, id, key).await?;
            (id, stored, false)
        }
        None => {
            let principal = insert_principal(&mut tx, name, key).await?;
            (principal.id, principal.name, true)
        }
    };
    db(sqlx::query(sql::GRANT_OWNER_OF_EVERYTHING)
        .bind(id)
        .bind(now())
        .execute(&mut *tx)
        .await)?;
    db(tx.commit().await)?;
    db(conn.close().await)?;
    Ok(Recovered { principal, created })
}
