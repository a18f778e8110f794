//! `mlgrid bench pipeline`: submits runs of a chain of no-op steps (`true`) and measures
//! runs per second and each step's overhead: the time from the end of the step it
//! depends on to its own process start.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use super::local_server::{ClusterArgs, LocalCluster};
use super::stats::{Latencies, round3};
use crate::args::Global;
use crate::client::Client;

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Runs to submit.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Steps in the chain, each depending on the one before.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Submissions in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Give up waiting for the runs after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// A chain of `steps` steps running `true`, without reuse (every run runs every step).
fn definition(steps: usize) -> String {
    let mut yaml = String::from("name: bench-noop\nsteps:\n");
    for n in 0..steps {
        yaml.push_str(&format!(
            "  - name: s{n}\n    command: [\"true\"]\n    allow_reuse: false\n"
        ));
        if n > 0 {
            yaml.push_str(&format!("    depends_on: [s{}]\n", n - 1));
        }
    }
    yaml
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str()?.parse().ok()
}

/// Each step's overhead in a finished run: its start minus the end of the step it
/// depends on.
fn overheads(run: &Value) -> Vec<Duration> {
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let ended = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| time(&s["finishedAt"]))
    };
    steps
        .iter()
        .filter_map(|step| {
            let dependency = step["dependsOn"].as_array()?.first()?.as_str()?;
            let gap = time(&step["startedAt"])? - ended(dependency)?;
            gap.to_std().ok()
        })
        .collect()
}

pub async fn run(args: PipelineArgs, global: &Global) -> anyhow::Result<()> {
    if args.runs == 0 || args.steps == 0 || args.concurrency == 0 {
        bail!("--runs, --steps and --concurrency must be at least 1");
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
    let name = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client.post("/v1/workspaces", &json!({"name": name})).await?;
    let ws = format!("/v1/workspaces/{name}");
    let published = client
        .post(
            &format!("{ws}/pipelines"),
            &json!({"definition": definition(args.steps)}),
        )
        .await?;
    let id = published["id"]
        .as_str()
        .context("the publish answer has no id")?
        .to_owned();
    eprintln!(
        "bench: submitting {} runs of a {}-step chain of `true`, {} at a time",
        args.runs, args.steps, args.concurrency
    );

    let started = Instant::now();
    let submit = format!("{ws}/pipelines/{id}/submit");
    let body = json!({"ExperimentName": "bench"});
    let runs: Vec<String> = futures::stream::iter(0..args.runs)
        .map(|_| async {
            let answer = client.post(&submit, &body).await?;
            answer["Id"]
                .as_str()
                .map(str::to_owned)
                .context("a submission's answer has no Id")
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let deadline = started + Duration::from_secs(args.timeout);
    let finished = loop {
        let listed = client.get(&format!("{ws}/runs?experiment=bench")).await?;
        let pipeline_runs: Vec<&Value> = listed["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["runType"] == "azureml.PipelineRun")
            .collect();
        let done = pipeline_runs
            .iter()
            .filter(|r| matches!(r["status"].as_str(), Some("Completed" | "Failed" | "Canceled")))
            .count();
        if done == runs.len() {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} runs finished within {} s", runs.len(), args.timeout);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = (finished - started).as_secs_f64();

    let mut samples = Vec::new();
    let mut failed = 0;
    for run_id in &runs {
        let run = client.get(&format!("{ws}/pipeline-runs/{run_id}")).await?;
        if run["run"]["status"] != "Completed" {
            failed += 1;
        }
        samples.extend(overheads(&run));
    }
    let overhead = Latencies::new(samples);
    let result = json!({
        "bench": "pipeline",
        "server": local.as_ref().map_or("given", |l| l.description()),
        "runs": runs.len(),
        "steps_per_run": args.steps,
        "failed": failed,
        "seconds": round3(seconds),
        "runs_per_sec": round3(runs.len() as f64 / seconds),
        "median_step_overhead_ms": overhead.percentile_ms(50.0),
        "p99_step_overhead_ms": overhead.percentile_ms(99.0),
    });
    println!("{result}");
    if let Some(local) = local {
        local.stop().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_as_a_pipeline() {
        let pipeline = mlgrid_core::pipeline::Pipeline::parse(&definition(3)).unwrap();
        assert_eq!(pipeline.steps.len(), 3);
        assert!(pipeline.steps[2].depends_on.contains("s1"));
        assert!(!pipeline.steps[0].allow_reuse);
    }

    #[test]
    fn overhead_is_start_minus_the_dependency_end() {
        let run = json!({"steps": [
            {"name": "s0", "dependsOn": [], "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"},
            {"name": "s1", "dependsOn": ["s0"], "startedAt": "2026-01-01T00:00:01.004Z", "finishedAt": "2026-01-01T00:00:02Z"}
        ]});
        assert_eq!(overheads(&run), [Duration::from_millis(4)]);
    }
}
