//! Batching: a subscription's due deliveries split into requests within its
//! `maxEventsPerBatch` and `preferredBatchSizeInKilobytes`, never waiting for more.

use mlgrid_core::subscription::DestinationProperties;
use mlgrid_store::DueDelivery;

/// Event Grid's default for `preferredBatchSizeInKilobytes`.
const DEFAULT_BATCH_KB: u32 = 64;

/// The most events one request of a subscription with `properties` carries.
pub(super) fn max_events(properties: &DestinationProperties) -> u32 {
    properties.max_events_per_batch.unwrap_or(1).max(1)
}

/// Splits `due` (oldest first) into batches, in order. A batch holds at most
/// [`max_events`] events and stays within the preferred size, except that one event
/// larger than it goes alone.
pub(super) fn batches(properties: &DestinationProperties, due: Vec<DueDelivery>) -> Vec<Vec<DueDelivery>> {
    let max_events = max_events(properties) as usize;
    let max_bytes = properties.preferred_batch_size_in_kilobytes.unwrap_or(DEFAULT_BATCH_KB) as usize * 1024;
    let mut batches = Vec::new();
    let mut current: Vec<DueDelivery> = Vec::new();
    let mut bytes = 0;
    for delivery in due {
        let size = delivery.body.len();
        if !current.is_empty() && (current.len() == max_events || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(delivery);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mlgrid_core::EventSchema;
    use mlgrid_store::SubscriptionId;

    use super::*;

    fn due(sizes: &[usize]) -> Vec<DueDelivery> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, size)| DueDelivery {
                subscription_id: SubscriptionId(1),
                sequence: i as u64 + 1,
                attempts: 0,
                schema: EventSchema::EventGridSchema,
                published_at: Utc::now(),
                body: "x".repeat(*size),
            })
            .collect()
    }

    fn properties(max_events: Option<u32>, kb: Option<u32>) -> DestinationProperties {
        serde_json::from_value(serde_json::json!({
            "endpointUrl": "https://127.0.0.1/",
            "maxEventsPerBatch": max_events,
            "preferredBatchSizeInKilobytes": kb,
        }))
        .unwrap()
    }

    fn shape(batches: &[Vec<DueDelivery>]) -> Vec<Vec<u64>> {
        batches.iter().map(|b| b.iter().map(|d| d.sequence).collect()).collect()
    }

    #[test]
    fn one_event_per_request_unless_the_subscription_asks_for_more() {
        let batches = batches(&properties(None, None), due(&[10, 10, 10]));
        assert_eq!(shape(&batches), [vec![1], vec![2], vec![3]]);
        let batches = super::batches(&properties(Some(2), None), due(&[10, 10, 10]));
        assert_eq!(shape(&batches), [vec![1, 2], vec![3]]);
    }

    #[test]
    fn a_batch_stays_within_the_preferred_size_and_a_large_event_goes_alone() {
        let batches = batches(&properties(Some(10), Some(1)), due(&[600, 400, 100, 2000, 10]));
        assert_eq!(shape(&batches), [vec![1, 2], vec![3], vec![4], vec![5]]);
    }

    #[test]
    fn nothing_due_makes_no_batch() {
        assert!(batches(&properties(Some(10), None), Vec::new()).is_empty());
    }
}
