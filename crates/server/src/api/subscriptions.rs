//! Event subscriptions of workspaces and custom topics, in the shape of Event Grid's
//! ARM resource: `{"properties": {"destination", "filter", ...}}`.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mlgrid_core::redact::{endpoint_base_url, redact_urls};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::{ProvisioningState, SubscriptionSpec, validate_subscription_name};
use mlgrid_core::time::format_event_time;
use mlgrid_store::{EventSubscription, Role, Source, SubscriptionPut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::EventPage;
use super::lifecycle::{etagged, with_etag};
use super::sources::{self, collection_kind};
use super::validation;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{BaseUrl, IfMatch, Json, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSubscription {
    /// `destination` (`{"endpointType": "WebHook", "properties": {"endpointUrl", "maxEventsPerBatch",
    /// "preferredBatchSizeInKilobytes"}}`), `filter`, `eventDeliverySchema`, `retryPolicy`,
    /// `deadLetterDestination`, `labels`, `expirationTimeUtc`.
    #[schema(value_type = Object)]
    pub properties: SubscriptionSpec,
}

/// An event subscription as Event Grid shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    /// `{source resource path}/providers/Microsoft.EventGrid/eventSubscriptions/{name}`
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: &'static str,
    /// The definition, with `topic`, `provisioningState`, `createdAt` and `updatedAt`.
    #[schema(value_type = Object)]
    pub properties: Value,
    pub etag: String,
}

etagged!(SubscriptionView);

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub value: Vec<SubscriptionView>,
}

