//! Group commit: one task owns the write connection and commits the writes that queued
//! up while the previous commit was being fsync'd, all in one transaction.
//!
//! Each write but the first of a transaction runs inside its own savepoint, so one
//! failing write is rolled back alone and the others of its group still commit. A caller is answered only after the
//! group's `COMMIT` returned, so an `Ok` always means "on disk".

use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Result, StoreError};

/// Most writes committed together; bounds the latency one group adds.
const MAX_GROUP: usize = 512;

/// Answers a caller once the fate of its group is known.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;

/// A write waiting for the writer.
trait WriteJob: Send {
    /// Runs the write; says whether it succeeded and how to answer its caller.
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)>;
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
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> {
        let Pending { write, reply } = *self;
        Box::pin(async move {
            match write(conn).await {
                Ok(value) => {
                    let finish: Finish = Box::new(move |committed: Result<()>| {
                        let _ = reply.send(committed.map(|()| value));
                    });
                    (true, finish)
                }
                Err(e) => {
                    let finish: Finish = Box::new(move |_| {
                        let _ = reply.send(Err(e));
                    });
                    (false, finish)
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
    /// Starts the writer task on `conn`; it stops when every handle is dropped.
    pub(crate) fn spawn(
        conn: SqliteConnection,
        appended: watch::Sender<u64>,
    ) -> (WriterHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let task = tokio::spawn(run(conn, rx, appended));
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

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<(Appends, Job)>, appended: watch::Sender<u64>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let wakes_followers = group.iter().any(|(appends, _)| *appends == Appends::Events);
        let (finishes, outcome) = commit_group(&mut conn, group.drain(..).map(|(_, job)| job)).await;
        if outcome.is_ok() && wakes_followers {
            appended.send_modify(|n| *n = n.wrapping_add(1));
        }
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = finishes.len(), "group commit failed");
        }
        for finish in finishes {
            finish(outcome.clone());
        }
    }
    // Every handle is gone: nothing more can be queued.
    if let Err(e) = exec(&mut conn, "PRAGMA wal_checkpoint(TRUNCATE)").await {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
}

/// Runs the jobs in one transaction; returns how to answer each and the commit outcome.
async fn commit_group(
    conn: &mut SqliteConnection,
    jobs: impl ExactSizeIterator<Item = Job>,
) -> (Vec<Finish>, Result<()>) {
    let mut finishes = Vec::with_capacity(jobs.len());
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        // Run nothing; every caller gets the error.
        for job in jobs {
            job.refuse(e.clone());
        }
        return (finishes, Err(e));
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
        let (ok, finish) = job.run(conn).await;
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
    (finishes, outcome)
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
        let (writer, task) = WriterHandle::spawn(conn, watch::channel(0).0);
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
