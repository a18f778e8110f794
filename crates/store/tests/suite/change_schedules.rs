//! Change schedules: their watch, their polls, the objects they have seen and the
//! changes they record, the cases every backend passes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mlgrid_store::*;

use super::schedules::{new_schedule, tick_run};
use super::{local_datastore, published};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn change_schedule(name: &str, pipeline_id: &str) -> NewSchedule {
    NewSchedule {
        kind: ScheduleKind::Change,
        recurrence: None,
        next_fire_at: None,
        next_poll_at: Some(at("2026-01-01T00:00:00Z")),
        watch: Some(ChangeWatch {
            datastore: "watched".into(),
            path: "incoming".into(),
            recursive: true,
            polling_seconds: 300,
            data_path_parameter: Some("input".into()),
            since: at("2026-01-01T00:00:00Z"),
        }),
        ..new_schedule(name, pipeline_id, "2026-01-01T00:00:00Z")
    }
}

fn object(path: &str, version: &str) -> SeenObject {
    SeenObject {
        path: path.into(),
        version: version.into(),
        size: 42,
        last_modified: at("2026-01-01T00:10:00Z"),
    }
}

fn change(schedule: &PipelineSchedule, previous: Option<&str>, seen: SeenObject, time: &str) -> NewChange {
    NewChange {
        schedule_id: schedule.id.clone(),
        previous: previous.map(str::to_owned),
        seen,
        fire_time: at(time),
        outcome: FireOutcome::Started,
        reason: None,
    }
}

