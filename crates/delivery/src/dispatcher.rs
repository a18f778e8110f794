//! The dispatcher: claims due deliveries, sends them to their webhooks in batches, and
//! records what each attempt did, following Event Grid's retry policy.
//!
//! Each batch is sent by its own task, bounded per subscription and per endpoint (the
//! receiver's origin, shared by every subscription to it, see [`crate::endpoints`]) and
//! overall. An attempt without an answer after `slow_after` gives its node-wide slot
//! back (it keeps its endpoint's), so a slow or hung endpoint holds only its own slots
//! and never delays the others. A claimed
//! delivery is leased; if this node dies, the lease runs out and another claim picks it
//! up (at-least-once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mlgrid_core::EventSchema;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::retry::{NextStep, RetrySchedule, next_step};
use mlgrid_core::subscription::SubscriptionSpec;
use mlgrid_store::{AfterAttempt, AttemptRecord, DueDelivery, SourceId, Store, StoreError, SubscriptionId};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::address_guard::AddressPolicy;
use crate::endpoints::{Endpoint, EndpointPermit, Endpoints};
use crate::signature::WebhookSecrets;
use crate::waiting::Waiting;
use crate::webhook::{Headers, batch_body, post};

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Batches in flight at once, in all.
    pub concurrency: usize,
    /// Batches in flight at once to one subscription.
    pub per_subscription: usize,
    /// Batches in flight at once to one endpoint (`scheme://host:port`), whichever
    /// subscriptions they are for.
    pub per_endpoint: usize,
    /// How long an attempt holds a node-wide slot while its receiver has not answered.
    pub slow_after: Duration,
    /// How long a claimed delivery is reserved for this node.
    pub lease: Duration,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    pub schedule: RetrySchedule,
    pub addresses: AddressPolicy,
    /// Deliveries claimed at once.
    pub claim: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            concurrency: 256,
            per_subscription: 32,
            per_endpoint: 64,
            slow_after: Duration::from_secs(1),
            lease: Duration::from_secs(90),
            timeout: Duration::from_secs(30),
            schedule: RetrySchedule::default(),
            addresses: AddressPolicy::default(),
            claim: 1000,
        }
    }
}

/// How long the dispatcher rests when nothing is due, and how often it claims at most
/// unless its last claim came back full: new deliveries are handed over by the fan-out,
/// so claims only pick up retries, releases and the leases of dead nodes.
const IDLE: Duration = Duration::from_millis(50);

/// How long the dispatcher and the recorder wait before trying the store again while its
/// disk is full: deliveries pause, nothing counts as failed (the store logs the state).
const FULL_PAUSE: Duration = Duration::from_secs(1);
/// Event Grid's default for `preferredBatchSizeInKilobytes`.
const DEFAULT_BATCH_KB: u32 = 64;

/// How long a delivery given back for want of a free slot waits.
const BUSY_WAIT: Duration = Duration::from_millis(200);
/// Slow attempts that may give their node-wide slot back, per node-wide slot.
const PARKED_PER_SLOT: usize = 4;

/// What a batch needs to know of its subscription.
struct Target {
    name: String,
    /// The subscription's `endpointUrl`, parsed once.
    url: reqwest::Url,
    /// The signing secret, and the one before it with the end of its grace period.
    secret: Vec<u8>,
    previous: Option<(Vec<u8>, chrono::DateTime<Utc>)>,
    topic: String,
    spec: SubscriptionSpec,
    slots: Arc<Semaphore>,
    endpoint: Arc<Endpoint>,
}

impl Target {
    /// A slot of the subscription and one of its endpoint, if both have one free.
    fn try_acquire(&self) -> Option<Slots> {
        let subscription = self.slots.clone().try_acquire_owned().ok()?;
        let endpoint = self.endpoint.try_acquire()?;
        Some(Slots {
            _subscription: subscription,
            _endpoint: endpoint,
        })
    }
}

