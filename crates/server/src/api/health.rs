//! Liveness, and the state of the storage.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` while the storage is full (writes answer 507) or cannot be
    /// measured. The server answers 200 either way: it is alive, and resumes by itself.
    status: &'static str,
    version: &'static str,
    /// The node that answered (`serve --node-id`).
    node: String,
    storage: Storage,
}

/// The store's files and whether they have room.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Bytes of SQLite's write-ahead log (`mlgrid.db-wal`); `null` on PostgreSQL.
    wal_bytes: Option<u64>,
    /// Bytes of the database: the SQLite file, or `pg_database_size` on PostgreSQL.
    database_bytes: Option<u64>,
    /// While writes are refused for want of space: why, and what to do; else `null`.
    full: Option<String>,
    /// When the sizes could not be read: that they could not; else `null`.
    error: Option<String>,
}

/// Whether the server is up, and its storage's sizes and room. Needs no key.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let storage = match state.store.storage().await {
        Ok(stats) => Storage {
            wal_bytes: stats.wal_bytes,
            database_bytes: Some(stats.database_bytes),
            full: stats.full.map(|reason| {
                format!(
                    "the disk holding the database is full ({reason}): publishing and changes answer 507 and \
                     deliveries pause; free space on it, and the server resumes by itself"
                )
            }),
            error: None,
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot measure the storage for /healthz");
            Storage {
                wal_bytes: None,
                database_bytes: None,
                full: None,
                error: Some("the storage's sizes cannot be read; the server log says why".to_owned()),
            }
        }
    };
    let degraded = storage.full.is_some() || storage.error.is_some();
    Json(Health {
        status: if degraded { "degraded" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        node: state.config.node_id.clone(),
        storage,
    })
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz))
}
