//! Pipelines from the command line against a real server: publish, submit, logs, cancel,
//! a server that dies while a step runs, and `mlgrid demo`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Server};
use serde_json::Value;

const SLOW: &str = r#"name: slow
steps:
  - name: wait
    command: ["sh", "-c", "echo started; echo $$ > \"$MLGRID_OUTPUT_PID/pid\"; sleep 60 & wait"]
    outputs: [pid]
    allow_reuse: false
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Waits until `done` accepts the pipeline run, and returns it.
fn wait_for(server: &Server, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let run = server.json(&["pipeline", "show-run", "-w", "mlws", "--run-id", run_id]);
        if done(&run) {
            return run;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "run {run_id} stayed {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ended(run: &Value) -> bool {
    matches!(run["run"]["status"].as_str(), Some("Completed" | "Failed" | "Canceled"))
}

/// Whether a process runs (a zombie, dead but not yet reaped, does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command's name, which is in parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn publish_submit_and_read_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.json(&["workspace", "create", "-n", "mlws"]);
    let file = write(
        dir.path(),
        "greet.yml",
        "name: greet\nparameters:\n  who: {type: string, default: world}\nsteps:\n  - name: hello\n    command: [\"sh\", \"-c\", \"echo hello ${parameters.who}; echo $MLGRID_PARAM_WHO >&2\"]\n",
    );
    let published = server.json(&["pipeline", "publish", "-w", "mlws", "-f", &file]);
    assert_eq!(published["version"], "1");
    let id = published["id"].as_str().unwrap();
    assert!(published["endpoint"].as_str().unwrap().contains(id));

    let submitted = server.json(&[
        "pipeline",
        "submit",
        "-w",
        "mlws",
        "--id",
        id,
        "-e",
        "greetings",
        "--param",
        "who=mlgrid",
    ]);
    let run_id = submitted["Id"].as_str().unwrap();
    let run = wait_for(&server, run_id, ended);
    assert_eq!(run["run"]["status"], "Completed", "{run}");
    let out = server.cli(&["run", "logs", "-w", "mlws", "--run-id", run_id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello mlgrid\n");
    let err = server.cli(&["run", "logs", "-w", "mlws", "--run-id", run_id, "--stderr"]);
    assert_eq!(String::from_utf8_lossy(&err.stdout), "mlgrid\n");

    let wrong = server.cli(&[
        "pipeline",
        "submit",
        "-w",
        "mlws",
        "--id",
        id,
        "-e",
        "greetings",
        "--param",
        "nobody=1",
    ]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no parameter `nobody`"));

    server.json(&["pipeline", "disable", "-w", "mlws", "--id", id]);
    let refused = server.cli(&["pipeline", "submit", "-w", "mlws", "--id", id, "-e", "greetings"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("disabled"));
}

#[test]
fn cancelling_a_run_kills_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let (server, run_id, pid) = slow_run(dir.path());
    assert!(alive(pid));
    server.json(&["run", "cancel", "-w", "mlws", "--run-id", &run_id]);
    let run = wait_for(&server, &run_id, ended);
    assert_eq!(run["run"]["status"], "Canceled", "{run}");
    assert!(!alive(pid), "the step's shell outlived the cancellation");
}

/// Finds the pid a step wrote under the runs folder.
fn wait_for_pid(runs: &Path) -> i32 {
    let started = Instant::now();
    loop {
        let found = walk(runs).into_iter().find(|p| p.ends_with("pid/pid"));
        if let Some(text) = found.and_then(|p| std::fs::read_to_string(p).ok())
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the step did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A server on `dir` running the slow pipeline's step: the server, the run, the pid of
/// the step's shell.
fn slow_run(dir: &Path) -> (Server, String, i32) {
    let server = Server::start(dir);
    server.json(&["workspace", "create", "-n", "mlws"]);
    let file = write(dir, "slow.yml", SLOW);
    let id = server.json(&["pipeline", "publish", "-w", "mlws", "-f", &file])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run_id = server.json(&["pipeline", "submit", "-w", "mlws", "--id", &id, "-e", "slow"])["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = wait_for_pid(&dir.join("pipeline-runs"));
    (server, run_id, pid)
}

#[test]
fn a_step_running_when_the_server_dies_is_failed_on_restart_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let (server, run_id, pid) = slow_run(dir.path());
    // A graceful stop kills the step's processes and records why.
    assert!(server.terminate());
    assert!(!alive(pid), "the step outlived the server");
    let server = Server::start(dir.path());
    let run = wait_for(&server, &run_id, ended);
    assert_eq!(run["run"]["status"], "Failed", "{run}");
    let error = run["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("server"), "{run}");
}

#[test]
fn a_step_left_running_by_a_crash_is_killed_and_failed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, run_id, pid) = slow_run(dir.path());
    server.crash();
    let server = Server::start(dir.path());
    let run = wait_for(&server, &run_id, ended);
    assert_eq!(run["run"]["status"], "Failed", "{run}");
    assert!(
        run["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("server restarted"),
        "{run}"
    );
    let started = Instant::now();
    while alive(pid) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the crashed server's step still runs");
}

#[test]
fn the_demo_closes_the_loop() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "got Microsoft.MachineLearningServices.ModelRegistered",
        "train Completed",
        "train: training diabetes for 3 epochs on 4 rows",
        "incoming/batch-2.csv",
        "train: training diabetes for 3 epochs on 6 rows",
        "the loops closed",
    ] {
        assert!(printed.contains(expected), "`{expected}` missing from:\n{printed}");
    }
}
