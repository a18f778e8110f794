//! Running a step: [`StepRunner`] is what the executor calls, so that a container or
//! Kubernetes Job runner can stand in for [`LocalProcessRunner`], which runs a step as a
//! process on this node.
//!
//! The local runner starts the program itself (through a shell only when the command is
//! one), in a process group of its own, with stdin closed and the environment of its
//! [`StepSpec`] only. Its stdout and stderr go to the step's two logs, each kept up to
//! [`LOG_CAP_BYTES`]; the rest is read and discarded, so that the process never blocks
//! on a full pipe, and the log ends with one line saying so. A timeout or a cancellation
//! stops the whole group (the step's children too): SIGTERM, then SIGKILL after
//! [`KILL_GRACE`]. When the step's own process ends, whatever it left running in its
//! group is killed at once: no process of a step outlives it.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::render::StepSpec;

/// The most of each stream (stdout, stderr) a step's log keeps: enough for any training
/// log a person reads, and a bound on what a runaway step writes to the server's disk.
pub const LOG_CAP_BYTES: u64 = 10 * 1024 * 1024;

/// How long a step's processes have between SIGTERM and SIGKILL when it is stopped.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long the logs are still read once the step's process group is gone: a process
/// that left the group (`setsid`) may hold the pipes open, and the step does not wait
/// for it.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How a step's process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitOutcome {
    Succeeded,
    /// It exited with another code than 0, was killed by a signal, or could not start
    /// (neither code nor signal then, and the reason is also in its stderr log).
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: String,
    },
    TimedOut {
        after: Duration,
    },
    Canceled,
}

impl fmt::Display for ExitOutcome {
    /// In words, for a step run's error: "exited with code 2", "timed out after 10m".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitOutcome::Succeeded => f.write_str("succeeded"),
            ExitOutcome::Failed { reason, .. } => f.write_str(reason),
            ExitOutcome::TimedOut { after } => write!(f, "timed out after {}", span(*after)),
            ExitOutcome::Canceled => f.write_str("canceled"),
        }
    }
}

