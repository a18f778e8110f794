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
//!   the schedule's runs not yet over (a tick that starts one counts for the next): it
//!   starts a run, is skipped, or is queued; queued ticks start, oldest first, when a
//!   pass finds the schedule below its limit.
//! - Ticks due together are recorded together: a page of due schedules at a time, its
//!   ticks in one write, the next page read meanwhile, this node's executor claiming no
//!   new step until the pass is over.
//! - Each tick is recorded by the store keyed by (schedule, fire time), with its run
//!   submitted in the same transaction and the schedule's next tick moved on: a tick
//!   starts at most one run, whichever nodes fire it and however often a pass is
//!   repeated after a crash; a crash before the commit leaves the tick due, to fire on
//!   the next pass. The lease only keeps nodes from doing the same work twice; the key
//!   is what guarantees it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mlgrid_core::schedule::{MisfirePolicy, OverlapDecision, OverlapPolicy, Schedule, missed};
use mlgrid_store::{
    FireOutcome, FireRecorded, NewFire, NewPipelineRun, NewTick, PipelineSchedule, PublishedPipeline, SourceId, Store,
    StoreError,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::ClaimHold;
use crate::leadership::Lease;
use crate::service::{PipelineError, Pipelines, Submission, Target, scheduled};

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
    /// Due schedules read at a time (a page), and most queued ticks one pass starts.
    pub batch: u32,
    /// Most ticks recorded in one write; a schedule's ticks are never split between two.
    pub chunk: usize,
    /// Chunks of a pass recorded at once: on PostgreSQL each is a transaction of its own
    /// on the pool; the embedded store's writer commits together the writes queued
    /// meanwhile.
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
            // 9,000 ticks due on the same second (`mlgrid bench schedules`, p99 of the
            // delay to their records): 96 s one tick to a write, each waiting for its
            // own commit; 9 s with 128 such writes side by side (about 19 statements a
            // tick); 1.0 - 1.2 s recording chunks of 128 with multi-row statements,
            // four at once; 0.72 - 0.95 s with a page's 500 in one chunk, the next page
            // read meanwhile, and the executor's claims held back during the pass
            // (1.07 s without that hold).
            batch: 500,
            chunk: 500,
            firing: 2,
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

    /// One pass at `now`: starts the queued ticks that have room, then fires every due
    /// schedule, reading them a page of [`SchedulerConfig::batch`] at a time. The ticks
    /// of a page are decided in memory (its schedules' runs not over counted once, each
    /// pipeline read once) and recorded in chunks of [`SchedulerConfig::chunk`] ticks,
    /// each chunk one write, a schedule's ticks in one chunk and in order; the next page
    /// is read while its chunks are written, at most [`SchedulerConfig::firing`] at
    /// once. Returns what it did, in the order the schedules fell due.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, StoreError> {
        let mut fired = self.start_queued().await?;
        let mut recording = VecDeque::new();
        // Held until the last chunk is written (see `fire_due`).
        let mut hold = None;
        let planned = self.fire_due(now, &mut recording, &mut fired, &mut hold).await;
        // Every chunk started is waited for, even after a failure: no write of this pass
        // outlives it.
        let mut recorded = Ok(());
        while let Some(chunk) = recording.pop_front() {
            match (joined(chunk).await, &recorded) {
                (Ok(more), Ok(())) => fired.extend(more),
                (Err(e), Ok(())) => recorded = Err(e),
                (_, Err(_)) => {}
            }
        }
        drop(hold);
        planned?;
        recorded?;
        Ok(fired)
    }

    /// Reads the due schedules page by page and starts recording their ticks, keeping
    /// at most [`SchedulerConfig::firing`] chunks in flight (the ones finished go to
    /// `fired`). From the first due schedule on, `hold` keeps this node's executor from
    /// claiming new steps: their runs' steps would compete with the ticks for the store,
    /// and a tick is late until it is recorded; the runs start once the pass is over.
    async fn fire_due(
        &self,
        now: DateTime<Utc>,
        recording: &mut VecDeque<JoinHandle<Result<Vec<Fired>, StoreError>>>,
        fired: &mut Vec<Fired>,
        hold: &mut Option<ClaimHold>,
    ) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let due = self.store.due_schedules(now, after, self.config.batch).await?;
            if !due.is_empty() && hold.is_none() {
                *hold = Some(self.pipelines.hold_executor());
            }
            let full = u32::try_from(due.len()).is_ok_and(|n| n >= self.config.batch);
            after = due.last().and_then(|last| Some((last.next_fire_at?, last.id.clone())));
            for chunk in self.chunks(due, now).await? {
                if recording.len() >= self.config.firing.max(1) {
                    let oldest = recording.pop_front().expect("the queue is full");
                    fired.extend(joined(oldest).await?);
                }
                let scheduler = self.clone();
                recording.push_back(tokio::spawn(async move { scheduler.record(chunk).await }));
            }
            if !full || after.is_none() {
                return Ok(());
            }
        }
    }

    /// The ticks of a page of due schedules, in chunks to record.
    async fn chunks(&self, due: Vec<PipelineSchedule>, now: DateTime<Utc>) -> Result<Vec<Vec<Firing>>, StoreError> {
        let mut planned = Vec::with_capacity(due.len());
        for schedule in due {
            if let Some(plan) = self.plan_of(&schedule, now).await? {
                planned.push((schedule, plan));
            }
        }
        let counted: Vec<String> = planned
            .iter()
            .filter(|(schedule, _)| schedule.concurrency.overlap_policy != OverlapPolicy::Allow)
            .map(|(schedule, _)| schedule.id.clone())
            .collect();
        let running = self.store.active_schedule_runs(&counted).await?;
        let mut pipelines = PassPipelines::default();
        let mut chunks: Vec<Vec<Firing>> = Vec::new();
        let mut in_chunk = 0;
        for (schedule, plan) in planned {
            let ticks = self
                .ticks(
                    &schedule,
                    &plan,
                    running.get(&schedule.id).copied().unwrap_or(0),
                    &mut pipelines,
                )
                .await?;
            if chunks.is_empty() || (in_chunk > 0 && in_chunk + ticks.len() > self.config.chunk) {
                chunks.push(Vec::new());
                in_chunk = 0;
            }
            in_chunk += ticks.len();
            let next = plan.next;
            chunks
                .last_mut()
                .expect("a chunk was pushed above")
                .push(Firing { schedule, next, ticks });
        }
        Ok(chunks)
    }

    /// Queued ticks whose schedule has room start, oldest first.
    async fn start_queued(&self) -> Result<Vec<Fired>, StoreError> {
        let queued = self.store.queued_fires(self.config.batch).await?;
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = queued.iter().map(|q| q.schedule.id.clone()).collect();
        let mut running = self.store.active_schedule_runs(&ids).await?;
        let mut started = Vec::new();
        for queued in queued {
            let schedule = &queued.schedule;
            let count = running.entry(schedule.id.clone()).or_insert(0);
            if schedule.concurrency.decide(*count) != OverlapDecision::Start {
                continue;
            }
            let target = Target::Pipeline(schedule.pipeline_id.clone());
            let submission = submission(schedule, queued.fire_time);
            let run = match self
                .pipelines
                .prepare_scheduled(schedule.workspace, target, submission)
                .await?
            {
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
                    *count += 1;
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

    /// The ticks of a due schedule to fire at `now`; `None` when none fires, after
    /// moving its next tick on.
    async fn plan_of(&self, schedule: &PipelineSchedule, now: DateTime<Utc>) -> Result<Option<Plan>, StoreError> {
        let (Some(recurrence), Some(due)) = (&schedule.recurrence, schedule.next_fire_at) else {
            return Ok(None);
        };
        let compiled = match recurrence.check(schedule.created_at) {
            Ok(compiled) => compiled,
            Err(e) => {
                // Checked when it was written; a newer mlgrid may check more. It stops
                // firing rather than firing by rules it breaks.
                tracing::error!(schedule = %schedule.name, error = %e, "a stored recurrence no longer checks; it stops firing");
                self.store.advance_schedule(&schedule.id, &schedule.etag, None).await?;
                return Ok(None);
            }
        };
        let plan = plan(&compiled, schedule.misfire, due, now, self.grace());
        if plan.ticks.is_empty() {
            self.store
                .advance_schedule(&schedule.id, &schedule.etag, plan.next)
                .await?;
            return Ok(None);
        }
        Ok(Some(plan))
    }

    /// Each tick of a plan as the overlap policy decides, with `running` of the
    /// schedule's runs not over before the first: a tick that starts a run counts for
    /// the ticks after it.
    async fn ticks(
        &self,
        schedule: &PipelineSchedule,
        plan: &Plan,
        mut running: u32,
        pipelines: &mut PassPipelines,
    ) -> Result<Vec<NewTick>, StoreError> {
        let limit = schedule.concurrency.max_concurrent;
        let mut ticks = Vec::with_capacity(plan.ticks.len());
        for (i, &tick) in plan.ticks.iter().enumerate() {
            let record = |outcome, reason: Option<String>| NewFire {
                schedule_id: schedule.id.clone(),
                fire_time: tick,
                outcome,
                reason,
                next_fire_at: plan.ticks.get(i + 1).copied().or(plan.next),
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
                OverlapDecision::Start => match self.prepare(schedule, tick, pipelines).await? {
                    Ok(run) => {
                        running = running.saturating_add(1);
                        (record(FireOutcome::Started, None), Some(run))
                    }
                    Err(reason) => (record(FireOutcome::Failed, Some(reason)), None),
                },
            };
            ticks.push(NewTick {
                workspace: schedule.workspace,
                fire,
                run,
            });
        }
        Ok(ticks)
    }

    /// Records a chunk of ticks in one write, and moves on each schedule whose last
    /// tick was recorded before.
    async fn record(&self, chunk: Vec<Firing>) -> Result<Vec<Fired>, StoreError> {
        let mut schedules = Vec::with_capacity(chunk.len());
        let mut ticks = Vec::new();
        for firing in chunk {
            schedules.push((firing.schedule, firing.next, firing.ticks.len()));
            ticks.extend(firing.ticks);
        }
        let mut recorded = self.store.record_fires(ticks).await?.into_iter();
        let mut fired = Vec::with_capacity(recorded.len());
        let mut started = false;
        for (schedule, next, length) in schedules {
            let of_schedule: Vec<FireRecorded> = recorded.by_ref().take(length).collect();
            for one in &of_schedule {
                started |= one.recorded && one.fire.outcome == FireOutcome::Started;
                if one.recorded && one.fire.outcome == FireOutcome::Failed {
                    tracing::warn!(schedule = %schedule.name, reason = ?one.fire.reason, "a tick could not start its run");
                }
            }
            // A last tick recorded before (by a node whose clock runs ahead, say) moved
            // nothing on now: move the schedule on, or the pass would find it due again
            // at once, and again.
            if of_schedule.last().is_some_and(|last| !last.recorded) {
                self.store.advance_schedule(&schedule.id, &schedule.etag, next).await?;
            }
            fired.extend(of_schedule.into_iter().map(|one| Fired {
                schedule_id: one.fire.schedule_id,
                fire_time: one.fire.fire_time,
                outcome: one.fire.outcome,
                run_id: one.fire.run_id,
                recorded: one.recorded,
            }));
        }
        if started {
            self.pipelines.wake_executor();
        }
        Ok(fired)
    }

    /// The run a tick starts, checked as any submission; `Err` says why it cannot start.
    async fn prepare(
        &self,
        schedule: &PipelineSchedule,
        tick: DateTime<Utc>,
        pipelines: &mut PassPipelines,
    ) -> Result<Result<NewPipelineRun, String>, StoreError> {
        let key = (schedule.workspace, schedule.pipeline_id.clone());
        if !pipelines.0.contains_key(&key) {
            let read = self.store.pipeline(schedule.workspace, &schedule.pipeline_id).await;
            let read = scheduled(read.map_err(PipelineError::Store))?;
            pipelines.0.insert(key.clone(), read);
        }
        match &pipelines.0[&key] {
            Ok(published) => {
                self.pipelines
                    .prepare_scheduled_from(schedule.workspace, published, submission(schedule, tick))
                    .await
            }
            Err(reason) => Ok(Err(reason.clone())),
        }
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
    /// ticks are queued.
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

/// What a chunk's write did; a panic in it goes on in the pass.
async fn joined(chunk: JoinHandle<Result<Vec<Fired>, StoreError>>) -> Result<Vec<Fired>, StoreError> {
    match chunk.await {
        Ok(recorded) => recorded,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Closed),
    }
}

/// A due schedule's ticks to record, and its next tick after them.
struct Firing {
    schedule: PipelineSchedule,
    next: Option<DateTime<Utc>>,
    ticks: Vec<NewTick>,
}

/// The pipelines a pass has read, by workspace and id (or why one could not be read).
#[derive(Default)]
struct PassPipelines(HashMap<(SourceId, String), Result<PublishedPipeline, String>>);

/// What a tick of `schedule` at `tick` submits.
fn submission(schedule: &PipelineSchedule, tick: DateTime<Utc>) -> Submission {
    Submission {
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
