//! `mlgrid bench deliver`: events published to a topic with S webhook subscriptions,
//! received by local receivers; reports deliveries/s, publish-to-receipt latency and the
//! server's memory.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use clap::Args;
use serde_json::json;
use std::borrow::Cow;
use std::sync::Mutex;

use axum::body::Bytes;
use serde::Deserialize;

use super::local_server::ClusterArgs;
use super::stats::{Latencies, round3};
use super::topic::BenchTopic;
use crate::args::Global;

#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// Events to publish.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Webhook subscriptions, each receiving every event.
    #[arg(long, default_value_t = 10)]
    pub subscriptions: u32,
    /// Events per publish request.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Events per delivery request (the subscriptions' maxEventsPerBatch).
    #[arg(long, default_value_t = 1)]
    pub max_events_per_batch: u32,
    /// Events per second to offer; 0 publishes as fast as the server takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Publish requests in flight at once (48 keep a 2-core server's deliveries busy).
    #[arg(long, default_value_t = 48)]
    pub concurrency: usize,
    #[arg(long, default_value = "webhook", value_parser = ["webhook", "natsjetstream", "queue"])]
    pub destination: String,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What the receivers saw.
#[derive(Default)]
struct Received {
    /// Publish-to-receipt latency of every delivered event, in microseconds.
    latencies: Mutex<Vec<u64>>,
    /// (subscription, event number) pairs, to count duplicates.
    seen: Mutex<HashSet<(u32, u64)>>,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
}

/// What a receiver reads of a delivered event: the bench's own data, or the validation
/// handshake's code.
#[derive(Deserialize)]
struct Delivered<'a> {
    #[serde(rename = "eventType", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    data: DeliveredData<'a>,
}

#[derive(Deserialize)]
struct DeliveredData<'a> {
    n: Option<u64>,
    #[serde(rename = "sentAtMicros")]
    sent_at_micros: Option<u64>,
    #[serde(rename = "validationCode", borrow)]
    validation_code: Option<Cow<'a, str>>,
}

/// Takes a delivery, or answers the validation handshake as a receiver should. Kept
/// lean: the receivers share the machine with the server they measure.
async fn receive(State(received): State<Arc<Received>>, Path(subscription): Path<u32>, body: Bytes) -> String {
    let now = micros_now();
    let Ok(events) = serde_json::from_slice::<Vec<Delivered>>(&body) else {
        return "bad".into();
    };
    if let Some(code) = events
        .first()
        .filter(|e| e.event_type == mlgrid_core::validation::VALIDATION_EVENT_TYPE)
        .and_then(|e| e.data.validation_code.as_deref())
    {
        return json!({ "validationResponse": code }).to_string();
    }
    let mut latencies = Vec::with_capacity(events.len());
    {
        let mut seen = received.seen.lock().expect("never held across a panic");
        for event in &events {
            let (Some(n), Some(sent)) = (event.data.n, event.data.sent_at_micros) else {
                continue;
            };
            if seen.insert((subscription, n)) {
                latencies.push(now.saturating_sub(sent));
            } else {
                received.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    received.deliveries.fetch_add(latencies.len() as u64, Ordering::Relaxed);
    received
        .latencies
        .lock()
        .expect("never held across a panic")
        .extend(latencies);
    String::new()
}

pub async fn run(args: DeliverArgs, global: &Global) -> anyhow::Result<()> {
    if args.destination != "webhook" {
        bail!("--destination {} is not available yet; use webhook", args.destination);
    }
    if args.events == 0 || args.batch == 0 || args.subscriptions == 0 || args.concurrency == 0 {
        bail!("--events, --batch, --subscriptions and --concurrency must be at least 1");
    }
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/hook/{subscription}", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receivers = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let topic = BenchTopic::create(&args.cluster, global, &["--allow-loopback-webhooks"]).await?;
    let BenchTopic { endpoints, key, .. } = &topic;
    for s in 0..args.subscriptions {
        let destination = json!({"endpointType": "WebHook", "properties": {"endpointUrl": format!("{receivers}/hook/{s}"), "maxEventsPerBatch": args.max_events_per_batch}});
        topic
            .client
            .call(
                reqwest::Method::PUT,
                &format!("/v1/topics/{}/eventSubscriptions/sub-{s}", topic.name),
                Some(&json!({"properties": {"destination": destination}})),
            )
            .await?;
    }
    eprintln!("bench: {} subscriptions deliver to {receivers}", args.subscriptions);

    let expected = args.events * u64::from(args.subscriptions);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let requests = args.events.div_ceil(args.batch);
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.batch as f64 / args.rate));
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, next, endpoints, key) = (http.clone(), next.clone(), endpoints.clone(), key.clone());
        let (batch, total) = (args.batch, args.events);
        publishers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    return Ok::<(), anyhow::Error>(());
                }
                if let Some(interval) = interval {
                    tokio::time::sleep_until((started + interval.mul_f64(index as f64)).into()).await;
                }
                let first = index * batch;
                // Written out rather than built as JSON values: the publisher shares the
                // machine with the server it measures.
                let events: Vec<String> = (first..(first + batch).min(total))
                    .map(|n| {
                        format!(
                            r#"{{"id":"{}","subject":"bench/{n}","eventType":"Mlgrid.Bench.Delivered","eventTime":"2026-11-26T16:00:00Z","dataVersion":"1.0","data":{{"n":{n},"sentAtMicros":{}}}}}"#,
                            uuid::Uuid::new_v4(),
                            micros_now()
                        )
                    })
                    .collect();
                let endpoint = &endpoints[index as usize % endpoints.len()];
                let response = http
                    .post(endpoint)
                    .header("aeg-sas-key", &key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(format!("[{}]", events.join(",")))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("publishing failed: {} {}", response.status(), response.text().await.unwrap_or_default());
                }
            }
        });
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let mut last_report = Instant::now();
    while received.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if last_report.elapsed() >= Duration::from_secs(1) {
            let done = received.deliveries.load(Ordering::Relaxed);
            eprintln!(
                "bench: {done}/{expected} deliveries, {:.0}/s",
                done as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    while let Some(result) = publishers.join_next().await {
        result??;
    }
    let delivered = received.deliveries.load(Ordering::Relaxed);
    let latencies = Latencies::new(
        received
            .latencies
            .lock()
            .expect("never held across a panic")
            .iter()
            .map(|us| Duration::from_micros(*us))
            .collect(),
    );
    let result = json!({
        "bench": "deliver",
        "server": topic.server(global),
        "destination": args.destination,
        "events": args.events,
        "subscriptions": args.subscriptions,
        "batch": args.batch,
        "max_events_per_batch": args.max_events_per_batch,
        "rate": args.rate,
        "deliveries": delivered,
        "expected_deliveries": expected,
        "duplicates": received.duplicates.load(Ordering::Relaxed),
        "seconds": round3(elapsed),
        "deliveries_per_sec": round3(delivered as f64 / elapsed),
        "p50_ms": latencies.percentile_ms(50.0),
        "p99_ms": latencies.percentile_ms(99.0),
        "max_ms": latencies.percentile_ms(100.0),
        "rss_mb": topic.peak_rss_mb(),
    });
    topic.stop().await?;
    println!("{result}");
    if delivered < expected {
        bail!(
            "only {delivered} of {expected} deliveries arrived within {} s",
            args.timeout
        );
    }
    Ok(())
}
