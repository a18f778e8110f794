//! Schedules of pipelines and the ticks they fire: the cases every backend passes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, OverlapPolicy, Recurrence};
use mlgrid_store::*;

use super::{published, step, submission};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub fn new_schedule(name: &str, pipeline_id: &str, next_fire_at: &str) -> NewSchedule {
    NewSchedule {
        name: name.into(),
        kind: ScheduleKind::Time,
        pipeline_id: pipeline_id.into(),
        experiment_name: "nightly".into(),
        recurrence: Some(
            serde_json::from_value::<Recurrence>(serde_json::json!({"frequency": "Hour", "interval": 1})).unwrap(),
        ),
        watch: None,
        parameters: [("epochs".to_owned(), serde_json::json!(3))].into(),
        continue_on_step_failure: false,
        status: ScheduleStatus::Active,
        misfire: MisfirePolicy::Latest,
        concurrency: Concurrency::default(),
        next_fire_at: Some(at(next_fire_at)),
        next_poll_at: None,
    }
}

fn fire(schedule: &PipelineSchedule, time: &str, outcome: FireOutcome, next: &str) -> NewFire {
    NewFire {
        schedule_id: schedule.id.clone(),
        fire_time: at(time),
        outcome,
        reason: (outcome != FireOutcome::Started).then(|| format!("{} by the test", outcome.as_str())),
        next_fire_at: Some(at(next)),
        etag: schedule.etag.clone(),
    }
}

/// Records one tick, as a batch of one.
async fn record_tick(
    store: &Arc<dyn Store>,
    workspace: SourceId,
    fire: NewFire,
    run: Option<NewPipelineRun>,
) -> Result<FireRecorded> {
    let mut answers = store.record_fires(vec![NewTick { workspace, fire, run }]).await?;
    assert_eq!(answers.len(), 1, "one answer per tick");
    Ok(answers.remove(0))
}

/// The schedule's runs not over.
async fn active(store: &Arc<dyn Store>, schedule_id: &str) -> u32 {
    let counts = store.active_schedule_runs(&[schedule_id.to_owned()]).await.unwrap();
    counts.get(schedule_id).copied().unwrap_or(0)
}

/// A run of the pipeline keyed by the tick, as the scheduler submits it.
pub fn tick_run(pipeline_id: &str, schedule: &PipelineSchedule, time: &str) -> NewPipelineRun {
    NewPipelineRun {
        run_source: "Schedule".into(),
        idempotency_key: Some(format!("schedule:{}:{time}", schedule.id)),
        ..submission(pipeline_id, vec![step("train", &[], 0)])
    }
}