/// What an attempt holds of its subscription's and endpoint's slots until it is recorded.
struct Slots {
    _subscription: OwnedSemaphorePermit,
    _endpoint: EndpointPermit,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: DispatcherConfig,
    http: reqwest::Client,
    targets: HashMap<SubscriptionId, Arc<Target>>,
    version: Option<u64>,
    endpoints: Endpoints,
    slots: Arc<Semaphore>,
    /// Node-wide slots given back by attempts whose receivers are slow, bounded.
    parked: Arc<Semaphore>,
    secrets: Arc<dyn WebhookSecrets>,
    /// Where finished attempts go to be recorded, many per transaction.
    records: mpsc::Sender<AttemptRecord>,
    recorder: Option<JoinHandle<()>>,
    /// New deliveries handed over by the fan-out, already claimed.
    handed: mpsc::Receiver<Vec<DueDelivery>>,
    handoff: mpsc::Sender<Vec<DueDelivery>>,
    /// When the next claim is due: at once after a full claim, else after [`IDLE`].
    next_claim: tokio::time::Instant,
    /// Claimed batches waiting for a free slot of their endpoint.
    waiting: Waiting,
}

/// Pages of new deliveries the fan-out may hand over before it leaves them to claims.
const HANDOFF_PAGES: usize = 4;

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        config: DispatcherConfig,
        secrets: Arc<dyn WebhookSecrets>,
    ) -> Result<Dispatcher, reqwest::Error> {
        let (records, pending) = mpsc::channel(RECORD_QUEUE);
        let recorder = tokio::spawn(record_attempts(store.clone(), pending));
        let http = crate::webhook::client(config.addresses, config.concurrency)?;
        let (handoff, handed) = mpsc::channel(HANDOFF_PAGES);
        Ok(Dispatcher {
            handed,
            handoff,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            parked: Arc::new(Semaphore::new(config.concurrency * PARKED_PER_SLOT)),
            endpoints: Endpoints::default(),
            store,
            config,
            http,
            targets: HashMap::new(),
            version: None,
            secrets,
            records,
            recorder: Some(recorder),
            next_claim: tokio::time::Instant::now(),
            waiting: Waiting::default(),
        })
    }

    /// Where the fan-out hands new deliveries straight to this dispatcher
    /// ([`crate::Fanout::with_handoff`]), with the lease they must be created claimed for.
    pub fn handoff(&self) -> (mpsc::Sender<Vec<DueDelivery>>, Duration) {
        (self.handoff.clone(), self.config.lease)
    }

    async fn refresh(&mut self) -> Result<(), StoreError> {
        let version = self.store.subscriptions_version().await?;
        if self.version == Some(version) {
            return Ok(());
        }
        let mut topics: HashMap<SourceId, String> = HashMap::new();
        for kind in [SourceKind::Workspace, SourceKind::Topic] {
            topics.extend(
                self.store
                    .list_sources(kind)
                    .await?
                    .into_iter()
                    .map(|s| (s.id, s.topic())),
            );
        }
        let mut targets = HashMap::new();
        let mut endpoints = Endpoints::default();
        for subscription in self.store.list_subscriptions(None).await? {
            let Ok(endpoint) = reqwest::Url::parse(&subscription.spec.destination.properties.endpoint_url) else {
                tracing::error!(subscription = %subscription.name, "skipping a subscription whose endpoint URL does not parse");
                continue;
            };
            // Keep the slots of a known subscription and endpoint: batches in flight use them.
            let known = self.targets.get(&subscription.id);
            let endpoint_state = endpoints.get(&self.endpoints, &endpoint, self.config.per_endpoint);
            let target = Target {
                secret: self.secrets.secret(&subscription.secret_salt),
                previous: subscription
                    .previous_salt
                    .as_ref()
                    .map(|(salt, until)| (self.secrets.secret(salt), *until)),
                name: subscription.name,
                url: endpoint,
                topic: topics.get(&subscription.source_id).cloned().unwrap_or_default(),
                spec: subscription.spec,
                slots: known.map_or_else(
                    || Arc::new(Semaphore::new(self.config.per_subscription)),
                    |t| t.slots.clone(),
                ),
                endpoint: endpoint_state,
            };
            targets.insert(subscription.id, Arc::new(target));
        }
        self.targets = targets;
        self.endpoints = endpoints;
        self.version = Some(version);
        Ok(())
    }

    /// Splits one subscription's due deliveries into batches within its
    /// `maxEventsPerBatch` and `preferredBatchSizeInKilobytes`, never waiting for more.
    fn batches(target: &Target, due: Vec<DueDelivery>) -> Vec<Vec<DueDelivery>> {
        let properties = &target.spec.destination.properties;
        let max_events = properties.max_events_per_batch.unwrap_or(1).max(1) as usize;
        let max_bytes = properties.preferred_batch_size_in_kilobytes.unwrap_or(DEFAULT_BATCH_KB) as usize * 1024;
        let mut batches = Vec::new();
        let mut current: Vec<DueDelivery> = Vec::new();
        let mut bytes = 0;
        for delivery in due {
            let size = delivery.body.len();
            if !current.is_empty() && (current.len() == max_events || bytes + size > max_bytes) {
                batches.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += size;
            current.push(delivery);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    /// Claims what is due and starts sending it; returns how many deliveries it claimed.
    async fn dispatch(&mut self, tasks: &mut JoinSet<()>) -> Result<usize, StoreError> {
        if tokio::time::Instant::now() < self.next_claim || !self.waiting.has_room() {
            return Ok(0);
        }
        self.refresh().await?;
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        // Claim no more than the free slots can send: what cannot be sent now would only
        // be given back.
        let largest_batch = self
            .targets
            .values()
            .map(|t| t.spec.destination.properties.max_events_per_batch.unwrap_or(1))
            .max()
            .unwrap_or(1);
        // Claims are transactions: wait until a good share of the slots is free rather
        // than claim a delivery or two each time one batch finishes.
        let free = self.slots.available_permits();
        if free < (self.config.concurrency / 4).max(1) {
            return Ok(0);
        }
        let limit = self.config.claim.min((free as u32).saturating_mul(largest_batch));
        let claimed = self.store.claim_deliveries(now, lease_until, limit).await?;
        let count = claimed.len();
        self.next_claim = tokio::time::Instant::now() + if count as u32 == limit { Duration::ZERO } else { IDLE };
        self.start(claimed, tasks).await?;
        Ok(count)
    }

    /// Starts sending deliveries the fan-out handed over.
    async fn start_handed(&mut self, handed: Vec<DueDelivery>, tasks: &mut JoinSet<()>) {
        let started = match self.refresh().await {
            Ok(()) => self.start(handed, tasks).await,
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            // Their leases run out and claims pick them up.
            tracing::warn!(%error, "starting handed-over deliveries failed");
        }
    }

    /// Starts sending claimed deliveries, in batches, with targets as of the last
    /// refresh; gives back what cannot be sent now.
    async fn start(&mut self, claimed: Vec<DueDelivery>, tasks: &mut JoinSet<()>) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut by_subscription: HashMap<SubscriptionId, Vec<DueDelivery>> = HashMap::new();
        for delivery in claimed {
            by_subscription
                .entry(delivery.subscription_id)
                .or_default()
                .push(delivery);
        }
        for (subscription, due) in by_subscription {
            let Some(target) = self.targets.get(&subscription).cloned() else {
                // Deleted since it matched: its deliveries went with it.
                continue;
            };
            if let Some(until) = self.on_probation(&target, now) {
                let sequences = due.iter().map(|d| d.sequence).collect();
                self.store.release_deliveries(subscription, sequences, until).await?;
                continue;
            }
            let mut busy = Vec::new();
            for batch in Self::batches(&target, due) {
                // A full endpoint keeps the batch waiting in memory, or gives it back for a
                // moment when too much waits: other endpoints go on. A full node waits for
                // a free slot: what it sends next is the same either way.
                let own = if self.waiting.is_waiting(subscription) {
                    None
                } else {
                    target.try_acquire()
                };
                let Some(own) = own else {
                    if let Err(batch) = self.waiting.push(subscription, batch) {
                        busy.extend(batch.iter().map(|d| d.sequence));
                    }
                    continue;
                };
                if !self.spawn_send(tasks, subscription, &target, batch, own).await {
                    return Ok(());
                }
            }
            if !busy.is_empty() {
                let later = now + chrono::Duration::from_std(BUSY_WAIT).unwrap_or_default();
                self.store.release_deliveries(subscription, busy, later).await?;
            }
        }
        Ok(())
    }

    /// Until when the target's endpoint is on probation, if it is now.
    fn on_probation(&self, target: &Target, now: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        target.endpoint.probation(&self.config.schedule, now)
    }

    /// Starts the waiting batches whose endpoints have a free slot again. Those of an
    /// endpoint put on probation meanwhile go back to the store until it ends, and those
    /// that waited a third of their lease go back at once, so that no lease runs out on a
    /// batch still waiting (another claim would send it twice).
    async fn start_waiting(&mut self, tasks: &mut JoinSet<()>) {
        let now = Utc::now();
        let too_old = tokio::time::Instant::now().checked_sub(self.config.lease / 3);
        for subscription in self.waiting.subscriptions() {
            let Some(target) = self.targets.get(&subscription).cloned() else {
                // Deleted meanwhile: its deliveries went with it.
                self.waiting.take_until(subscription, None);
                continue;
            };
            let probation = self.on_probation(&target, now);
            let given_back = match probation {
                Some(_) => self.waiting.take_until(subscription, None),
                None => too_old.map_or_else(Vec::new, |limit| self.waiting.take_until(subscription, Some(limit))),
            };
            if !given_back.is_empty() {
                let sequences = given_back.iter().map(|d| d.sequence).collect();
                let due = probation.unwrap_or(now);
                if let Err(error) = self.store.release_deliveries(subscription, sequences, due).await {
                    tracing::warn!(%error, "could not give back waiting deliveries; their leases will run out");
                }
            }
            while self.waiting.is_waiting(subscription) {
                let Some(own) = target.try_acquire() else {
                    break;
                };
                let batch = self.waiting.pop(subscription).expect("it waits");
                if !self.spawn_send(tasks, subscription, &target, batch, own).await {
                    return;
                }
            }
        }
    }

    /// Sends a batch in a task of its own once the node has a free slot; false when the
    /// dispatcher is closing.
    async fn spawn_send(
        &self,
        tasks: &mut JoinSet<()>,
        subscription: SubscriptionId,
        target: &Arc<Target>,
        batch: Vec<DueDelivery>,
        own: Slots,
    ) -> bool {
        let Ok(global) = self.slots.clone().acquire_owned().await else {
            return false;
        };
        let (records, http, config) = (self.records.clone(), self.http.clone(), self.config.clone());
        let permits = Permits {
            global: Some(global),
            parked: self.parked.clone(),
            _own: own,
        };
        tasks.spawn(send(
            records,
            http,
            config,
            subscription,
            target.clone(),
            batch,
            permits,
        ));
        true
    }

    /// Delivers until `shutdown`, then waits for the batches in flight to be recorded.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        loop {
            let mut rest = IDLE;
            while tasks.try_join_next().is_some() {}
            self.start_waiting(&mut tasks).await;
            let mut started = 0;
            // While much waits for endpoints, new work stays in the store (the fan-out
            // records it unclaimed when it cannot hand it over) until the waiting drains.
            while self.waiting.has_room()
                && let Ok(handed) = self.handed.try_recv()
            {
                started += handed.len();
                self.start_handed(handed, &mut tasks).await;
            }
            started += match self.dispatch(&mut tasks).await {
                Ok(claimed) => claimed,
                Err(StoreError::Closed) => break,
                Err(StoreError::Full(_)) => {
                    tracing::debug!("the store's disk is full; claims pause");
                    rest = FULL_PAUSE;
                    0
                }
                Err(error) => {
                    tracing::warn!(%error, "claiming deliveries failed; retrying");
                    0
                }
            };
            if started == 0 {
                // Nothing due, or every slot busy: rest until new deliveries come, a batch
                // finishes, or a moment passes.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(handed) = self.handed.recv(), if self.waiting.has_room() => self.start_handed(handed, &mut tasks).await,
                    _ = tasks.join_next(), if !tasks.is_empty() => {}
                    () = tokio::time::sleep(rest) => {}
                }
            } else if shutdown.is_cancelled() {
                break;
            }
        }
        while tasks.join_next().await.is_some() {}
        // What still waits for a slot goes back to the store, for the next claim.
        for subscription in self.waiting.subscriptions() {
            let sequences = self
                .waiting
                .take_until(subscription, None)
                .iter()
                .map(|d| d.sequence)
                .collect();
            if let Err(error) = self.store.release_deliveries(subscription, sequences, Utc::now()).await {
                tracing::warn!(%error, "could not give back waiting deliveries; their leases will run out");
            }
        }
        // Every attempt in flight has been queued; let the recorder write them and stop.
        let Dispatcher { records, recorder, .. } = self;
        drop(records);
        if let Some(recorder) = recorder
            && let Err(e) = recorder.await
        {
            tracing::error!(error = %e, "the attempt recorder failed");
        }
    }
}

