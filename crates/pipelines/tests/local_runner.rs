//! The local runner with real processes: exits, missing programs, timeouts and
//! cancellations that leave no process behind, and logs cut at their cap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlgrid_pipelines::runner::{KILL_GRACE, LOG_CAP_BYTES};
use mlgrid_pipelines::{ExitOutcome, LocalProcessRunner, StepExit, StepRunner, StepSpec};
use tokio_util::sync::CancellationToken;

/// A step running `program args` in `dir`, with its logs there, and only PATH set.
fn spec(dir: &Path, program: &str, args: &[&str]) -> StepSpec {
    StepSpec {
        step: "s".to_owned(),
        program: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: [("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned())].into(),
        working_dir: dir.to_owned(),
        timeout: None,
        stdout_log: dir.join("stdout.log"),
        stderr_log: dir.join("stderr.log"),
        data_paths: BTreeMap::new(),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
    }
}

async fn run(spec: &StepSpec) -> StepExit {
    LocalProcessRunner.run(spec, CancellationToken::new()).await
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Polls `condition` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let limit = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < limit, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `pid` (a `sleep`) is gone: no such process, a zombie waiting for
/// its new parent to reap it, or the pid already another program's.
fn gone(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return true;
    };
    let name = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start();
    name != "sleep" || state.starts_with('Z')
}

/// The script of a step that starts a child, writes its pid to `child.pid`, and sleeps.
const SLEEPS_WITH_A_CHILD: &str = "sleep 100 & echo $! > child.pid.tmp; mv child.pid.tmp child.pid; sleep 100";

fn child_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("child.pid")).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn true_succeeds_with_its_start_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let before = chrono::Utc::now();
    let exit = run(&spec(dir.path(), "true", &[])).await;
    assert_eq!(exit.outcome, ExitOutcome::Succeeded);
    assert!(exit.started_at_utc >= before && exit.ended_at_utc >= exit.started_at_utc);
    assert!(exit.ended_at >= exit.started_at);
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (0, 0));
    assert_eq!(log(&dir.path().join("stdout.log")), "");
}

#[tokio::test]
async fn the_exit_code_and_the_output_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let exit = run(&spec(dir.path(), "sh", &["-c", "echo out; echo err >&2; exit 3"])).await;
    assert_eq!(
        exit.outcome,
        ExitOutcome::Failed {
            exit_code: Some(3),
            signal: None,
            reason: "exited with code 3".to_owned()
        }
    );
    assert_eq!(log(&dir.path().join("stdout.log")), "out\n");
    assert_eq!(log(&dir.path().join("stderr.log")), "err\n");
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (4, 4));
}

#[tokio::test]
async fn a_signal_is_reported_by_number_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let exit = run(&spec(dir.path(), "sh", &["-c", "kill -9 $$"])).await;
    assert_eq!(exit.outcome.to_string(), "killed by signal 9 (SIGKILL)");
    assert!(matches!(
        exit.outcome,
        ExitOutcome::Failed {
            signal: Some(9),
            exit_code: None,
            ..
        }
    ));
}

#[tokio::test]
async fn a_missing_program_fails_saying_so_in_its_stderr_log() {
    let dir = tempfile::tempdir().unwrap();
    let exit = run(&spec(dir.path(), "no-such-program-mlgrid", &["x"])).await;
    let ExitOutcome::Failed { exit_code, reason, .. } = &exit.outcome else {
        panic!("{:?}", exit.outcome);
    };
    assert_eq!(*exit_code, None);
    assert_eq!(reason, "command not found: no-such-program-mlgrid");
    assert_eq!(
        log(&dir.path().join("stderr.log")),
        "command not found: no-such-program-mlgrid\n"
    );
}

#[tokio::test]
async fn a_file_that_is_not_executable_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("train.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let exit = run(&spec(dir.path(), script.to_str().unwrap(), &[])).await;
    let stderr = log(&dir.path().join("stderr.log"));
    assert!(stderr.starts_with("permission denied: "), "{stderr}");
    assert_eq!(stderr.trim_end(), exit.outcome.to_string());
}

#[tokio::test]
async fn a_missing_working_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), "true", &[]);
    spec.working_dir = dir.path().join("nowhere");
    let exit = run(&spec).await;
    let expected = format!("working directory does not exist: {}", spec.working_dir.display());
    assert_eq!(exit.outcome.to_string(), expected);
    assert_eq!(log(&spec.stderr_log), format!("{expected}\n"));
}

#[tokio::test]
async fn a_timeout_kills_the_step_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), "sh", &["-c", SLEEPS_WITH_A_CHILD]);
    spec.timeout = Some(Duration::from_millis(1500));
    let exit = run(&spec).await;
    assert_eq!(
        exit.outcome,
        ExitOutcome::TimedOut {
            after: Duration::from_millis(1500)
        }
    );
    assert_eq!(exit.outcome.to_string(), "timed out after 1500ms");
    assert!(
        exit.ended_at - exit.started_at < KILL_GRACE,
        "sh and sleep end at SIGTERM, without waiting for SIGKILL"
    );
    let pid = child_pid(dir.path()).expect("the child started within the timeout");
    eventually("the child is killed with the step", || gone(pid)).await;
}

