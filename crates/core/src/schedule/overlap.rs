//! What a tick does while earlier runs of the same schedule are still going.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// What a tick does when the schedule already has `max_concurrent` runs going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// Drop the tick: the next one will find the runs done, or drop too.
    #[default]
    Skip,
    /// Keep the tick, to start when a run ends.
    Queue,
    /// Start a run anyway, however many are going: for ticks that must each run on time.
    Allow,
}

/// How a schedule's runs may overlap: the policy and the limit it applies at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Concurrency {
    #[serde(default)]
    pub overlap_policy: OverlapPolicy,
    /// Runs that may go at once under Skip and Queue; Allow ignores it.
    #[serde(default = "one")]
    pub max_concurrent: NonZeroU32,
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            overlap_policy: OverlapPolicy::default(),
            max_concurrent: one(),
        }
    }
}

/// What to do with a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapDecision {
    Start,
    Skip,
    Queue,
}

impl Concurrency {
    /// The decision for a tick that finds `running` runs of its schedule still going:
    /// below the limit it starts; at or above it, Skip skips and Queue queues; Allow
    /// always starts.
    pub fn decide(&self, running: u32) -> OverlapDecision {
        match self.overlap_policy {
            OverlapPolicy::Allow => OverlapDecision::Start,
            _ if running < self.max_concurrent.get() => OverlapDecision::Start,
            OverlapPolicy::Skip => OverlapDecision::Skip,
            OverlapPolicy::Queue => OverlapDecision::Queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn concurrency(overlap_policy: OverlapPolicy, max_concurrent: u32) -> Concurrency {
        Concurrency {
            overlap_policy,
            max_concurrent: NonZeroU32::new(max_concurrent).unwrap(),
        }
    }

    #[test]
    fn skip_and_queue_start_below_the_limit_and_differ_at_it() {
        let skip = concurrency(OverlapPolicy::Skip, 2);
        let queue = concurrency(OverlapPolicy::Queue, 2);
        for running in [0, 1] {
            assert_eq!(skip.decide(running), OverlapDecision::Start);
            assert_eq!(queue.decide(running), OverlapDecision::Start);
        }
        for running in [2, 3] {
            assert_eq!(skip.decide(running), OverlapDecision::Skip);
            assert_eq!(queue.decide(running), OverlapDecision::Queue);
        }
    }

    #[test]
    fn allow_starts_whatever_is_running() {
        let allow = concurrency(OverlapPolicy::Allow, 1);
        for running in [0, 1, 50] {
            assert_eq!(allow.decide(running), OverlapDecision::Start);
        }
    }

    #[test]
    fn defaults_to_skipping_beyond_one_run() {
        let read: Concurrency = serde_json::from_value(json!({})).unwrap();
        assert_eq!(read, Concurrency::default());
        assert_eq!(read, concurrency(OverlapPolicy::Skip, 1));
        assert_eq!(read.decide(1), OverlapDecision::Skip);
    }

    #[test]
    fn reads_and_writes_lowercase_policies_and_refuses_a_limit_of_zero() {
        let read: Concurrency = serde_json::from_value(json!({"overlapPolicy": "queue", "maxConcurrent": 3})).unwrap();
        assert_eq!(read, concurrency(OverlapPolicy::Queue, 3));
        assert_eq!(
            serde_json::to_value(concurrency(OverlapPolicy::Allow, 1)).unwrap(),
            json!({"overlapPolicy": "allow", "maxConcurrent": 1})
        );
        let zero = serde_json::from_value::<Concurrency>(json!({"maxConcurrent": 0})).unwrap_err();
        assert!(zero.to_string().contains("nonzero"), "{zero}");
    }
}
