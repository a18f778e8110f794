//! Principals, their API keys and role assignments on SQLite.

use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, unique};
use crate::access::{LAST_OWNER_ROLE, Recovered, last_owner_keys};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{
    principal_from_row, principal_key_from_row, principal_summary_from_row, role_assignment_from_row,
    role_grant_from_row,
};
use crate::sql::{self, GRANT_SELECT};

pub(super) async fn create_principal(conn: &mut SqliteConnection, name: &str, key: &ApiKeyHash) -> Result<Principal> {
    let existing: Option<String> = db(sqlx::query_scalar(sql::PRINCIPAL_NAME)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await)?;
    if let Some(existing) = existing {
        return Err(StoreError::Conflict(crate::names::taken("principal", &existing)));
    }
    let created = now();
    let row = unique(
        sqlx::query(sql::INSERT_PRINCIPAL)
            .bind(name)
            .bind(&created)
            .fetch_one(&mut *conn)
            .await,
        || crate::names::taken("principal", name),
    )?;
    let principal = principal_from_row(&row)?;
    add_principal_key(conn, principal.id, key).await?;
    Ok(principal)
}

pub(super) async fn add_principal_key(
    conn: &mut SqliteConnection,
    principal: PrincipalId,
    key: &ApiKeyHash,
) -> Result<()> {
    db(sqlx::query(sql::INSERT_PRINCIPAL_KEY)
        .bind(&key.key_id)
        .bind(principal)
        .bind(&key.hash)
        .bind(now())
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

pub(super) async fn create_bootstrap_owner(conn: &mut SqliteConnection, name: &str, key: &ApiKeyHash) -> Result<bool> {
    let existing: i64 = db(sqlx::query_scalar(sql::COUNT_PRINCIPALS).fetch_one(&mut *conn).await)?;
    if existing > 0 {
        return Ok(false);
    }
    let principal = create_principal(conn, name, key).await?;
    create_role_assignment(conn, principal.id, None, Role::Owner).await?;
    Ok(true)
}

pub(super) async fn create_role_assignment(
    conn: &mut SqliteConnection,
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
    let row = db(
        sqlx::query(sqlx::AssertSqlSafe(format!("{GRANT_SELECT} WHERE a.id = ?")))
            .bind(id)
            .fetch_one(&mut *conn)
            .await,
    )?;
    role_grant_from_row(&row)
}

pub(super) async fn delete_role_assignment(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    let found: Option<(Option<i64>, String)> = db(sqlx::query_as(sql::ROLE_ASSIGNMENT)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await)?;
    let (source, role) = found.ok_or_else(|| StoreError::NotFound(format!("role assignment {id}")))?;
    if source.is_none() && role == Role::Owner.as_str() {
        let owners: i64 = db(sqlx::query_scalar(sql::USABLE_GLOBAL_OWNERS)
            .fetch_one(&mut *conn)
            .await)?;
        if owners <= 1 {
            return Err(StoreError::Conflict(LAST_OWNER_ROLE.to_owned()));
        }
    }
    db(sqlx::query(sql::DELETE_ROLE_ASSIGNMENT)
        .bind(id)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

/// Revokes every key of a principal, unless that would leave no Owner of everything
/// with a usable key. Writes are serialised by the writer task (and, against another
/// process such as `mlgrid admin recover`, by SQLite's write lock), so the check and the
/// delete see the same principals.
pub(super) async fn revoke_principal_keys(conn: &mut SqliteConnection, principal: PrincipalId) -> Result<u64> {
    let last: Option<String> = db(sqlx::query_scalar(sql::LAST_OWNER_WITH_KEYS)
        .bind(principal)
        .fetch_optional(&mut *conn)
        .await)?;
    if let Some(name) = last {
        return Err(StoreError::Conflict(last_owner_keys(&name)));
    }
    let deleted = db(sqlx::query(sql::DELETE_PRINCIPAL_KEYS)
        .bind(principal)
        .execute(&mut *conn)
        .await)?;
    Ok(deleted.rows_affected())
}

/// Gives `name` (created if missing) `key` and Owner on everything; see
/// [`crate::recover_owner`].
pub(super) async fn recover(conn: &mut SqliteConnection, name: &str, key: &ApiKeyHash) -> Result<Recovered> {
    let existing: Option<(PrincipalId, String)> = db(sqlx::query_as(sql::PRINCIPAL_ID_BY_NAME)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await)?;
    let (id, principal, created) = match existing {
        Some((id, stored)) => {
            add_principal_key(conn, id, key).await?;
            (id, stored, false)
        }
        None => {
            let principal = create_principal(conn, name, key).await?;
            (principal.id, principal.name, true)
        }
    };
    db(sqlx::query(sql::GRANT_OWNER_OF_EVERYTHING)
        .bind(id)
        .bind(now())
        .execute(&mut *conn)
        .await)?;
    Ok(Recovered { principal, created })
}

pub(super) async fn has_principals(pool: &SqlitePool) -> Result<bool> {
    let any: Option<i64> = db(sqlx::query_scalar(sql::ANY_PRINCIPAL).fetch_optional(pool).await)?;
    Ok(any.is_some())
}

pub(super) async fn principal_by_key_id(pool: &SqlitePool, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>> {
    let query = sqlx::query(sql::PRINCIPAL_BY_KEY_ID);
    optional(pool, query.bind(key_id), principal_key_from_row).await
}

pub(super) async fn role_assignments(pool: &SqlitePool, principal: PrincipalId) -> Result<Vec<RoleAssignment>> {
    let query = sqlx::query(sql::ROLE_ASSIGNMENTS);
    all(pool, query.bind(principal), role_assignment_from_row).await
}

pub(super) async fn principal(pool: &SqlitePool, name: &str) -> Result<Principal> {
    let query = sqlx::query(sql::PRINCIPAL).bind(name);
    optional(pool, query, principal_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("principal `{name}`")))
}

pub(super) async fn list_principals(pool: &SqlitePool) -> Result<Vec<PrincipalSummary>> {
    let query = sqlx::query(sql::PRINCIPALS);
    all(pool, query, principal_summary_from_row).await
}

pub(super) async fn list_role_assignments(pool: &SqlitePool) -> Result<Vec<RoleGrant>> {
    let query = sqlx::query(AssertSqlSafe(format!("{GRANT_SELECT} ORDER BY p.name, a.id")));
    all(pool, query, role_grant_from_row).await
}