/// Attempts recorded in one transaction, at most.
const RECORD_BATCH: usize = 512;
/// Finished attempts waiting to be recorded, at most (senders wait beyond it).
const RECORD_QUEUE: usize = 4096;

/// Writes finished attempts, as many per transaction as have queued up.
///
/// While the store's disk is full the attempts are kept and written again every
/// [`FULL_PAUSE`]: the queue fills, the senders wait for it, and delivery pauses with
/// every outcome known (dropping them would send the batches again after their leases).
async fn record_attempts(store: Arc<dyn Store>, mut pending: mpsc::Receiver<AttemptRecord>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while pending.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        record_until_room(&*store, &mut batch, &pending).await;
        batch.clear();
    }
}

/// Records `batch`, trying again while the disk is full, unless the dispatcher has
/// stopped (then the leases run out and the deliveries are sent again: at least once).
async fn record_until_room(store: &dyn Store, batch: &mut [AttemptRecord], pending: &mpsc::Receiver<AttemptRecord>) {
    loop {
        match store.record_attempts(batch.to_vec()).await {
            Ok(()) => return,
            Err(StoreError::Full(_)) if !pending.is_closed() => {
                tracing::debug!(attempts = batch.len(), "the store's disk is full; recording pauses");
                tokio::time::sleep(FULL_PAUSE).await;
            }
            Err(error) => {
                // The leases run out and the batches are tried again: at least once.
                tracing::warn!(%error, "could not record delivery attempts");
                return;
            }
        }
    }
}