/// The whole webhook URL of a subscription, query and all.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FullUrl {
    pub endpoint_url: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutOptions {
    /// Skip the endpoint validation handshake: the subscription receives events at once.
    /// For endpoints the owner trusts; takes Owner on the workspace or topic unless the
    /// server was started with `--allow-contributor-skip-validation`.
    #[serde(default)]
    skip_validation: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadMatches {
    /// Matches of events with a sequence number above this.
    #[serde(default)]
    after: u64,
    /// Most events to return (default 100, at most 10000).
    limit: Option<u32>,
}

/// The subscription as readers see it: the endpoint as `endpointBaseUrl`, without the
/// query (which often holds a secret, like an Azure Function's `code`) or userinfo;
/// the whole URL only through `getFullUrl`, which takes Contributor.
fn view(source: &Source, subscription: EventSubscription) -> Result<SubscriptionView, ApiError> {
    // The definition as it was stored: the typed one serializes back to the same JSON.
    let mut properties = serde_json::to_value(&subscription.spec)
        .map_err(|e| ApiError::Internal(format!("subscription {} does not serialize: {e}", subscription.id)))?;
    let topic = source.topic();
    if let Some(Value::Object(endpoint)) = properties.pointer_mut("/destination/properties")
        && let Some(Value::String(url)) = endpoint.remove("endpointUrl")
    {
        endpoint.insert("endpointBaseUrl".to_owned(), Value::String(endpoint_base_url(&url)));
    }
    if let Value::Object(map) = &mut properties {
        map.insert("topic".to_owned(), Value::String(topic.clone()));
        map.insert(
            "provisioningState".to_owned(),
            Value::String(subscription.provisioning_state.to_string()),
        );
        map.insert(
            "createdAt".to_owned(),
            Value::String(format_event_time(subscription.created_at)),
        );
        map.insert(
            "updatedAt".to_owned(),
            Value::String(format_event_time(subscription.updated_at)),
        );
    }
    Ok(SubscriptionView {
        id: format!(
            "{topic}/providers/Microsoft.EventGrid/eventSubscriptions/{}",
            subscription.name
        ),
        name: subscription.name,
        resource_type: "Microsoft.EventGrid/eventSubscriptions",
        properties,
        etag: subscription.etag,
    })
}

/// What a put names besides its body.
struct PutTarget {
    kind: SourceKind,
    source: String,
    name: String,
    if_match: Option<String>,
    options: PutOptions,
    base_url: String,
}

async fn put(state: AppState, caller: Caller, target: PutTarget, body: PutSubscription) -> Result<Response, ApiError> {
    let PutTarget {
        kind,
        source,
        name,
        if_match,
        options,
        base_url,
    } = target;
    let source = if options.skip_validation && !state.config.allow_contributor_skip_validation {
        let source = state.store.source(kind, &source).await?;
        caller.require_to_skip_validation(&source)?;
        source
    } else {
        sources::load(&state, &caller, kind, &source, Role::Contributor).await?
    };
    validate_subscription_name(&name).map_err(|e| ApiError::bad_request(e.0))?;
    let spec = body.properties;
    spec.validate(kind, state.config.delivery.clock.now())
        .map_err(|e| ApiError::bad_request(e.0))?;
    if spec.destination.is_webhook() {
        state
            .config
            .delivery
            .addresses
            .check_url(&spec.destination.properties.endpoint_url)
            .await
            .map_err(|reason| ApiError::bad_request(format!("endpointUrl is refused: {}", redact_urls(&reason))))?;
    }
    if let Some(pipeline) = spec.destination.properties.pipeline.as_deref() {
        // The caller must be able to submit in the workspace whose pipeline runs, and the
        // pipeline must exist: refused now rather than dead-lettering every event later.
        let workspace = match spec.destination.properties.workspace.as_deref() {
            Some(name) => {
                sources::load(&state, &caller, SourceKind::Workspace, name, Role::Contributor)
                    .await?
                    .id
            }
            None => source.id,
        };
        state.pipelines.trigger_target(workspace, pipeline).await?;
    }
    let existing = match state.store.subscription(source.id, &name).await {
        Ok(existing) => Some(existing),
        Err(mlgrid_store::StoreError::NotFound(_)) => None,
        Err(other) => return Err(other.into()),
    };
    let handshake = !options.skip_validation && mlgrid_delivery::needs_handshake(existing.as_ref(), &spec);
    let put = SubscriptionPut {
        name,
        expires_at: spec.expires_at().map_err(|e| ApiError::bad_request(e.0))?,
        spec,
        provisioning_state: if handshake {
            ProvisioningState::AwaitingManualAction
        } else {
            ProvisioningState::Succeeded
        },
        secret_salt: state.secret.new_webhook_salt(),
    };
    let (mut subscription, created) = state.store.put_subscription(source.id, put, if_match).await?;
    if handshake {
        subscription = validation::handshake(&state, &base_url, &source, subscription).await?;
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(status, view(&source, subscription)?))
}

async fn list(
    state: AppState,
    caller: Caller,
    kind: SourceKind,
    source: String,
) -> Result<JsonResponse<SubscriptionList>, ApiError> {
    let source = sources::load(&state, &caller, kind, &source, Role::Reader).await?;
    let subscriptions = state.store.list_subscriptions(Some(source.id)).await?;
    let value = subscriptions
        .into_iter()
        .map(|s| view(&source, s))
        .collect::<Result<_, _>>()?;
    Ok(JsonResponse(SubscriptionList { value }))
}

async fn show(
    state: AppState,
    caller: Caller,
    kind: SourceKind,
    source: String,
    name: String,
) -> Result<Response, ApiError> {
    let source = sources::load(&state, &caller, kind, &source, Role::Reader).await?;
    let subscription = state.store.subscription(source.id, &name).await?;
    Ok(with_etag(StatusCode::OK, view(&source, subscription)?))
}

async fn full_url(
    state: AppState,
    caller: Caller,
    kind: SourceKind,
    source: String,
    name: String,
) -> Result<JsonResponse<FullUrl>, ApiError> {
    let source = sources::load(&state, &caller, kind, &source, Role::Contributor).await?;
    let subscription = state.store.subscription(source.id, &name).await?;
    Ok(JsonResponse(FullUrl {
        endpoint_url: subscription.spec.destination.properties.endpoint_url,
    }))
}

async fn delete(
    state: AppState,
    caller: Caller,
    kind: SourceKind,
    source: String,
    name: String,
    if_match: Option<String>,
) -> Result<StatusCode, ApiError> {
    let source = sources::load(&state, &caller, kind, &source, Role::Contributor).await?;
    state.store.delete_subscription(source.id, &name, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn matches(
    state: AppState,
    caller: Caller,
    kind: SourceKind,
    source: String,
    name: String,
    query: ReadMatches,
) -> Result<JsonResponse<EventPage>, ApiError> {
    let source = sources::load(&state, &caller, kind, &source, Role::Reader).await?;
    let subscription = state.store.subscription(source.id, &name).await?;
    let limit = super::events::check_limit(query.limit)?;
    let events = state
        .store
        .subscription_matches(subscription.id, query.after, limit)
        .await?;
    let pruned_through = subscription.pruned_through.max(source.pruned_through);
    Ok(JsonResponse(EventPage::new(events, query.after, pruned_through)?))
}

/// Creates or replaces an event subscription of a workspace or custom topic. On a
/// workspace, event types must be Azure ML's. A new webhook endpoint must pass Event
/// Grid's validation handshake (unless `skipValidation=true`): the answer says
/// `provisioningState` `Succeeded`, or `AwaitingManualAction` until the endpoint GETs
/// the validation URL; a refusing endpoint makes it `Failed` and the answer a 400.
/// Takes Contributor or Owner; skipping the handshake takes Owner (unless the server
/// allows Contributors to).
#[utoipa::path(put, path = "/v1/{collection}/{source}/eventSubscriptions/{name}", tag = "eventSubscriptions", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header), PutOptions),
    request_body = PutSubscription,
    responses((status = 201, body = SubscriptionView), (status = 200, body = SubscriptionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn put_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    IfMatch(if_match): IfMatch,
    Query(options): Query<PutOptions>,
    BaseUrl(base_url): BaseUrl,
    Json(body): Json<PutSubscription>,
) -> Result<Response, ApiError> {
    let target = PutTarget {
        kind: collection_kind(&collection)?,
        source,
        name,
        if_match,
        options,
        base_url,
    };
    put(state, caller, target, body).await
}

/// Lists the event subscriptions of a workspace or custom topic. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions", tag = "eventSubscriptions", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path)), responses((status = 200, body = SubscriptionList)))]
async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source)): Path<(String, String)>,
) -> Result<JsonResponse<SubscriptionList>, ApiError> {
    list(state, caller, collection_kind(&collection)?, source).await
}

/// Shows an event subscription. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}", tag = "eventSubscriptions", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
async fn show_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    show(state, caller, collection_kind(&collection)?, source, name).await
}