pub async fn change_schedules_keep_their_watch_and_their_polls(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let created = store
        .create_schedule(ws, change_schedule("on-data", &pipeline))
        .await
        .unwrap();
    assert_eq!(created.kind, ScheduleKind::Change);
    assert_eq!(created.watch, change_schedule("on-data", &pipeline).watch);
    assert!(
        created.next_poll_at.is_some(),
        "an active change schedule is polled at once"
    );
    assert_eq!(created.next_fire_at, None);
    assert_eq!(
        store.earliest_fire().await.unwrap(),
        None,
        "the time scheduler never sees it"
    );
    let later = at("2026-01-01T00:01:00Z");
    let due = store.due_polls(later, 10).await.unwrap();
    assert_eq!(due.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["on-data"]);
    assert!(store.earliest_poll().await.unwrap().is_some());

    store
        .record_poll(PollDone {
            watcher_id: created.id.clone(),
            polled_at: at("2026-01-01T00:05:00Z"),
            next_poll_at: at("2026-01-01T00:06:00Z"),
            error: Some("datastore `files` cannot be reached".into()),
            failures: 1,
        })
        .await
        .unwrap();
    let failing = store.schedule(ws, "on-data").await.unwrap();
    assert_eq!(failing.last_poll_at, Some(at("2026-01-01T00:05:00Z")));
    assert_eq!(failing.next_poll_at, Some(at("2026-01-01T00:06:00Z")));
    assert_eq!(failing.poll_failures, 1);
    assert_eq!(
        failing.last_error.as_deref(),
        Some("datastore `files` cannot be reached")
    );
    store
        .record_poll(PollDone {
            watcher_id: created.id.clone(),
            polled_at: at("2026-01-01T00:06:00Z"),
            next_poll_at: at("2026-01-01T00:11:00Z"),
            error: None,
            failures: 0,
        })
        .await
        .unwrap();
    let healed = store.schedule(ws, "on-data").await.unwrap();
    assert_eq!((healed.poll_failures, healed.last_error), (0, None));

    let mut off = change_schedule("on-data", &pipeline);
    off.status = ScheduleStatus::Disabled;
    off.next_poll_at = None;
    let disabled = store.update_schedule(ws, "on-data", off, None).await.unwrap();
    assert_eq!(disabled.next_poll_at, None, "a disabled schedule is not polled");
    assert!(store.due_polls(later, 10).await.unwrap().is_empty());
    store
        .record_poll(PollDone {
            watcher_id: created.id.clone(),
            polled_at: at("2026-01-01T00:12:00Z"),
            next_poll_at: at("2026-01-01T00:17:00Z"),
            error: None,
            failures: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        store.schedule(ws, "on-data").await.unwrap().next_poll_at,
        None,
        "a poll that ends after the schedule was disabled does not start it polling again"
    );

    let to_time = new_schedule("on-data", &pipeline, "2026-01-01T01:00:00Z");
    let switch = store.update_schedule(ws, "on-data", to_time, None).await.unwrap_err();
    assert!(
        matches!(switch, StoreError::Conflict(ref m) if m.contains("change-based and cannot become time-based")),
        "{switch:?}"
    );
}

pub async fn a_change_is_recorded_once_with_its_run(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let schedule = store
        .create_schedule(ws, change_schedule("on-data", &pipeline))
        .await
        .unwrap();
    store
        .record_seen(&schedule.id, vec![object("incoming/old.csv", "v1")])
        .await
        .unwrap();
    assert_eq!(
        store.seen_objects(&schedule.id).await.unwrap(),
        [object("incoming/old.csv", "v1")]
    );

    let run = || Some(tick_run(&pipeline, &schedule, "change-1"));
    let new_file = change(
        &schedule,
        None,
        object("incoming/new.csv", "n1"),
        "2026-01-01T00:20:00Z",
    );
    let first = store.record_change(ws, new_file.clone(), run()).await.unwrap();
    let fire = first.fire.expect("a file never seen is a change");
    assert_eq!(fire.outcome, FireOutcome::Started);
    assert_eq!(fire.path.as_deref(), Some("incoming/new.csv"));
    let run_id = fire.run_id.clone().expect("a started change has its run");
    let again = NewChange {
        fire_time: at("2026-01-01T00:25:00Z"),
        ..new_file
    };
    assert_eq!(
        store.record_change(ws, again, run()).await.unwrap().fire,
        None,
        "a change recorded before is not recorded again"
    );

    let stale = change(
        &schedule,
        Some("v0"),
        object("incoming/old.csv", "v2"),
        "2026-01-01T00:30:00Z",
    );
    assert_eq!(store.record_change(ws, stale, run()).await.unwrap().fire, None);
    let modified = change(
        &schedule,
        Some("v1"),
        object("incoming/old.csv", "v2"),
        "2026-01-01T00:31:00Z",
    );
    let failed = NewChange {
        outcome: FireOutcome::Failed,
        reason: Some("pipeline disabled".into()),
        ..modified
    };
    let recorded = store.record_change(ws, failed, None).await.unwrap().fire.unwrap();
    assert_eq!(recorded.outcome, FireOutcome::Failed);

    let fires = store.schedule_fires(&schedule.id, 10).await.unwrap();
    assert_eq!(fires.len(), 2, "{fires:?}");
    assert_eq!(fires[1].run_id.as_deref(), Some(run_id.as_str()));
    let after = store.schedule(ws, "on-data").await.unwrap();
    assert_eq!(after.last_run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(after.last_error.as_deref(), Some("pipeline disabled"));
    let seen = store.seen_objects(&schedule.id).await.unwrap();
    assert_eq!(
        seen.iter()
            .map(|o| (o.path.as_str(), o.version.as_str()))
            .collect::<Vec<_>>(),
        [("incoming/new.csv", "n1"), ("incoming/old.csv", "v2")]
    );

    store
        .forget_seen(&schedule.id, vec!["incoming/old.csv".into()])
        .await
        .unwrap();
    assert_eq!(store.seen_objects(&schedule.id).await.unwrap().len(), 1);
    store.delete_schedule(ws, "on-data", None).await.unwrap();
    assert!(
        store.seen_objects(&schedule.id).await.unwrap().is_empty(),
        "what a schedule saw goes with it"
    );
}

pub async fn concurrent_records_of_one_change_start_one_run(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    let schedule = store
        .create_schedule(ws, change_schedule("on-data", &pipeline))
        .await
        .unwrap();
    store
        .record_seen(&schedule.id, vec![object("incoming/a.csv", "v1")])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            let schedule = schedule.clone();
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let time = format!("2026-01-01T00:20:0{i}Z");
                let change = change(&schedule, Some("v1"), object("incoming/a.csv", "v2"), &time);
                let run = tick_run(&pipeline, &schedule, &time);
                store.record_change(ws, change, Some(run)).await.unwrap()
            })
        })
        .collect();
    let mut recorded = 0;
    for task in tasks {
        recorded += usize::from(task.await.unwrap().fire.is_some());
    }
    assert_eq!(recorded, 1, "one node, or one pass, records a change");
    assert_eq!(store.schedule_fires(&schedule.id, 10).await.unwrap().len(), 1);
}

pub async fn a_datastore_that_a_change_schedule_watches_cannot_be_deleted(store: Arc<dyn Store>) {
    let (ws, pipeline) = published(&store, "ws").await;
    store.create_datastore(ws, local_datastore("Watched")).await.unwrap();
    let mut off = change_schedule("on-data", &pipeline);
    off.status = ScheduleStatus::Disabled;
    store.create_schedule(ws, off).await.unwrap();
    // The suite's pipeline does not parse, so it counts as a user until disabled.
    store.set_pipeline_enabled(ws, &pipeline, false, None).await.unwrap();
    let refused = store.delete_datastore(ws, "watched").await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict(ref m) if m.contains("change schedules `on-data` watch it")),
        "{refused:?}"
    );
    store.delete_schedule(ws, "on-data", None).await.unwrap();
    store.delete_datastore(ws, "watched").await.unwrap();
}
