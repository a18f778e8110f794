//! `mlgrid bench publish`: Event Grid events into a custom topic, as fast as possible or
//! at a fixed rate; reports events/s, request latency percentiles and server memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::local_server::ClusterArgs;
use super::stats::{Latencies, round3};
use super::topic::BenchTopic;
use crate::args::Global;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Events to publish in all.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Bytes of JSON per event (padded in `data`).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Events per second to offer; 0 sends as fast as the server takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// One request body: a JSON array of `count` events of about `size` bytes each.
fn request_body(first: u64, count: u64, size: usize) -> Bytes {
    let events: Vec<Value> = (first..first + count)
        .map(|n| {
            let mut event = json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "subject": format!("bench/events/{n}"),
                "eventType": "Mlgrid.Bench.Published",
                "eventTime": "2026-11-26T16:00:00.0000000Z",
                "dataVersion": "1.0",
                "data": {"n": n, "pad": ""},
            });
            let pad = size.saturating_sub(event.to_string().len());
            event["data"]["pad"] = json!("x".repeat(pad));
            event
        })
        .collect();
    Bytes::from(serde_json::to_vec(&events).expect("JSON values serialise"))
}

pub async fn run(args: PublishArgs, global: &Global) -> anyhow::Result<()> {
    if args.events == 0 || args.batch == 0 || args.concurrency == 0 || args.rate < 0.0 {
        bail!("--events, --batch and --concurrency must be at least 1, and --rate 0 or more");
    }
    let topic = BenchTopic::create(&args.cluster, global, &[]).await?;
    let BenchTopic { endpoints, key, .. } = &topic;

    eprintln!(
        "bench: preparing {} events of {} bytes in requests of {}",
        args.events, args.size, args.batch
    );
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..args.events.div_ceil(args.batch))
            .map(|i| {
                let first = i * args.batch;
                request_body(first, args.batch.min(args.events - first), args.size)
            })
            .collect(),
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.batch as f64 / args.rate));
    let started = Instant::now();
    let progress = tokio::spawn({
        let published = published.clone();
        let total = args.events;
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let done = published.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "bench: {done}/{total} events published, {:.0} events/s",
                    done as f64 / secs
                );
            }
        }
    });

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, bodies, next, published, first_error) = (
            http.clone(),
            bodies.clone(),
            next.clone(),
            published.clone(),
            first_error.clone(),
        );
        let (endpoints, key) = (endpoints.clone(), key.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index as usize) else {
                    break;
                };
                // At a fixed rate, latency counts from when the request was due, so that a
                // slow server cannot hide its queueing (no coordinated omission).
                let due = match interval {
                    Some(interval) => {
                        let due = started + interval.mul_f64(index as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let response = http
                    .post(&endpoints[index as usize % endpoints.len()])
                    .header("aeg-sas-key", &key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let outcome = match response {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                };
                latencies.push(due.elapsed());
                match outcome {
                    Ok(()) => {
                        let count =
                            serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).map_or(0, |v| v.len() as u64);
                        published.fetch_add(count, Ordering::Relaxed);
                    }
                    Err(message) => {
                        errors += 1;
                        first_error.lock().await.get_or_insert(message);
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(result) = workers.join_next().await {
        let (latencies, worker_errors) = result?;
        all.extend(latencies);
        errors += worker_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();

    let stored = topic.client.get(&format!("/v1/topics/{}", topic.name)).await?["lastSequence"]
        .as_u64()
        .unwrap_or(0);
    let requests = all.len();
    let latencies = Latencies::new(all);
    let delivered = published.load(Ordering::Relaxed);
    let result = json!({
        "bench": "publish",
        "server": topic.server(global),
        "events": args.events,
        "batch": args.batch,
        "size": args.size,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "requests": requests,
        "errors": errors,
        "seconds": round3(elapsed),
        "events_per_sec": round3(delivered as f64 / elapsed),
        "p50_ms": latencies.percentile_ms(50.0),
        "p99_ms": latencies.percentile_ms(99.0),
        "max_ms": latencies.percentile_ms(100.0),
        "rss_mb": topic.peak_rss_mb(),
        "stored_events": stored,
    });
    topic.stop().await?;
    println!("{result}");
    if let Some(message) = first_error.lock().await.take() {
        bail!("{errors} requests failed; the first: {message}");
    }
    if stored != args.events {
        bail!("the topic holds {stored} events after publishing {}", args.events);
    }
    Ok(())
}
