//! Schedules from the command line against real servers, in real time: a Minute schedule
//! that fires on the minute and starts a run that completes, bad input refused naming
//! the rule, and three nodes on PostgreSQL of which the firing one is killed, without a
//! tick lost or doubled. Each waits for real minutes (one to two): the firing rules
//! themselves are tested with an injected clock in the pipelines crate.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

const PIPELINE: &str = "name: tick\nsteps:\n  - name: hello\n    command: [\"sh\", \"-c\", \"echo tick\"]\n";

fn publish(server: &Server, dir: &Path) -> String {
    let file = dir.join("tick.yml");
    std::fs::write(&file, PIPELINE).unwrap();
    let published = server.json(&["pipeline", "publish", "-w", "mlws", "-f", file.to_str().unwrap()]);
    published["id"].as_str().unwrap().to_owned()
}

/// The ticks a schedule fired, oldest first, once `enough` accepts them.
fn fires_until(server: &Server, name: &str, within: Duration, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let mut fires = server.json(&["schedule", "runs", "-w", "mlws", "-n", name]);
        let fires = fires.as_array_mut().map(std::mem::take).unwrap_or_default();
        let fires: Vec<Value> = fires.into_iter().rev().collect();
        if enough(&fires) {
            return fires;
        }
        assert!(started.elapsed() < within, "schedule {name} fired only {fires:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_minute_schedule_fires_on_the_minute_and_its_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.json(&["workspace", "create", "-n", "mlws"]);
    let pipeline = publish(&server, dir.path());

    let refused = server.cli(&[
        "schedule",
        "create",
        "-w",
        "mlws",
        "-n",
        "bad",
        "--pipeline-id",
        &pipeline,
        "-e",
        "ticks",
        "--frequency",
        "Minute",
        "--interval",
        "1",
        "--hours",
        "3",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("hours and minutes apply only to Day and Week recurrences"),
        "{stderr}"
    );
    let zone = server.cli(&[
        "schedule",
        "create",
        "-w",
        "mlws",
        "-n",
        "bad",
        "--pipeline-id",
        &pipeline,
        "-e",
        "ticks",
        "--frequency",
        "Day",
        "--interval",
        "1",
        "--time-zone",
        "Mars/Base",
    ]);
    assert!(String::from_utf8_lossy(&zone.stderr).contains("unknown time zone \"Mars/Base\""));

    let created = server.json(&[
        "schedule",
        "create",
        "-w",
        "mlws",
        "-n",
        "every-minute",
        "--pipeline-id",
        &pipeline,
        "-e",
        "ticks",
        "--frequency",
        "Minute",
        "--interval",
        "1",
    ]);
    assert_eq!(created["status"], "Active");
    let first: chrono::DateTime<chrono::Utc> = created["nextFireTime"].as_str().unwrap().parse().unwrap();
    let again = server.cli(&[
        "schedule",
        "create",
        "-w",
        "mlws",
        "-n",
        "EVERY-MINUTE",
        "--pipeline-id",
        &pipeline,
        "-e",
        "ticks",
        "--frequency",
        "Minute",
        "--interval",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let next = server.json(&["schedule", "next", "-w", "mlws", "-n", "every-minute", "--count", "5"]);
    let next = next.as_array().unwrap();
    assert_eq!(next.len(), 5);
    assert_eq!(
        next[0]["utc"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        first
    );
    assert!(next[0]["local"].is_string());
    assert_eq!(next[0]["timeZone"], "UTC");
    let table = server.cli(&["-o", "table", "schedule", "list", "-w", "mlws"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("every-minute"));

    let disable = server.cli(&["pipeline", "disable", "-w", "mlws", "--id", &pipeline]);
    let stderr = String::from_utf8_lossy(&disable.stderr);
    assert!(stderr.contains("active schedules use it: every-minute"), "{stderr}");

    // The first tick, on the minute (the scheduler sleeps until it, to the millisecond).
    let fires = fires_until(&server, "every-minute", Duration::from_secs(90), |f| !f.is_empty());
    let fired_at = chrono::Utc::now();
    assert_eq!(
        fires[0]["fireTime"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        first
    );
    assert_eq!(fires[0]["outcome"], "started");
    let recorded: chrono::DateTime<chrono::Utc> = fires[0]["recordedAt"].as_str().unwrap().parse().unwrap();
    assert!(
        (recorded - first).num_milliseconds() < 2000,
        "fired {recorded} for {first}"
    );
    assert!(fired_at >= first);
    let run_id = fires[0]["runId"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let run = server.json(&["pipeline", "show-run", "-w", "mlws", "--run-id", &run_id]);
        if run["run"]["status"] == "Completed" {
            assert_eq!(run["run"]["properties"]["azureml.runsource"], "Schedule");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "run stayed {run}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown = server.json(&["schedule", "show", "-w", "mlws", "-n", "every-minute"]);
    assert_eq!(shown["lastRunId"], run_id.as_str());
    let following: chrono::DateTime<chrono::Utc> = shown["nextFireTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(following, first + chrono::Duration::minutes(1));

    server.json(&["schedule", "disable", "-w", "mlws", "-n", "every-minute"]);
    assert_eq!(server.json(&["schedule", "list", "-w", "mlws"]), Value::Array(vec![]));
    assert_eq!(
        server
            .json(&["schedule", "list", "-w", "mlws", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A flag an update turns on, it turns off again.
    let update = |value: Option<&str>| {
        let mut args = vec![
            "schedule",
            "update",
            "-w",
            "mlws",
            "-n",
            "every-minute",
            "--continue-on-step-failure",
        ];
        args.extend(value);
        server.json(&args)["continueOnStepFailure"].clone()
    };
    assert_eq!(update(None), true);
    assert_eq!(update(Some("false")), false);
    server.json(&["pipeline", "disable", "-w", "mlws", "--id", &pipeline]);
    server.json(&["schedule", "delete", "-w", "mlws", "-n", "every-minute"]);
}

// Three nodes on one PostgreSQL.

const KEY: &str = "schedule-test-owner-key-0123456789abcdef";
const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn database_url() -> String {
    std::env::var("MLGRID_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([&database_url(), "-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "PostgreSQL at {} refused `{sql}` (is it running?): {}",
        database_url(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

fn node(schema: &Schema, name: &str, dir: &Path) -> Server {
    let base = database_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options%5Bsearch_path%5D={}", schema.0);
    let flags = [
        "--database-url",
        url.as_str(),
        "--node-id",
        name,
        "--scheduler-lease-seconds",
        "3",
    ];
    let env = [("MLGRID_SECRET", SECRET), ("MLGRID_BOOTSTRAP_KEY", KEY)];
    Server::start_with_env(dir, &flags, &env)
}

#[test]
fn three_nodes_fire_every_tick_once_when_the_firing_node_is_killed() {
    let schema = Schema(format!("schedules_{}", uuid::Uuid::new_v4().simple()));
    psql(&format!("CREATE SCHEMA {}", schema.0));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<(String, Server)> = ["node-a", "node-b", "node-c"]
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| {
            std::fs::write(dir.path().join("admin.key"), KEY).unwrap();
            (name.to_string(), node(&schema, name, dir.path()))
        })
        .collect();
    let first = &nodes[0].1;
    first.json(&["workspace", "create", "-n", "mlws"]);
    let pipeline = publish(first, dirs[0].path());
    first.json(&[
        "schedule",
        "create",
        "-w",
        "mlws",
        "-n",
        "every-minute",
        "--pipeline-id",
        &pipeline,
        "-e",
        "ticks",
        "--frequency",
        "Minute",
        "--interval",
        "1",
        "--misfire",
        "none",
    ]);

    // The first tick fires; then the node holding the scheduler lease is killed.
    fires_until(first, "every-minute", Duration::from_secs(90), |f| !f.is_empty());
    let holder = psql(&format!(
        "SELECT holder FROM {}.leases WHERE name = 'scheduler'",
        schema.0
    ));
    let index = nodes
        .iter()
        .position(|(name, _)| *name == holder)
        .expect("a node holds the lease");
    let (_, killed) = nodes.remove(index);
    killed.crash();
    let survivor = &nodes[0].1;

    // The next tick fires on a surviving node, once.
    let fires = fires_until(survivor, "every-minute", Duration::from_secs(90), |f| f.len() >= 2);
    let times: Vec<chrono::DateTime<chrono::Utc>> = fires
        .iter()
        .map(|f| f["fireTime"].as_str().unwrap().parse().unwrap())
        .collect();
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::minutes(1),
            "no tick lost: {times:?}"
        );
    }
    assert!(fires.iter().all(|f| f["outcome"] == "started"), "{fires:?}");
    let mut runs: Vec<&str> = fires.iter().map(|f| f["runId"].as_str().unwrap()).collect();
    runs.dedup();
    assert_eq!(runs.len(), fires.len(), "one run per tick");
    let started = psql(&format!(
        "SELECT count(*) FROM {}.pipeline_runs WHERE run_source = 'Schedule'",
        schema.0
    ));
    let recorded = psql(&format!("SELECT count(*) FROM {}.schedule_fires", schema.0));
    assert_eq!(
        started, recorded,
        "every run a schedule started is a tick's, and no tick started two"
    );
    let new_holder = psql(&format!(
        "SELECT holder FROM {}.leases WHERE name = 'scheduler'",
        schema.0
    ));
    assert_ne!(new_holder, holder);
}
