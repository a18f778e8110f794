//! The fan-out: from a source's log to the matching subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlgrid_core::filter::{EventView, RoutingTable};
use mlgrid_core::subscription::SubscriptionSpec;
use mlgrid_store::{EventSubscription, RoutedBatch, SourceId, Store, StoreError, SubscriptionId};
use tokio_util::sync::CancellationToken;

/// Events routed per transaction.
const PAGE: u32 = 1000;
/// How often the fan-out looks again when nothing wakes it (new subscriptions, other
/// nodes' appends, expirations).
const IDLE_PASS: Duration = Duration::from_secs(1);

/// The compiled subscriptions of one source.
struct SourceRoutes {
    table: RoutingTable<SubscriptionId>,
    /// Each subscription matches only events after this sequence.
    start: HashMap<SubscriptionId, u64>,
    expires: HashMap<SubscriptionId, DateTime<Utc>>,
}

impl SourceRoutes {
    fn new() -> SourceRoutes {
        SourceRoutes {
            table: RoutingTable::new(),
            start: HashMap::new(),
            expires: HashMap::new(),
        }
    }

    fn add(&mut self, subscription: &EventSubscription) -> Result<(), String> {
        let spec: SubscriptionSpec = serde_json::from_str(&subscription.spec).map_err(|e| e.to_string())?;
        self.table
            .insert(subscription.id, &spec.filter)
            .map_err(|e| e.to_string())?;
        self.start.insert(subscription.id, subscription.start_sequence);
        if let Some(expires) = subscription.expires_at {
            self.expires.insert(subscription.id, expires);
        }
        Ok(())
    }

    /// The smallest position a subscription starts from: events up to it match nothing.
    fn earliest_start(&self) -> u64 {
        self.start.values().copied().min().unwrap_or(u64::MAX)
    }
}

/// Follows the event logs and records which subscriptions each event matches.
pub struct Fanout {
    store: Arc<dyn Store>,
    routes: HashMap<SourceId, SourceRoutes>,
    /// The subscriptions version the routes were built from.
    version: Option<u64>,
}

impl Fanout {
    pub fn new(store: Arc<dyn Store>) -> Fanout {
        Fanout {
            store,
            routes: HashMap::new(),
            version: None,
        }
    }

    /// Rebuilds the routing tables when subscriptions changed.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let version = self.store.subscriptions_version().await?;
        if self.version == Some(version) {
            return Ok(());
        }
        let mut routes: HashMap<SourceId, SourceRoutes> = HashMap::new();
        for subscription in self.store.list_subscriptions(None).await? {
            let source = routes.entry(subscription.source_id).or_insert_with(SourceRoutes::new);
            if let Err(error) = source.add(&subscription) {
                // Validated when it was stored; a definition this version cannot read
                // must not stop the others.
                tracing::error!(subscription = %subscription.name, %error, "skipping an unreadable subscription");
            }
        }
        self.routes = routes;
        self.version = Some(version);
        Ok(())
    }

    /// Routes everything appended since the last pass; returns how many matches it
    /// recorded.
    pub async fn pass(&mut self) -> Result<usize, StoreError> {
        if self.store.delete_expired_subscriptions(Utc::now()).await? > 0 {
            tracing::info!("removed expired event subscriptions");
        }
        self.refresh().await?;
        let mut recorded = 0;
        let sources: Vec<SourceId> = self.routes.keys().copied().collect();
        for source in sources {
            recorded += self.route_source(source).await?;
        }
        Ok(recorded)
    }

    async fn route_source(&self, source: SourceId) -> Result<usize, StoreError> {
        let routes = &self.routes[&source];
        let mut recorded = 0;
        loop {
            let cursor = self.store.fanout_cursor(source).await?;
            // Nothing before the earliest subscription's start can match: skip it unread.
            let skip_to = routes.earliest_start();
            if cursor < skip_to && skip_to != u64::MAX {
                let skip = RoutedBatch {
                    source,
                    from_sequence: cursor,
                    to_sequence: skip_to,
                    matches: Vec::new(),
                };
                self.record(skip).await?;
                continue;
            }
            let events = self.store.read_events(source, cursor, PAGE).await?;
            let Some(last) = events.last().map(|e| e.sequence) else {
                return Ok(recorded);
            };
            let now = Utc::now();
            let mut matches = Vec::new();
            let mut matched = Vec::new();
            for event in &events {
                let body: serde_json::Value = match serde_json::from_str(&event.body) {
                    Ok(body) => body,
                    Err(error) => {
                        tracing::error!(source, sequence = event.sequence, %error, "stored event is not JSON; it matches nothing");
                        continue;
                    }
                };
                matched.clear();
                routes.table.route(&EventView::new(event.schema, &body), &mut matched);
                matches.extend(
                    matched
                        .iter()
                        .filter(|id| routes.start.get(id).is_some_and(|start| event.sequence > *start))
                        .filter(|id| routes.expires.get(id).is_none_or(|expires| *expires > now))
                        .map(|id| (*id, event.sequence)),
                );
            }
            recorded += matches.len();
            metrics::counter!("mlgrid_events_routed_total").increment(events.len() as u64);
            metrics::counter!("mlgrid_events_matched_total").increment(matches.len() as u64);
            let full_page = events.len() == PAGE as usize;
            self.record(RoutedBatch {
                source,
                from_sequence: cursor,
                to_sequence: last,
                matches,
            })
            .await?;
            if !full_page {
                return Ok(recorded);
            }
        }
    }

    /// Records a batch; a cursor moved by another router is not an error, the next pass
    /// starts from where it is.
    async fn record(&self, batch: RoutedBatch) -> Result<(), StoreError> {
        match self.store.record_matches(batch).await {
            Err(StoreError::Conflict(reason)) => {
                tracing::debug!(%reason, "another router moved on");
                Ok(())
            }
            other => other,
        }
    }

    /// Routes until `shutdown`, woken by every commit that appends events and at least
    /// once a second.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut appended = self.store.appended();
        loop {
            appended.borrow_and_update();
            if let Err(error) = self.pass().await {
                match error {
                    StoreError::Closed => return,
                    error => tracing::warn!(%error, "fan-out pass failed; retrying"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = appended.changed() => {}
                () = tokio::time::sleep(IDLE_PASS) => {}
            }
        }
    }
}
