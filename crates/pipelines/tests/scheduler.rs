//! The scheduler driven by an injected clock: every pass is given its "now", so a day of
//! ticks, an outage or a clock change takes no time. No executor runs, so the runs a
//! schedule starts stay queued (not over) until a test cancels them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, OverlapPolicy, Recurrence};
use mlgrid_pipelines::{
    DataLayout, DatastoreRegistry, Definitions, EndpointGuard, Executor, ExecutorConfig, LocalProcessRunner, Pipelines,
    ScheduleChange, ScheduleSpec, Scheduler, SchedulerConfig, Schedules, SecretKey, WatcherHandle,
};
use mlgrid_store::{FireOutcome, NewSource, ScheduleStatus, SourceId, SqliteStore, Store};
use serde_json::json;

const PIPELINE: &str = r#"
name: nightly
parameters:
  epochs: {type: int, default: 3}
steps:
  - name: train
    command: ["true"]
"#;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// These tests register no remote datastore: every endpoint is refused.
struct NoEndpoints;

#[async_trait::async_trait]
impl EndpointGuard for NoEndpoints {
    async fn check(&self, _url: &str) -> Result<(), String> {
        Err("no endpoints in these tests".into())
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    ws: SourceId,
    pipeline_id: String,
    schedules: Schedules,
    scheduler: Scheduler,
}

async fn world() -> World {
    world_with(SchedulerConfig::default()).await
}

async fn world_with(config: SchedulerConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
    let ws = store
        .create_source(
            &NewSource {
                kind: mlgrid_core::resource::SourceKind::Workspace,
                name: "ws".into(),
                subscription_id: "sub".into(),
                resource_group: "rg".into(),
                retention: Default::default(),
            },
            &[],
        )
        .await
        .unwrap()
        .id;
    let layout = DataLayout::new(dir.path());
    let definitions = Definitions::default();
    let datastores = DatastoreRegistry::new(
        store.clone(),
        layout.clone(),
        SecretKey::new([7; 32]),
        Arc::new(NoEndpoints),
    );
    let executor = Executor::new(
        store.clone(),
        Arc::new(LocalProcessRunner),
        layout.clone(),
        datastores.clone(),
        definitions.clone(),
        ExecutorConfig::default(),
    );
    let pipelines = Pipelines::new(store.clone(), layout, datastores, definitions, executor.handle());
    let pipeline_id = pipelines.publish(ws, PIPELINE, None).await.unwrap().id;
    let scheduler = Scheduler::new(store.clone(), pipelines.clone(), "node-a").with_config(config);
    let schedules = Schedules::new(store.clone(), pipelines, scheduler.handle(), WatcherHandle::default());
    World {
        _dir: dir,
        store,
        ws,
        pipeline_id,
        schedules,
        scheduler,
    }
}

impl World {
    async fn create(
        &self,
        name: &str,
        recurrence: serde_json::Value,
        misfire: MisfirePolicy,
        overlap: OverlapPolicy,
        created: &str,
    ) {
        let spec = ScheduleSpec {
            pipeline_id: self.pipeline_id.clone(),
            experiment_name: "scheduled".into(),
            recurrence: Some(serde_json::from_value::<Recurrence>(recurrence).unwrap()),
            watch: None,
            parameters: [("epochs".to_owned(), json!(5))].into(),
            continue_on_step_failure: false,
            status: ScheduleStatus::Active,
            misfire,
            concurrency: Concurrency {
                overlap_policy: overlap,
                max_concurrent: 1.try_into().unwrap(),
            },
        };
        self.schedules.create(self.ws, name, spec, at(created)).await.unwrap();
    }

    /// (fire time, outcome) of every tick of the schedule, oldest first.
    async fn fires(&self, name: &str) -> Vec<(DateTime<Utc>, FireOutcome)> {
        let mut fires: Vec<_> = self
            .schedules
            .fires(self.ws, name, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.fire_time, f.outcome))
            .collect();
        fires.reverse();
        fires
    }