/// A duration in the units a timeout is written in (`10m`, `2h`, `30s`).
fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds == 0 || duration.subsec_nanos() != 0 {
        format!("{}ms", duration.as_millis())
    } else if seconds.is_multiple_of(86_400) {
        format!("{}d", seconds / 86_400)
    } else if seconds.is_multiple_of(3_600) {
        format!("{}h", seconds / 3_600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// How a step's attempt ended, and when: `started_at` is when its process started (the
/// step's overhead is measured up to it from when the step was ready), or when the
/// attempt began if none started; `ended_at` when it was over: its processes gone and
/// its logs written.
#[derive(Debug, Clone)]
pub struct StepExit {
    pub outcome: ExitOutcome,
    pub started_at: Instant,
    pub started_at_utc: DateTime<Utc>,
    pub ended_at: Instant,
    pub ended_at_utc: DateTime<Utc>,
    /// What the process wrote to each stream, including what the log cap discarded.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// Runs a rendered step to its end.
#[async_trait]
pub trait StepRunner: Send + Sync {
    /// Runs `spec` until it ends, times out or `cancel` is cancelled, and leaves nothing
    /// of it running.
    async fn run(&self, spec: &StepSpec, cancel: CancellationToken) -> StepExit;
}

/// Runs steps as local processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProcessRunner;

/// A moment, on both clocks.
#[derive(Clone, Copy)]
struct Moment(Instant, DateTime<Utc>);

impl Moment {
    fn now() -> Moment {
        Moment(Instant::now(), Utc::now())
    }
}

impl StepExit {
    fn new(outcome: ExitOutcome, started: Moment, stdout_bytes: u64, stderr_bytes: u64) -> StepExit {
        let ended = Moment::now();
        StepExit {
            outcome,
            started_at: started.0,
            started_at_utc: started.1,
            ended_at: ended.0,
            ended_at_utc: ended.1,
            stdout_bytes,
            stderr_bytes,
        }
    }

    /// A step whose process never ran, for `reason`.
    fn not_started(reason: String, attempt: Moment) -> StepExit {
        let outcome = ExitOutcome::Failed {
            exit_code: None,
            signal: None,
            reason,
        };
        StepExit::new(outcome, attempt, 0, 0)
    }
}

/// `program` found on the step's `PATH` when it is a bare name. Spawning a found path
/// lets the standard library start the process with `posix_spawn` rather than fork a
/// copy of the whole server first (it forks when it has to search a `PATH` it was
/// given), which takes milliseconds off each step's start. A name found nowhere stays
/// as it is, and the spawn says "command not found".
fn program_path(program: &str, path: Option<&String>) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    path.into_iter()
        .flat_map(|path| std::env::split_paths(path))
        .map(|folder| folder.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Why `program` could not be started, in words.
fn spawn_failure(program: &str, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => format!("command not found: {program}"),
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied: {program} is not executable, or a folder on its path cannot be entered")
        }
        _ => format!("cannot run {program}: {error}"),
    }
}

fn exited(status: ExitStatus) -> ExitOutcome {
    if status.success() {
        return ExitOutcome::Succeeded;
    }
    if let Some(code) = status.code() {
        return ExitOutcome::Failed {
            exit_code: Some(code),
            signal: None,
            reason: format!("exited with code {code}"),
        };
    }
    match status.signal() {
        Some(signal) => ExitOutcome::Failed {
            exit_code: None,
            signal: Some(signal),
            reason: match Signal::try_from(signal) {
                Ok(name) => format!("killed by signal {signal} ({name})"),
                Err(_) => format!("killed by signal {signal}"),
            },
        },
        None => ExitOutcome::Failed {
            exit_code: None,
            signal: None,
            reason: format!("ended without an exit code or signal ({status})"),
        },
    }
}

/// The step's process group, killed whole when dropped: a run abandoned midway (its
/// future dropped) leaves nothing running either.
struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    fn terminate(&self) {
        if let Some(group) = self.0 {
            // ESRCH: nothing left in the group.
            let _ = killpg(group, Signal::SIGTERM);
        }
    }

    /// Kills what is left of the group, once: after that its id may be another's.
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Opens (truncating) the two logs, making their folder, checks the working folder and
/// finds the program, in one trip to the blocking pool: the step's start waits for it.
async fn open_logs(spec: &StepSpec) -> Result<(File, File, PathBuf), Unopened> {
    let (stdout, stderr, working_dir) = (
        spec.stdout_log.clone(),
        spec.stderr_log.clone(),
        spec.working_dir.clone(),
    );
    let (program, path) = (spec.program.clone(), spec.env.get("PATH").cloned());
    let opened = tokio::task::spawn_blocking(move || {
        let create = |path: &Path| {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            std::fs::File::create(path)
        };
        let logs =
            |path: &Path| create(path).map_err(|e| format!("cannot write the step's log {}: {e}", path.display()));
        let stdout = logs(&stdout).map_err(Unopened::NoLogs)?;
        let stderr = logs(&stderr).map_err(Unopened::NoLogs)?;
        if !std::fs::metadata(&working_dir).is_ok_and(|m| m.is_dir()) {
            let reason = format!("working directory does not exist: {}", working_dir.display());
            return Err(Unopened::NoWorkingDir(reason, stderr));
        }
        let program = program_path(&program, path.as_ref());
        Ok((File::from_std(stdout), File::from_std(stderr), program))
    })
    .await;
    opened.unwrap_or_else(|e| Err(Unopened::NoLogs(format!("cannot open the step's logs: {e}"))))
}

/// Why a step could not be started before its process was.
enum Unopened {
    /// A log could not be opened.
    NoLogs(String),
    /// Its working folder is missing; the reason goes to its stderr log.
    NoWorkingDir(String, std::fs::File),
}

/// Copies `pipe` to `log` up to `cap` bytes, reads and drops the rest, and then appends
/// one line saying the log was cut. Counts every byte read in `read`.
async fn drain(mut pipe: impl AsyncRead + Unpin, mut log: File, cap: u64, read: Arc<AtomicU64>, name: &'static str) {
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut kept = 0u64;
    let mut last = b'\n';
    let mut writable = true;
    loop {
        let n = match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        read.fetch_add(n as u64, Ordering::Relaxed);
        let room = (cap - kept).min(n as u64) as usize;
        if writable && room > 0 {
            match log.write_all(&buffer[..room]).await {
                Ok(()) => {
                    kept += room as u64;
                    last = buffer[room - 1];
                }
                Err(error) => {
                    tracing::warn!(%error, log = name, "a step's log cannot be written; the rest of it is dropped");
                    writable = false;
                }
            }
        }
    }
    if writable && read.load(Ordering::Relaxed) > cap {
        let newline = if last == b'\n' { "" } else { "\n" };
        let marker = format!("{newline}[mlgrid: log truncated after {cap} bytes]\n");
        if let Err(error) = log.write_all(marker.as_bytes()).await {
            tracing::warn!(%error, log = name, "a step's log cannot be written");
        }
    }
    if let Err(error) = log.flush().await {
        tracing::warn!(%error, log = name, "a step's log cannot be written");
    }
}

/// A stream being drained into its log.
struct Drain {
    /// `None` once the stream ended.
    task: Option<tokio::task::JoinHandle<()>>,
    read: Arc<AtomicU64>,
    name: &'static str,
}

impl Drain {
    fn start(pipe: impl AsyncRead + Unpin + Send + 'static, log: File, name: &'static str) -> Drain {
        let read = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(drain(pipe, log, LOG_CAP_BYTES, read.clone(), name));
        Drain {
            task: Some(task),
            read,
            name,
        }
    }

    /// Waits for the end of the stream: every process holding the pipe has ended or
    /// closed it. Can be given up and called again.
    async fn ended(&mut self) {
        if let Some(task) = &mut self.task {
            let _ = task.await;
            self.task = None;
        }
    }

    /// Waits for the end of the stream, at most [`DRAIN_LIMIT`]; returns the bytes read.
    async fn finish(mut self) -> u64 {
        if tokio::time::timeout(DRAIN_LIMIT, self.ended()).await.is_err()
            && let Some(task) = &self.task
        {
            task.abort();
            tracing::warn!(
                log = self.name,
                "a process that left the step's process group still holds its output; the log stops here"
            );
        }
        self.read.load(Ordering::Relaxed)
    }
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut(Duration),
    Canceled,
}

#[async_trait]
impl StepRunner for LocalProcessRunner {
    async fn run(&self, spec: &StepSpec, cancel: CancellationToken) -> StepExit {
        let attempt = Moment::now();
        if cancel.is_cancelled() {
            return StepExit::new(ExitOutcome::Canceled, attempt, 0, 0);
        }
        let not_started = |reason: String, mut stderr_log: File| async move {
            let line = format!("{reason}\n");
            let written = stderr_log.write_all(line.as_bytes()).await;
            if let Err(error) = written.and(stderr_log.flush().await) {
                tracing::warn!(%error, "a step's log cannot be written");
            }
            StepExit::not_started(reason, attempt)
        };
        let (stdout_log, stderr_log, program) = match open_logs(spec).await {
            Ok(logs) => logs,
            Err(Unopened::NoLogs(reason)) => return StepExit::not_started(reason, attempt),
            Err(Unopened::NoWorkingDir(reason, stderr_log)) => {
                return not_started(reason, File::from_std(stderr_log)).await;
            }
        };

        let mut command = Command::new(program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => return not_started(spawn_failure(&spec.program, &error), stderr_log).await,
        };
        let started = Moment::now();
        let mut group = ProcessGroup(child.id().map(|id| Pid::from_raw(id as i32)));
        tracing::debug!(step = %spec.step, program = %spec.program, pid = ?child.id(), "step started");
        let mut stdout = Drain::start(child.stdout.take().expect("stdout is piped"), stdout_log, "stdout");
        let mut stderr = Drain::start(child.stderr.take().expect("stderr is piped"), stderr_log, "stderr");

        let deadline = async {
            match spec.timeout {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            biased;
            status = child.wait() => Ended::Exited(status),
            () = cancel.cancelled() => Ended::Canceled,
            () = deadline => Ended::TimedOut(spec.timeout.unwrap_or_default()),
        };
        let outcome = match ended {
            Ended::Exited(Ok(status)) => exited(status),
            Ended::Exited(Err(error)) => ExitOutcome::Failed {
                exit_code: None,
                signal: None,
                reason: format!("waiting for the step's process failed: {error}"),
            },
            Ended::TimedOut(after) => ExitOutcome::TimedOut { after },
            Ended::Canceled => ExitOutcome::Canceled,
        };
        if matches!(outcome, ExitOutcome::TimedOut { .. } | ExitOutcome::Canceled) {
            // The grace ends early once the process and everything holding its output
            // have ended: a child that cleans up on SIGTERM gets its time even when the
            // shell that started it is gone. (Ended processes are not waited for by
            // signalling the group: an orphan's zombie stays in it until init reaps
            // it, and a container's first process may never.)
            group.terminate();
            let stopped = async {
                let _ = child.wait().await;
                tokio::join!(stdout.ended(), stderr.ended());
            };
            let _ = tokio::time::timeout(KILL_GRACE, stopped).await;
        }
        group.kill();
        if let Err(error) = child.wait().await {
            tracing::warn!(%error, step = %spec.step, "the step's process could not be reaped");
        }
        let (stdout_bytes, stderr_bytes) = tokio::join!(stdout.finish(), stderr.finish());
        StepExit::new(outcome, started, stdout_bytes, stderr_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_words() {
        let timed_out = |seconds| ExitOutcome::TimedOut {
            after: Duration::from_secs(seconds),
        };
        assert_eq!(timed_out(600).to_string(), "timed out after 10m");
        assert_eq!(timed_out(7_200).to_string(), "timed out after 2h");
        assert_eq!(timed_out(90).to_string(), "timed out after 90s");
        assert_eq!(timed_out(86_400).to_string(), "timed out after 1d");
        let brief = ExitOutcome::TimedOut {
            after: Duration::from_millis(300),
        };
        assert_eq!(brief.to_string(), "timed out after 300ms");
        assert_eq!(exited(ExitStatus::from_raw(2 << 8)).to_string(), "exited with code 2");
        assert_eq!(
            exited(ExitStatus::from_raw(9)).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(exited(ExitStatus::from_raw(0)), ExitOutcome::Succeeded);
    }
}
