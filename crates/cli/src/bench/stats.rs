//! Latency percentiles: exact over a run's samples, or from a histogram for runs too
//! long to keep every sample.

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

/// Latencies counted in buckets: 10 us wide below 100 ms, 1 ms wide below 10 s, 100 ms
/// wide below 10 minutes, and one bucket beyond. Percentiles are a bucket's upper bound,
/// so they never flatter.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

/// Where each band of buckets starts, in microseconds, and how wide its buckets are.
const BANDS: [(u64, u64); 3] = [(0, 10), (100_000, 1_000), (10_000_000, 100_000)];
const BEYOND_US: u64 = 600_000_000;

fn bucket_of(us: u64) -> usize {
    let mut index = 0;
    for (i, &(start, width)) in BANDS.iter().enumerate() {
        let end = BANDS.get(i + 1).map_or(BEYOND_US, |b| b.0);
        if us < end {
            return index + ((us - start) / width) as usize;
        }
        index += ((end - start) / width) as usize;
    }
    index
}

/// The upper bound of a bucket, in microseconds.
fn upper_bound_us(bucket: usize) -> u64 {
    let mut first = 0;
    for (i, &(start, width)) in BANDS.iter().enumerate() {
        let end = BANDS.get(i + 1).map_or(BEYOND_US, |b| b.0);
        let count = ((end - start) / width) as usize;
        if bucket < first + count {
            return start + (bucket - first + 1) as u64 * width;
        }
        first += count;
    }
    u64::MAX
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; bucket_of(BEYOND_US) + 1],
            total: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        self.counts[bucket_of(latency.as_micros() as u64)] += 1;
        self.total += 1;
    }

    /// The `p`-th percentile (nearest rank) in milliseconds, as the upper bound of its
    /// bucket; 0 when empty, infinity (`null` in JSON) beyond 10 minutes.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = (((p / 100.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let us = upper_bound_us(bucket);
                return if us == u64::MAX {
                    f64::INFINITY
                } else {
                    round3(us as f64 / 1000.0)
                };
            }
        }
        f64::INFINITY
    }
}

/// Rounds to three decimals, enough for milliseconds and rates in a report.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// CPU time a process has used so far (user and system), in seconds; `None` when it is
/// gone or `/proc` cannot say. `pid` 0 is this process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_owned()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces: the fields that follow it are counted
    // from its closing parenthesis; utime and stime are fields 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
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

    #[test]
    fn histogram_percentiles_are_the_upper_bound_of_their_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile_ms(99.0), 0.0);
        for ms in 1..=100 {
            h.record(Duration::from_micros(ms * 1000 - 5));
        }
        assert_eq!(h.percentile_ms(50.0), 50.0);
        assert_eq!(h.percentile_ms(99.0), 99.0);
        h.record(Duration::from_millis(2500));
        h.record(Duration::from_secs(30));
        h.record(Duration::from_secs(3600));
        assert_eq!(h.percentile_ms(98.0), 2501.0);
        assert_eq!(h.percentile_ms(99.0), 30_100.0);
        assert_eq!(h.percentile_ms(100.0), f64::INFINITY);
        for (us, bucket) in [(0, 0), (9, 0), (10, 1), (99_999, 9_999), (100_000, 10_000)] {
            assert_eq!(bucket_of(us), bucket, "{us}");
        }
        assert_eq!(upper_bound_us(bucket_of(100_000)), 101_000);
    }

    #[test]
    fn cpu_seconds_counts_this_process() {
        let before = cpu_seconds(0).expect("/proc/self/stat is readable");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_seconds(0).expect("/proc/self/stat is readable");
        assert!(after - before >= 0.1, "200 ms of spinning counted {} s", after - before);
        assert_eq!(cpu_seconds(u32::MAX), None, "no such process");
    }
}
