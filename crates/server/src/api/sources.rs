//! What workspaces and topics share: creation input, validation, access checks.

use mlgrid_core::resource::{DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION_ID, SourceKind, validate_path_segment};
use mlgrid_core::retention::RetentionSpan;
use mlgrid_store::{NewSource, Role, Source, SourceRetention, TopicKey};
use serde::{Deserialize, Serialize};
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
    /// How long the event log keeps events; the server's default when absent.
    pub retention: Option<RetentionBody>,
}

/// A source's own retention, as clients set it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionBody {
    /// Events older than this may be pruned: a whole number and a unit, `s`, `m`, `h` or
    /// `d` (`30m`, `12h`, `7d`). Absent: the server's default (`mlgrid serve --retention`).
    #[schema(value_type = Option<String>, example = "7d")]
    pub time: Option<RetentionSpan>,
    /// At most this many bytes of event bodies are kept: the oldest events go first.
    /// Absent: no size limit.
    pub max_bytes: Option<u64>,
}

impl From<RetentionBody> for SourceRetention {
    fn from(body: RetentionBody) -> Self {
        SourceRetention {
            time: body.time,
            max_bytes: body.max_bytes,
        }
    }
}

/// Body of `PATCH /v1/{workspaces|topics}/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSource {
    /// The source's retention, replaced whole; `null` goes back to the server's default.
    #[serde(deserialize_with = "Option::deserialize")]
    pub retention: Option<RetentionBody>,
}

/// The retention that applies to a source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionView {
    /// Events older than this are pruned (unless a delivery still needs them).
    pub time: String,
    /// Whether `time` is the server's default rather than the source's own.
    pub time_is_server_default: bool,
    /// The most bytes of event bodies kept, when the source sets a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// What a source's log holds, shown with the source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogState {
    pub retention: RetentionView,
    /// The oldest sequence still in the log (events before it were pruned); one past the
    /// last sequence when the log is empty.
    pub first_available_sequence: u64,
    /// Bytes of the stored event bodies.
    pub stored_bytes: u64,
}

impl LogState {
    pub fn new(source: &Source, default_time: RetentionSpan) -> LogState {
        LogState {
            retention: RetentionView {
                time: source.retention.time.unwrap_or(default_time).to_string(),
                time_is_server_default: source.retention.time.is_none(),
                max_bytes: source.retention.max_bytes,
            },
            first_available_sequence: source.pruned_through + 1,
            stored_bytes: source.stored_bytes,
        }
    }
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
            retention: self.retention.unwrap_or_default().into(),
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

/// Changes a source's retention; takes Owner on it (it decides what is deleted).
pub async fn update(
    state: &AppState,
    caller: &Caller,
    kind: SourceKind,
    name: &str,
    body: UpdateSource,
) -> Result<Source, ApiError> {
    let source = load(state, caller, kind, name, Role::Owner).await?;
    let retention = body.retention.unwrap_or_default().into();
    Ok(state.store.set_source_retention(source.id, retention).await?)
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
