//! What workspaces and topics share: creation input, validation, access checks.

use mlgrid_core::resource::{DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION_ID, SourceKind, validate_path_segment};
use mlgrid_store::{NewSource, Role, Source, TopicKey};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// Body of a create call for a workspace or topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSource {
    /// Workspaces: 3-33 letters, digits, `-`, `_`; topics: 3-50 letters, digits, `-`.
    pub name: String,
    /// Azure subscription id in the resource path; defaults to the all-zero GUID.
    pub subscription_id: Option<String>,
    /// Resource group in the resource path; defaults to `mlgrid`.
    pub resource_group: Option<String>,
}

impl CreateSource {
    pub fn validate(self, kind: SourceKind) -> Result<NewSource, ApiError> {
        kind.validate_name(&self.name).map_err(|e| ApiError::bad_request(e.0))?;
        let subscription_id = self
            .subscription_id
            .unwrap_or_else(|| DEFAULT_SUBSCRIPTION_ID.to_owned());
        let resource_group = self.resource_group.unwrap_or_else(|| DEFAULT_RESOURCE_GROUP.to_owned());
        validate_path_segment("subscriptionId", &subscription_id).map_err(|e| ApiError::bad_request(e.0))?;
        validate_path_segment("resourceGroup", &resource_group).map_err(|e| ApiError::bad_request(e.0))?;
        Ok(NewSource {
            kind,
            name: self.name,
            subscription_id,
            resource_group,
        })
    }
}

/// Creates a source; creating takes Contributor on everything.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    kind: SourceKind,
    body: CreateSource,
    keys: &[TopicKey],
) -> Result<Source, ApiError> {
    caller.require(Role::Contributor, Scope::Everything)?;
    let new = body.validate(kind)?;
    Ok(state.store.create_source(&new, keys).await?)
}

/// Loads a source the caller holds at least `needed` on.
pub async fn load(
    state: &AppState,
    caller: &Caller,
    kind: SourceKind,
    name: &str,
    needed: Role,
) -> Result<Source, ApiError> {
    let source = state.store.source(kind, name).await?;
    caller.require(needed, Scope::Source(&source))?;
    Ok(source)
}

/// The sources of a kind the caller holds any role on.
pub async fn list(state: &AppState, caller: &Caller, kind: SourceKind) -> Result<Vec<Source>, ApiError> {
    let all = state.store.list_sources(kind).await?;
    Ok(all
        .into_iter()
        .filter(|s| caller.role_on(Scope::Source(s)).is_some())
        .collect())
}

/// Deletes a source with its events; takes Owner on it.
pub async fn delete(state: &AppState, caller: &Caller, kind: SourceKind, name: &str) -> Result<(), ApiError> {
    load(state, caller, kind, name, Role::Owner).await?;
    state.store.delete_source(kind, name).await?;
    Ok(())
}

/// The kind of source a `/v1/{collection}/...` path names.
/// The path segment of a kind of source: `workspaces` or `topics`.
pub fn collection(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Workspace => "workspaces",
        SourceKind::Topic => "topics",
    }
}

pub fn collection_kind(collection: &str) -> Result<SourceKind, ApiError> {
    match collection {
        "workspaces" => Ok(SourceKind::Workspace),
        "topics" => Ok(SourceKind::Topic),
        other => Err(ApiError::NotFound(format!(
            "`{other}` is not a collection; use workspaces or topics"
        ))),
    }
}
