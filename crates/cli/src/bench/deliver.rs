//! `mlgrid bench deliver`: events published to a topic with S webhook subscriptions,
//! received by local receivers; reports deliveries/s, publish-to-receipt latency and the
//! server's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::local_server::ClusterArgs;
use super::receivers::{self, bench_event};
use super::stats::round3;
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

/// What publishers offer: how many events, how many a request, how fast, how many
/// requests in flight.
pub struct Offer {
    pub events: u64,
    pub batch: u64,
    pub rate: f64,
    pub concurrency: usize,
}

impl DeliverArgs {
    fn offer(&self) -> Offer {
        Offer {
            events: self.events,
            batch: self.batch,
            rate: self.rate,
            concurrency: self.concurrency,
        }
    }
}

/// Publishes bench events `0..offer.events` to the topic's endpoints in turn, at
/// `offer.rate` from `started` (as fast as possible at 0).
pub fn spawn_publishers(
    topic: &BenchTopic,
    offer: &Offer,
    started: Instant,
) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(offer.concurrency)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let requests = offer.events.div_ceil(offer.batch);
    let interval = (offer.rate > 0.0).then(|| Duration::from_secs_f64(offer.batch as f64 / offer.rate));
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..offer.concurrency {
        let (http, next, endpoints, key) = (http.clone(), next.clone(), topic.endpoints.clone(), topic.key.clone());
        let (batch, total) = (offer.batch, offer.events);
        publishers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    return Ok(());
                }
                if let Some(interval) = interval {
                    tokio::time::sleep_until((started + interval.mul_f64(index as f64)).into()).await;
                }
                let first = index * batch;
                let events: Vec<String> = (first..(first + batch).min(total)).map(bench_event).collect();
                let endpoint = &endpoints[index as usize % endpoints.len()];
                let response = http
                    .post(endpoint)
                    .header("aeg-sas-key", &key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(format!("[{}]", events.join(",")))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!(
                        "publishing failed: {} {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
            }
        });
    }
    Ok(publishers)
}

pub async fn run(args: DeliverArgs, global: &Global) -> anyhow::Result<()> {
    if args.destination != "webhook" {
        bail!("--destination {} is not available yet; use webhook", args.destination);
    }
    if args.events == 0 || args.batch == 0 || args.subscriptions == 0 || args.concurrency == 0 {
        bail!("--events, --batch, --subscriptions and --concurrency must be at least 1");
    }
    let (receivers, received) = receivers::start(args.subscriptions as usize).await?;
    let topic = BenchTopic::create(&args.cluster, global, &["--allow-loopback-webhooks"]).await?;
    topic.subscribe_webhooks(&receivers, args.max_events_per_batch).await?;

    let expected = args.events * u64::from(args.subscriptions);
    let started = Instant::now();
    let mut publishers = spawn_publishers(&topic, &args.offer(), started)?;
    let deadline = started + Duration::from_secs(args.timeout);
    let mut last_report = Instant::now();
    while received.deliveries() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if last_report.elapsed() >= Duration::from_secs(1) {
            let done = received.deliveries();
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
    let delivered = received.deliveries();
    let latencies = received.latencies();
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
        "duplicates": received.duplicates(),
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