#[tokio::test]
async fn a_cancellation_kills_the_step_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "sh", &["-c", SLEEPS_WITH_A_CHILD]);
    let cancel = CancellationToken::new();
    let running = tokio::spawn({
        let (spec, cancel) = (spec.clone(), cancel.clone());
        async move { LocalProcessRunner.run(&spec, cancel).await }
    });
    eventually("the child started", || child_pid(dir.path()).is_some()).await;
    let pid = child_pid(dir.path()).unwrap();
    assert!(!gone(pid));
    cancel.cancel();
    let exit = running.await.unwrap();
    assert_eq!(exit.outcome, ExitOutcome::Canceled);
    eventually("the child is killed with the step", || gone(pid)).await;
}

#[tokio::test]
async fn a_child_that_cleans_up_on_sigterm_gets_its_time_after_the_shell_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        "(trap 'sleep 0.3; echo cleaned > cleanup; exit 0' TERM; touch ready; while :; do sleep 0.05; done) & wait";
    let mut spec = spec(dir.path(), "sh", &["-c", script]);
    spec.timeout = Some(Duration::from_secs(1));
    let exit = run(&spec).await;
    assert!(
        matches!(exit.outcome, ExitOutcome::TimedOut { .. }),
        "{:?}",
        exit.outcome
    );
    assert!(
        dir.path().join("ready").exists(),
        "the child started within the timeout"
    );
    assert_eq!(log(&dir.path().join("cleanup")), "cleaned\n");
}

#[tokio::test]
async fn a_step_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), "sh", &["-c", "trap '' TERM; while :; do sleep 0.05; done"]);
    spec.timeout = Some(Duration::from_millis(100));
    let exit = run(&spec).await;
    assert!(
        matches!(exit.outcome, ExitOutcome::TimedOut { .. }),
        "{:?}",
        exit.outcome
    );
    let stopping = exit.ended_at - exit.started_at - Duration::from_millis(100);
    assert!(stopping >= KILL_GRACE, "SIGKILL only after the grace: {stopping:?}");
}

#[tokio::test]
async fn a_run_abandoned_midway_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "sh", &["-c", SLEEPS_WITH_A_CHILD]);
    let running = tokio::spawn(async move { LocalProcessRunner.run(&spec, CancellationToken::new()).await });
    eventually("the child started", || child_pid(dir.path()).is_some()).await;
    let pid = child_pid(dir.path()).unwrap();
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    eventually("the child is killed when the run's future is dropped", || gone(pid)).await;
}

#[tokio::test]
async fn a_step_cancelled_before_it_starts_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let exit = LocalProcessRunner
        .run(&spec(dir.path(), "touch", &["started"]), cancel)
        .await;
    assert_eq!(exit.outcome, ExitOutcome::Canceled);
    assert!(!dir.path().join("started").exists());
}

#[tokio::test]
async fn what_a_step_leaves_running_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let exit = run(&spec(
        dir.path(),
        "sh",
        &["-c", "sleep 100 & echo $! > child.pid; echo done"],
    ))
    .await;
    assert_eq!(exit.outcome, ExitOutcome::Succeeded);
    assert_eq!(log(&dir.path().join("stdout.log")), "done\n");
    let pid = child_pid(dir.path()).unwrap();
    eventually("the background child is killed", || gone(pid)).await;
}

#[tokio::test]
async fn a_log_past_its_cap_is_cut_with_one_line_and_the_step_completes() {
    let dir = tempfile::tempdir().unwrap();
    let exit = run(&spec(dir.path(), "sh", &["-c", "yes | head -c 30000000"])).await;
    assert_eq!(exit.outcome, ExitOutcome::Succeeded);
    assert_eq!(exit.stdout_bytes, 30_000_000, "everything was read from the pipe");
    let kept = std::fs::read(dir.path().join("stdout.log")).unwrap();
    let marker = format!("[mlgrid: log truncated after {LOG_CAP_BYTES} bytes]\n");
    assert_eq!(kept.len() as u64, LOG_CAP_BYTES + marker.len() as u64);
    let (output, tail) = kept.split_at(LOG_CAP_BYTES as usize);
    assert!(output.chunks(2).all(|pair| pair == b"y\n"));
    assert_eq!(tail, marker.as_bytes());
}

#[tokio::test]
async fn a_cut_in_mid_line_gets_its_own_line_for_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("head -c {} /dev/zero | tr '\\0' x", LOG_CAP_BYTES + 10);
    let exit = run(&spec(dir.path(), "sh", &["-c", &script])).await;
    assert_eq!(exit.outcome, ExitOutcome::Succeeded);
    let kept = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    assert!(
        kept.ends_with(&format!("x\n[mlgrid: log truncated after {LOG_CAP_BYTES} bytes]\n")),
        "{}",
        &kept[kept.len() - 60..]
    );
}

#[tokio::test]
async fn the_process_gets_the_specs_environment_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), "env", &[]);
    spec.env.insert("MLGRID_PARAM_EPOCHS".to_owned(), "3".to_owned());
    let exit = run(&spec).await;
    assert_eq!(exit.outcome, ExitOutcome::Succeeded);
    let mut lines: Vec<String> = log(&spec.stdout_log).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["MLGRID_PARAM_EPOCHS=3", "PATH=/usr/local/bin:/usr/bin:/bin"]);
}

#[tokio::test]
async fn the_working_directory_is_the_process_directory() {
    let dir = tempfile::tempdir().unwrap();
    let canonical: PathBuf = dir.path().canonicalize().unwrap();
    let exit = run(&spec(&canonical, "pwd", &[])).await;
    assert_eq!(exit.outcome, ExitOutcome::Succeeded);
    assert_eq!(log(&canonical.join("stdout.log")), format!("{}\n", canonical.display()));
}
