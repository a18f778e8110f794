//! Group commit: one task owns the write connection and commits the writes that queued
//! up while the previous commit was being fsync'd, all in one transaction.
//!
//! Each write but the first of a transaction runs inside its own savepoint, so one
//! failing write is rolled back alone and the others of its group still commit. A caller is answered only after the
//! group's `COMMIT` returned, so an `Ok` always means "on disk".
//!
//! Between groups the writer keeps the write-ahead log bounded ([`WalBound`]): being the
//! only writer, its checkpoints never wait for another writer, and no commit waits for
//! them but the next one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::error::{Result, StoreError};
use crate::storage::FullDisk;

/// Most writes committed together; bounds the latency one group adds.
const MAX_GROUP: usize = 512;

/// Answers a caller once the fate of its group is known.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;

/// How a write went.
#[derive(Clone, PartialEq, Eq)]
enum Ran {
    Ok,
    Failed,
    /// Failed for want of space, for this reason.
    Full(String),
}

/// A write waiting for the writer.
trait WriteJob: Send {
    /// Runs the write; says how it went and how to answer its caller.
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, (Ran, Finish)>;
    /// Answers the caller of a write that could not run.
    fn refuse(self: Box<Self>, error: StoreError);
}

type Job = Box<dyn WriteJob>;

