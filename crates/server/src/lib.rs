//! The mlgrid HTTP server: the REST API, the Event Grid publishing endpoint, API-key
//! authentication and the OpenAPI document.
//!
//! [`app`] builds the router over an [`AppState`] (the store, the server secret and the
//! settings); [`serve`] runs it on a listener until a shutdown future completes, then
//! finishes the requests in flight. Handlers are thin: they parse, call the store or the
//! core, and map the result; errors are [`ApiError`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mlgrid_server::{AppState, ServerConfig, app, keys::ServerSecret, serve};
//! use mlgrid_store::Store;
//!
//! let store = mlgrid_store::SqliteStore::open("mlgrid-data/mlgrid.db").await?;
//! let state = AppState::new(store.clone(), ServerSecret::generate(), ServerConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, app(state), async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! store.close().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod bootstrap;
mod connections;
mod datastore_endpoints;
mod error;
mod extract;
pub mod keys;
pub mod prune;
mod state;
mod triggers;

use std::future::Future;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use connections::ConnectionLimits;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use state::{AppState, ServerConfig};

/// The whole HTTP application: the API, `/openapi.json`, tracing, the request body
/// timeout.
pub fn app(state: AppState) -> Router {
    let body_read_timeout = state.config.connections.body_read_timeout;
    let (router, openapi) = api::routes(&state).split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi) }
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such route; the API is described at /openapi.json".to_owned()) })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            body_read_timeout,
            connections::body_deadline,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal("a handler panicked".to_owned()))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            // The matched route, not the URI: no key or event content ends up in logs.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            tracing::info_span!("request", method = %request.method(), route)
        }))
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in
/// flight finish (each answers only after its writes are durable), with the default
/// [`ConnectionLimits`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve_connections(listener, app, shutdown, &ConnectionLimits::default()).await;
    Ok(())
}

/// Runs a whole node: the HTTP server and the background work (the fan-out of events to
/// subscriptions, the webhook dispatcher, the executor and the scheduler) until `shutdown`; then ends long polls,
/// drains requests and stops the workers, which record the attempts in flight, all
/// within the configured shutdown timeout (after it, what is left is abandoned and
/// logged: unanswered requests stored nothing they acknowledged, and abandoned
/// deliveries are claimed again when their leases run out). The store stays open for
/// the caller to close.
pub async fn run_node(
    listener: TcpListener,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut config = (*state.config).clone();
    config.listen = listener.local_addr()?;
    state.config = std::sync::Arc::new(config);
    let limits = state.config.connections;
    let workers = CancellationToken::new();
    let secrets = std::sync::Arc::new(state.secret.clone());
    // One catalog of the subscriptions for the fan-out, the dispatcher and the exporter.
    let catalog = mlgrid_delivery::Catalog::new(state.store.clone());
    let dispatcher = mlgrid_delivery::Dispatcher::new(state.store.clone(), state.config.delivery.clone(), secrets)
        .map_err(|e| std::io::Error::other(format!("cannot build the webhook client: {e}")))?
        .with_catalog(catalog.clone())
        .with_pipelines(std::sync::Arc::new(triggers::Triggers {
            store: state.store.clone(),
            pipelines: state.pipelines.clone(),
        }));
    let (handoff, lease) = dispatcher.handoff();
    let background = [
        tokio::spawn(
            mlgrid_delivery::Fanout::new(state.store.clone(), state.config.validation_window())
                .with_handoff(handoff, lease)
                .with_catalog(catalog.clone())
                .with_clock(state.config.delivery.clock.clone())
                .run(workers.clone()),
        ),
        tokio::spawn(dispatcher.run(workers.clone())),
        tokio::spawn(
            mlgrid_delivery::DeadLetterExporter::new(state.store.clone(), state.config.datastore_root.clone())
                .with_problems(state.dead_letter_exports.clone())
                .with_catalog(catalog)
                .run(workers.clone()),
        ),
        tokio::spawn(state.executor.clone().run(workers.clone())),
        tokio::spawn(state.scheduler.clone().run(workers.clone())),
        tokio::spawn(state.watcher.clone().run(workers.clone())),
        tokio::spawn(
            prune::Pruner::new(
                state.store.clone(),
                state.config.retention,
                state.config.node_id.clone(),
            )
            .run(workers.clone()),
        ),
    ];
    // The whole drain, requests and workers, is bounded from the moment shutdown starts.
    let draining = state.shutdown.clone();
    let began = std::sync::Arc::new(std::sync::OnceLock::new());
    let began_at = began.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = began_at.set(tokio::time::Instant::now());
        draining.cancel();
    };
    connections::serve_connections(listener, app(state), shutdown, &limits).await;
    workers.cancel();
    let deadline = *began.get_or_init(tokio::time::Instant::now) + limits.shutdown_timeout;
    let stopped = tokio::time::timeout_at(deadline, futures::future::join_all(background)).await;
    match stopped {
        Ok(results) => {
            for e in results.into_iter().filter_map(Result::err) {
                tracing::error!(error = %e, "a background task failed");
            }
        }
        Err(_) => tracing::warn!(
            "shutdown timeout: abandoning the background work still running (deliveries in flight \
             are sent again once their leases run out)"
        ),
    }
    Ok(())
}
