//! `mlgrid bench soak`: a long run at a steady rate to S webhook subscriptions, watching
//! what must stay bounded (the server's memory, the write-ahead log, the database once
//! the retention is reached) and what must never happen (a lost or doubled delivery).
//! Progress each `--report-every` seconds on stderr; one JSON line at the end.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use super::deliver::{Offer, spawn_publishers};
use super::local_server::{ClusterArgs, Sample};
use super::receivers;
use super::stats::{cpu_seconds, round3};
use super::topic::BenchTopic;
use crate::args::Global;

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long to publish.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Events per second offered.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Webhook subscriptions, each receiving every event.
    #[arg(long, default_value_t = 10)]
    pub subscriptions: u32,
    /// The retention of the event log and of delivered deliveries and attempts on the
    /// server the bench starts (`serve --retention D --delivery-retention D`), e.g. `5m`.
    #[arg(long)]
    pub retention: Option<String>,
    /// Events per publish request.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 48)]
    pub concurrency: usize,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 60)]
    pub report_every: u64,
    /// How long to wait for the last deliveries once publishing is over, in seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

const MB: f64 = 1024.0 * 1024.0;

fn mb(bytes: u64) -> f64 {
    round3(bytes as f64 / MB)
}

/// A sample as the result shows it.
fn shown(sample: Option<Sample>) -> Value {
    let Some(sample) = sample else {
        return Value::Null;
    };
    json!({
        "rss_mb": sample.rss_mb,
        "wal_mb": sample.store.map(|s| mb(s.wal_bytes)),
        "db_mb": sample.store.map(|s| mb(s.database_bytes)),
    })
}

/// Where the machine's CPU went between two moments: the server's and this process's
/// (the publishers and the receivers) in cores, and the server's per delivery. On a
/// machine this small the bench shares the cores with the server, so these say whether
/// a shortfall is the server's cost or the machine's size.
#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    server: Option<f64>,
    bench: Option<f64>,
    deliveries: u64,
}

impl CpuMark {
    fn now(sample: Option<Sample>, deliveries: u64) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: sample.and_then(|s| s.cpu_seconds),
            bench: cpu_seconds(0),
            deliveries,
        }
    }

    /// What was used since `earlier`.
    fn since(&self, earlier: &CpuMark) -> Value {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let delivered = self.deliveries.saturating_sub(earlier.deliveries);
        let server = self.server.zip(earlier.server).map(|(now, then)| now - then);
        let bench = self.bench.zip(earlier.bench).map(|(now, then)| now - then);
        json!({
            "deliveries_per_sec": round3(delivered as f64 / wall),
            "server_cores": server.map(|s| round3(s / wall)),
            "bench_cores": bench.map(|b| round3(b / wall)),
            "server_cpu_us_per_delivery": server.filter(|_| delivered > 0).map(|s| round3(s * 1e6 / delivered as f64)),
        })
    }
}

/// The largest of the values seen, if any.
#[derive(Default)]
struct Peak(Option<u64>);

impl Peak {
    fn see(&mut self, value: Option<u64>) {
        if let Some(value) = value {
            self.0 = Some(self.0.map_or(value, |peak| peak.max(value)));
        }
    }
}

