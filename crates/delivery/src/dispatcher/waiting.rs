//! Batches claimed for endpoints with no free slot, waiting in memory for one, within
//! bounds: beyond them a batch goes back to the store, and a dispatcher whose waiting
//! batches fill half the memory allowed takes no new work until they drain (its new
//! deliveries stay in the store, to be claimed then).

use std::collections::{HashMap, VecDeque};

use mlgrid_store::{DueDelivery, SubscriptionId};
use tokio::time::Instant;

/// Event bytes waiting for one subscription's endpoint, at most (a lone batch may be
/// larger). A stuck endpoint holds no more than this of the node's memory.
const PER_SUBSCRIPTION_BYTES: usize = 1024 * 1024;
/// Event bytes waiting for all endpoints, at most.
const TOTAL_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Queue {
    /// Oldest first, with when each began to wait.
    batches: VecDeque<(Instant, Vec<DueDelivery>)>,
    bytes: usize,
}

#[derive(Default)]
pub(crate) struct Waiting {
    queues: HashMap<SubscriptionId, Queue>,
    bytes: usize,
}

fn size(batch: &[DueDelivery]) -> usize {
    batch.iter().map(|d| d.body.len()).sum()
}

impl Waiting {
    /// Whether batches of the subscription wait: a new one must queue behind them.
    pub(crate) fn is_waiting(&self, subscription: SubscriptionId) -> bool {
        self.queues.contains_key(&subscription)
    }

    /// Whether the dispatcher may take new work (hand-overs and claims).
    pub(crate) fn has_room(&self) -> bool {
        self.bytes < TOTAL_BYTES / 2
    }

    /// Queues a batch behind the subscription's others, or gives it back when the
    /// subscription's or the node's bound is reached.
    pub(crate) fn push(
        &mut self,
        subscription: SubscriptionId,
        batch: Vec<DueDelivery>,
    ) -> Result<(), Vec<DueDelivery>> {
        let bytes = size(&batch);
        let queue = self.queues.entry(subscription).or_default();
        let fits = queue.batches.is_empty() || queue.bytes + bytes <= PER_SUBSCRIPTION_BYTES;
        if !fits || self.bytes + bytes > TOTAL_BYTES {
            if queue.batches.is_empty() {
                self.queues.remove(&subscription);
            }
            return Err(batch);
        }
        queue.bytes += bytes;
        self.bytes += bytes;
        queue.batches.push_back((Instant::now(), batch));
        Ok(())
    }

    /// The subscriptions with batches waiting.
    pub(crate) fn subscriptions(&self) -> Vec<SubscriptionId> {
        self.queues.keys().copied().collect()
    }

    /// The subscription's oldest waiting batch.
    pub(crate) fn pop(&mut self, subscription: SubscriptionId) -> Option<Vec<DueDelivery>> {
        let queue = self.queues.get_mut(&subscription)?;
        let (_, batch) = queue.batches.pop_front()?;
        let bytes = size(&batch);
        queue.bytes -= bytes;
        self.bytes -= bytes;
        if queue.batches.is_empty() {
            self.queues.remove(&subscription);
        }
        Some(batch)
    }

    /// The subscription's batches that began to wait at or before `until` (all of them
    /// when `until` is `None`), oldest first.
    pub(crate) fn take_until(&mut self, subscription: SubscriptionId, until: Option<Instant>) -> Vec<DueDelivery> {
        let mut taken = Vec::new();
        while let Some(queue) = self.queues.get(&subscription)
            && let Some((began, _)) = queue.batches.front()
            && until.is_none_or(|until| *began <= until)
        {
            let batch = self.pop(subscription).expect("a batch is at the front");
            taken.extend(batch);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mlgrid_core::EventSchema;

    use super::*;

    fn batch(sequences: std::ops::Range<u64>, bytes: usize) -> Vec<DueDelivery> {
        sequences
            .map(|sequence| DueDelivery {
                subscription_id: SubscriptionId(1),
                sequence,
                attempts: 0,
                schema: EventSchema::EventGridSchema,
                published_at: Utc::now(),
                body: "x".repeat(bytes),
            })
            .collect()
    }

    fn sequences(deliveries: &[DueDelivery]) -> Vec<u64> {
        deliveries.iter().map(|d| d.sequence).collect()
    }

    #[test]
    fn batches_wait_in_order_within_the_subscriptions_bound() {
        let mut waiting = Waiting::default();
        assert!(!waiting.is_waiting(SubscriptionId(1)));
        // A lone batch waits whatever its size.
        waiting
            .push(SubscriptionId(1), batch(0..2, PER_SUBSCRIPTION_BYTES))
            .unwrap();
        assert!(waiting.is_waiting(SubscriptionId(1)));
        let refused = waiting.push(SubscriptionId(1), batch(2..3, 1)).unwrap_err();
        assert_eq!(sequences(&refused), [2], "the subscription's bound is reached");
        waiting.push(SubscriptionId(2), batch(10..11, 100)).unwrap();
        assert_eq!(sequences(&waiting.pop(SubscriptionId(1)).unwrap()), [0, 1]);
        assert!(
            !waiting.is_waiting(SubscriptionId(1)),
            "its queue went with its last batch"
        );
        waiting.push(SubscriptionId(1), batch(3..4, 10)).unwrap();
        waiting.push(SubscriptionId(1), batch(4..5, 10)).unwrap();
        assert_eq!(sequences(&waiting.take_until(SubscriptionId(1), None)), [3, 4]);
        assert_eq!(waiting.subscriptions(), [SubscriptionId(2)]);
    }

    #[test]
    fn the_node_takes_no_new_work_while_half_its_bound_waits() {
        let mut waiting = Waiting::default();
        let per_batch = PER_SUBSCRIPTION_BYTES / 2;
        let mut subscription = 0;
        while waiting.has_room() {
            subscription += 1;
            waiting
                .push(SubscriptionId(subscription), batch(0..1, per_batch))
                .unwrap();
        }
        assert_eq!(waiting.bytes, TOTAL_BYTES / 2);
        while waiting
            .push(SubscriptionId(subscription + 1), batch(0..1, per_batch))
            .is_ok()
        {
            subscription += 1;
        }
        assert_eq!(waiting.bytes, TOTAL_BYTES, "no more than the node's bound waits");
        waiting.pop(SubscriptionId(1)).unwrap();
        assert!(waiting.push(SubscriptionId(1000), batch(0..1, per_batch)).is_ok());
    }

    #[test]
    fn only_batches_waiting_since_before_a_time_are_taken() {
        let mut waiting = Waiting::default();
        waiting.push(SubscriptionId(1), batch(0..1, 1)).unwrap();
        let between = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        waiting.push(SubscriptionId(1), batch(1..2, 1)).unwrap();
        assert_eq!(sequences(&waiting.take_until(SubscriptionId(1), Some(between))), [0]);
        assert_eq!(sequences(&waiting.pop(SubscriptionId(1)).unwrap()), [1]);
    }
}