    /// Ends every run the schedule started.
    async fn end_runs(&self, name: &str) {
        for fire in self.schedules.fires(self.ws, name, 1000).await.unwrap() {
            if let Some(run_id) = fire.run_id {
                let _ = self.store.cancel_pipeline_run(self.ws, &run_id, "test", None).await;
            }
        }
    }
}

fn hourly_from_midnight() -> serde_json::Value {
    json!({"frequency": "Hour", "interval": 1, "startTime": "2026-01-01T00:00:00Z"})
}

#[tokio::test]
async fn after_an_outage_none_fires_nothing_latest_the_last_tick_all_every_tick() {
    let world = world().await;
    for (name, misfire) in [
        ("none", MisfirePolicy::None),
        ("latest", MisfirePolicy::Latest),
        ("all", MisfirePolicy::All),
    ] {
        world
            .create(
                name,
                hourly_from_midnight(),
                misfire,
                OverlapPolicy::Allow,
                "2025-12-31T23:30:00Z",
            )
            .await;
    }
    // Down from before midnight until 05:30: six ticks missed, none on time.
    world.scheduler.pass(at("2026-01-01T05:30:00Z")).await.unwrap();
    assert_eq!(world.fires("none").await, []);
    assert_eq!(
        world.fires("latest").await,
        [(at("2026-01-01T05:00:00Z"), FireOutcome::Started)]
    );
    let all = world.fires("all").await;
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|(_, outcome)| *outcome == FireOutcome::Started));
    assert_eq!(all[0].0, at("2026-01-01T00:00:00Z"));
    for name in ["none", "latest", "all"] {
        let schedule = world.schedules.get(world.ws, name).await.unwrap();
        assert_eq!(schedule.next_fire_at, Some(at("2026-01-01T06:00:00Z")), "{name}");
    }
    // Back on time: each fires its next tick, once however many passes run.
    world.scheduler.pass(at("2026-01-01T06:00:00.2Z")).await.unwrap();
    world.scheduler.pass(at("2026-01-01T06:00:00.4Z")).await.unwrap();
    assert_eq!(
        world.fires("none").await,
        [(at("2026-01-01T06:00:00Z"), FireOutcome::Started)]
    );
    assert_eq!(world.fires("all").await.len(), 7);
}