/// The `dataVersion` of an Event Grid event, for `aeg-data-version`, without parsing the
/// rest of it.
fn data_version(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct DataVersion<'a> {
        #[serde(rename = "dataVersion", borrow, default)]
        data_version: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<DataVersion>(body)
        .map(|v| v.data_version.into_owned())
        .unwrap_or_default()
}

/// The slots an attempt holds until it is recorded.
struct Permits {
    /// Given back once the receiver is slow, if a parked place is free.
    global: Option<OwnedSemaphorePermit>,
    parked: Arc<Semaphore>,
    _own: Slots,
}

impl Permits {
    /// Swaps the node-wide slot for a parked place: a slow receiver holds only its own
    /// slots. Beyond the parked places, a slow attempt keeps its slot.
    fn park(&mut self) -> Option<OwnedSemaphorePermit> {
        let parked = self.parked.clone().try_acquire_owned().ok()?;
        self.global = None;
        Some(parked)
    }
}

/// Sends one batch and records the attempt; the permits are held until it is recorded.
async fn send(
    records: mpsc::Sender<AttemptRecord>,
    http: reqwest::Client,
    config: DispatcherConfig,
    subscription: SubscriptionId,
    target: Arc<Target>,
    batch: Vec<DueDelivery>,
    mut permits: Permits,
) {
    let schema = target.spec.event_delivery_schema;
    let attempts = batch.iter().map(|d| d.attempts).max().unwrap_or(0);
    let published = batch.iter().map(|d| d.published_at).min().unwrap_or_else(Utc::now);
    let data_version = match batch.first() {
        Some(first) if first.schema == EventSchema::EventGridSchema => data_version(&first.body),
        _ => String::new(),
    };
    let attempted_at = Utc::now();
    let sent = match batch_body(&batch, schema, &target.topic) {
        Ok(body) => {
            let mut secrets = vec![target.secret.clone()];
            secrets.extend(
                target
                    .previous
                    .iter()
                    .filter(|(_, until)| *until > attempted_at)
                    .map(|(s, _)| s.clone()),
            );
            let first = batch.first().map_or(0, |d| d.sequence);
            let last = batch.last().map_or(0, |d| d.sequence);
            let headers = Headers {
                subscription: &target.name,
                delivery_count: attempts,
                data_version: &data_version,
                message_id: format!("msg_{subscription}_{first}_{last}"),
                secrets,
            };
            let attempt = post(
                &http,
                config.addresses,
                &target.url,
                schema,
                headers,
                body,
                config.timeout,
            );
            tokio::pin!(attempt);
            tokio::select! {
                sent = &mut attempt => sent,
                () = tokio::time::sleep(config.slow_after) => {
                    let _parked = permits.park();
                    attempt.await
                }
            }
        }
        Err(e) => crate::webhook::Sent {
            result: mlgrid_core::retry::AttemptResult::Failed {
                error: format!("stored events cannot be converted: {e}"),
            },
            status: None,
            latency_ms: 0.0,
            excerpt: None,
        },
    };
    target.endpoint.observe(&sent.result, Utc::now());
    let random: f64 = rand::rng().random();
    let next = match next_step(
        &target.spec.retry_policy,
        &config.schedule,
        &sent.result,
        attempts + 1,
        published,
        Utc::now(),
        random,
    ) {
        NextStep::Done => AfterAttempt::Delivered,
        NextStep::RetryAt(at) => AfterAttempt::RetryAt(at),
        NextStep::DeadLetter(reason) => AfterAttempt::DeadLetter(reason.as_str().to_owned()),
    };
    let (outcome, error) = match &sent.result {
        mlgrid_core::retry::AttemptResult::Delivered => ("Delivered".to_owned(), None),
        mlgrid_core::retry::AttemptResult::Status { code, .. } => (format!("Http{code}"), None),
        mlgrid_core::retry::AttemptResult::Failed { error } => ("Failed".to_owned(), Some(error.clone())),
    };
    let events = batch.len() as u64;
    metrics::histogram!("mlgrid_delivery_attempt_seconds").record(sent.latency_ms / 1000.0);
    match &next {
        AfterAttempt::Delivered => metrics::counter!("mlgrid_events_delivered_total").increment(events),
        AfterAttempt::RetryAt(_) => metrics::counter!("mlgrid_delivery_failures_total").increment(events),
        AfterAttempt::DeadLetter(_) => {
            metrics::counter!("mlgrid_delivery_failures_total").increment(events);
            metrics::counter!("mlgrid_events_dead_lettered_total").increment(events);
        }
    }
    let record = AttemptRecord {
        subscription_id: subscription,
        sequences: batch.iter().map(|d| d.sequence).collect(),
        attempted_at,
        status_code: sent.status,
        latency_ms: sent.latency_ms,
        outcome,
        error,
        response_excerpt: sent.excerpt,
        next,
    };
    if records.send(record).await.is_err() {
        tracing::warn!(subscription = %target.name, "the attempt recorder stopped; the lease will run out and the batch be tried again");
    }
}

