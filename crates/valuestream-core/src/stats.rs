//! The metric math of metrics.md, on plain numbers: percentiles (linear
//! interpolation between closest ranks, numpy's default), distributions, and
//! the DORA 2023 performance levels. The store feeds it; it does no IO.

use serde::Serialize;

/// The `p`-th quantile (0 ≤ p ≤ 1) of ascending `sorted` values, interpolating
/// linearly between closest ranks (PERCENTILE_CONT). `None` for no values; one
/// value is every percentile of itself.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// Mean, percentiles and maximum of a set of durations (seconds); all `null`
/// in JSON when there are none.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Distribution {
    /// From ascending values.
    pub fn of_sorted(sorted: &[f64]) -> Distribution {
        if sorted.is_empty() {
            return Distribution::default();
        }
        Distribution {
            mean: Some(sorted.iter().sum::<f64>() / sorted.len() as f64),
            p50: percentile(sorted, 0.5),
            p90: percentile(sorted, 0.9),
            p95: percentile(sorted, 0.95),
            p99: percentile(sorted, 0.99),
            max: sorted.last().copied(),
        }
    }
}

/// Mean, median and maximum (open ages).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ages {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub max: Option<f64>,
}

impl Ages {
    pub fn of_sorted(sorted: &[f64]) -> Ages {
        if sorted.is_empty() {
            return Ages::default();
        }
        Ages {
            mean: Some(sorted.iter().sum::<f64>() / sorted.len() as f64),
            p50: percentile(sorted, 0.5),
            max: sorted.last().copied(),
        }
    }
}

/// A DORA 2023 performance level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Elite,
    High,
    Medium,
    Low,
    None,
}

const HOUR: f64 = 3_600.0;
const DAY: f64 = 86_400.0;

/// Deployment frequency: elite ≥ 1 per day; high ≥ 1 per week; medium ≥ 1 per
/// 30 days; low > 0; none when there were no deployments.
pub fn deployment_frequency_level(per_day: f64) -> Level {
    match per_day {
        x if x >= 1.0 => Level::Elite,
        x if x >= 1.0 / 7.0 => Level::High,
        x if x >= 1.0 / 30.0 => Level::Medium,
        x if x > 0.0 => Level::Low,
        _ => Level::None,
    }
}

/// Lead time for changes (median seconds): elite < 1 day; high < 1 week;
/// medium < 30 days; low otherwise.
pub fn lead_time_level(median_seconds: Option<f64>) -> Level {
    match median_seconds {
        None => Level::None,
        Some(x) if x < DAY => Level::Elite,
        Some(x) if x < 7.0 * DAY => Level::High,
        Some(x) if x < 30.0 * DAY => Level::Medium,
        Some(_) => Level::Low,
    }
}

/// Change failure rate: elite ≤ 5 %; high ≤ 10 %; medium ≤ 15 %; low otherwise.
pub fn change_failure_level(ratio: Option<f64>) -> Level {
    match ratio {
        None => Level::None,
        Some(x) if x <= 0.05 => Level::Elite,
        Some(x) if x <= 0.10 => Level::High,
        Some(x) if x <= 0.15 => Level::Medium,
        Some(_) => Level::Low,
    }
}

/// Time to restore and failed deployment recovery time (median seconds):
/// elite < 1 hour; high < 1 day; medium < 1 week; low otherwise.
pub fn restore_level(median_seconds: Option<f64>) -> Level {
    match median_seconds {
        None => Level::None,
        Some(x) if x < HOUR => Level::Elite,
        Some(x) if x < DAY => Level::High,
        Some(x) if x < 7.0 * DAY => Level::Medium,
        Some(_) => Level::Low,
    }
}

/// `numerator / denominator`, or `None` when there is nothing to divide.
pub fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_two_and_many_values() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.5), Some(7.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        // Two values: p50 halfway, p90 at 90 % of the way (numpy: 10 + 0.9 * 10).
        assert_eq!(percentile(&[10.0, 20.0], 0.5), Some(15.0));
        assert_eq!(percentile(&[10.0, 20.0], 0.9), Some(19.0));
        // 1..=10: numpy.percentile(range(1, 11), [50, 90, 99]) = 5.5, 9.1, 9.91.
        let many: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&many, 0.5), Some(5.5));
        assert!((percentile(&many, 0.9).unwrap() - 9.1).abs() < 1e-9);
        assert!((percentile(&many, 0.99).unwrap() - 9.91).abs() < 1e-9);
    }

    #[test]
    fn distributions_are_null_when_empty() {
        assert_eq!(Distribution::of_sorted(&[]), Distribution::default());
        let d = Distribution::of_sorted(&[1.0, 2.0, 3.0, 10.0]);
        assert_eq!(d.mean, Some(4.0));
        assert_eq!(d.p50, Some(2.5));
        assert_eq!(d.max, Some(10.0));
    }

    #[test]
    fn levels_follow_the_dora_2023_bands() {
        assert_eq!(deployment_frequency_level(0.0), Level::None);
        assert_eq!(deployment_frequency_level(1.0), Level::Elite);
        assert_eq!(deployment_frequency_level(1.0 / 7.0), Level::High);
        assert_eq!(deployment_frequency_level(0.05), Level::Medium);
        assert_eq!(deployment_frequency_level(0.01), Level::Low);
        assert_eq!(lead_time_level(Some(3_600.0)), Level::Elite);
        assert_eq!(lead_time_level(Some(2.0 * DAY)), Level::High);
        assert_eq!(change_failure_level(Some(0.125)), Level::Medium);
        assert_eq!(change_failure_level(Some(0.05)), Level::Elite);
        assert_eq!(restore_level(Some(5_400.0)), Level::High);
        assert_eq!(restore_level(None), Level::None);
        assert_eq!(ratio(1, 0), None);
    }
}