#[tokio::test]
async fn due_schedules_read_in_pages_and_recorded_in_chunks_fire_once_each() {
    // Pages of 3 schedules, chunks of 2 ticks, 2 chunks in flight: 7 schedules due, one
    // of them with 6 ticks missed that all fire (a chunk of its own, never split).
    let world = world_with(SchedulerConfig {
        batch: 3,
        chunk: 2,
        firing: 2,
        ..SchedulerConfig::default()
    })
    .await;
    for n in 0..6 {
        world
            .create(
                &format!("s{n}"),
                hourly_from_midnight(),
                MisfirePolicy::Latest,
                OverlapPolicy::Allow,
                "2025-12-31T23:30:00Z",
            )
            .await;
    }
    world
        .create(
            "all",
            hourly_from_midnight(),
            MisfirePolicy::All,
            OverlapPolicy::Allow,
            "2025-12-31T23:30:00Z",
        )
        .await;
    let fired = world.scheduler.pass(at("2026-01-01T05:30:00Z")).await.unwrap();
    assert_eq!(fired.len(), 12);
    assert!(fired.iter().all(|f| f.recorded && f.outcome == FireOutcome::Started));
    let mut per_schedule = std::collections::HashMap::<&str, Vec<DateTime<Utc>>>::new();
    for f in &fired {
        per_schedule
            .entry(f.schedule_id.as_str())
            .or_default()
            .push(f.fire_time);
    }
    assert_eq!(per_schedule.len(), 7);
    assert!(
        per_schedule.values().any(|ticks| ticks.len() == 6 && ticks.is_sorted()),
        "a schedule's ticks fire in order"
    );
    for n in 0..6 {
        assert_eq!(
            world.fires(&format!("s{n}")).await,
            [(at("2026-01-01T05:00:00Z"), FireOutcome::Started)]
        );
    }
    assert_eq!(world.fires("all").await.len(), 6);
    assert!(
        world
            .scheduler
            .pass(at("2026-01-01T05:30:01Z"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn overlapping_ticks_are_skipped_queued_or_allowed() {
    let world = world().await;
    let minutely = json!({"frequency": "Minute", "interval": 1, "startTime": "2026-01-01T00:00:00Z"});
    for (name, overlap) in [
        ("skip", OverlapPolicy::Skip),
        ("queue", OverlapPolicy::Queue),
        ("allow", OverlapPolicy::Allow),
    ] {
        world
            .create(
                name,
                minutely.clone(),
                MisfirePolicy::Latest,
                overlap,
                "2026-01-01T00:00:30Z",
            )
            .await;
    }
    world.scheduler.pass(at("2026-01-01T00:01:00Z")).await.unwrap();
    world.scheduler.pass(at("2026-01-01T00:02:00Z")).await.unwrap();
    let (first, second) = (at("2026-01-01T00:01:00Z"), at("2026-01-01T00:02:00Z"));
    assert_eq!(
        world.fires("skip").await,
        [(first, FireOutcome::Started), (second, FireOutcome::Skipped)]
    );
    assert_eq!(
        world.fires("queue").await,
        [(first, FireOutcome::Started), (second, FireOutcome::Queued)]
    );
    assert_eq!(
        world.fires("allow").await,
        [(first, FireOutcome::Started), (second, FireOutcome::Started)]
    );
    let skipped = &world.schedules.fires(world.ws, "skip", 1).await.unwrap()[0];
    assert!(
        skipped
            .reason
            .as_deref()
            .unwrap()
            .contains("1 runs of the schedule are not over, its limit is 1"),
        "{skipped:?}"
    );

    // The queued tick waits for the run to end, then starts once.
    world.scheduler.pass(at("2026-01-01T00:02:10Z")).await.unwrap();
    assert_eq!(world.fires("queue").await[1].1, FireOutcome::Queued);
    world.end_runs("queue").await;
    world.scheduler.pass(at("2026-01-01T00:02:20Z")).await.unwrap();
    world.scheduler.pass(at("2026-01-01T00:02:30Z")).await.unwrap();
    assert_eq!(
        world.fires("queue").await,
        [(first, FireOutcome::Started), (second, FireOutcome::Started)]
    );
    let queue = world.schedules.get(world.ws, "queue").await.unwrap();
    let fires = world.schedules.fires(world.ws, "queue", 10).await.unwrap();
    assert_eq!(queue.last_run_id, fires[0].run_id);
}

#[tokio::test]
async fn a_run_gets_the_schedules_parameters_and_a_key_per_tick() {
    let world = world().await;
    let minutely = json!({"frequency": "Minute", "interval": 1});
    world
        .create(
            "m",
            minutely,
            MisfirePolicy::Latest,
            OverlapPolicy::Allow,
            "2026-01-01T00:00:30Z",
        )
        .await;
    let fired = world.scheduler.pass(at("2026-01-01T00:01:00Z")).await.unwrap();
    assert_eq!(fired.len(), 1);
    let run = world
        .store
        .pipeline_run(world.ws, fired[0].run_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(run.parameters["epochs"], 5);
    assert_eq!(run.run.experiment_name, "scheduled");
    assert_eq!(run.run.properties["azureml.runsource"], "Schedule");
    // A second node passing at the same instant finds nothing due.
    assert!(
        world
            .scheduler
            .clone()
            .pass(at("2026-01-01T00:01:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_daily_schedule_fires_once_on_the_days_the_clock_changes() {
    let world = world().await;
    let daily = json!({
        "frequency": "Day", "interval": 1, "hours": [2], "minutes": [30],
        "timeZone": "Europe/Berlin", "startTime": "2026-03-27T00:00:00+01:00",
    });
    world
        .create(
            "dst",
            daily,
            MisfirePolicy::None,
            OverlapPolicy::Allow,
            "2026-03-26T12:00:00Z",
        )
        .await;
    let upcoming = world
        .schedules
        .upcoming(world.ws, "dst", 3, at("2026-03-26T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(upcoming.zone, chrono_tz::Europe::Berlin);
    // 02:30 does not exist on the 29th: it fires when the clock lands, at 03:00 CEST.
    assert_eq!(
        upcoming.times,
        [
            at("2026-03-27T01:30:00Z"),
            at("2026-03-28T01:30:00Z"),
            at("2026-03-29T01:00:00Z")
        ]
    );
    for tick in &upcoming.times {
        world.scheduler.pass(*tick).await.unwrap();
        world.end_runs("dst").await;
    }
    let fired: Vec<_> = world.fires("dst").await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(fired, upcoming.times);
    let next = world.schedules.get(world.ws, "dst").await.unwrap().next_fire_at;
    assert_eq!(next, Some(at("2026-03-30T00:30:00Z")));
}

#[tokio::test]
async fn a_disabled_schedule_does_not_fire_and_enabling_it_skips_what_it_slept_through() {
    let world = world().await;
    world
        .create(
            "h",
            hourly_from_midnight(),
            MisfirePolicy::All,
            OverlapPolicy::Allow,
            "2025-12-31T23:00:00Z",
        )
        .await;
    let off = ScheduleChange {
        status: Some(ScheduleStatus::Disabled),
        ..ScheduleChange::default()
    };
    world
        .schedules
        .update(world.ws, "h", off, None, at("2025-12-31T23:30:00Z"))
        .await
        .unwrap();
    world.scheduler.pass(at("2026-01-01T03:00:00Z")).await.unwrap();
    assert_eq!(world.fires("h").await, []);
    let on = ScheduleChange {
        status: Some(ScheduleStatus::Active),
        ..ScheduleChange::default()
    };
    let enabled = world
        .schedules
        .update(world.ws, "h", on, None, at("2026-01-01T03:10:00Z"))
        .await
        .unwrap();
    assert_eq!(enabled.next_fire_at, Some(at("2026-01-01T04:00:00Z")));
    world.scheduler.pass(at("2026-01-01T03:59:59Z")).await.unwrap();
    assert_eq!(world.fires("h").await, []);
}

#[tokio::test]
async fn a_tick_recorded_before_starts_nothing_and_the_schedule_moves_on() {
    let world = world().await;
    let minutely = json!({"frequency": "Minute", "interval": 1, "startTime": "2026-01-01T00:00:00Z"});
    world
        .create(
            "m",
            minutely,
            MisfirePolicy::Latest,
            OverlapPolicy::Allow,
            "2026-01-01T00:00:30Z",
        )
        .await;
    let schedule = world.schedules.get(world.ws, "m").await.unwrap();
    // Another node recorded the tick, as a crash after its commit would leave it, but
    // the schedule still names it as next (its etag changed meanwhile).
    let tick = at("2026-01-01T00:01:00Z");
    world
        .store
        .record_fires(vec![mlgrid_store::NewTick {
            workspace: world.ws,
            fire: mlgrid_store::NewFire {
                schedule_id: schedule.id.clone(),
                fire_time: tick,
                outcome: FireOutcome::Skipped,
                reason: Some("recorded elsewhere".into()),
                next_fire_at: None,
                etag: "\"another\"".into(),
            },
            run: None,
        }])
        .await
        .unwrap();
    let fired = world.scheduler.pass(at("2026-01-01T00:01:00.5Z")).await.unwrap();
    assert_eq!(fired.len(), 1);
    assert!(!fired[0].recorded);
    assert_eq!(world.fires("m").await, [(tick, FireOutcome::Skipped)]);
    let after = world.schedules.get(world.ws, "m").await.unwrap();
    assert_eq!(after.next_fire_at, Some(at("2026-01-01T00:02:00Z")));
    assert!(
        world
            .scheduler
            .pass(at("2026-01-01T00:01:00.6Z"))
            .await
            .unwrap()
            .is_empty()
    );
}
