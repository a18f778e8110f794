//! `mlgrid bench schedules`: many time schedules, most firing every minute on the same
//! second, and two figures: the server's CPU while no tick is due (what the schedules
//! cost at idle) and how late each tick is recorded.
//!
//! The timeline, so that each figure measures one thing:
//!
//! 1. A one-step pipeline running `true` is published, and (after the first idle window
//!    below) N schedules of it are created
//!    concurrently: nine in ten fire every minute from the first whole minute T0 that
//!    leaves room for the next step; the rest are hourly or daily, first due long after
//!    the bench, so that the idle index holds schedules that are not the earliest.
//! 2. Idle windows: with no requests, the server process's CPU time is read from
//!    `/proc` before and after (20 s by default), once before the schedules are created
//!    and once after, with nothing due before T0. `cpu_share` is the second: everything
//!    the server does at idle with N schedules (lease renewals, the executor's and the
//!    dispatcher's polls, pruning passes, checkpoints), which bounds the scheduler's share
//!    from above; the first says how much of it the server spends without any schedule.
//! 3. Ticks: the minute schedules fire at T0, T0 + 1 min, ... (`--minutes`). Each tick
//!    is recorded with the moment the store wrote its record (`recordedAt`, taken in the
//!    transaction that records it and submits its run); its delay is that minus its fire
//!    time. Every schedule's record of the run's ticks is read back once they are all in.
//!
//! The runs the ticks start are real runs of the server's executor, which competes for
//! the same cores and the same store as the scheduler: the delays include that load. The
//! schedules keep the default overlap policy (`skip` while a run of the schedule is not
//! over), so a tick whose previous run is still going is recorded as skipped rather than
//! piling runs up.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use super::local_server::{ClusterArgs, LocalCluster};
use super::stats::{Latencies, round3};
use crate::args::Global;
use crate::client::Client;

