//! The fan-out: from a source's log to the matching subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlgrid_core::filter::{EventView, RoutingTable};
use mlgrid_core::subscription::ProvisioningState;
use mlgrid_store::{
    DueDelivery, EventSubscription, RoutedBatch, SourceId, Store, StoreError, StoredEvent, SubscriptionId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::clock::{SharedClock, system_clock};

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
        self.table
            .insert(subscription.id, &subscription.spec.filter)
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

/// Reads a stored event for routing. Publishing (core's `publish` module) accepts only
/// events this reads: the same parser, and nesting well within its limit.
fn parse_stored(body: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(body)
}

/// The deliveries of a page's matches, as a claim would return them.
fn due_deliveries(events: &[StoredEvent], matches: &[(SubscriptionId, u64)]) -> Vec<DueDelivery> {
    matches
        .iter()
        .filter_map(|(subscription, sequence)| {
            let index = events.binary_search_by_key(sequence, |e| e.sequence).ok()?;
            let event = &events[index];
            Some(DueDelivery {
                subscription_id: *subscription,
                sequence: *sequence,
                attempts: 0,
                schema: event.schema,
                published_at: event.published_at,
                body: event.body.clone(),
            })
        })
        .collect()
}

/// A subscription waiting for its endpoint to validate, until its deadline.
struct Awaiting {
    id: SubscriptionId,
    etag: String,
    name: String,
    deadline: DateTime<Utc>,
}

/// Follows the event logs and records which subscriptions each event matches; also
/// retires the subscriptions that expired or never validated.
pub struct Fanout {
    store: Arc<dyn Store>,
    /// The subscriptions, shared with the node's dispatcher and exporter.
    catalog: Arc<Catalog>,
    routes: HashMap<SourceId, SourceRoutes>,
    awaiting: Vec<Awaiting>,
    /// How long an endpoint has to validate manually.
    validation_window: chrono::Duration,
    /// The subscriptions version the routes were built from.
    version: Option<u64>,
    /// This node's dispatcher, which takes new deliveries straight from the fan-out.
    handoff: Option<Handoff>,
    /// When expired subscriptions were last removed: at the first pass after a routed
    /// subscription expired, else once per [`IDLE_PASS`] (not a write every pass).
    swept: Option<tokio::time::Instant>,
    /// What expiry, the validation window and handed-over leases go by.
    clock: SharedClock,
}

/// New deliveries given to the dispatcher in memory, created claimed for `lease` so
/// that no claim is needed; when the dispatcher is full they are left to claims.
struct Handoff {
    sender: mpsc::Sender<Vec<DueDelivery>>,
    lease: chrono::Duration,
}

/// Whether the routes were current for a whole stretch of a log.
enum Routed {
    Recorded(usize),
    /// Subscriptions changed while the stretch was read: route it again with new routes.
    Stale,
}

impl Fanout {
    /// A fan-out that fails subscriptions still awaiting validation after
    /// `validation_window` (Event Grid: 5 minutes).
    pub fn new(store: Arc<dyn Store>, validation_window: chrono::Duration) -> Fanout {
        Fanout {
            catalog: Catalog::new(store.clone()),
            store,
            routes: HashMap::new(),
            awaiting: Vec::new(),
            validation_window,
            version: None,
            handoff: None,
            swept: None,
            clock: system_clock(),
        }
    }

    /// Reads the subscriptions from `catalog`, shared with other parts of the node.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Fanout {
        self.catalog = catalog;
        self
    }

    /// Goes by `clock` instead of the system's: for expiry, the validation window and
    /// the leases of handed-over deliveries (which the dispatcher must read by the same
    /// clock).
    pub fn with_clock(mut self, clock: SharedClock) -> Fanout {
        self.clock = clock;
        self
    }

    /// Hands new deliveries to a dispatcher (see [`crate::Dispatcher::handoff`]) instead
    /// of leaving them to its claims, created claimed for `lease`.
    pub fn with_handoff(mut self, sender: mpsc::Sender<Vec<DueDelivery>>, lease: std::time::Duration) -> Fanout {
        self.handoff = Some(Handoff {
            sender,
            lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
        });
        self
    }

    /// Rebuilds the routing tables when subscriptions changed.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let subscriptions = self.catalog.current().await?;
        if self.version == Some(subscriptions.version) {
            return Ok(());
        }
        let mut routes: HashMap<SourceId, SourceRoutes> = HashMap::new();
        let mut awaiting = Vec::new();
        for subscription in &subscriptions.all {
            if subscription.provisioning_state == ProvisioningState::AwaitingManualAction {
                awaiting.push(Awaiting {
                    deadline: subscription.updated_at + self.validation_window,
                    id: subscription.id,
                    etag: subscription.etag.clone(),
                    name: subscription.name.clone(),
                });
                continue;
            }
            if subscription.provisioning_state != ProvisioningState::Succeeded {
                continue;
            }
            let source = routes.entry(subscription.source_id).or_insert_with(SourceRoutes::new);
            if let Err(error) = source.add(subscription) {
                // Validated when it was stored; a definition this version cannot read
                // must not stop the others.
                tracing::error!(subscription = %subscription.name, %error, "skipping an unreadable subscription");
            }
        }
        self.routes = routes;
        self.awaiting = awaiting;
        self.version = Some(subscriptions.version);
        Ok(())
    }

    /// Fails the subscriptions whose endpoints did not validate in time.
    async fn fail_unvalidated(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for late in self.awaiting.iter().filter(|a| a.deadline <= now) {
            let failed = self
                .store
                .transition_subscription(
                    late.id,
                    &late.etag,
                    ProvisioningState::AwaitingManualAction,
                    ProvisioningState::Failed,
                )
                .await?;
            if failed.is_some() {
                tracing::info!(subscription = %late.name, "the endpoint did not validate in time; the subscription failed");
            }
        }
        Ok(())
    }

    /// Routes everything appended since the last pass; returns how many matches it
    /// recorded.
    pub async fn pass(&mut self) -> Result<usize, StoreError> {
        self.refresh().await?;
        let now = self.clock.now();
        let expired = self.routes.values().any(|r| r.expires.values().any(|e| *e <= now));
        if expired || self.swept.is_none_or(|at| at.elapsed() >= IDLE_PASS) {
            if self.store.delete_expired_subscriptions(now).await? > 0 {
                tracing::info!("removed expired event subscriptions");
                self.refresh().await?;
            }
            self.swept = Some(tokio::time::Instant::now());
        }
        self.fail_unvalidated(self.clock.now()).await?;
        let mut recorded = 0;
        let mut sources: Vec<SourceId> = self.routes.keys().copied().collect();
        while let Some(source) = sources.pop() {
            match self.route_source(source).await? {
                Routed::Recorded(n) => recorded += n,
                Routed::Stale => {
                    self.refresh().await?;
                    sources = self.routes.keys().copied().collect();
                }
            }
        }
        Ok(recorded)
    }

    async fn route_source(&self, source: SourceId) -> Result<Routed, StoreError> {
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
                    lease_until: None,
                };
                self.record(skip).await?;
                continue;
            }
            let events = self.store.read_events(source, cursor, PAGE).await?;
            let Some(last) = events.last().map(|e| e.sequence) else {
                return Ok(Routed::Recorded(recorded));
            };
            // A subscription that became active before these events were read starts
            // before them: the routes must know it. (One that becomes active later
            // starts after them.)
            if Some(self.store.subscriptions_version().await?) != self.version {
                return Ok(Routed::Stale);
            }
            let now = self.clock.now();
            let mut matches = Vec::new();
            let mut matched = Vec::new();
            for event in &events {
                let body = match parse_stored(&event.body) {
                    Ok(body) => body,
                    Err(error) => {
                        tracing::error!(%source, sequence = event.sequence, %error, "stored event is not JSON; it matches nothing");
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
            // A free place in the dispatcher's queue, reserved before the deliveries are
            // created claimed, so that none is created claimed and then not sent.
            let permit = match &self.handoff {
                Some(handoff) if !matches.is_empty() => handoff.sender.try_reserve().ok().map(|p| (p, handoff.lease)),
                _ => None,
            };
            let due = permit.as_ref().map(|_| due_deliveries(&events, &matches));
            let recorded_ok = self
                .record(RoutedBatch {
                    source,
                    from_sequence: cursor,
                    to_sequence: last,
                    matches,
                    lease_until: permit.as_ref().map(|(_, lease)| now + *lease),
                })
                .await?;
            if let (true, Some((permit, _)), Some(due)) = (recorded_ok, permit, due) {
                permit.send(due);
            }
            if !full_page {
                return Ok(Routed::Recorded(recorded));
            }
        }
    }

    /// Records a batch and says whether it did; a cursor moved by another router is not
    /// an error, the next pass starts from where it is.
    async fn record(&self, batch: RoutedBatch) -> Result<bool, StoreError> {
        match self.store.record_matches(batch).await {
            Err(StoreError::Conflict(reason)) => {
                tracing::debug!(%reason, "another router moved on");
                Ok(false)
            }
            other => other.map(|()| true),
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
                    // Logged by the store once; the pass is tried again as usual.
                    StoreError::Full(_) => tracing::debug!("the store's disk is full; routing pauses"),
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

#[cfg(test)]
mod tests {
    use mlgrid_core::Event;
    use mlgrid_core::filter::EventFilter;
    use mlgrid_core::publish::{
        CloudEventsMode, MAX_NESTING_DEPTH, PublishLimits, parse_cloud_events, parse_event_grid_events,
    };
    use mlgrid_store::NewEvent;

    use super::*;

    #[test]
    fn events_nested_to_the_publish_limit_are_routed() {
        let data = format!("{}1{}", "[".repeat(MAX_NESTING_DEPTH), "]".repeat(MAX_NESTING_DEPTH));
        let eg =
            format!(r#"[{{"id":"1","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","data":{data}}}]"#);
        let ce = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"T","data":{data}}}"#);
        let limits = PublishLimits::default();
        let mut events: Vec<Event> = parse_event_grid_events(eg.as_bytes(), "/t", limits)
            .unwrap()
            .into_iter()
            .map(Event::EventGrid)
            .collect();
        events.extend(
            parse_cloud_events(ce.as_bytes(), CloudEventsMode::Structured, limits)
                .unwrap()
                .into_iter()
                .map(Event::Cloud),
        );
        let mut table = RoutingTable::new();
        table
            .insert(
                1,
                &EventFilter::from_json(&serde_json::json!({"includedEventTypes": ["T"]})).unwrap(),
            )
            .unwrap();
        for event in &events {
            let stored = NewEvent::from(event);
            let body = parse_stored(&stored.body).unwrap_or_else(|e| panic!("{:?}: {e}", stored.schema));
            let mut matched = Vec::new();
            table.route(&EventView::new(stored.schema, &body), &mut matched);
            assert_eq!(matched, [1], "{:?}", stored.schema);
        }
        // One level more is refused at publish rather than stored and never routed.
        let deeper = eg.replace(&data, &format!("[{data}]"));
        assert!(parse_event_grid_events(deeper.as_bytes(), "/t", limits).is_err());
    }
}
