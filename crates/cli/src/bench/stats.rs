//! Latency percentiles.

use std::time::Duration;

/// Latencies of a run, sorted once.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// The `p`-th percentile (nearest rank) in milliseconds; 0 when there are no samples.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        round3(self.0[index].as_secs_f64() * 1000.0)
    }
}

/// Rounds to three decimals, enough for milliseconds and rates in a report.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.percentile_ms(50.0), 50.0);
        assert_eq!(l.percentile_ms(99.0), 99.0);
        assert_eq!(l.percentile_ms(100.0), 100.0);
        assert_eq!(Latencies::new(vec![]).percentile_ms(99.0), 0.0);
        assert_eq!(
            Latencies::new(vec![Duration::from_micros(1500)]).percentile_ms(1.0),
            1.5
        );
    }
}
