//! Pruning: what the retentions allow to go, removed in small batches.
//!
//! A pass walks every source: the oldest events past its pruned mark are judged with
//! core's retention rule, and the store deletes them a batch (one short transaction) at a
//! time, with a pause between batches so that publishing and delivery never wait long
//! behind it. Delivered deliveries, dead letters and attempts go by age the same way. The
//! background task runs a pass every `every`; in a cluster one node at a time does (a
//! lease), and `POST /v1/prune` runs one now, or says what it would remove.
//!
//! The record of schedules' ticks goes by count, not age: each schedule keeps its latest
//! [`RetentionConfig::schedule_fires`]. The background task walks on through the
//! schedules, [`FIRE_SCHEDULES_PER_PASS`] of them after each pass, so no pass reads
//! every schedule's record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::retention::{
    DEFAULT_DEAD_LETTER_RETENTION, DEFAULT_DELIVERY_RETENTION, DEFAULT_EVENT_RETENTION, RetentionSpan, prunable_through,
};
use mlgrid_store::{HistoryCounts, HistoryCutoffs, SourceId, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// The name of the lease that lets one node of a cluster prune at a time.
const LEASE: &str = "prune";

/// How long things are kept, and how pruning paces itself.
#[derive(Debug, Clone, Copy)]
pub struct RetentionConfig {
    /// Events of sources without a retention time of their own.
    pub events: RetentionSpan,
    /// Delivered deliveries and delivery attempts.
    pub deliveries: RetentionSpan,
    /// Dead letters not purged before.
    pub dead_letters: RetentionSpan,
    /// Time between background passes.
    pub every: Duration,
    /// Rows per batch (one transaction).
    pub batch: u32,
    /// Pause between batches, leaving the database to publishing and delivery.
    pub pause: Duration,
    /// Ticks each schedule keeps on record (besides queued ones, and started ones whose
    /// run is not over); older ones are pruned.
    pub schedule_fires: u32,
}

/// Ticks a schedule keeps on record unless `serve --schedule-fires-kept` says otherwise:
/// 16 hours of a schedule firing every minute, more than `schedule runs` lists.
pub const DEFAULT_SCHEDULE_FIRES: u32 = 1000;

/// Schedules whose record of ticks a background pass prunes. Finding where each one's
/// kept ticks end steps through them (1,000 by default), so 100 schedules is a batch of
/// tens of milliseconds at most; with a pass every 10 s, 10,000 schedules are walked in
/// 17 minutes, in which one firing every minute gains 17 ticks over what it keeps.
pub const FIRE_SCHEDULES_PER_PASS: u32 = 100;

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            events: DEFAULT_EVENT_RETENTION,
            deliveries: DEFAULT_DELIVERY_RETENTION,
            dead_letters: DEFAULT_DEAD_LETTER_RETENTION,
            // Often, so that each pass removes a few seconds' worth instead of a burst of
            // a minute's: at 20,000 deliveries/s a minute's rows made delivery fall behind.
            every: Duration::from_secs(10),
            // 5,000 rows: tens of milliseconds of one write on either backend, and enough
            // per batch to remove rows faster than 20,000 deliveries/s add them.
            batch: 5000,
            pause: Duration::from_millis(20),
            schedule_fires: DEFAULT_SCHEDULE_FIRES,
        }
    }
}

/// What a pass removed (or would remove) from one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePruned {
    pub kind: Option<SourceKind>,
    pub name: String,
    pub events: u64,
    /// Bytes of the events' bodies.
    pub bytes: u64,
    pub history: HistoryCounts,
}

/// Runs pruning passes over a store.
#[derive(Clone)]
pub struct Pruner {
    store: Arc<dyn Store>,
    config: RetentionConfig,
    node: String,
}

impl Pruner {
    pub fn new(store: Arc<dyn Store>, config: RetentionConfig, node: impl Into<String>) -> Pruner {
        Pruner {
            store,
            config,
            node: node.into(),
        }
    }