#[cfg(test)]
mod tests {
    use mlgrid_core::resource::SourceKind;
    use mlgrid_core::subscription::ProvisioningState;
    use mlgrid_store::{AfterAttempt, AttemptRecord, NewSource, SqliteStore, Store, SubscriptionPut};

    use super::{data_version, record_attempts};

    /// While the disk is full the recorder keeps the attempts it could not write (the
    /// deliveries were sent; dropping their outcomes would send them again after their
    /// leases) and writes them once there is room.
    #[tokio::test]
    async fn attempts_wait_for_room_on_a_full_disk_instead_of_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
        let topic = store
            .create_source(
                &NewSource {
                    kind: SourceKind::Topic,
                    name: "t".into(),
                    subscription_id: "s".into(),
                    resource_group: "rg".into(),
                    retention: Default::default(),
                },
                &[],
            )
            .await
            .unwrap();
        let put = SubscriptionPut {
            name: "sub".into(),
            spec: serde_json::from_str(
                r#"{"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://127.0.0.1/"}}}"#,
            )
            .unwrap(),
            provisioning_state: ProvisioningState::Succeeded,
            expires_at: None,
            secret_salt: "salt".into(),
        };
        let sub = store.put_subscription(topic.id, put, None).await.unwrap().0.id;
        store.set_max_page_count(1).await.unwrap();
        let (records, pending) = tokio::sync::mpsc::channel(super::RECORD_QUEUE);
        let recorder = tokio::spawn(record_attempts(store.clone(), pending));
        // More attempts than the pages in use have room for.
        for n in 1..=2000 {
            let attempt = AttemptRecord {
                subscription_id: sub,
                sequences: vec![n],
                attempted_at: chrono::Utc::now(),
                status_code: Some(200),
                latency_ms: 1.0,
                outcome: "Delivered".into(),
                error: Some("x".repeat(100)),
                response_excerpt: None,
                next: AfterAttempt::Delivered,
            };
            records.send(attempt).await.unwrap();
        }
        while store.storage().await.unwrap().full.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        store.set_max_page_count(1 << 30).await.unwrap();
        drop(records);
        recorder.await.unwrap();
        let attempts = store.delivery_attempts(sub, 5000).await.unwrap();
        assert_eq!(attempts.len(), 2000, "every attempt is recorded once there is room");
    }

    #[test]
    fn the_data_version_is_read_alone() {
        let event = r#"{"id":"1","data":{"nested":{"dataVersion":"no"}},"dataVersion":"2.0","subject":"s"}"#;
        assert_eq!(data_version(event), "2.0");
        assert_eq!(data_version(r#"{"dataVersion":"a\"b"}"#), "a\"b");
        assert_eq!(data_version(r#"{"id":"1"}"#), "");
        assert_eq!(data_version("not json"), "");
    }
}
