//! Delivery to real receivers on loopback: retries, dead letters, batching, the address
//! guard, headers. The retry schedule runs a thousand times faster (same code path).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{
    Bed, ClosedPort, Switchable, hung_receiver, hung_receiver_counting, loopback, receiver, slow_receiver, walk,
};
use mlgrid_core::retry::RetrySchedule;
use mlgrid_delivery::{AddressPolicy, DispatcherConfig, sign};
use mlgrid_store::DeadLetterQuery;
use serde_json::{Value, json};

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_answers() {
    let bed = Bed::new(loopback()).await;
    let (url, seen) = receiver(vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::OK,
    ])
    .await;
    let sub = bed.subscribe("flaky", &url, json!({})).await;
    bed.publish(1).await;
    let stats = bed.settled(sub).await;
    assert_eq!((stats.delivered, stats.dead_lettered, stats.failed_attempts), (1, 0, 2));
    let seen = seen.lock().await;
    assert_eq!(seen.len(), 3);
    let (headers, body) = &seen[2];
    assert_eq!(headers["aeg-event-type"], "Notification");
    assert_eq!(headers["aeg-subscription-name"], "FLAKY");
    assert_eq!(headers["aeg-delivery-count"], "2");
    assert_eq!(headers["aeg-metadata-version"], "1");
    assert_eq!(headers["aeg-data-version"], "2.0");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body[0]["id"], "e0", "the payload is an array with the event");
    // Standard Webhooks: the receiver recomputes the signature with the secret.
    let id = headers["webhook-id"].to_str().unwrap();
    let timestamp: i64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert_eq!(
        id,
        seen[0].0["webhook-id"].to_str().unwrap(),
        "the message id is the same on every retry"
    );
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let expected = sign(&[b"secret-of-flaky".to_vec()], id, timestamp, &body.to_string());
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
    let attempts = bed.store.delivery_attempts(sub, 10).await.unwrap();
    let outcomes: Vec<&str> = attempts.iter().rev().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["Http500", "Http503", "Delivered"]);
}

