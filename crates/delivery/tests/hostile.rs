//! Receivers that attack or fail the server: answers that never end, endpoints that
//! hang, secrets in endpoint URLs, dead-letter folders that cannot be written. Every
//! receiver is on loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Bed, ClosedPort, hung_receiver, loopback, receiver};
use mlgrid_core::EventSchema;
use mlgrid_core::retry::RetrySchedule;
use mlgrid_core::validation::Handshake;
use mlgrid_delivery::{DispatcherConfig, HandshakeRequest, Validator};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes an endless receiver writes at most before it gives up by itself.
const ENDLESS_CAP: u64 = 4 << 30;

/// A receiver that answers every request `200 OK` with a chunked body that never ends;
/// returns its URL and how many body bytes it managed to write (the server reads them,
/// or its socket buffers fill and the writes stop).
async fn endless_receiver() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read the request's head (and whatever body came with it), then answer.
                let mut request = vec![0; 64 * 1024];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                while counter.load(Ordering::Relaxed) < ENDLESS_CAP {
                    // A write that stalls for a second means nobody reads: stop.
                    match tokio::time::timeout(Duration::from_secs(1), stream.write_all(chunk.as_bytes())).await {
                        Ok(Ok(())) => counter.fetch_add(64 * 1024, Ordering::Relaxed),
                        _ => return,
                    };
                }
            });
        }
    });
    (url, written)
}

#[tokio::test]
async fn an_endless_answer_is_read_a_few_kilobytes_deep() {
    let bed = Bed::with_config(DispatcherConfig {
        schedule: RetrySchedule { scale: 0.001 },
        timeout: Duration::from_secs(20),
        addresses: loopback(),
        ..DispatcherConfig::default()
    })
    .await;
    let (url, written) = endless_receiver().await;
    let sub = bed.subscribe("endless", &url, json!({})).await;
    let started = Instant::now();
    bed.publish(3).await;
    let stats = bed.settled(sub).await;
    assert_eq!(
        (stats.delivered, stats.failed_attempts),
        (3, 0),
        "200 is delivered: {stats:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the status decided, not the body: {:?}",
        started.elapsed()
    );
    let attempt = &bed.store.delivery_attempts(sub, 1).await.unwrap()[0];
    let excerpt = attempt.response_excerpt.as_deref().unwrap_or_default();
    assert!(excerpt.starts_with("xxx") && excerpt.len() <= 512, "{}", excerpt.len());
    // What the receiver got out is what fits in the sockets' buffers, not gigabytes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = written.load(Ordering::Relaxed);
    assert!(written < 64 << 20, "the server read {written} bytes of three answers");
}

#[tokio::test]
async fn an_endless_answer_to_the_validation_event_is_cut_short() {
    let (url, written) = endless_receiver().await;
    let validator = Validator::new(loopback(), Duration::from_secs(20)).unwrap();
    let started = Instant::now();
    let outcome = validator
        .handshake(&HandshakeRequest {
            endpoint_url: &url,
            schema: EventSchema::EventGridSchema,
            subscription: "endless",
            topic: "/t",
            event_id: "e1",
            event_time: "2026-11-26T16:00:00.0000000Z",
            code: "code",
            validation_url: "http://127.0.0.1:1/validate",
            secret: b"secret",
        })
        .await;
    assert_eq!(
        outcome,
        Handshake::AwaitingManualAction,
        "no validationResponse in what was read"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = written.load(Ordering::Relaxed);
    assert!(written < 64 << 20, "the server read {written} bytes");
}

#[tokio::test]
async fn secrets_in_endpoint_urls_stay_out_of_the_delivery_log() {
    let bed = Bed::new(loopback()).await;
    let closed = ClosedPort::new();
    let refused = bed
        .subscribe(
            "refused",
            &format!("{}?code=s3cret-refused", closed.url),
            json!({"retryPolicy": {"maxDeliveryAttempts": 1}}),
        )
        .await;
    let hung = bed
        .subscribe(
            "hung",
            &format!("{}?code=s3cret-hung", hung_receiver().await),
            json!({"retryPolicy": {"maxDeliveryAttempts": 1}}),
        )
        .await;
    let (url, _) = receiver(vec![axum::http::StatusCode::BAD_GATEWAY]).await;
    let failing = bed
        .subscribe(
            "failing",
            &format!("{url}?code=s3cret-502"),
            json!({"retryPolicy": {"maxDeliveryAttempts": 1}}),
        )
        .await;
    bed.publish(1).await;
    for sub in [refused, hung, failing] {
        let stats = bed.settled(sub).await;
        let attempts = bed.store.delivery_attempts(sub, 10).await.unwrap();
        let texts = format!("{stats:?} {attempts:?}");
        assert!(!texts.contains("s3cret"), "{texts}");
    }
    let error = bed.store.delivery_stats(refused).await.unwrap().last_error.unwrap();
    assert!(error.contains("onnect"), "the error still says what happened: {error}");
}

#[tokio::test]
async fn a_dead_letter_folder_that_cannot_be_written_holds_back_only_its_own() {
    let bed = Bed::new(loopback()).await;
    let (url, _) = receiver(vec![axum::http::StatusCode::BAD_REQUEST]).await;
    let folder = |name: &str| json!({"deadLetterDestination": {"endpointType": "Datastore", "properties": {"datastoreName": "workspaceblobstore", "folder": name}}});
    // Written to the store directly: the API refuses such a folder.
    let broken = bed.subscribe("broken", &url, folder("bad\u{0}folder")).await;
    let fine = bed.subscribe("fine", &url, folder("dead")).await;
    bed.publish(2).await;
    assert_eq!(bed.settled(broken).await.dead_lettered, 2);
    assert_eq!(bed.settled(fine).await.dead_lettered, 2);

    let root = tempfile::tempdir().unwrap();
    let problems = mlgrid_delivery::ExportProblems::default();
    let mut exporter = mlgrid_delivery::DeadLetterExporter::new(bed.store.clone(), root.path().to_owned())
        .with_problems(problems.clone());
    assert_eq!(
        exporter.pass().await.unwrap(),
        2,
        "the fine subscription's two are written"
    );
    let problem = problems.of(broken).expect("the broken one's error is kept");
    assert!(problem.contains("workspaceblobstore"), "{problem}");
    assert_eq!(problems.of(fine), None);
    // The broken one waits out a backoff instead of failing every pass.
    assert_eq!(exporter.pass().await.unwrap(), 0);
    assert_eq!(common::walk(&root.path().join("workspaceblobstore/dead")).len(), 1);
}