struct Pending<T, F> {
    write: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, (Ran, Finish)> {
        let Pending { write, reply } = *self;
        Box::pin(async move {
            match write(conn).await {
                Ok(value) => {
                    let finish: Finish = Box::new(move |committed: Result<()>| {
                        let _ = reply.send(committed.map(|()| value));
                    });
                    (Ran::Ok, finish)
                }
                Err(e) => {
                    let ran = match &e {
                        StoreError::Full(reason) => Ran::Full(reason.clone()),
                        _ => Ran::Failed,
                    };
                    let finish: Finish = Box::new(move |_| {
                        let _ = reply.send(Err(e));
                    });
                    (ran, finish)
                }
            }
        })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Whether a committed write appended events (followers of the logs are woken then).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appends {
    Events,
    Nothing,
}

#[derive(Clone)]
pub(crate) struct WriterHandle {
    jobs: mpsc::Sender<(Appends, Job)>,
}

impl WriterHandle {
    /// Starts the writer task on `conn`, which writes the database whose write-ahead
    /// log is the file `wal`; it stops when every handle is dropped.
    pub(crate) fn spawn(
        conn: SqliteConnection,
        appended: watch::Sender<u64>,
        wal: PathBuf,
        full: Arc<FullDisk>,
    ) -> (WriterHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let task = tokio::spawn(run(conn, rx, appended, WalBound::new(wal), full));
        (WriterHandle { jobs: tx }, task)
    }

    /// Runs `f` in the next group commit and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, appends: Appends, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(Pending { write: f, reply });
        self.jobs.send((appends, job)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(StoreError::backend)
}

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<(Appends, Job)>,
    appended: watch::Sender<u64>,
    mut wal: WalBound,
    full: Arc<FullDisk>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        // Waking now and then without writes lets an idle log be truncated.
        match tokio::time::timeout(IDLE_AFTER, rx.recv_many(&mut group, MAX_GROUP)).await {
            Ok(0) => break,
            Ok(_) => {
                let wakes_followers = group.iter().any(|(appends, _)| *appends == Appends::Events);
                // While the disk is full, a group that changed rows says there is room
                // again (a claim that found nothing to claim commits and changes none).
                let changes_before = if full.is_full() {
                    total_changes(&mut conn).await
                } else {
                    None
                };
                let (finishes, ran_full, outcome) = commit_group(&mut conn, group.drain(..).map(|(_, job)| job)).await;
                if outcome.is_ok() && wakes_followers {
                    appended.send_modify(|n| *n = n.wrapping_add(1));
                }
                match (&outcome, ran_full) {
                    (Err(e @ StoreError::Full(_)), _) => full.note::<()>(&Err(e.clone())),
                    (Err(e), _) => tracing::error!(error = %e, writes = finishes.len(), "group commit failed"),
                    (Ok(()), Some(reason)) => full.note::<()>(&Err(StoreError::Full(reason))),
                    (Ok(()), None) => {
                        if let Some(before) = changes_before
                            && total_changes(&mut conn).await.is_some_and(|after| after > before)
                        {
                            full.clear();
                        }
                    }
                }
                for finish in finishes {
                    finish(outcome.clone());
                }
            }
            Err(_idle) => {}
        }
        wal.tend(&mut conn).await;
    }
    // Every handle is gone: nothing more can be queued.
    if let Err(e) = exec(&mut conn, "PRAGMA wal_checkpoint(TRUNCATE)").await {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
}

/// Rows changed by every statement the connection ran so far.
async fn total_changes(conn: &mut SqliteConnection) -> Option<i64> {
    sqlx::query_scalar("SELECT total_changes()")
        .fetch_one(&mut *conn)
        .await
        .ok()
}

/// Size of the log at which the writer restarts it (a RESTART checkpoint between two
/// groups: the next commit writes the log from its start). Without it, readers that
/// come and go all the time (fan-out, dispatcher, long polls) never let a PASSIVE
/// checkpoint restart the log, and it grew to 7.8 GB in 200 s at 20,000 deliveries/s.
pub(crate) const WAL_RESTART_BYTES: u64 = 64 << 20;

/// What a restarted log is truncated to (`PRAGMA journal_size_limit`), at its first
/// commit. Below [`WAL_RESTART_BYTES`], so that the log's file size, a `stat` away, says
/// whether the log holds that much since it last restarted.
pub(crate) const WAL_LIMIT_BYTES: u64 = 32 << 20;

/// How long the writer goes without a commit before it truncates the log to nothing.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// The soonest a checkpoint is tried again after one.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(100);

/// How long a checkpoint waits for readers to finish their statements (reads are
/// single statements, each short). The busy timeout of the writer connection is put back
/// afterwards.
const CHECKPOINT_WAIT_MS: u32 = 200;

/// The busy timeout the store's connections are opened with, in milliseconds.
pub(crate) const BUSY_TIMEOUT_MS: u32 = 30_000;

/// Keeps the write-ahead log under [`WAL_RESTART_BYTES`] (plus a group or two) under any
/// load, and truncates it to nothing when the writer is idle.
struct WalBound {
    /// The `-wal` file.
    path: PathBuf,
    /// Its size and modification time when last looked at.
    seen: (u64, Option<SystemTime>),
    /// When it last changed.
    changed_at: Instant,
    /// The soonest the next checkpoint may be tried.
    next_try: Instant,
}

impl WalBound {
    fn new(path: PathBuf) -> WalBound {
        let now = Instant::now();
        WalBound {
            path,
            seen: (0, None),
            changed_at: now,
            next_try: now,
        }
    }

    /// Checkpoints when the log has grown past its bound, or has not changed for
    /// [`IDLE_AFTER`]; called between groups.
    async fn tend(&mut self, conn: &mut SqliteConnection) {
        let now = Instant::now();
        let seen = std::fs::metadata(&self.path).map_or((0, None), |m| (m.len(), m.modified().ok()));
        if seen != self.seen {
            self.seen = seen;
            self.changed_at = now;
        }
        if now < self.next_try || seen.0 == 0 {
            return;
        }
        let mode = if seen.0 > WAL_RESTART_BYTES {
            // Restart rather than truncate: the file is reused, not grown again.
            "RESTART"
        } else if now.duration_since(self.changed_at) >= IDLE_AFTER {
            "TRUNCATE"
        } else {
            return;
        };
        self.next_try = now + CHECKPOINT_RETRY;
        match checkpoint(conn, mode).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(mode, "WAL checkpoint waited for readers in vain; trying again"),
            Err(e) => tracing::warn!(mode, error = %e, "WAL checkpoint failed"),
        }
        if mode == "TRUNCATE" {
            // Idle: once a second is often enough, whether it worked or not.
            self.changed_at = Instant::now();
        }
    }
}

/// Runs a checkpoint in `mode` (RESTART or TRUNCATE), waiting at most
/// [`CHECKPOINT_WAIT_MS`] for readers; says whether it completed.
async fn checkpoint(conn: &mut SqliteConnection, mode: &'static str) -> Result<bool> {
    let sql = match mode {
        "RESTART" => "PRAGMA wal_checkpoint(RESTART)",
        _ => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    set_busy_timeout(conn, CHECKPOINT_WAIT_MS).await?;
    let done = sqlx::query_as::<_, (i64, i64, i64)>(sql)
        .fetch_one(&mut *conn)
        .await
        .map(|(busy, _, _)| busy == 0)
        .map_err(StoreError::backend);
    set_busy_timeout(conn, BUSY_TIMEOUT_MS).await?;
    done
}

async fn set_busy_timeout(conn: &mut SqliteConnection, ms: u32) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {ms}")))
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(StoreError::backend)
}

/// Runs the jobs in one transaction; returns how to answer each, why a write failed for
/// want of space if one did, and the commit outcome.
async fn commit_group(
    conn: &mut SqliteConnection,
    jobs: impl ExactSizeIterator<Item = Job>,
) -> (Vec<Finish>, Option<String>, Result<()>) {
    let mut finishes = Vec::with_capacity(jobs.len());
    let mut ran_full = None;
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        // Run nothing; every caller gets the error.
        for job in jobs {
            job.refuse(e.clone());
        }
        return (finishes, ran_full, Err(e));
    }
    // The first write of a transaction needs no savepoint: if it fails, rolling the
    // transaction back undoes it alone, and the others start a new one.
    let mut fresh = true;
    let mut broken: Option<StoreError> = None;
    let mut any_ok = false;
    for job in jobs {
        if let Some(e) = &broken {
            job.refuse(e.clone());
            continue;
        }
        let savepoint = !fresh;
        if savepoint && let Err(e) = exec(conn, "SAVEPOINT w").await {
            job.refuse(e.clone());
            broken = Some(e);
            continue;
        }
        let (ran, finish) = job.run(conn).await;
        let ok = ran == Ran::Ok;
        if let Ran::Full(reason) = ran {
            ran_full = Some(reason);
        }
        finishes.push(finish);
        any_ok |= ok;
        if !savepoint {
            fresh = !ok;
            if !ok {
                // SQLite may have rolled back already; the new transaction is what matters.
                let _ = exec(conn, "ROLLBACK").await;
                if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
                    broken = Some(e);
                }
            }
            continue;
        }
        let end = if ok { "RELEASE w" } else { "ROLLBACK TO w" };
        if let Err(e) = exec(conn, end).await {
            broken = Some(e);
        } else if !ok && let Err(e) = exec(conn, "RELEASE w").await {
            broken = Some(e);
        }
    }
    let outcome = match broken {
        Some(e) => Err(e),
        None if any_ok => exec(conn, "COMMIT").await,
        // Nothing to keep: a failed lone write, or all writes failed.
        None => Ok(()),
    };
    if outcome.is_err() || !any_ok {
        // Leaves no transaction open whatever state SQLite is in; an error here only
        // means SQLite already rolled back.
        let _ = exec(conn, "ROLLBACK").await;
    }
    (finishes, ran_full, outcome)
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};
    use tokio::sync::watch;

    use super::{Appends, WriterHandle};
    use crate::error::{Result, StoreError};

    /// A write that inserts `x`, then fails if asked to: its insert must not survive.
    async fn insert(writer: &WriterHandle, x: i64, fail: bool) -> Result<i64> {
        writer
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (x) VALUES (?)")
                        .bind(x)
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    if fail {
                        return Err(StoreError::Invalid(format!("{x} refused")));
                    }
                    Ok(x)
                })
            })
            .await
    }

    /// Queues the writes before the writer runs, so that they form one group, and
    /// returns their answers and the rows committed.
    async fn one_group(fails: &[bool]) -> (Vec<Result<i64>>, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .unwrap();
        let wal = dir.path().join("w.db-wal");
        let (writer, task) = WriterHandle::spawn(conn, watch::channel(0).0, wal, Default::default());
        let writes = fails
            .iter()
            .enumerate()
            .map(|(i, fail)| insert(&writer, i as i64, *fail));
        let answers = futures::future::join_all(writes).await;
        drop(writer);
        task.await.unwrap();
        let mut check = SqliteConnection::connect(&url).await.unwrap();
        let rows = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&mut check)
            .await
            .unwrap();
        (answers, rows)
    }

    fn outcomes(answers: &[Result<i64>]) -> Vec<bool> {
        answers.iter().map(Result::is_ok).collect()
    }

    #[tokio::test]
    async fn a_failing_first_write_is_undone_alone() {
        let (answers, rows) = one_group(&[true, false, false]).await;
        assert_eq!(outcomes(&answers), [false, true, true]);
        assert_eq!(rows, [1, 2]);
    }

    #[tokio::test]
    async fn a_failing_later_write_is_undone_alone() {
        let (answers, rows) = one_group(&[false, true, false, true]).await;
        assert_eq!(outcomes(&answers), [true, false, true, false]);
        assert_eq!(rows, [0, 2]);
    }

    #[tokio::test]
    async fn a_group_that_only_fails_keeps_nothing() {
        let (answers, rows) = one_group(&[true, true]).await;
        assert_eq!(outcomes(&answers), [false, false]);
        assert!(rows.is_empty());
    }
}
