//! The scheduler: fires the ticks of time schedules, on one node of a cluster at a time.
//!
//! The node holding the `scheduler` lease (renewed every [`SchedulerConfig::renew_every`],
//! so another node takes over within a lease term of a death) sleeps until the earliest
//! next tick of all schedules, one index lookup in the store, or until a schedule changes
//! on this node; never longer than the renewal period, which bounds how late a change
//! made on another node is seen. Idle, it wakes once per period: no walk over schedules.
//!
//! A pass ([`Scheduler::pass`], which tests drive with any instant as "now") handles
//! every due schedule:
//!
//! - Ticks at most [`SchedulerConfig::grace`] old are on time and all fire; older ones
//!   were slept through (the server was down) and the schedule's misfire policy (core's
//!   `missed`) picks which of them fire: none, the latest, or all up to 100.
//! - Each tick asks the overlap policy (core's `Concurrency::decide`) with the number of
//!   the schedule's runs not yet over: it starts a run, is skipped, or is queued; queued
//!   ticks start, oldest first, when a pass finds the schedule below its limit.
//! - Each tick is recorded by the store keyed by (schedule, fire time), with its run
//!   submitted in the same transaction and the schedule's next tick moved on: a tick
//!   starts at most one run, whichever nodes fire it and however often a pass is
//!   repeated after a crash; a crash before the commit leaves the tick due, to fire on
//!   the next pass. The lease only keeps nodes from doing the same work twice; the key
//!   is what guarantees it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use mlgrid_core::schedule::{MisfirePolicy, OverlapDecision, OverlapPolicy, Schedule, missed};
use mlgrid_store::{FireOutcome, NewFire, PipelineSchedule, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::leadership::Lease;
use crate::service::{Pipelines, Submission, Target};

/// The name of the lease that lets one node of a cluster fire schedules.
const LEASE: &str = "scheduler";

/// The run source of the runs a schedule starts (Azure ML's `RunSource` for them).
pub const RUN_SOURCE: &str = "Schedule";

/// How the scheduler paces itself.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// How long a lease taken or renewed runs: a dead holder's lease runs out after this.
    pub lease: Duration,
    /// How often the holder renews, and a node without it tries to take it.
    pub renew_every: Duration,
    /// How long a tick may be late and still count as on time rather than missed.
    pub grace: Duration,
    /// How often a pass runs while ticks are queued, to start them once runs end.
    pub queue_poll: Duration,
    /// Most schedules (and queued ticks) one pass handles; a fuller backlog is handled by
    /// passes that follow at once.
    pub batch: u32,
    /// Due schedules a pass fires at once. Each tick is a write of its own; side by side,
    /// the writes of many ticks share a commit (the embedded store's writer commits
    /// together the writes queued meanwhile) instead of each waiting for its own fsync.
    pub firing: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            // A dead holder is replaced within lease + renew_every: 40 s, under a minute.
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            // Longer than a takeover, so that the ticks of a node's death fire as on
            // time on its successor, whatever the misfire policy.
            grace: Duration::from_secs(90),
            queue_poll: Duration::from_secs(2),
            batch: 500,
            // 9,000 ticks due on the same minute (`mlgrid bench schedules`): the last
            // recorded 96 s late one at a time, each waiting for its own commit; 14 s late
            // 32 at a time, 9 s late 128 at a time. On PostgreSQL the pool (10
            // connections) bounds it lower.
            firing: 128,
        }
    }
}

/// Wakes the scheduler of this node, when a schedule changed.
#[derive(Clone, Default)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
}

impl SchedulerHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// What a pass did with one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub schedule_id: String,
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub run_id: Option<String>,
    /// `false` when the tick was recorded before (by another node, or an earlier pass).
    pub recorded: bool,
}

/// The ticks of a due schedule a pass fires, and its next tick after them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub ticks: Vec<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
}