#[tokio::test]
async fn non_retried_answers_and_exhausted_attempts_dead_letter() {
    let bed = Bed::new(loopback()).await;
    let (bad_request, seen) = receiver(vec![StatusCode::BAD_REQUEST]).await;
    let rejected = bed.subscribe("rejected", &bad_request, json!({})).await;
    // Nothing listens on this port: every attempt is refused.
    let closed = ClosedPort::new();
    let refused = bed
        .subscribe(
            "refused",
            &closed.url,
            json!({"retryPolicy": {"maxDeliveryAttempts": 3}}),
        )
        .await;
    bed.publish(1).await;

    let stats = bed.settled(rejected).await;
    assert_eq!(
        (stats.dead_lettered, stats.failed_attempts),
        (1, 1),
        "400 is not retried"
    );
    assert_eq!(seen.lock().await.len(), 1);
    let dead = bed
        .store
        .dead_letters(rejected, DeadLetterQuery::page(0, 10))
        .await
        .unwrap();
    assert_eq!(
        (dead[0].dead_letter_reason.as_str(), dead[0].last_http_status_code),
        ("NonRetriableStatus", Some(400))
    );

    let stats = bed.settled(refused).await;
    assert_eq!((stats.dead_lettered, stats.failed_attempts), (1, 3));
    let dead = bed
        .store
        .dead_letters(refused, DeadLetterQuery::page(0, 10))
        .await
        .unwrap();
    assert_eq!(
        (dead[0].dead_letter_reason.as_str(), dead[0].delivery_attempts),
        ("MaxDeliveryAttemptsExceeded", 3)
    );
    assert!(
        bed.store.delivery_attempts(refused, 1).await.unwrap()[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("onnect")
    );
}

#[tokio::test]
async fn batches_respect_the_subscription_limits() {
    let bed = Bed::new(loopback()).await;
    let (url, seen) = receiver(vec![StatusCode::OK]).await;
    let sub = bed
        .subscribe("batched", &url, json!({"destination": {"maxEventsPerBatch": 10}}))
        .await;
    bed.publish(25).await;
    let started = Instant::now();
    while bed.store.delivery_stats(sub).await.unwrap().delivered < 25 {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().await;
    assert!(seen.iter().all(|(_, body)| body.as_array().unwrap().len() <= 10));
    assert_eq!(
        seen.iter()
            .map(|(_, body)| body.as_array().unwrap().len())
            .sum::<usize>(),
        25
    );
    assert!(seen.len() < 25, "events travel together: {} requests", seen.len());
}

#[tokio::test]
async fn cloud_event_subscriptions_get_cloud_events() {
    let bed = Bed::new(loopback()).await;
    let (url, seen) = receiver(vec![StatusCode::OK]).await;
    let sub = bed
        .subscribe("clouds", &url, json!({"eventDeliverySchema": "CloudEventSchemaV1_0"}))
        .await;
    bed.publish(1).await;
    bed.settled(sub).await;
    let seen = seen.lock().await;
    let (headers, body) = &seen[0];
    assert_eq!(
        headers["content-type"],
        "application/cloudevents-batch+json; charset=utf-8"
    );
    assert_eq!(
        (
            body[0]["specversion"].as_str(),
            body[0]["type"].as_str(),
            body[0]["source"].as_str()
        ),
        (Some("1.0"), Some("T"), Some("/t"))
    );
}

#[tokio::test]
async fn loopback_is_refused_without_the_flag() {
    let bed = Bed::new(AddressPolicy::default()).await;
    let (url, seen) = receiver(vec![StatusCode::OK]).await;
    let sub = bed
        .subscribe("guarded", &url, json!({"retryPolicy": {"maxDeliveryAttempts": 1}}))
        .await;
    bed.publish(1).await;
    let stats = bed.settled(sub).await;
    assert_eq!(stats.dead_lettered, 1);
    assert!(seen.lock().await.is_empty(), "nothing reached the receiver");
    let attempt = &bed.store.delivery_attempts(sub, 1).await.unwrap()[0];
    assert!(
        attempt.error.as_deref().unwrap().contains("--allow-loopback-webhooks"),
        "{attempt:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_retried_then_dead_lettered() {
    let bed = Bed::new(loopback()).await;
    let silent = hung_receiver().await;
    let stuck = bed
        .subscribe("stuck", &silent, json!({"retryPolicy": {"maxDeliveryAttempts": 2}}))
        .await;
    bed.publish(3).await;
    let stats = bed.settled(stuck).await;
    assert_eq!((stats.dead_lettered, stats.failed_attempts), (3, 6));
    let attempt = &bed.store.delivery_attempts(stuck, 1).await.unwrap()[0];
    assert!(
        attempt.error.as_deref().unwrap().contains("no answer within 0.5 s"),
        "{attempt:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_holds_up_no_other() {
    // The silent receiver's attempts wait a minute for an answer: a healthy subscription
    // held up behind them would not settle in `settled`'s 20 s.
    let bed = Bed::with_config(DispatcherConfig {
        schedule: RetrySchedule { scale: 0.001 },
        timeout: Duration::from_secs(60),
        addresses: loopback(),
        ..DispatcherConfig::default()
    })
    .await;
    let (silent, accepted) = hung_receiver_counting().await;
    let stuck = bed.subscribe("stuck", &silent, json!({})).await;
    bed.publish(3).await;
    let started = Instant::now();
    while accepted.load(Ordering::SeqCst) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the silent receiver was not tried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With three attempts hanging, a healthy subscription's events go through.
    let (url, seen) = receiver(vec![StatusCode::OK]).await;
    let healthy = bed.subscribe("healthy", &url, json!({})).await;
    bed.publish(3).await;
    let stats = bed.settled(healthy).await;
    assert_eq!(stats.delivered, 3);
    assert_eq!(seen.lock().await.len(), 3);
    let stuck = bed.store.delivery_stats(stuck).await.unwrap();
    assert_eq!(
        (stuck.delivered, stuck.failed_attempts),
        (0, 0),
        "the silent receiver's attempts were still waiting: {stuck:?}"
    );
}

#[tokio::test]
async fn batches_waiting_for_a_busy_endpoint_outlive_no_lease() {
    // One slot, a second an answer, leases of 3 s: the last of four events waits three
    // seconds for the slot, as long as its lease. A batch that
    // waited a third of its lease goes back to the store and is claimed afresh instead,
    // so no lease runs out on a batch in memory (a claim would send it a second time).
    let bed = Bed::with_config(DispatcherConfig {
        per_subscription: 1,
        lease: Duration::from_secs(3),
        timeout: Duration::from_secs(5),
        schedule: RetrySchedule { scale: 0.001 },
        addresses: loopback(),
        ..DispatcherConfig::default()
    })
    .await;
    let (url, seen) = slow_receiver(Duration::from_secs(1)).await;
    let slow = bed.subscribe("slow", &url, json!({})).await;
    bed.publish(4).await;
    let stats = bed.settled(slow).await;
    assert_eq!(stats.delivered, 4);
    // A second sending would come after the first was recorded: wait until none comes.
    let mut received = 0;
    while seen.lock().await.len() != received {
        received = seen.lock().await.len();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let mut ids: Vec<String> = seen
        .lock()
        .await
        .iter()
        .flat_map(|(_, batch)| batch.as_array().unwrap().iter().map(|e| e["id"].to_string()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((received, ids.len()), (4, 4), "no event was sent twice");
}

/// The most attempts the retry schedule lets one event have within `elapsed`: the first
/// at once, each retry at least its shortest (jittered) wait after the one before.
fn most_attempts_within(schedule: RetrySchedule, elapsed: Duration) -> u64 {
    let (mut attempts, mut earliest) = (1, Duration::ZERO);
    loop {
        earliest += schedule.delay(attempts, 0.0);
        if earliest > elapsed {
            return u64::from(attempts);
        }
        attempts += 1;
    }
}

#[tokio::test]
async fn a_receiver_down_for_minutes_gets_everything_when_it_comes_back() {
    let bed = Bed::new(loopback()).await;
    let schedule = RetrySchedule { scale: 0.001 };
    let port = ClosedPort::new();
    let sub = bed.subscribe("flaky", &port.url, json!({})).await;
    let published = Instant::now();
    bed.publish(40).await;
    // Down for at least 1.5 s, 25 minutes of Event Grid's schedule at a thousandth of the
    // time (longer if the machine is slow: the bound below follows the time it took).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let down = common::stats_until(&*bed.store, sub, "the endpoint was not tried", |s| {
        s.failed_attempts >= 5
    })
    .await;
    let elapsed = published.elapsed();
    assert_eq!(
        (down.delivered, down.dead_lettered, down.pending),
        (0, 0, 40),
        "{down:?}"
    );
    // Retries spaced by the schedule and probation, one probe at a time once the endpoint
    // is failing, not a tight loop: by 25 minutes Event Grid's schedule has made 6
    // attempts per event.
    let most = 40 * most_attempts_within(schedule, elapsed);
    assert!(
        down.failed_attempts <= most,
        "hammered: more than {most} attempts in {elapsed:?}: {down:?}"
    );
    let error = bed.store.delivery_attempts(sub, 1).await.unwrap()[0].error.clone();
    assert!(error.unwrap_or_default().contains("onnect"));

    let seen = port.open(vec![StatusCode::OK]);
    let stats = bed.settled(sub).await;
    assert_eq!((stats.delivered, stats.dead_lettered), (40, 0));
    let mut ids: Vec<String> = Vec::new();
    for (_, body) in seen.lock().await.iter() {
        ids.extend(
            body.as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every event arrived once back up");
}

#[tokio::test]
async fn a_receiver_that_dies_mid_stream_is_retried_after_it_returns() {
    let bed = Bed::new(loopback()).await;
    let receiver = Switchable::new().await;
    let sub = bed.subscribe("dies", &receiver.url, json!({})).await;
    bed.publish(10).await;
    common::stats_until(&*bed.store, sub, "the first ten were not delivered", |s| {
        s.delivered == 10
    })
    .await;
    receiver.go_down();
    bed.publish(10).await;
    // Down until the dispatcher has found it so.
    common::stats_until(&*bed.store, sub, "the dead receiver was not tried", |s| {
        s.failed_attempts > 0
    })
    .await;
    assert_eq!(
        receiver.seen.lock().await.len(),
        10,
        "nothing got through while it was down"
    );
    receiver.come_back();
    let stats = bed.settled(sub).await;
    assert_eq!((stats.delivered, stats.dead_lettered), (20, 0), "{stats:?}");
    assert_eq!(receiver.seen.lock().await.len(), 20);
}

#[tokio::test]
async fn dead_letters_are_written_to_the_datastore_folder() {
    let bed = Bed::new(loopback()).await;
    let (url, _) = receiver(vec![StatusCode::PAYLOAD_TOO_LARGE]).await;
    let destination = json!({"endpointType": "Datastore", "properties": {"datastoreName": "workspaceblobstore", "folder": "dead/orders"}});
    let sub = bed
        .subscribe("big", &url, json!({"deadLetterDestination": destination}))
        .await;
    bed.publish(3).await;
    assert_eq!(bed.settled(sub).await.dead_lettered, 3);

    let root = tempfile::tempdir().unwrap();
    let mut exporter = mlgrid_delivery::DeadLetterExporter::new(bed.store.clone(), root.path().to_owned());
    assert_eq!(exporter.pass().await.unwrap(), 3);
    assert_eq!(exporter.pass().await.unwrap(), 0, "each dead letter is written once");
    let folder = root.path().join("workspaceblobstore/dead/orders/HOOKS/BIG");
    let files: Vec<std::path::PathBuf> = walk(&folder);
    assert_eq!(files.len(), 1, "{files:?}");
    let relative = files[0].strip_prefix(&folder).unwrap().to_string_lossy().into_owned();
    let today = chrono::Utc::now().format("%Y/%m/%d/").to_string();
    assert!(
        relative.starts_with(&today) && relative.ends_with(".json"),
        "{relative}"
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let written = written.as_array().unwrap();
    assert_eq!(written.len(), 3);
    assert_eq!(written[0]["id"], "e0");
    assert_eq!(written[0]["data"]["i"], 0);
    assert_eq!(written[0]["deadLetterReason"], "NonRetriableStatus");
    assert_eq!(written[0]["deliveryAttempts"], 1);
    assert_eq!(written[0]["lastHttpStatusCode"], 413);
    assert_eq!(written[0]["lastDeliveryOutcome"], "Http413");
    for field in ["publishTime", "lastDeliveryAttemptTime"] {
        assert!(written[0][field].as_str().unwrap().ends_with('Z'), "{field}");
    }
}
