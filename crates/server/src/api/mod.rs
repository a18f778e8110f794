//! The REST API, one module per resource: request and response types first, handlers
//! next, `router()` last.

pub mod access;
pub mod datasets;
pub mod datastores;
pub mod deliveries;
pub mod events;
pub mod health;
mod lifecycle;
pub mod metrics;
pub mod models;
pub mod pipelines;
pub mod prune;
pub mod publish;
pub mod runs;
pub mod schedules;
pub mod sources;
pub mod subscriptions;
pub mod topics;
pub mod validation;
pub mod watches;
pub mod workspaces;

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mlgrid",
        description = "Self-hosted event grid for machine-learning workspaces. Management calls \
                       take `Authorization: Bearer <api key>`; publishing to a topic takes the \
                       topic's access key in `aeg-sas-key`. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "topic_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("aeg-sas-key"))),
        );
    }
}

/// Every route of the API, with its OpenAPI description.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(metrics::router())
        .merge(access::router())
        .merge(workspaces::router())
        .merge(topics::router())
        .merge(events::router())
        .merge(runs::router())
        .merge(models::router())
        .merge(datasets::router())
        .merge(datastores::router())
        .merge(watches::router())
        .merge(pipelines::router())
        .merge(schedules::router())
        .merge(subscriptions::router())
        .merge(deliveries::router())
        .merge(prune::router())
        .merge(validation::router())
        .merge(publish::router(state))
}
