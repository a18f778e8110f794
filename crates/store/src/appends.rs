//! Concurrent appends to one source, combined into one write.
//!
//! Appends to one source take turns: on PostgreSQL an append holds its source's row lock
//! from the statement that takes its sequence numbers until its commit has been flushed,
//! on every node; on SQLite every write goes through the one writer, statement by
//! statement. Taking turns one request at a time would make a source's throughput one
//! request per commit (or cost each request its own statements). Instead, each node
//! queues the appends that arrive while its writes for the same source are running and
//! writes them together, as one write, when one is done: under load, a source gets many
//! requests per write.
//!
//! The statement runs in a task of its own, not in the callers' futures: a caller that
//! gives up (a client that disconnects) cannot leave the queue without a runner. Its
//! events are still appended if the statement was under way, as they would have been
//! without the queue; a caller gone before its turn is dropped from the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::model::{AppendReceipt, NewEvent, SourceId};

/// Where a backend writes appends: atomically, and durably when the future is done.
pub(crate) trait EventLog: Clone + Send + Sync + 'static {
    /// Appends `events`, in order, to the source's log; `NotFound` without the source.
    fn insert(&self, source: SourceId, events: Arc<[NewEvent]>) -> impl Future<Output = Result<AppendReceipt>> + Send;
}

/// The most event bytes one combined statement takes; a single larger request still
/// goes alone.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Writes in flight per source on one node. Two, so that one is sent and parsed while
/// the other holds the source's row lock (or waits for its group commit); more only wait
/// with fewer appends each. (Measured on PostgreSQL, 2 cores, batches of 100: one runner
/// 27,000-32,000 events/s, two 42,000-45,000.)
const RUNNERS_PER_SOURCE: usize = 2;

/// One caller's append, waiting for its turn.
struct Pending {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendReceipt>>,
}

/// A source's waiting appends and the tasks writing them.
#[derive(Default)]
struct Queue {
    waiting: Vec<Pending>,
    runners: usize,
}

/// The queues of the sources being appended to; a source without a queue has no runner.
#[derive(Clone, Default)]
pub(crate) struct Appends {
    queues: Arc<Mutex<HashMap<SourceId, Queue>>>,
}

impl Appends {
    /// Appends `events` to the source's log, together with the other appends to it that
    /// wait meanwhile; returns once they are committed.
    pub(crate) async fn append(
        &self,
        log: &impl EventLog,
        source: SourceId,
        events: Vec<NewEvent>,
    ) -> Result<AppendReceipt> {
        let (reply, receipt) = oneshot::channel();
        let start_runner = {
            let mut queues = self.lock();
            let queue = queues.entry(source).or_default();
            queue.waiting.push(Pending { events, reply });
            let start = queue.runners < RUNNERS_PER_SOURCE;
            queue.runners += usize::from(start);
            start
        };
        if start_runner {
            tokio::spawn(self.clone().run(log.clone(), source));
        }
        receipt.await.unwrap_or_else(|_| {
            Err(StoreError::backend(std::io::Error::other(
                "the append task stopped without an answer",
            )))
        })
    }

    /// Writes the source's waiting appends, batch after batch, until none waits.
    async fn run(self, log: impl EventLog, source: SourceId) {
        let mut unwinding = StopUnlessDisarmed {
            appends: &self,
            source,
            armed: true,
        };
        while let Some(batch) = self.next_batch(source) {
            write(&log, source, batch).await;
        }
        unwinding.armed = false;
    }

    /// The next appends to write together, oldest first; `None` (and one runner less)
    /// when none waits.
    fn next_batch(&self, source: SourceId) -> Option<Vec<Pending>> {
        let mut queues = self.lock();
        let queue = queues.get_mut(&source)?;
        queue.waiting.retain(|p| !p.reply.is_closed());
        if queue.waiting.is_empty() {
            // Under the same lock as the check: an append queued after it starts a runner.
            count_out(&mut queues, source);
            return None;
        }
        let mut bytes = 0;
        let take = queue
            .waiting
            .iter()
            .take_while(|p| {
                bytes += p.events.iter().map(|e| e.body.len()).sum::<usize>();
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        Some(queue.waiting.drain(..take).collect())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SourceId, Queue>> {
        self.queues
            .lock()
            .expect("the append queues are never held across a panic")
    }
}

/// Counts a source's runner out; the last one removes the queue. (A runner that ended
/// abnormally may leave appends waiting: dropped with the queue, their callers get an
/// error instead of waiting for a runner that is gone.)
fn count_out(queues: &mut HashMap<SourceId, Queue>, source: SourceId) {
    if let Some(queue) = queues.get_mut(&source) {
        queue.runners -= 1;
        if queue.runners == 0 {
            queues.remove(&source);
        }
    }
}

/// Counts its runner out when it ends abnormally (a panic, or the runtime shutting down).
/// A runner that ends normally was counted out by `next_batch`.
struct StopUnlessDisarmed<'a> {
    appends: &'a Appends,
    source: SourceId,
    armed: bool,
}

impl Drop for StopUnlessDisarmed<'_> {
    fn drop(&mut self) {
        if self.armed {
            count_out(&mut self.appends.lock(), self.source);
        }
    }
}

/// Appends a batch in one write and answers each caller with its part. If the write
/// fails, each append is tried alone, so that one caller's failure is not another's.
async fn write(log: &impl EventLog, source: SourceId, batch: Vec<Pending>) {
    let mut callers = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.iter().map(|p| p.events.len()).sum());
    for mut pending in batch {
        callers.push((pending.events.len(), pending.reply));
        events.append(&mut pending.events);
    }
    let events: Arc<[NewEvent]> = events.into();
    match log.insert(source, events.clone()).await {
        Ok(receipt) => {
            let mut last = receipt.first_sequence - 1;
            for (count, reply) in callers {
                let first = last + 1;
                last += count as u64;
                let _ = reply.send(Ok(AppendReceipt {
                    first_sequence: first,
                    last_sequence: last,
                }));
            }
        }
        Err(error) if callers.len() == 1 => {
            let _ = callers.into_iter().next().map(|(_, reply)| reply.send(Err(error)));
        }
        Err(error) => {
            tracing::debug!(%error, appends = callers.len(), "a combined append failed; appending each alone");
            let mut start = 0;
            for (count, reply) in callers {
                let own: Arc<[NewEvent]> = events[start..start + count].into();
                start += count;
                let _ = reply.send(log.insert(source, own).await);
            }
        }
    }
}