/// The ticks to fire at `now` of a schedule whose next tick was `due`: those after
/// `now - grace` all fire (on time); the earlier ones were missed, and `misfire` picks
/// among them (under Latest, none when a tick is on time: that one is the latest).
/// Ascending, without repeats.
pub fn plan(
    schedule: &Schedule,
    misfire: MisfirePolicy,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: TimeDelta,
) -> Plan {
    let on_time_from = now - grace;
    let just_before = |at: DateTime<Utc>| at - TimeDelta::nanoseconds(1);
    let on_time: Vec<_> = schedule
        .fire_times(just_before(due.max(on_time_from)))
        .take_while(|&tick| tick <= now)
        .collect();
    // Under Latest, a tick on time is the latest: the missed ones add nothing to it.
    let latest_on_time = misfire == MisfirePolicy::Latest && !on_time.is_empty();
    let mut ticks = if due < on_time_from && !latest_on_time {
        missed(schedule, misfire, just_before(due), just_before(on_time_from))
    } else {
        Vec::new()
    };
    ticks.extend(on_time);
    Plan {
        ticks,
        next: schedule.next_after(now),
    }
}

/// Fires the ticks of time schedules.
#[derive(Clone)]
pub struct Scheduler {
    store: Arc<dyn Store>,
    pipelines: Pipelines,
    node: String,
    config: SchedulerConfig,
    handle: SchedulerHandle,
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, pipelines: Pipelines, node: impl Into<String>) -> Scheduler {
        Scheduler {
            store,
            pipelines,
            node: node.into(),
            config: SchedulerConfig::default(),
            handle: SchedulerHandle::default(),
        }
    }

    pub fn with_config(mut self, config: SchedulerConfig) -> Scheduler {
        self.config = config;
        self
    }

    /// What wakes this scheduler: give it to whatever changes schedules on this node.
    pub fn handle(&self) -> SchedulerHandle {
        self.handle.clone()
    }

    fn grace(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.grace).unwrap_or(TimeDelta::MAX)
    }

    /// One pass at `now`: starts the queued ticks that have room, then fires the due
    /// schedules (at most a batch of each), [`SchedulerConfig::firing`] of them at once;
    /// a schedule's own ticks fire one after the other. Returns what it did, in the
    /// order the schedules fell due.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, StoreError> {
        let mut fired = self.start_queued().await?;
        let due = self.store.due_schedules(now, self.config.batch).await?;
        let mut firing = futures::stream::iter(due)
            .map(|schedule| async move { self.fire_due(&schedule, now).await })
            .buffered(self.config.firing.max(1));
        while let Some(ticks) = firing.next().await {
            fired.extend(ticks?);
        }
        Ok(fired)
    }

    /// Queued ticks whose schedule has room start, oldest first.
    async fn start_queued(&self) -> Result<Vec<Fired>, StoreError> {
        let mut started = Vec::new();
        for queued in self.store.queued_fires(self.config.batch).await? {
            let schedule = &queued.schedule;
            let running = self.store.active_schedule_runs(&schedule.id).await?;
            if schedule.concurrency.decide(running) != OverlapDecision::Start {
                continue;
            }
            let run = match self.prepare(schedule, queued.fire_time).await? {
                Ok(run) => run,
                Err(reason) => {
                    tracing::warn!(schedule = %schedule.name, %reason, "a queued tick cannot start; it stays queued");
                    continue;
                }
            };
            let fire = self
                .store
                .start_queued_fire(schedule.workspace, &schedule.id, queued.fire_time, run)
                .await;
            match fire {
                Ok(Some(fire)) => {
                    self.pipelines.wake_executor();
                    started.push(Fired {
                        schedule_id: fire.schedule_id,
                        fire_time: fire.fire_time,
                        outcome: fire.outcome,
                        run_id: fire.run_id,
                        recorded: true,
                    });
                }
                Ok(None) => {}
                Err(StoreError::Conflict(reason) | StoreError::Invalid(reason) | StoreError::NotFound(reason)) => {
                    tracing::warn!(schedule = %schedule.name, %reason, "a queued tick cannot start; it stays queued");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(started)
    }

    /// Fires what is due of one schedule at `now` and moves its next tick on.
    async fn fire_due(&self, schedule: &PipelineSchedule, now: DateTime<Utc>) -> Result<Vec<Fired>, StoreError> {
        let (Some(recurrence), Some(due)) = (&schedule.recurrence, schedule.next_fire_at) else {
            return Ok(Vec::new());
        };
        let compiled = match recurrence.check(schedule.created_at) {
            Ok(compiled) => compiled,
            Err(e) => {
                // Checked when it was written; a newer mlgrid may check more. It stops
                // firing rather than firing by rules it breaks.
                tracing::error!(schedule = %schedule.name, error = %e, "a stored recurrence no longer checks; it stops firing");
                self.store.advance_schedule(&schedule.id, &schedule.etag, None).await?;
                return Ok(Vec::new());
            }
        };
        let plan = plan(&compiled, schedule.misfire, due, now, self.grace());
        if plan.ticks.is_empty() {
            self.store
                .advance_schedule(&schedule.id, &schedule.etag, plan.next)
                .await?;
            return Ok(Vec::new());
        }
        let mut fired = Vec::with_capacity(plan.ticks.len());
        for (i, &tick) in plan.ticks.iter().enumerate() {
            let next = plan.ticks.get(i + 1).copied().or(plan.next);
            fired.push(self.fire(schedule, tick, next).await?);
        }
        // A last tick recorded before (by a node whose clock runs ahead, say) moved
        // nothing on now: move the schedule on, or the pass would find it due again at
        // once, and again.
        if fired.last().is_some_and(|last| !last.recorded) {
            self.store
                .advance_schedule(&schedule.id, &schedule.etag, plan.next)
                .await?;
        }
        Ok(fired)
    }

    /// Fires one tick as the overlap policy decides, recording it with its next tick.
    async fn fire(
        &self,
        schedule: &PipelineSchedule,
        tick: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<Fired, StoreError> {
        // Allow starts whatever runs: no need to count them.
        let running = match schedule.concurrency.overlap_policy {
            OverlapPolicy::Allow => 0,
            _ => self.store.active_schedule_runs(&schedule.id).await?,
        };
        let limit = schedule.concurrency.max_concurrent;
        let record = |outcome, reason: Option<String>| NewFire {
            schedule_id: schedule.id.clone(),
            fire_time: tick,
            outcome,
            reason,
            next_fire_at: next,
            etag: schedule.etag.clone(),
        };
        let at_limit = || format!("{running} runs of the schedule are not over, its limit is {limit}");
        let (fire, run) = match schedule.concurrency.decide(running) {
            OverlapDecision::Skip => (
                record(FireOutcome::Skipped, Some(format!("skipped: {}", at_limit()))),
                None,
            ),
            OverlapDecision::Queue => (
                record(
                    FireOutcome::Queued,
                    Some(format!("queued until a run ends: {}", at_limit())),
                ),
                None,
            ),
            OverlapDecision::Start => match self.prepare(schedule, tick).await? {
                Ok(run) => (record(FireOutcome::Started, None), Some(run)),
                Err(reason) => (record(FireOutcome::Failed, Some(reason)), None),
            },
        };
        let started = run.is_some();
        let recorded = match self.store.record_fire(schedule.workspace, fire.clone(), run).await {
            Ok(recorded) => recorded,
            // Refused as a whole (the pipeline was disabled, say): the tick is recorded
            // as failed, with why.
            Err(StoreError::Conflict(reason) | StoreError::Invalid(reason) | StoreError::NotFound(reason))
                if started =>
            {
                let failed = NewFire {
                    outcome: FireOutcome::Failed,
                    reason: Some(reason),
                    ..fire
                };
                self.store.record_fire(schedule.workspace, failed, None).await?
            }
            Err(e) => return Err(e),
        };
        if started && recorded.recorded {
            self.pipelines.wake_executor();
        }
        if recorded.fire.outcome == FireOutcome::Failed && recorded.recorded {
            tracing::warn!(schedule = %schedule.name, reason = ?recorded.fire.reason, "a tick could not start its run");
        }
        Ok(Fired {
            schedule_id: recorded.fire.schedule_id,
            fire_time: recorded.fire.fire_time,
            outcome: recorded.fire.outcome,
            run_id: recorded.fire.run_id,
            recorded: recorded.recorded,
        })
    }

    /// The run a tick starts, checked as any submission; `Err` says why it cannot start.
    async fn prepare(
        &self,
        schedule: &PipelineSchedule,
        tick: DateTime<Utc>,
    ) -> Result<Result<mlgrid_store::NewPipelineRun, String>, StoreError> {
        let submission = Submission {
            experiment_name: schedule.experiment_name.clone(),
            parameters: schedule.parameters.clone(),
            run_source: RUN_SOURCE.to_owned(),
            description: Some(format!("schedule {} at {}", schedule.name, tick.to_rfc3339())),
            tags: [
                ("azureml.schedule".to_owned(), schedule.name.clone()),
                ("azureml.scheduledtime".to_owned(), tick.to_rfc3339()),
            ]
            .into(),
            continue_on_step_failure: schedule.continue_on_step_failure,
            idempotency_key: Some(format!("schedule:{}:{}", schedule.id, tick.to_rfc3339())),
            ..Submission::default()
        };
        let target = Target::Pipeline(schedule.pipeline_id.clone());
        self.pipelines
            .prepare_scheduled(schedule.workspace, target, submission)
            .await
    }

    /// Fires schedules until `stop`, while this node holds the scheduler lease.
    pub async fn run(self, stop: CancellationToken) {
        let lease = Lease {
            store: &*self.store,
            name: LEASE,
            node: &self.node,
            term: self.config.lease,
            renew_every: self.config.renew_every,
        };
        lease.hold(&self.handle.wake, stop, |now| self.pass_and_wait(now)).await;
    }

    /// A pass, then how long to wait for the next: until the earliest tick, sooner while
    /// ticks are queued, at once while a batch was full.
    async fn pass_and_wait(&self, now: DateTime<Utc>) -> Result<Duration, StoreError> {
        let fired = self.pass(now).await?;
        let fired_now = fired.iter().filter(|f| f.recorded).count();
        if fired_now > 0 {
            tracing::info!(ticks = fired_now, "schedules fired");
        }
        let mut wait = match self.store.earliest_fire().await? {
            Some(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => self.config.renew_every,
        };
        if !self.store.queued_fires(1).await?.is_empty() {
            wait = wait.min(self.config.queue_poll);
        }
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use mlgrid_core::schedule::Recurrence;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn every_minute() -> Schedule {
        let recurrence: Recurrence =
            serde_json::from_value(json!({"frequency": "Minute", "interval": 1, "startTime": "2026-01-01T00:00:00Z"}))
                .unwrap();
        recurrence.check(at("2026-01-01T00:00:00Z")).unwrap()
    }

    #[test]
    fn a_tick_on_time_fires_and_the_next_is_after_now() {
        let plan = plan(
            &every_minute(),
            MisfirePolicy::None,
            at("2026-01-01T00:05:00Z"),
            at("2026-01-01T00:05:00.3Z"),
            TimeDelta::seconds(90),
        );
        assert_eq!(plan.ticks, [at("2026-01-01T00:05:00Z")]);
        assert_eq!(plan.next, Some(at("2026-01-01T00:06:00Z")));
    }

    #[test]
    fn ticks_within_the_grace_fire_whatever_the_policy() {
        let plan = plan(
            &every_minute(),
            MisfirePolicy::None,
            at("2026-01-01T00:05:00Z"),
            at("2026-01-01T00:06:20Z"),
            TimeDelta::seconds(90),
        );
        assert_eq!(plan.ticks, [at("2026-01-01T00:05:00Z"), at("2026-01-01T00:06:00Z")]);
    }

    #[test]
    fn ticks_slept_through_follow_the_misfire_policy() {
        let (due, now) = (at("2026-01-01T00:05:00Z"), at("2026-01-01T01:00:30Z"));
        let grace = TimeDelta::seconds(90);
        let on_time = [at("2026-01-01T00:59:00Z"), at("2026-01-01T01:00:00Z")];
        let none = plan(&every_minute(), MisfirePolicy::None, due, now, grace);
        assert_eq!(none.ticks, on_time);
        let latest = plan(&every_minute(), MisfirePolicy::Latest, due, now, grace);
        assert_eq!(latest.ticks, on_time);
        let hourly: Recurrence =
            serde_json::from_value(json!({"frequency": "Hour", "interval": 1, "startTime": "2026-01-01T00:00:00Z"}))
                .unwrap();
        let hourly = hourly.check(at("2026-01-01T00:00:00Z")).unwrap();
        let slept = plan(
            &hourly,
            MisfirePolicy::Latest,
            at("2026-01-01T01:00:00Z"),
            at("2026-01-01T05:30:00Z"),
            grace,
        );
        assert_eq!(slept.ticks, [at("2026-01-01T05:00:00Z")]);
        assert_eq!(slept.next, Some(at("2026-01-01T06:00:00Z")));
        let all = plan(&every_minute(), MisfirePolicy::All, due, now, grace);
        assert_eq!(all.ticks.len(), 56);
        assert_eq!(all.ticks[0], due);
        assert_eq!(all.next, Some(at("2026-01-01T01:01:00Z")));
    }
}