pub async fn schedules_are_created_listed_updated_and_deleted(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let created = store
        .create_schedule(ws, new_schedule("Nightly", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    assert_eq!(created.name, "Nightly");
    assert_eq!(created.kind, ScheduleKind::Time);
    assert_eq!(created.next_fire_at, Some(at("2026-01-01T01:00:00Z")));
    assert_eq!(created.parameters["epochs"], 3);
    assert_eq!(store.schedule(ws, "nightly").await.unwrap(), created);
    let taken = store
        .create_schedule(ws, new_schedule("NIGHTLY", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(taken, StoreError::Conflict(ref m) if m.contains("already exists")),
        "{taken:?}"
    );
    let unknown = store
        .create_schedule(ws, new_schedule("other", "no-such-pipeline", "2026-01-01T01:00:00Z"))
        .await
        .unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound(_)), "{unknown:?}");

    let mut disabled = new_schedule("paused", &pipeline, "2026-01-01T01:00:00Z");
    disabled.status = ScheduleStatus::Disabled;
    disabled.next_fire_at = None;
    store.create_schedule(ws, disabled).await.unwrap();
    let names = |list: Vec<PipelineSchedule>| list.into_iter().map(|s| s.name).collect::<Vec<_>>();
    let active = store.list_schedules(ws, ScheduleFilter::default()).await.unwrap();
    assert_eq!(names(active), ["Nightly"]);
    let every = ScheduleFilter {
        include_disabled: true,
        pipeline_id: None,
    };
    assert_eq!(
        names(store.list_schedules(ws, every).await.unwrap()),
        ["Nightly", "paused"]
    );
    let other_pipeline = ScheduleFilter {
        include_disabled: true,
        pipeline_id: Some("another".into()),
    };
    assert!(store.list_schedules(ws, other_pipeline).await.unwrap().is_empty());

    let mut change = new_schedule("Nightly", &pipeline, "2026-01-02T00:00:00Z");
    change.concurrency = Concurrency {
        overlap_policy: OverlapPolicy::Queue,
        max_concurrent: 2.try_into().unwrap(),
    };
    change.misfire = MisfirePolicy::All;
    let stale = store
        .update_schedule(ws, "nightly", change.clone(), Some("\"stale\"".into()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)), "{stale:?}");
    let updated = store
        .update_schedule(ws, "nightly", change.clone(), Some(created.etag.clone()))
        .await
        .unwrap();
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.misfire, MisfirePolicy::All);
    assert_eq!(updated.concurrency.overlap_policy, OverlapPolicy::Queue);
    assert_eq!(updated.next_fire_at, Some(at("2026-01-02T00:00:00Z")));
    change.kind = ScheduleKind::Change;
    let switch = store.update_schedule(ws, "nightly", change, None).await.unwrap_err();
    assert!(
        matches!(switch, StoreError::Conflict(ref m) if m.contains("time-based and cannot become change-based")),
        "{switch:?}"
    );

    store.delete_schedule(ws, "NIGHTLY", None).await.unwrap();
    assert!(matches!(
        store.schedule(ws, "nightly").await,
        Err(StoreError::NotFound(_))
    ));
    let gone = store.delete_schedule(ws, "nightly", None).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound(_)), "{gone:?}");
}

