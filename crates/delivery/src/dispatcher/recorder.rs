//! The recorder: writes finished attempts, as many per transaction as have queued up,
//! and waits for room while the store's disk is full.

use std::sync::Arc;

use mlgrid_store::{AttemptRecord, Store, StoreError};
use tokio::sync::mpsc;

use super::FULL_PAUSE;

/// Attempts recorded in one transaction, at most.
const RECORD_BATCH: usize = 512;
/// Finished attempts waiting to be recorded, at most (senders wait beyond it).
pub(super) const RECORD_QUEUE: usize = 4096;

/// Writes finished attempts, as many per transaction as have queued up.
///
/// While the store's disk is full the attempts are kept and written again every
/// [`FULL_PAUSE`]: the queue fills, the senders wait for it, and delivery pauses with
/// every outcome known (dropping them would send the batches again after their leases).
pub(super) async fn record_attempts(store: Arc<dyn Store>, mut pending: mpsc::Receiver<AttemptRecord>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while pending.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        record_until_room(&*store, &mut batch, &pending).await;
        batch.clear();
    }
}

/// Records `batch`, trying again while the disk is full, unless the dispatcher has
/// stopped (then the leases run out and the deliveries are sent again: at least once).
async fn record_until_room(store: &dyn Store, batch: &mut [AttemptRecord], pending: &mpsc::Receiver<AttemptRecord>) {
    loop {
        match store.record_attempts(batch.to_vec()).await {
            Ok(()) => return,
            Err(StoreError::Full(_)) if !pending.is_closed() => {
                tracing::debug!(attempts = batch.len(), "the store's disk is full; recording pauses");
                tokio::time::sleep(FULL_PAUSE).await;
            }
            Err(error) => {
                // The leases run out and the batches are tried again: at least once.
                tracing::warn!(%error, "could not record delivery attempts");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mlgrid_core::subscription::ProvisioningState;
    use mlgrid_store::{AfterAttempt, AttemptRecord, Store};

    use super::record_attempts;

    /// While the disk is full the recorder keeps the attempts it could not write (the
    /// deliveries were sent; dropping their outcomes would send them again after their
    /// leases) and writes them once there is room.
    #[tokio::test]
    async fn attempts_wait_for_room_on_a_full_disk_instead_of_being_dropped() {
        let fixture = crate::fixture::topic_with_subscription(ProvisioningState::Succeeded).await;
        let (store, sub) = (fixture.store.clone(), fixture.subscription.id);
        store.set_max_page_count(1).await.unwrap();
        let (records, pending) = tokio::sync::mpsc::channel(super::RECORD_QUEUE);
        let recorder = tokio::spawn(record_attempts(store.clone(), pending));
        // More attempts than the pages in use have room for.
        for n in 1..=2000 {
            let attempt = AttemptRecord {
                subscription_id: sub,
                sequences: vec![n],
                attempted_at: chrono::Utc::now(),
                status_code: Some(200),
                latency_ms: 1.0,
                outcome: "Delivered".into(),
                error: Some("x".repeat(100)),
                response_excerpt: None,
                next: AfterAttempt::Delivered,
            };
            records.send(attempt).await.unwrap();
        }
        while store.storage().await.unwrap().full.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        store.set_max_page_count(1 << 30).await.unwrap();
        drop(records);
        recorder.await.unwrap();
        let attempts = store.delivery_attempts(sub, 5000).await.unwrap();
        assert_eq!(attempts.len(), 2000, "every attempt is recorded once there is room");
    }
}
