//! Following appends made by any node: every append notifies [`APPENDED_CHANNEL`] in
//! its statement (delivered at commit), and each store listens on one connection and
//! turns notifications into a [`watch`] counter.
//!
//! **Invariant:** every commit that appended events is followed by a change of the
//! counter, on every node. Notifications sent while the listening connection was down
//! are lost, so the counter also changes once the listener is back: followers then
//! re-read what they might have missed.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::db::db;
use crate::error::Result;

/// The channel appends notify; the payload is the schema appended to, so that stores
/// sharing a database in different schemas do not wake each other.
pub(super) const APPENDED_CHANNEL: &str = "mlgrid_appended";

/// First wait before listening again after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts listening and returns the counter and the task feeding it. The task ends when
/// the pool is closed.
pub(super) async fn spawn(pool: &PgPool) -> Result<(watch::Receiver<u64>, JoinHandle<()>)> {
    let schema: String = db(sqlx::query_scalar("SELECT current_schema()").fetch_one(pool).await)?;
    let listener = listen(pool).await?;
    let (appended, receiver) = watch::channel(0);
    let task = tokio::spawn(follow(pool.clone(), listener, schema, appended));
    Ok((receiver, task))
}

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = db(PgListener::connect_with(pool).await)?;
    db(listener.listen(APPENDED_CHANNEL).await)?;
    Ok(listener)
}

fn bump(appended: &watch::Sender<u64>) {
    appended.send_modify(|n| *n = n.wrapping_add(1));
}

async fn follow(pool: PgPool, mut listener: PgListener, schema: String, appended: watch::Sender<u64>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if notification.payload() == schema {
                    bump(&appended);
                }
            }
            // The connection dropped and the listener listens again on a new one.
            Ok(None) => {
                tracing::warn!("the append listener lost its connection and reconnected");
                bump(&appended);
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the append listener failed; listening again");
                drop(listener);
                let Some(again) = relisten(&pool).await else { return };
                listener = again;
                bump(&appended);
            }
        }
    }
}

/// A new listener, retried with backoff; `None` once the pool is closed.
async fn relisten(pool: &PgPool) -> Option<PgListener> {
    let mut backoff = MIN_BACKOFF;
    loop {
        tokio::select! {
            () = pool.close_event() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        match listen(pool).await {
            Ok(listener) => return Some(listener),
            Err(crate::StoreError::Closed) => return None,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "the append listener cannot listen yet");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