pub async fn a_pipeline_that_active_schedules_start_cannot_be_disabled(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    store
        .create_schedule(ws, new_schedule("b-hourly", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    store
        .create_schedule(ws, new_schedule("a-daily", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    let refused = store
        .set_pipeline_enabled(ws, &pipeline, false, None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict(ref m) if m.contains("active schedules use it: a-daily, b-hourly")),
        "{refused:?}"
    );
    assert!(store.pipeline(ws, &pipeline).await.unwrap().enabled);
    for name in ["a-daily", "b-hourly"] {
        let mut off = new_schedule(name, &pipeline, "2026-01-01T01:00:00Z");
        off.status = ScheduleStatus::Disabled;
        store.update_schedule(ws, name, off, None).await.unwrap();
    }
    store.set_pipeline_enabled(ws, &pipeline, false, None).await.unwrap();
    let on_disabled = store
        .update_schedule(
            ws,
            "a-daily",
            new_schedule("a-daily", &pipeline, "2026-01-01T01:00:00Z"),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(on_disabled, StoreError::Conflict(ref m) if m.contains("is disabled")),
        "{on_disabled:?}"
    );
}

pub async fn a_tick_is_recorded_once_with_its_run(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let early = store
        .create_schedule(ws, new_schedule("early", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    store
        .create_schedule(ws, new_schedule("late", &pipeline, "2026-01-01T03:00:00Z"))
        .await
        .unwrap();
    assert_eq!(store.earliest_fire().await.unwrap(), Some(at("2026-01-01T01:00:00Z")));
    let due = store.due_schedules(at("2026-01-01T02:00:00Z"), None, 10).await.unwrap();
    assert_eq!(due.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["early"]);
    assert_eq!(due[0].workspace, ws);

    let tick = "2026-01-01T01:00:00Z";
    let first = record_tick(
        &store,
        ws,
        fire(&early, tick, FireOutcome::Started, "2026-01-01T02:00:00Z"),
        Some(tick_run(&pipeline, &early, tick)),
    )
    .await
    .unwrap();
    assert!(first.recorded);
    assert_eq!(first.fire.outcome, FireOutcome::Started);
    let run_id = first.fire.run_id.clone().expect("a started tick has its run");
    let run = store.pipeline_run(ws, &run_id).await.unwrap();
    assert_eq!(run.run.experiment_name, "retrain-exp");
    assert_eq!(active(&store, &early.id).await, 1);

    let again = record_tick(
        &store,
        ws,
        fire(&early, tick, FireOutcome::Started, "2026-01-01T02:00:00Z"),
        Some(tick_run(&pipeline, &early, tick)),
    )
    .await
    .unwrap();
    assert!(!again.recorded);
    assert_eq!(again.fire, first.fire);
    assert_eq!(
        store
            .list_runs(ws, Some("retrain-exp"))
            .await
            .unwrap()
            .iter()
            .filter(|r| r.parent_run_id.is_none())
            .count(),
        1
    );

    let after = store.schedule(ws, "early").await.unwrap();
    assert_eq!(after.last_fire_at, Some(at(tick)));
    assert_eq!(after.last_run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(after.next_fire_at, Some(at("2026-01-01T02:00:00Z")));
    assert_eq!(after.etag, early.etag, "firing is not a person's change");
    assert_eq!(store.earliest_fire().await.unwrap(), Some(at("2026-01-01T02:00:00Z")));

    let skipped = record_tick(
        &store,
        ws,
        fire(
            &after,
            "2026-01-01T02:00:00Z",
            FireOutcome::Skipped,
            "2026-01-01T03:00:00Z",
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(skipped.fire.reason.as_deref(), Some("skipped by the test"));
    let fires = store.schedule_fires(&early.id, 10).await.unwrap();
    assert_eq!(
        fires.iter().map(|f| (f.fire_time, f.outcome)).collect::<Vec<_>>(),
        [
            (at("2026-01-01T02:00:00Z"), FireOutcome::Skipped),
            (at(tick), FireOutcome::Started)
        ]
    );
    assert_eq!(
        store.schedule(ws, "early").await.unwrap().last_run_id.as_deref(),
        Some(run_id.as_str())
    );

    // A person's change in between keeps the next tick it computed.
    let changed = store
        .update_schedule(
            ws,
            "early",
            new_schedule("early", &pipeline, "2026-05-01T00:00:00Z"),
            None,
        )
        .await
        .unwrap();
    record_tick(
        &store,
        ws,
        fire(
            &after,
            "2026-01-01T03:00:00Z",
            FireOutcome::Skipped,
            "2026-01-01T04:00:00Z",
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        store.schedule(ws, "early").await.unwrap().next_fire_at,
        changed.next_fire_at
    );
    store.advance_schedule(&changed.id, "\"stale\"", None).await.unwrap();
    assert_eq!(
        store.schedule(ws, "early").await.unwrap().next_fire_at,
        changed.next_fire_at
    );
    store.advance_schedule(&changed.id, &changed.etag, None).await.unwrap();
    assert_eq!(store.schedule(ws, "early").await.unwrap().next_fire_at, None);
}

pub async fn due_schedules_come_in_pages_by_next_tick_then_id(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let mut expected = Vec::new();
    for (name, next) in [
        ("a", "2026-01-01T01:00:00Z"),
        ("b", "2026-01-01T01:00:00Z"),
        ("c", "2026-01-01T00:30:00Z"),
        ("d", "2026-01-01T01:00:00Z"),
        ("e", "2026-01-01T01:00:00Z"),
        ("late", "2026-01-01T05:00:00Z"),
    ] {
        let created = store
            .create_schedule(ws, new_schedule(name, &pipeline, next))
            .await
            .unwrap();
        if name != "late" {
            expected.push((created.next_fire_at.unwrap(), created.id));
        }
    }
    expected.sort();
    let now = at("2026-01-01T02:00:00Z");
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store.due_schedules(now, after.clone(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|s| (s.next_fire_at.unwrap(), s.id.clone()));
        pages.push(
            page.into_iter()
                .map(|s| (s.next_fire_at.unwrap(), s.id))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(
        pages.concat(),
        expected,
        "each due schedule once, the longest due first, then by id"
    );
}

pub async fn a_refused_run_is_recorded_as_a_failed_tick(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let schedule = store
        .create_schedule(ws, new_schedule("s", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    let tick = "2026-01-01T01:00:00Z";
    let mut empty = tick_run(&pipeline, &schedule, tick);
    empty.steps.clear();
    let refused = record_tick(
        &store,
        ws,
        fire(&schedule, tick, FireOutcome::Started, "2026-01-01T02:00:00Z"),
        Some(empty),
    )
    .await
    .unwrap();
    assert!(refused.recorded);
    assert_eq!(refused.fire.outcome, FireOutcome::Failed);
    assert_eq!(refused.fire.run_id, None);
    assert_eq!(
        refused.fire.reason.as_deref(),
        Some("a pipeline run needs at least one step")
    );
    assert!(store.list_runs(ws, Some("retrain-exp")).await.unwrap().is_empty());
    let after = store.schedule(ws, "s").await.unwrap();
    assert_eq!(after.next_fire_at, Some(at("2026-01-01T02:00:00Z")));
    assert_eq!(after.last_error, refused.fire.reason);
}

pub async fn a_batch_records_each_tick_in_order_with_its_run(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let other = store
        .publish_pipeline(ws, super::new_pipeline("other", None))
        .await
        .unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|name| new_schedule(name, &pipeline, "2026-01-01T01:00:00Z"));
    let a = store.create_schedule(ws, a).await.unwrap();
    let b = store.create_schedule(ws, b).await.unwrap();
    let mut c = c;
    c.pipeline_id = other.id.clone();
    let c = store.create_schedule(ws, c).await.unwrap();
    let (one, two) = ("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z");
    // b's first tick was recorded before, by another node say.
    let earlier = record_tick(&store, ws, fire(&b, one, FireOutcome::Skipped, two), None)
        .await
        .unwrap();
    // c's pipeline is disabled once c is (a disabled schedule may name a disabled pipeline).
    let mut off = new_schedule("c", &other.id, one);
    off.status = ScheduleStatus::Disabled;
    store.update_schedule(ws, "c", off, None).await.unwrap();
    store.set_pipeline_enabled(ws, &other.id, false, None).await.unwrap();

    let tick = |schedule: &PipelineSchedule, time: &str, next: &str, pipeline: &str| NewTick {
        workspace: ws,
        fire: fire(schedule, time, FireOutcome::Started, next),
        run: Some(tick_run(pipeline, schedule, time)),
    };
    let answers = store
        .record_fires(vec![
            tick(&a, one, two, &pipeline),
            tick(&b, one, two, &pipeline),
            tick(&a, two, "2026-01-01T03:00:00Z", &pipeline),
            tick(&c, one, two, &other.id),
            NewTick {
                workspace: ws,
                fire: fire(&b, two, FireOutcome::Skipped, "2026-01-01T03:00:00Z"),
                run: None,
            },
        ])
        .await
        .unwrap();
    let outcomes: Vec<_> = answers
        .iter()
        .map(|r| (r.fire.schedule_id.clone(), r.fire.fire_time, r.fire.outcome, r.recorded))
        .collect();
    assert_eq!(
        outcomes,
        [
            (a.id.clone(), at(one), FireOutcome::Started, true),
            (b.id.clone(), at(one), FireOutcome::Skipped, false),
            (a.id.clone(), at(two), FireOutcome::Started, true),
            (c.id.clone(), at(one), FireOutcome::Failed, true),
            (b.id.clone(), at(two), FireOutcome::Skipped, true),
        ]
    );
    assert_eq!(
        answers[1].fire, earlier.fire,
        "a tick recorded before comes back as it was"
    );
    let reason = answers[3].fire.reason.as_deref().unwrap();
    assert!(reason.contains("is disabled"), "{reason}");

    // a's two runs exist, each with its step ready, and count against its limit.
    let runs: Vec<String> = [&answers[0], &answers[2]]
        .map(|r| r.fire.run_id.clone().expect("a started tick has its run"))
        .into();
    assert_ne!(runs[0], runs[1]);
    for run_id in &runs {
        let run = store.pipeline_run(ws, run_id).await.unwrap();
        assert_eq!(run.run.experiment_name, "retrain-exp");
        assert_eq!(run.steps.len(), 1);
        assert_eq!(run.steps[0].state, mlgrid_core::pipeline::progress::StepState::Ready);
    }
    assert_eq!(active(&store, &a.id).await, 2);
    let counts = store
        .active_schedule_runs(&[a.id.clone(), b.id.clone(), c.id.clone()])
        .await
        .unwrap();
    assert_eq!(counts.get(&a.id), Some(&2));
    assert_eq!(counts.get(&b.id), None);

    // Each schedule moved on with its latest tick recorded now.
    let a_after = store.schedule(ws, "a").await.unwrap();
    assert_eq!(a_after.last_fire_at, Some(at(two)));
    assert_eq!(a_after.last_run_id.as_ref(), Some(&runs[1]));
    assert_eq!(a_after.next_fire_at, Some(at("2026-01-01T03:00:00Z")));
    let b_after = store.schedule(ws, "b").await.unwrap();
    assert_eq!(b_after.last_fire_at, Some(at(two)));
    assert_eq!(b_after.last_error.as_deref(), Some("skipped by the test"));

    // The same batch again records nothing and starts nothing.
    let again = store
        .record_fires(vec![
            tick(&a, one, two, &pipeline),
            tick(&a, two, "2026-01-01T03:00:00Z", &pipeline),
        ])
        .await
        .unwrap();
    assert!(again.iter().all(|r| !r.recorded));
    assert_eq!(again[1].fire.run_id.as_ref(), Some(&runs[1]));
    assert_eq!(active(&store, &a.id).await, 2);
}

pub async fn a_tick_given_twice_in_a_batch_is_recorded_once_with_one_run(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let schedule = store
        .create_schedule(ws, new_schedule("s", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    let tick = "2026-01-01T01:00:00Z";
    let new = || NewTick {
        workspace: ws,
        fire: fire(&schedule, tick, FireOutcome::Started, "2026-01-01T02:00:00Z"),
        run: Some(tick_run(&pipeline, &schedule, tick)),
    };
    let answers = store.record_fires(vec![new(), new()]).await.unwrap();
    assert!(answers[0].recorded);
    assert!(!answers[1].recorded, "the second is the first's record");
    assert_eq!(answers[1].fire, answers[0].fire);
    let pipeline_runs = store
        .list_runs(ws, Some("retrain-exp"))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.parent_run_id.is_none())
        .count();
    assert_eq!(pipeline_runs, 1);
    assert_eq!(active(&store, &schedule.id).await, 1);
}

pub async fn concurrent_fires_of_one_tick_start_one_run(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let schedule = store
        .create_schedule(ws, new_schedule("s", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    let tick = "2026-01-01T01:00:00Z";
    let attempts = (0..6).map(|_| {
        let (store, schedule, pipeline) = (store.clone(), schedule.clone(), pipeline.clone());
        tokio::spawn(async move {
            record_tick(
                &store,
                ws,
                fire(&schedule, tick, FireOutcome::Started, "2026-01-01T02:00:00Z"),
                Some(tick_run(&pipeline, &schedule, tick)),
            )
            .await
            .unwrap()
        })
    });
    let results = futures::future::join_all(attempts).await;
    let recorded: Vec<FireRecorded> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(recorded.iter().filter(|r| r.recorded).count(), 1);
    let run_ids: std::collections::HashSet<_> = recorded.iter().map(|r| r.fire.run_id.clone().unwrap()).collect();
    assert_eq!(run_ids.len(), 1);
    assert_eq!(store.schedule_fires(&schedule.id, 10).await.unwrap().len(), 1);
}

pub async fn a_queued_tick_starts_once(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let schedule = store
        .create_schedule(ws, new_schedule("s", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    let tick = "2026-01-01T01:00:00Z";
    record_tick(
        &store,
        ws,
        fire(&schedule, tick, FireOutcome::Queued, "2026-01-01T02:00:00Z"),
        None,
    )
    .await
    .unwrap();
    let queued = store.queued_fires(10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].fire_time, at(tick));
    assert_eq!(queued[0].schedule.id, schedule.id);
    assert_eq!(queued[0].schedule.workspace, ws);
    let started = store
        .start_queued_fire(ws, &schedule.id, at(tick), tick_run(&pipeline, &schedule, tick))
        .await
        .unwrap()
        .expect("the tick was queued");
    assert_eq!(started.outcome, FireOutcome::Started);
    assert_eq!(started.reason, None);
    assert!(started.run_id.is_some());
    assert!(store.queued_fires(10).await.unwrap().is_empty());
    let twice = store
        .start_queued_fire(ws, &schedule.id, at(tick), tick_run(&pipeline, &schedule, tick))
        .await
        .unwrap();
    assert_eq!(twice, None);
    assert_eq!(store.schedule(ws, "s").await.unwrap().last_run_id, started.run_id);
    assert_eq!(active(&store, &schedule.id).await, 1);
}

pub async fn old_ticks_are_pruned_but_queued_ones_and_unfinished_runs_stay(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let a = store
        .create_schedule(ws, new_schedule("a", &pipeline, "2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    let b = store
        .create_schedule(ws, new_schedule("b", &pipeline, "2026-01-01T02:00:00Z"))
        .await
        .unwrap();
    let minute = |hour: u32, m: u32| format!("2026-01-01T{hour:02}:{m:02}:00Z");
    let mut runs = Vec::new();
    for m in 0..10 {
        let tick = minute(1, m);
        let (outcome, run) = match m {
            0 | 1 => (FireOutcome::Started, Some(tick_run(&pipeline, &a, &tick))),
            2 => (FireOutcome::Queued, None),
            _ => (FireOutcome::Skipped, None),
        };
        let recorded = record_tick(&store, ws, fire(&a, &tick, outcome, &minute(1, m + 1)), run)
            .await
            .unwrap();
        runs.extend(recorded.fire.run_id);
    }
    for m in 0..5 {
        record_tick(
            &store,
            ws,
            fire(&b, &minute(2, m), FireOutcome::Skipped, &minute(2, m + 1)),
            None,
        )
        .await
        .unwrap();
    }
    // The run of 01:00 is over; the run of 01:01 is not.
    store
        .cancel_pipeline_run(ws, &runs[0], "by the test", None)
        .await
        .unwrap();

    // Keeping 3 each: a loses 01:00 and 01:03 - 01:06, b loses 02:00 and 02:01; at
    // most 4 rows a batch.
    let first = store.prune_fires("", 100, 3, 4).await.unwrap();
    assert_eq!(
        first,
        PrunedFires {
            fires: 4,
            walked_to: None
        }
    );
    assert_eq!(store.prune_fires("", 100, 3, 4).await.unwrap().fires, 3);
    assert_eq!(store.prune_fires("", 100, 3, 4).await.unwrap().fires, 0);
    let kept = |fires: Vec<ScheduleFire>| fires.into_iter().map(|f| (f.fire_time, f.outcome)).collect::<Vec<_>>();
    assert_eq!(
        kept(store.schedule_fires(&a.id, 100).await.unwrap()),
        [
            (at(&minute(1, 9)), FireOutcome::Skipped),
            (at(&minute(1, 8)), FireOutcome::Skipped),
            (at(&minute(1, 7)), FireOutcome::Skipped),
            (at(&minute(1, 2)), FireOutcome::Queued),
            (at(&minute(1, 1)), FireOutcome::Started),
        ]
    );
    assert_eq!(active(&store, &a.id).await, 1, "the unfinished run still counts");
    assert_eq!(
        kept(store.schedule_fires(&b.id, 100).await.unwrap()),
        [2, 3, 4]
            .map(|m| (at(&minute(2, m)), FireOutcome::Skipped))
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
    );

    // One schedule a batch: the walk goes by id, then says it reached the end.
    let (low, high) = if a.id < b.id { (&a.id, &b.id) } else { (&b.id, &a.id) };
    let walked = store.prune_fires("", 1, 3, 100).await.unwrap();
    assert_eq!(walked.walked_to.as_ref(), Some(low));
    let walked = store.prune_fires(low, 1, 3, 100).await.unwrap();
    assert_eq!(walked.walked_to.as_ref(), Some(high));
    assert_eq!(
        store.prune_fires(high, 1, 3, 100).await.unwrap(),
        PrunedFires::default()
    );
}