#[derive(Debug, Args)]
pub struct SchedulesArgs {
    /// Schedules to create; nine in ten fire every minute.
    #[arg(long, default_value_t = 10_000)]
    pub schedules: usize,
    /// Minutes of ticks to measure.
    #[arg(long, default_value_t = 2)]
    pub minutes: u32,
    /// Seconds of each idle window whose CPU is measured.
    #[arg(long, default_value_t = 20)]
    pub idle_seconds: u64,
    /// Schedules created at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Goals of issue 17: CPU at idle as a fraction of one core, and the p99 fire delay.
const CPU_SHARE_GOAL: f64 = 0.02;
const FIRE_DELAY_P99_GOAL_MS: f64 = 1000.0;

/// How long before T0 the idle window must end, so that no tick's work falls in it.
const IDLE_MARGIN: Duration = Duration::from_secs(5);

/// A pause before each idle window, for the writes before it to settle (the store's
/// checkpoint of them, above all).
const SETTLE: Duration = Duration::from_secs(3);

/// How long the ticks of the last minute may take to be recorded before the bench gives
/// up waiting and reports what it has.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// The recurrence of the `n`th schedule: nine in ten every minute from `t0`; the others
/// hourly from half an hour after it or daily from six hours after it, so that none of
/// them fires during the bench.
fn recurrence(n: usize, t0: DateTime<Utc>) -> Value {
    let at = |delta: TimeDelta| (t0 + delta).to_rfc3339();
    match n % 20 {
        9 => json!({"frequency": "Hour", "interval": 1, "startTime": at(TimeDelta::minutes(30))}),
        19 => json!({"frequency": "Day", "interval": 1, "startTime": at(TimeDelta::hours(6))}),
        _ => json!({"frequency": "Minute", "interval": 1, "startTime": at(TimeDelta::zero())}),
    }
}

fn fires_every_minute(n: usize) -> bool {
    !matches!(n % 20, 9 | 19)
}

fn name(n: usize) -> String {
    format!("s{n:05}")
}

/// The first whole minute at least `lead` from `now`.
fn first_tick(now: DateTime<Utc>, lead: TimeDelta) -> DateTime<Utc> {
    let earliest = now + lead;
    let floor = earliest
        .duration_trunc(TimeDelta::minutes(1))
        .expect("a minute divides any time");
    if floor == earliest {
        floor
    } else {
        floor + TimeDelta::minutes(1)
    }
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str()?.parse().ok()
}

/// What the record of the measured ticks holds.
#[derive(Debug, Default)]
struct Ticks {
    delays: Vec<Duration>,
    started: usize,
    skipped: usize,
    queued: usize,
    failed: usize,
}

impl Ticks {
    /// Adds the ticks of one schedule's record that fall in `[from, to]`.
    fn add(&mut self, fires: &[Value], from: DateTime<Utc>, to: DateTime<Utc>) {
        for fire in fires {
            let (Some(at), Some(recorded)) = (time(&fire["fireTime"]), time(&fire["recordedAt"])) else {
                continue;
            };
            if at < from || at > to {
                continue;
            }
            self.delays.push((recorded - at).to_std().unwrap_or(Duration::ZERO));
            match fire["outcome"].as_str() {
                Some("started") => self.started += 1,
                Some("skipped") => self.skipped += 1,
                Some("queued") => self.queued += 1,
                _ => self.failed += 1,
            }
        }
    }
}

pub async fn run(args: SchedulesArgs, global: &Global) -> anyhow::Result<()> {
    if args.schedules == 0 || args.minutes == 0 || args.concurrency == 0 {
        bail!("--schedules, --minutes and --concurrency must be at least 1");
    }
    let local = match &global.server {
        Some(_) => None,
        None => {
            let local = LocalCluster::start(&args.cluster, &[]).await?;
            eprintln!("bench: {}", local.started());
            Some(local)
        }
    };
    let client = match &local {
        Some(cluster) => Client::with_key(&cluster.urls()[0], &cluster.api_key),
        None => Client::new(global)?,
    };
    let workspace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client.post("/v1/workspaces", &json!({"name": workspace})).await?;
    let ws = format!("/v1/workspaces/{workspace}");
    let definition = "name: bench-tick\nsteps:\n  - name: tick\n    command: [\"true\"]\n    allow_reuse: false\n";
    let published = client
        .post(&format!("{ws}/pipelines"), &json!({"definition": definition}))
        .await?;
    let pipeline = published["id"]
        .as_str()
        .context("the publish answer has no id")?
        .to_owned();
    let idle = Duration::from_secs(args.idle_seconds);
    tokio::time::sleep(SETTLE).await;
    eprintln!("bench: idle window of {} s without schedules", idle.as_secs());
    let bare_share = idle_cpu_share(local.as_ref(), idle).await;
    eprintln!("bench: the server's CPU at idle without schedules: {bare_share:?} of a core");

    // Room for creating the schedules (4 ms each, twice what the embedded store takes
    // on a busy 2-core machine), the idle window and its margin.
    let lead = Duration::from_millis(args.schedules as u64 * 4) + idle + SETTLE + IDLE_MARGIN + Duration::from_secs(10);
    let t0 = first_tick(Utc::now(), TimeDelta::from_std(lead)?);
    let minute_schedules = (0..args.schedules).filter(|&n| fires_every_minute(n)).count();
    eprintln!(
        "bench: creating {} schedules ({minute_schedules} every minute from {t0}), {} at a time",
        args.schedules, args.concurrency
    );
    let creating = Instant::now();
    futures::stream::iter(0..args.schedules)
        .map(|n| {
            let body = json!({
                "pipelineId": pipeline,
                "experimentName": "bench-schedules",
                "recurrence": recurrence(n, t0),
            });
            let (client, path) = (&client, format!("{ws}/schedules/{}", name(n)));
            async move { client.put(&path, &body).await }
        })
        .buffer_unordered(args.concurrency)
        .enumerate()
        .map(|(done, created)| {
            if (done + 1) % 1000 == 0 {
                eprintln!("bench: {} schedules created", done + 1);
            }
            created
        })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let created_in = creating.elapsed();
    eprintln!(
        "bench: {} schedules created in {:.1} s ({:.0}/s)",
        args.schedules,
        created_in.as_secs_f64(),
        args.schedules as f64 / created_in.as_secs_f64()
    );

    // Idle: a moment for the creation's writes to settle, then no requests until the
    // window ends, which must end before T0.
    tokio::time::sleep(SETTLE).await;
    let until_t0 = (t0 - Utc::now()).to_std().unwrap_or_default();
    let idle = idle.min(until_t0.saturating_sub(IDLE_MARGIN));
    if idle < Duration::from_secs(5) {
        bail!(
            "creating the schedules took {:.0} s, leaving no idle window before the first tick at {t0}: \
             try fewer --schedules or a shorter --idle-seconds",
            created_in.as_secs_f64()
        );
    }
    eprintln!("bench: idle window of {} s with the schedules", idle.as_secs());
    let cpu_share = idle_cpu_share(local.as_ref(), idle).await;
    eprintln!(
        "bench: the server's CPU at idle with {} schedules: {cpu_share:?} of a core",
        args.schedules
    );

    let last = t0 + TimeDelta::minutes(i64::from(args.minutes) - 1);
    eprintln!(
        "bench: {} ticks of {minute_schedules} schedules due at each minute from {t0} to {last}",
        args.minutes
    );
    let ticking_cpu = local.as_ref().and_then(LocalCluster::cpu_seconds);
    let ticking = Instant::now();
    let drained = wait_for_ticks(&client, &ws, last, minute_schedules).await?;
    let busy_share = local
        .as_ref()
        .and_then(LocalCluster::cpu_seconds)
        .zip(ticking_cpu)
        .map(|(after, before)| (after - before) / ticking.elapsed().as_secs_f64());
    if !drained {
        eprintln!(
            "bench: not every tick of {last} was recorded within {} s; reporting what was",
            DRAIN_LIMIT.as_secs()
        );
    }

    eprintln!("bench: reading the record of every schedule's ticks");
    let mut ticks = Ticks::default();
    let records: Vec<anyhow::Result<Value>> =
        futures::stream::iter((0..args.schedules).filter(|&n| fires_every_minute(n)))
            .map(|n| {
                let (client, path) = (&client, format!("{ws}/schedules/{}/runs", name(n)));
                async move { client.get(&path).await }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    for record in records {
        let record = record?;
        ticks.add(record["value"].as_array().map_or(&[], Vec::as_slice), t0, last);
    }
    let expected = minute_schedules * args.minutes as usize;
    let delays = Latencies::new(ticks.delays.clone());
    let p99 = delays.percentile_ms(99.0);
    let result = json!({
        "bench": "schedules",
        "server": local.as_ref().map_or("given", |l| l.description()),
        "schedules": args.schedules,
        "minute_schedules": minute_schedules,
        "created_per_sec": round3(args.schedules as f64 / created_in.as_secs_f64()),
        "ticks": ticks.delays.len(),
        "ticks_expected": expected,
        "fire_delay_p50_ms": delays.percentile_ms(50.0),
        "fire_delay_p99_ms": p99,
        "fire_delay_max_ms": delays.percentile_ms(100.0),
        "runs_started": ticks.started,
        "ticks_skipped": ticks.skipped,
        "ticks_queued": ticks.queued,
        "ticks_failed": ticks.failed,
        "idle_seconds": idle.as_secs(),
        "cpu_share": cpu_share.map(round3),
        "cpu_share_without_schedules": bare_share.map(round3),
        "cpu_share_while_ticking": busy_share.map(round3),
        "load_average": load_average(),
        "cpu_share_goal_met": cpu_share.map(|share| share < CPU_SHARE_GOAL),
        "fire_delay_goal_met": ticks.delays.len() == expected && p99 < FIRE_DELAY_P99_GOAL_MS,
    });
    println!("{result}");
    if let Some(local) = local {
        local.stop().await?;
    }
    Ok(())
}

/// The CPU the bench's servers use over `window` while the bench sends nothing, as a
/// fraction of one core; `None` against a server the bench did not start.
async fn idle_cpu_share(local: Option<&LocalCluster>, window: Duration) -> Option<f64> {
    let before = local.and_then(LocalCluster::cpu_seconds);
    tokio::time::sleep(window).await;
    let after = local.and_then(LocalCluster::cpu_seconds);
    before
        .zip(after)
        .map(|(before, after)| (after - before) / window.as_secs_f64())
}

/// Waits until every minute schedule has handled the tick at `last` (its latest tick is
/// that one or later), asking every 5 s: `false` when [`DRAIN_LIMIT`] passed first.
async fn wait_for_ticks(client: &Client, ws: &str, last: DateTime<Utc>, expected: usize) -> anyhow::Result<bool> {
    let last_due = last + TimeDelta::from_std(DRAIN_LIMIT)?;
    if let Ok(wait) = (last - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    loop {
        // A listing of every schedule is one request, read apart from the writes of the
        // ticks; asking seldom keeps it from weighing on what it measures.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let listed = client.get(&format!("{ws}/schedules")).await?;
        let done = listed["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| time(&s["lastFireTime"]).is_some_and(|at| at >= last))
            .count();
        eprintln!("bench: {done} of {expected} schedules have handled the tick of {last}");
        if done >= expected {
            return Ok(true);
        }
        if Utc::now() > last_due {
            return Ok(false);
        }
    }
}

/// The machine's 1-minute load average, as `/proc/loadavg` gives it: how busy the shared
/// machine was besides the bench.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_first_tick_is_a_whole_minute_after_the_lead() {
        let lead = TimeDelta::seconds(50);
        assert_eq!(first_tick(at("2026-01-01T00:00:10Z"), lead), at("2026-01-01T00:01:00Z"));
        assert_eq!(first_tick(at("2026-01-01T00:00:11Z"), lead), at("2026-01-01T00:02:00Z"));
    }

    #[test]
    fn nine_in_ten_schedules_fire_every_minute() {
        let t0 = at("2026-01-01T00:05:00Z");
        let every_minute = (0..1000).filter(|&n| fires_every_minute(n)).count();
        assert_eq!(every_minute, 900);
        for n in 0..20 {
            let minute = recurrence(n, t0)["frequency"] == "Minute";
            assert_eq!(minute, fires_every_minute(n), "schedule {n}");
        }
    }

    #[test]
    fn only_ticks_in_the_window_count() {
        let fires = json!([
            {"fireTime": "2026-01-01T00:07:00Z", "recordedAt": "2026-01-01T00:07:00.5Z", "outcome": "started"},
            {"fireTime": "2026-01-01T00:06:00Z", "recordedAt": "2026-01-01T00:06:00.25Z", "outcome": "skipped"},
            {"fireTime": "2026-01-01T00:05:00Z", "recordedAt": "2026-01-01T00:05:00.1Z", "outcome": "started"},
        ]);
        let mut ticks = Ticks::default();
        ticks.add(
            fires.as_array().unwrap(),
            at("2026-01-01T00:05:00Z"),
            at("2026-01-01T00:06:00Z"),
        );
        assert_eq!(ticks.delays, [Duration::from_millis(250), Duration::from_millis(100)]);
        assert_eq!((ticks.started, ticks.skipped), (1, 1));
    }
}