/// The whole endpoint URL of an event subscription, query included (reads show only
/// `endpointBaseUrl`: the query often holds a secret). Takes Contributor or Owner.
#[utoipa::path(post, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/getFullUrl", tag = "eventSubscriptions", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = FullUrl), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_full_url(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
) -> Result<JsonResponse<FullUrl>, ApiError> {
    full_url(state, caller, collection_kind(&collection)?, source, name).await
}

/// Deletes an event subscription. Takes Contributor or Owner.
#[utoipa::path(delete, path = "/v1/{collection}/{source}/eventSubscriptions/{name}", tag = "eventSubscriptions", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, ApiError> {
    delete(state, caller, collection_kind(&collection)?, source, name, if_match).await
}

/// The events an event subscription matched. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/events", tag = "eventSubscriptions", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), ReadMatches),
    responses((status = 200, body = EventPage), (status = 404, body = ErrorBody)))]
async fn subscription_matches(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    Query(query): Query<ReadMatches>,
) -> Result<JsonResponse<EventPage>, ApiError> {
    matches(state, caller, collection_kind(&collection)?, source, name, query).await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_subscriptions))
        .routes(routes!(put_subscription, show_subscription, delete_subscription))
        .routes(routes!(subscription_matches))
        .routes(routes!(get_full_url))
}
