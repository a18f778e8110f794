//! Registered datastores: create (checked and reached first), show, list, delete
//! (refused while in use). A stored secret goes in once and never comes out: views say
//! only where credentials come from.

use std::fmt;

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mlgrid_core::time::format_event_time;
use mlgrid_pipelines::{DatastoreSecret, Registration};
use mlgrid_store::{CredentialSource, DatastoreKind, DatastoreSettings, Role, StoredDatastore};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{etagged, with_etag, workspace};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

/// A datastore's settings that are not secret; which a kind takes is in the README.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsView {
    /// `local`: the folder's absolute path on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `azureblob`: the storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `azureblob`: the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `s3`, `gcs`: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// `s3`: the region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `s3`, `azureblob`: the service's URL when not the cloud's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The folder inside the bucket or container that is the datastore's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl From<SettingsView> for DatastoreSettings {
    fn from(v: SettingsView) -> Self {
        DatastoreSettings {
            path: v.path,
            account: v.account,
            container: v.container,
            bucket: v.bucket,
            region: v.region,
            endpoint: v.endpoint,
            prefix: v.prefix,
        }
    }
}

impl From<DatastoreSettings> for SettingsView {
    fn from(s: DatastoreSettings) -> Self {
        SettingsView {
            path: s.path,
            account: s.account,
            container: s.container,
            bucket: s.bucket,
            region: s.region,
            endpoint: s.endpoint,
            prefix: s.prefix,
        }
    }
}

/// Credentials to store, sealed; the fields of the datastore's kind. Never answered back.
#[derive(Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretBody {
    /// `azureblob`: the account key.
    pub account_key: Option<String>,
    /// `s3`: the access key id, with `secretAccessKey`.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `gcs`: the service account's JSON key.
    pub service_account_key: Option<String>,
}

impl fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBody(<redacted>)")
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDatastore {
    /// `local`, `azureblob`, `s3` or `gcs`.
    pub kind: String,
    #[serde(default)]
    pub settings: SettingsView,
    /// `stored`, `environment` (the server's own) or `none` (a local folder). Default:
    /// `stored` with a secret, `none` for `local`, else `environment`.
    pub credentials: Option<String>,
    pub secret: Option<SecretBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreView {
    pub name: String,
    pub kind: String,
    pub settings: SettingsView,
    /// Where credentials come from: `stored`, `environment` or `none`.
    pub credentials: String,
    pub created_at: String,
    pub updated_at: String,
    pub etag: String,
}

etagged!(DatastoreView);

#[derive(Debug, Serialize, ToSchema)]
pub struct DatastoreList {
    pub value: Vec<DatastoreView>,
}

fn view(d: StoredDatastore) -> DatastoreView {
    DatastoreView {
        name: d.name,
        kind: d.kind.as_str().to_owned(),
        settings: d.settings.into(),
        credentials: d.credentials.as_str().to_owned(),
        created_at: format_event_time(d.created_at),
        updated_at: format_event_time(d.updated_at),
        etag: d.etag,
    }
}

/// The body as a registration; the registry checks the rest.
fn registration(name: String, body: CreateDatastore) -> Result<Registration, ApiError> {
    let kind = DatastoreKind::parse(&body.kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "kind: `{}` is not a datastore kind; use local, azureblob, s3 or gcs",
            body.kind
        ))
    })?;
    let credentials = match body.credentials.as_deref() {
        Some(text) => CredentialSource::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "credentials: `{text}` is not a credential source; use stored, environment or none"
            ))
        })?,
        None if body.secret.is_some() => CredentialSource::Stored,
        None if kind == DatastoreKind::Local => CredentialSource::None,
        None => CredentialSource::Environment,
    };
    Ok(Registration {
        name,
        kind,
        settings: body.settings.into(),
        credentials,
        secret: body.secret.map(|s| DatastoreSecret {
            account_key: s.account_key,
            access_key_id: s.access_key_id,
            secret_access_key: s.secret_access_key,
            service_account_key: s.service_account_key,
        }),
    })
}

/// Registers a datastore after reaching it (listing its root): settings the kind does not
/// take, wrong credentials or an endpoint that does not answer are a 400 naming what to
/// check, and nothing is stored. A name taken already is a 409.
#[utoipa::path(put, path = "/v1/workspaces/{workspace}/datastores/{name}", tag = "datastores", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = CreateDatastore,
    responses((status = 201, body = DatastoreView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    Json(body): Json<CreateDatastore>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let created = state.datastores.create(ws, registration(name, body)?).await?;
    Ok(with_etag(StatusCode::CREATED, view(created)))
}

#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datastores", tag = "datastores", security(("api_key" = [])),
    params(("workspace" = String, Path)), responses((status = 200, body = DatastoreList)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws_name): Path<String>,
) -> Result<JsonResponse<DatastoreList>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let datastores = state.store.list_datastores(ws).await?;
    Ok(JsonResponse(DatastoreList {
        value: datastores.into_iter().map(view).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datastores/{name}", tag = "datastores", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = DatastoreView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let datastore = state.store.datastore(ws, &name).await?;
    Ok(with_etag(StatusCode::OK, view(datastore)))
}

/// Deletes a datastore; a 409 naming them while enabled pipelines read it.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace}/datastores/{name}", tag = "datastores", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    state.store.delete_datastore(ws, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(create, show, delete))
}
