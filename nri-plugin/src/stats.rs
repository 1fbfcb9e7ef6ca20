//! In-process latency figures: NRI handler time per event and fault firing lateness.
//! Printed as p50/p99 at shutdown (the benchmark reads them from the log).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Samples kept per series; older ones are dropped first.
const MAX_SAMPLES: usize = 100_000;

/// Named series of durations.
#[derive(Debug, Default)]
pub struct Stats {
    series: Mutex<BTreeMap<&'static str, Vec<u64>>>,
}

/// Summary of one series, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Series name.
    pub name: &'static str,
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} n={} p50_us={:.1} p99_us={:.1} max_us={:.1}",
            self.name, self.count, self.p50_us, self.p99_us, self.max_us
        )
    }
}

impl Stats {
    /// Records one sample.
    pub fn record(&self, name: &'static str, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if let Ok(mut series) = self.series.lock() {
            let samples = series.entry(name).or_default();
            if samples.len() >= MAX_SAMPLES {
                samples.remove(0);
            }
            samples.push(nanos);
        }
    }

    /// p50/p99/max of every series.
    pub fn summaries(&self) -> Vec<Summary> {
        let Ok(series) = self.series.lock() else {
            return Vec::new();
        };
        series
            .iter()
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(name, samples)| {
                let mut sorted = samples.clone();
                sorted.sort_unstable();
                let pick = |q: f64| {
                    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
                    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
                };
                Summary {
                    name,
                    count: sorted.len(),
                    p50_us: pick(0.50),
                    p99_us: pick(0.99),
                    max_us: pick(1.0),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let stats = Stats::default();
        for us in 1..=100 {
            stats.record("handler.create", Duration::from_micros(us));
        }
        let summary = &stats.summaries()[0];
        assert_eq!(summary.count, 100);
        assert!((summary.p50_us - 50.0).abs() <= 1.0, "{summary}");
        assert!((summary.p99_us - 99.0).abs() <= 1.0, "{summary}");
        assert_eq!(summary.max_us, 100.0);
    }
}