    /// One pass over every source; with `dry_run`, removes nothing and says what would
    /// go. Sources with nothing to remove are left out. A dry run counts events held by a
    /// delivery (pending or dead-lettered) among those that would go: they go later.
    pub async fn pass(&self, dry_run: bool) -> Result<Vec<SourcePruned>, StoreError> {
        let mut report: BTreeMap<SourceId, SourcePruned> = BTreeMap::new();
        for kind in [SourceKind::Workspace, SourceKind::Topic] {
            for source in self.store.list_sources(kind).await? {
                let (events, bytes) = match self.prune_log(source.id, &source.retention, dry_run).await {
                    Ok(pruned) => pruned,
                    // Deleted meanwhile: nothing left to prune.
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                report.insert(
                    source.id,
                    SourcePruned {
                        kind: Some(kind),
                        name: source.name,
                        events,
                        bytes,
                        history: HistoryCounts::default(),
                    },
                );
            }
        }
        let now = Utc::now();
        let cutoffs = HistoryCutoffs {
            delivered_before: self.config.deliveries.cutoff(now),
            dead_before: self.config.dead_letters.cutoff(now),
            attempts_before: self.config.deliveries.cutoff(now),
        };
        if dry_run {
            for (source, counts) in self.store.prunable_history(cutoffs).await? {
                report.entry(source).or_default().history.add(counts);
            }
        } else {
            loop {
                let batch = self.store.prune_history(cutoffs, self.config.batch).await?;
                let full = batch.iter().fold(HistoryCounts::default(), |mut all, (_, c)| {
                    all.add(*c);
                    all
                });
                for (source, counts) in batch {
                    report.entry(source).or_default().history.add(counts);
                }
                let limit = u64::from(self.config.batch);
                if full.deliveries < limit && full.dead_letters < limit && full.attempts < limit {
                    break;
                }
                tokio::time::sleep(self.config.pause).await;
            }
        }
        Ok(report
            .into_values()
            .filter(|s| s.kind.is_some() && (s.events > 0 || s.history != HistoryCounts::default()))
            .collect())
    }

    /// Prunes one source's log batch by batch; returns the events and bytes removed (or
    /// that would be).
    async fn prune_log(
        &self,
        source: SourceId,
        retention: &mlgrid_store::SourceRetention,
        dry_run: bool,
    ) -> Result<(u64, u64), StoreError> {
        let retention = retention.resolve(self.config.events);
        let (mut events, mut bytes) = (0, 0);
        let mut after = 0;
        let mut excess = None;
        loop {
            let head = self.store.log_head(source, after, self.config.batch).await?;
            let mut limits = retention.limits(Utc::now(), head.stored_bytes);
            // The size is judged once per pass, then counted down as events go.
            let left = *excess.get_or_insert(limits.excess_bytes);
            limits.excess_bytes = left;
            let prunable = prunable_through(&head.entries, &limits, head.routed_through);
            excess = Some(left.saturating_sub(prunable.bytes));
            let full = prunable.events == self.config.batch as u64;
            if dry_run {
                events += prunable.events;
                bytes += prunable.bytes;
                match prunable.through {
                    Some(through) if full => after = through,
                    _ => return Ok((events, bytes)),
                }
                continue;
            }
            // Even with nothing new to prune, events below the mark that deliveries held
            // may have been let go (delivered, purged, dead letters pruned).
            if prunable.through.is_none() && head.pruned_through == 0 {
                return Ok((events, bytes));
            }
            let through = prunable.through.unwrap_or(head.pruned_through);
            let pruned = self.store.prune_events(source, through, self.config.batch).await?;
            events += pruned.events;
            bytes += pruned.bytes;
            if !full && pruned.events < self.config.batch as u64 {
                return Ok((events, bytes));
            }
            tokio::time::sleep(self.config.pause).await;
        }
    }

    /// Runs a pass every `every` until `stop`; in a cluster, only the node holding the
    /// prune lease does.
    pub async fn run(self, stop: CancellationToken) {
        // The last schedule whose ticks were pruned: the walk goes on from there.
        let mut walked_to = String::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.every) => {}
            }
            let now = Utc::now();
            let hold = chrono::Duration::from_std(self.config.every * 3).unwrap_or(chrono::Duration::MAX);
            match self.store.acquire_lease(LEASE, &self.node, now, now + hold).await {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning skipped: cannot take its lease");
                    continue;
                }
            }
            let pass = tokio::select! {
                () = stop.cancelled() => return,
                pass = self.pass(false) => pass,
            };
            match pass {
                Ok(pruned) => {
                    let events: u64 = pruned.iter().map(|s| s.events).sum();
                    let bytes: u64 = pruned.iter().map(|s| s.bytes).sum();
                    metrics::counter!("mlgrid_pruned_events_total").increment(events);
                    if !pruned.is_empty() {
                        tracing::info!(events, bytes, sources = pruned.len(), "pruned what retention let go");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pruning pass failed; the next one tries again"),
            }
            let fires = tokio::select! {
                () = stop.cancelled() => return,
                fires = self.prune_fires(&mut walked_to) => fires,
            };
            match fires {
                Ok(0) => {}
                Ok(fires) => {
                    metrics::counter!("mlgrid_pruned_schedule_fires_total").increment(fires);
                    tracing::info!(fires, "pruned the record of old schedule ticks");
                }
                Err(e) => tracing::warn!(error = %e, "pruning schedule ticks failed; the next pass tries again"),
            }
        }
    }

    /// Prunes the record of ticks of the next [`FIRE_SCHEDULES_PER_PASS`] schedules
    /// after `walked_to`, and moves it on (back to the start after the last schedule).
    /// A batch that hit the row limit is repeated, after a pause, until the schedules
    /// keep no more than they should. Returns the ticks deleted.
    async fn prune_fires(&self, walked_to: &mut String) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let batch = self
                .store
                .prune_fires(
                    walked_to,
                    FIRE_SCHEDULES_PER_PASS,
                    self.config.schedule_fires,
                    self.config.batch,
                )
                .await?;
            deleted += batch.fires;
            if batch.fires < u64::from(self.config.batch) {
                *walked_to = batch.walked_to.unwrap_or_default();
                return Ok(deleted);
            }
            tokio::time::sleep(self.config.pause).await;
        }
    }
}
