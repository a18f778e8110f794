//! Registered datastores on SQLite. Writes run inside the writer's transaction, so the
//! check that no pipeline uses a datastore and its delete see the same rows.

use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::db::{all, db, now, optional, unique};
use super::events::workspace_topic;
use crate::datastores::*;
use crate::error::Result;
use crate::etag::new_etag;
use crate::model::SourceId;
use crate::rows::{datastore_from_row, pipeline_from_row};
use crate::sql;

pub(super) async fn create(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewDatastore,
) -> Result<StoredDatastore> {
    workspace_topic(conn, workspace).await?;
    let settings = serde_json::to_string(&new.settings).expect("datastore settings serialize to JSON");
    let row = unique(
        sqlx::query(sql::INSERT_DATASTORE)
            .bind(workspace)
            .bind(&new.name)
            .bind(new.kind.as_str())
            .bind(settings)
            .bind(new.credentials.as_str())
            .bind(new.secret.map(|s| s.0))
            .bind(now())
            .bind(new_etag())
            .fetch_one(&mut *conn)
            .await,
        || datastore_taken(&new.name),
    )?;
    datastore_from_row(&row)
}

async fn find<'c>(exec: impl SqliteExecutor<'c>, workspace: SourceId, name: &str) -> Result<StoredDatastore> {
    let query = sqlx::query(sql::DATASTORE).bind(workspace).bind(name);
    optional(exec, query, datastore_from_row)
        .await?
        .ok_or_else(|| missing_datastore(name))
}

pub(super) async fn datastore(pool: &SqlitePool, workspace: SourceId, name: &str) -> Result<StoredDatastore> {
    find(pool, workspace, name).await
}

pub(super) async fn list(pool: &SqlitePool, workspace: SourceId) -> Result<Vec<StoredDatastore>> {
    all(pool, sqlx::query(sql::DATASTORES).bind(workspace), datastore_from_row).await
}

/// What uses the datastore `name`: the one place that gathers them.
async fn datastore_users(conn: &mut SqliteConnection, workspace: SourceId, name: &str) -> Result<DatastoreUsers> {
    let pipelines = all(
        &mut *conn,
        sqlx::query(sql::ENABLED_PIPELINES).bind(workspace),
        pipeline_from_row,
    )
    .await?;
    let schedules: Vec<String> = db(sqlx::query_scalar(sql::CHANGE_SCHEDULES_OF_DATASTORE)
        .bind(workspace)
        .bind(name)
        .fetch_all(&mut *conn)
        .await)?;
    let watches: Vec<String> = db(sqlx::query_scalar(crate::watch_sql::WATCHES_OF_DATASTORE)
        .bind(workspace)
        .bind(name)
        .fetch_all(&mut *conn)
        .await)?;
    Ok(DatastoreUsers {
        pipelines: pipelines_using(name, &pipelines),
        schedules,
        watches,
    })
}

pub(super) async fn delete(conn: &mut SqliteConnection, workspace: SourceId, name: &str) -> Result<()> {
    let current = find(&mut *conn, workspace, name).await?;
    let users = datastore_users(conn, workspace, &current.name).await?;
    if !users.is_empty() {
        return Err(users.refusal(&current.name));
    }
    db(sqlx::query(sql::DELETE_DATASTORE)
        .bind(workspace)
        .bind(&current.name)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}
