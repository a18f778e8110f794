//! Principals with API keys, and role assignments on workspaces and topics.
//!
//! Managing principals takes Owner on everything; managing the roles of a workspace or
//! topic takes Owner on it (roles on everything: Owner on everything).

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mlgrid_core::lifecycle::validate_asset_name;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{Role, RoleGrant, Source};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::keys::{api_key_hash, generate_api_key};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    pub name: String,
}

/// A principal and a new API key: the only time the key is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalKey {
    pub name: String,
    /// Keep it: only its hash is stored, it cannot be shown again.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalView {
    pub name: String,
    pub created_at: String,
    /// How many API keys the principal holds.
    pub keys: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalList {
    pub value: Vec<PrincipalView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedKeys {
    pub revoked: u64,
}

/// Where a role is granted: a workspace, a topic, or (neither) every source.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ScopeArgs {
    pub workspace: Option<String>,
    pub topic: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoleAssignment {
    /// The principal's name.
    pub assignee: String,
    /// `Owner`, `Contributor` or `Reader`.
    pub role: String,
    pub workspace: Option<String>,
    pub topic: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRoleAssignments {
    assignee: Option<String>,
    workspace: Option<String>,
    topic: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentView {
    pub id: i64,
    pub assignee: String,
    pub role: String,
    /// Set when the role is held on a workspace.
    pub workspace: Option<String>,
    /// Set when the role is held on a topic.
    pub topic: Option<String>,
    pub created_at: String,
}

impl From<RoleGrant> for RoleAssignmentView {
    fn from(g: RoleGrant) -> Self {
        let (workspace, topic) = match g.source {
            Some((SourceKind::Workspace, name)) => (Some(name), None),
            Some((SourceKind::Topic, name)) => (None, Some(name)),
            None => (None, None),
        };
        RoleAssignmentView {
            id: g.id,
            assignee: g.principal,
            role: g.role.as_str().to_owned(),
            workspace,
            topic,
            created_at: format_event_time(g.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleAssignmentList {
    pub value: Vec<RoleAssignmentView>,
}

/// The source a role assignment is about, if any.
async fn scope_source(
    state: &AppState,
    workspace: Option<&str>,
    topic: Option<&str>,
) -> Result<Option<Source>, ApiError> {
    match (workspace, topic) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give either a workspace or a topic, not both")),
        (Some(ws), None) => Ok(Some(state.store.source(SourceKind::Workspace, ws).await?)),
        (None, Some(topic)) => Ok(Some(state.store.source(SourceKind::Topic, topic).await?)),
        (None, None) => Ok(None),
    }
}

fn scope_of(source: &Option<Source>) -> Scope<'_> {
    source.as_ref().map_or(Scope::Everything, Scope::Source)
}

/// Creates a principal with a new API key, shown once. Takes Owner on everything.
#[utoipa::path(post, path = "/v1/principals", tag = "access", security(("api_key" = [])), request_body = CreatePrincipal,
    responses((status = 201, body = PrincipalKey), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_principal(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreatePrincipal>,
) -> Result<(StatusCode, JsonResponse<PrincipalKey>), ApiError> {
    caller.require(Role::Owner, Scope::Everything)?;
    validate_asset_name("principal", &body.name).map_err(ApiError::bad_request)?;
    let key = generate_api_key();
    let principal = state.store.create_principal(&body.name, &api_key_hash(&key)).await?;
    Ok((
        StatusCode::CREATED,
        JsonResponse(PrincipalKey {
            name: principal.name,
            key,
        }),
    ))
}

/// Lists principals. Takes Owner on everything.
#[utoipa::path(get, path = "/v1/principals", tag = "access", security(("api_key" = [])),
    responses((status = 200, body = PrincipalList), (status = 403, body = ErrorBody)))]
async fn list_principals(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<JsonResponse<PrincipalList>, ApiError> {
    caller.require(Role::Owner, Scope::Everything)?;
    let value = state
        .store
        .list_principals()
        .await?
        .into_iter()
        .map(|p| PrincipalView {
            name: p.principal.name,
            created_at: format_event_time(p.principal.created_at),
            keys: p.keys,
        })
        .collect();
    Ok(JsonResponse(PrincipalList { value }))
}

/// Gives a principal a new API key, shown once. Takes Owner on everything.
#[utoipa::path(post, path = "/v1/principals/{name}/keys", tag = "access", security(("api_key" = [])),
    params(("name" = String, Path)), responses((status = 201, body = PrincipalKey), (status = 404, body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, JsonResponse<PrincipalKey>), ApiError> {
    caller.require(Role::Owner, Scope::Everything)?;
    let principal = state.store.principal(&name).await?;
    let key = generate_api_key();
    state.store.add_principal_key(principal.id, &api_key_hash(&key)).await?;
    Ok((StatusCode::CREATED, JsonResponse(PrincipalKey { name, key })))
}

/// Revokes every API key of a principal, effective at once. Takes Owner on everything.
/// The keys of the last Owner of everything with a key are not revoked (409): that would
/// lock everyone out; create another Owner first.
#[utoipa::path(delete, path = "/v1/principals/{name}/keys", tag = "access", security(("api_key" = [])),
    params(("name" = String, Path)), responses((status = 200, body = RevokedKeys), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revoke_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<JsonResponse<RevokedKeys>, ApiError> {
    caller.require(Role::Owner, Scope::Everything)?;
    let principal = state.store.principal(&name).await?;
    let revoked = state.store.revoke_principal_keys(principal.id).await?;
    Ok(JsonResponse(RevokedKeys { revoked }))
}

/// Grants a role on a workspace, a topic, or every source. Takes Owner there.
#[utoipa::path(post, path = "/v1/roleAssignments", tag = "access", security(("api_key" = [])), request_body = CreateRoleAssignment,
    responses((status = 201, body = RoleAssignmentView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateRoleAssignment>,
) -> Result<(StatusCode, JsonResponse<RoleAssignmentView>), ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role `{}` is unknown; use Owner, Contributor or Reader",
            body.role
        ))
    })?;
    let source = scope_source(&state, body.workspace.as_deref(), body.topic.as_deref()).await?;
    caller.require(Role::Owner, scope_of(&source))?;
    let principal = state.store.principal(&body.assignee).await?;
    let grant = state
        .store
        .create_role_assignment(principal.id, source.map(|s| s.id), role)
        .await?;
    Ok((StatusCode::CREATED, JsonResponse(grant.into())))
}

/// Lists the role assignments on the sources where the caller is Owner.
#[utoipa::path(get, path = "/v1/roleAssignments", tag = "access", security(("api_key" = [])), params(ListRoleAssignments),
    responses((status = 200, body = RoleAssignmentList)))]
async fn list_role_assignments(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListRoleAssignments>,
) -> Result<JsonResponse<RoleAssignmentList>, ApiError> {
    let mut visible = Vec::new();
    for grant in state.store.list_role_assignments().await? {
        // Names are compared ignoring case, as the store finds them.
        let on = |kind: SourceKind, name: &String| matches!(&grant.source, Some((k, n)) if *k == kind && n.eq_ignore_ascii_case(name));
        let wanted = query
            .assignee
            .as_ref()
            .is_none_or(|a| a.eq_ignore_ascii_case(&grant.principal))
            && query.workspace.as_ref().is_none_or(|w| on(SourceKind::Workspace, w))
            && query.topic.as_ref().is_none_or(|t| on(SourceKind::Topic, t));
        if wanted && may_manage(&state, &caller, &grant).await? {
            visible.push(grant.into());
        }
    }
    Ok(JsonResponse(RoleAssignmentList { value: visible }))
}

/// The source a role assignment is held on, if any.
async fn grant_source(state: &AppState, grant: &RoleGrant) -> Result<Option<Source>, ApiError> {
    match &grant.source {
        Some((kind, name)) => Ok(Some(state.store.source(*kind, name).await?)),
        None => Ok(None),
    }
}

async fn may_manage(state: &AppState, caller: &Caller, grant: &RoleGrant) -> Result<bool, ApiError> {
    let source = grant_source(state, grant).await?;
    Ok(caller.require(Role::Owner, scope_of(&source)).is_ok())
}

/// Removes a role assignment. Takes Owner where the role is held. The last Owner of
/// everything cannot be removed.
#[utoipa::path(delete, path = "/v1/roleAssignments/{id}", tag = "access", security(("api_key" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let grant = state
        .store
        .list_role_assignments()
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("role assignment {id} not found")))?;
    let source = grant_source(&state, &grant).await?;
    caller.require(Role::Owner, scope_of(&source))?;
    state.store.delete_role_assignment(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_principal, list_principals))
        .routes(routes!(create_key, revoke_keys))
        .routes(routes!(create_role_assignment, list_role_assignments))
        .routes(routes!(delete_role_assignment))
}
