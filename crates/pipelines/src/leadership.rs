//! The loop that lets one node of a cluster do a background job (fire schedules, poll
//! datastores): it takes or renews a named lease every renewal period and runs the job's
//! passes only while it holds it, so that a dead holder is replaced within a lease term.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mlgrid_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A job's lease: its name, the node asking, and its timing.
pub(crate) struct Lease<'a> {
    pub store: &'a dyn Store,
    /// Also how the log names the job.
    pub name: &'a str,
    pub node: &'a str,
    /// How long a lease taken or renewed runs.
    pub term: Duration,
    /// How often the holder renews, and a node without it tries to take it.
    pub renew_every: Duration,
}

impl Lease<'_> {
    /// Runs `pass` until `stop`, whenever this node holds the lease: at once when `wake`
    /// is notified, else after the wait the pass returns (at most a renewal period). Gives
    /// the lease up at the end.
    pub(crate) async fn hold<F, Fut>(&self, wake: &Notify, stop: CancellationToken, mut pass: F)
    where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: Future<Output = Result<Duration, StoreError>>,
    {
        let (store, name, node) = (self.store, self.name, self.node);
        let term = TimeDelta::from_std(self.term).unwrap_or(TimeDelta::MAX);
        let mut held: Option<u64>;
        loop {
            let now = Utc::now();
            held = match store.acquire_lease(name, node, now, now + term).await {
                Ok(token) => token,
                Err(e) => {
                    tracing::warn!(error = %e, "the {name} cannot take its lease; it tries again");
                    None
                }
            };
            let mut sleep = self.renew_every;
            if held.is_some() {
                sleep = match pass(now).await {
                    Ok(wait) => wait.min(sleep),
                    Err(e) => {
                        tracing::warn!(error = %e, "a {name} pass failed; the next one tries again");
                        sleep
                    }
                };
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        if let Some(token) = held
            && let Err(e) = store.release_lease(name, node, token).await
        {
            tracing::warn!(error = %e, "the {name} could not give its lease up; it runs out by itself");
        }
    }
}
