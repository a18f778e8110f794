//! The dispatcher: claims due deliveries, sends them to their destinations in batches,
//! and records what each attempt did, following Event Grid's retry policy.
//!
//! Each batch is sent by its own task, bounded per subscription and per endpoint (the
//! receiver's origin, shared by every subscription to it, see [`endpoints`]) and
//! overall. An attempt without an answer after `slow_after` gives its node-wide slot
//! back (it keeps its endpoint's), so a slow or hung endpoint holds only its own slots
//! and never delays the others. A claimed
//! delivery is leased; if this node dies, the lease runs out and another claim picks it
//! up (at-least-once).

mod attempt;
mod batching;
mod endpoints;
mod recorder;
mod waiting;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlgrid_core::retry::RetrySchedule;
use mlgrid_store::{DueDelivery, Store, StoreError, SubscriptionId};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::attempt::{Attempts, Permits, Slots, Target};
use self::endpoints::Endpoints;
use self::waiting::Waiting;
use crate::address_guard::AddressPolicy;
use crate::catalog::Catalog;
use crate::clock::{SharedClock, system_clock};
use crate::destination::{self, Senders};
use crate::signature::WebhookSecrets;

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
    /// The time due dates, leases and probations go by.
    pub clock: SharedClock,
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
            clock: system_clock(),
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
/// How long a delivery given back for want of a free slot waits.
const BUSY_WAIT: Duration = Duration::from_millis(200);
/// Slow attempts that may give their node-wide slot back, per node-wide slot.
const PARKED_PER_SLOT: usize = 4;

pub struct Dispatcher {
    store: Arc<dyn Store>,
    /// The subscriptions, shared with the node's fan-out and exporter.
    catalog: Arc<Catalog>,
    config: DispatcherConfig,
    senders: Senders,
    targets: HashMap<SubscriptionId, Arc<Target>>,
    version: Option<u64>,
    endpoints: Endpoints,
    slots: Arc<Semaphore>,
    /// Node-wide slots given back by attempts whose receivers are slow, bounded.
    parked: Arc<Semaphore>,
    /// What every attempt shares, with where it goes to be recorded.
    attempts: Attempts,
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
        let (records, pending) = mpsc::channel(recorder::RECORD_QUEUE);
        let recorder = tokio::spawn(recorder::record_attempts(store.clone(), pending));
        let senders = Senders {
            http: crate::http::client(config.addresses, config.concurrency)?,
            addresses: config.addresses,
            timeout: config.timeout,
            secrets,
            pipelines: None,
        };
        let attempts = Attempts {
            records,
            schedule: config.schedule,
            slow_after: config.slow_after,
            clock: config.clock.clone(),
        };
        let (handoff, handed) = mpsc::channel(HANDOFF_PAGES);
        Ok(Dispatcher {
            catalog: Catalog::new(store.clone()),
            handed,
            handoff,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            parked: Arc::new(Semaphore::new(config.concurrency * PARKED_PER_SLOT)),
            endpoints: Endpoints::default(),
            store,
            config,
            senders,
            targets: HashMap::new(),
            version: None,
            attempts,
            recorder: Some(recorder),
            next_claim: tokio::time::Instant::now(),
            waiting: Waiting::default(),
        })
    }

    /// Reads the subscriptions from `catalog`, shared with other parts of the node.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Dispatcher {
        self.catalog = catalog;
        self
    }

    /// Starts pipeline runs for the subscriptions whose destination is a pipeline
    /// trigger; without it their events wait (and are retried) until a node has one.
    pub fn with_pipelines(mut self, launcher: Arc<dyn crate::PipelineLauncher>) -> Dispatcher {
        self.senders.pipelines = Some(launcher);
        self
    }

    /// Where the fan-out hands new deliveries straight to this dispatcher
    /// ([`crate::Fanout::with_handoff`]), with the lease they must be created claimed for.
    pub fn handoff(&self) -> (mpsc::Sender<Vec<DueDelivery>>, Duration) {
        (self.handoff.clone(), self.config.lease)
    }

    async fn refresh(&mut self) -> Result<(), StoreError> {
        let subscriptions = self.catalog.current().await?;
        if self.version == Some(subscriptions.version) {
            return Ok(());
        }
        let mut targets = HashMap::new();
        let mut endpoints = Endpoints::default();
        for subscription in &subscriptions.all {
            let topic = subscriptions.topic(subscription.source_id);
            let destination = match destination::for_subscription(subscription, &topic, &self.senders) {
                Ok(destination) => destination,
                Err(error) => {
                    tracing::error!(subscription = %subscription.name, %error, "skipping a subscription it cannot deliver to");
                    continue;
                }
            };
            // Keep the slots of a known subscription and endpoint: batches in flight use them.
            let known = self.targets.get(&subscription.id);
            let target = Target {
                endpoint: endpoints.get(&self.endpoints, destination.endpoint(), self.config.per_endpoint),
                name: subscription.name.clone(),
                spec: subscription.spec.clone(),
                destination,
                slots: known.map_or_else(
                    || Arc::new(Semaphore::new(self.config.per_subscription)),
                    |t| t.slots.clone(),
                ),
            };
            targets.insert(subscription.id, Arc::new(target));
        }
        self.targets = targets;
        self.endpoints = endpoints;
        self.version = Some(subscriptions.version);
        Ok(())
    }

    /// Claims what is due and starts sending it; returns how many deliveries it claimed.
    async fn dispatch(&mut self, tasks: &mut JoinSet<()>) -> Result<usize, StoreError> {
        if tokio::time::Instant::now() < self.next_claim || !self.waiting.has_room() {
            return Ok(0);
        }
        self.refresh().await?;
        let now = self.config.clock.now();
        let lease_until = now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        // Claim no more than the free slots can send: what cannot be sent now would only
        // be given back.
        let largest_batch = self
            .targets
            .values()
            .map(|t| batching::max_events(&t.spec.destination.properties))
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
        let now = self.config.clock.now();
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
            for batch in batching::batches(&target.spec.destination.properties, due) {
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
    fn on_probation(&self, target: &Target, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        target.endpoint.probation(&self.config.schedule, now)
    }

    /// Starts the waiting batches whose endpoints have a free slot again. Those of an
    /// endpoint put on probation meanwhile go back to the store until it ends, and those
    /// that waited a third of their lease go back at once, so that no lease runs out on a
    /// batch still waiting (another claim would send it twice).
    async fn start_waiting(&mut self, tasks: &mut JoinSet<()>) {
        let now = self.config.clock.now();
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
        let permits = Permits {
            global: Some(global),
            parked: self.parked.clone(),
            _own: own,
        };
        tasks.spawn(self.attempts.clone().run(subscription, target.clone(), batch, permits));
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
            let now = self.config.clock.now();
            if let Err(error) = self.store.release_deliveries(subscription, sequences, now).await {
                tracing::warn!(%error, "could not give back waiting deliveries; their leases will run out");
            }
        }
        // Every attempt in flight has been queued; let the recorder write them and stop.
        let Dispatcher { attempts, recorder, .. } = self;
        drop(attempts);
        if let Some(recorder) = recorder
            && let Err(e) = recorder.await
        {
            tracing::error!(error = %e, "the attempt recorder failed");
        }
    }
}