pub async fn run(args: SoakArgs, global: &Global) -> anyhow::Result<()> {
    if args.minutes <= 0.0 || args.rate <= 0.0 || args.subscriptions == 0 || args.batch == 0 || args.concurrency == 0 {
        bail!("--minutes and --rate must be above 0; --subscriptions, --batch and --concurrency at least 1");
    }
    let (receivers, received) = receivers::start(args.subscriptions as usize).await?;
    let mut flags = vec!["--allow-loopback-webhooks"];
    if let Some(retention) = &args.retention {
        flags.extend([
            "--retention",
            retention.as_str(),
            "--delivery-retention",
            retention.as_str(),
        ]);
    }
    let topic = BenchTopic::create(&args.cluster, global, &flags).await?;
    topic.subscribe_webhooks(&receivers, 1).await?;

    let events = (args.minutes * 60.0 * args.rate).round() as u64;
    let expected = events * u64::from(args.subscriptions);
    let publishing = Duration::from_secs_f64(args.minutes * 60.0);
    let start = topic.sample();
    let started = Instant::now();
    let first_mark = CpuMark::now(start, 0);
    let mut last_mark = first_mark;
    let offer = Offer {
        events,
        batch: args.batch,
        rate: args.rate,
        concurrency: args.concurrency,
    };
    let mut publishers = spawn_publishers(&topic, &offer, started)?;
    eprintln!(
        "bench: soaking for {} min at {} events/s to {} subscriptions ({events} events, {expected} deliveries)",
        args.minutes, args.rate, args.subscriptions
    );

    let (mut middle, mut after_5_min) = (None, None);
    let (mut peak_wal, mut peak_rss_kb) = (Peak::default(), Peak::default());
    let mut reports = Vec::new();
    let mut next_report = started + Duration::from_secs(args.report_every);
    let drain_deadline = started + publishing + Duration::from_secs(args.drain_timeout);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sample = topic.sample();
        peak_wal.see(sample.and_then(|s| s.store).map(|s| s.wal_bytes));
        peak_rss_kb.see(sample.and_then(|s| s.rss_mb).map(|mb| (mb * 1024.0) as u64));
        let elapsed = started.elapsed();
        if middle.is_none() && elapsed >= publishing / 2 {
            middle = sample;
        }
        if after_5_min.is_none() && elapsed >= Duration::from_secs(300) {
            after_5_min = sample;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(args.report_every);
            let window = received.take_window();
            let mark = CpuMark::now(sample, received.deliveries());
            let report = json!({
                "minute": round3(elapsed.as_secs_f64() / 60.0),
                "offered": events.min((elapsed.as_secs_f64() * args.rate) as u64),
                "deliveries": received.deliveries(),
                "duplicates": received.duplicates(),
                "p99_ms": window.percentile_ms(99.0),
                "server": shown(sample),
                "since_last": mark.since(&last_mark),
            });
            last_mark = mark;
            eprintln!("bench: {report}");
            reports.push(report);
        }
        while let Some(result) = publishers.try_join_next() {
            result??;
        }
        let published_all = publishers.is_empty();
        if (published_all && received.deliveries() >= expected) || Instant::now() >= drain_deadline {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let end = topic.sample();
    let delivered = received.deliveries();
    let cpu = CpuMark::now(end, delivered).since(&first_mark);
    let latencies = received.latencies();
    let result = json!({
        "bench": "soak",
        "server": topic.server(global),
        "minutes": args.minutes,
        "rate": args.rate,
        "subscriptions": args.subscriptions,
        "retention": args.retention,
        "events": events,
        "expected_deliveries": expected,
        "deliveries": delivered,
        "lost": expected.saturating_sub(delivered),
        "duplicates": received.duplicates(),
        "seconds": round3(seconds),
        "deliveries_per_sec": round3(delivered as f64 / seconds),
        "p50_ms": latencies.percentile_ms(50.0),
        "p99_ms": latencies.percentile_ms(99.0),
        "max_ms": latencies.percentile_ms(100.0),
        "start": shown(start),
        "after_5_min": shown(after_5_min),
        "middle": shown(middle),
        "end": shown(end),
        "peak_wal_mb": peak_wal.0.map(mb),
        "peak_rss_mb": peak_rss_kb.0.map(|kb| round3(kb as f64 / 1024.0)),
        "cpu": cpu,
        "reports": reports,
    });
    topic.stop().await?;
    println!("{result}");
    if delivered < expected {
        bail!(
            "{} of {expected} deliveries were lost (not received within {} s of the last publish)",
            expected - delivered,
            args.drain_timeout
        );
    }
    Ok(())
}
