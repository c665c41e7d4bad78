//! Anomalies against an index's own baseline (the specification's
//! `AnomalyDetector`): a z-score once at least 100 past observations exist,
//! and a moving-average variant that works from the fifth observation on.
//! Plain Rust over the history of one metric.

use serde::Serialize;

use crate::diagnose::Severity;

/// Observations a z-score baseline needs (the specification's minimum).
pub const ZSCORE_MIN_SAMPLES: usize = 100;
/// Window of the moving average, and the fewest observations it needs.
pub const MOVING_WINDOW: usize = 10;
pub const MOVING_MIN_SAMPLES: usize = 5;

/// Which way is bad for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Higher is worse (fragmentation, latency, unreachable share).
    High,
    /// Lower is worse (recall, connectivity).
    Low,
}

/// The z-score above which an observation is anomalous: 3.0 at the default
/// sensitivity 0.7 (the specification's threshold), from 5.0 at
/// sensitivity 0 down to about 2.1 at 1.
pub fn z_threshold(sensitivity: f64) -> f64 {
    5.0 - 2.0 / 0.7 * sensitivity.clamp(0.0, 1.0)
}

/// The specification's `compute_severity`.
pub fn z_severity(z: f64) -> Severity {
    let a = z.abs();
    if a > 5.0 {
        Severity::Critical
    } else if a > 4.0 {
        Severity::High
    } else if a > 3.0 {
        Severity::Medium
    } else {
        Severity::Low
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub method: &'static str,
    pub observed: f64,
    pub expected: f64,
    /// z-score (z-score method) or relative deviation (moving average).
    pub score: f64,
    pub threshold: f64,
    pub samples: usize,
    pub severity: Severity,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// `history`: past values, oldest first (not including `x`). With at least
/// 100 of them, a z-score against their mean and standard deviation; and
/// (also below 100, from 5 on) the relative deviation from the moving
/// average of the last 10 compared with `threshold`
/// (`ruvector.dag_healing_threshold`: degradation relative to the
/// baseline). Only deviations in the bad direction count.
pub fn detect(
    history: &[f64],
    x: f64,
    bad: Bad,
    sensitivity: f64,
    threshold: f64,
) -> Option<Anomaly> {
    let worse = |d: f64| match bad {
        Bad::High => d > 0.0,
        Bad::Low => d < 0.0,
    };
    if history.len() >= ZSCORE_MIN_SAMPLES {
        let m = mean(history);
        let sd = std_dev(history);
        // A constant baseline: any change is infinitely many deviations;
        // leave it to the moving average's relative test.
        if sd > 1e-12 {
            let z = (x - m) / sd;
            let limit = z_threshold(sensitivity);
            if worse(z) && z.abs() > limit {
                return Some(Anomaly {
                    method: "z_score",
                    observed: x,
                    expected: m,
                    score: z,
                    threshold: limit,
                    samples: history.len(),
                    severity: z_severity(z),
                });
            }
        }
    }
    if history.len() < MOVING_MIN_SAMPLES {
        return None;
    }
    let recent = &history[history.len().saturating_sub(MOVING_WINDOW)..];
    let m = mean(recent);
    if m.abs() < 1e-12 {
        return None;
    }
    let rel = (x - m) / m.abs();
    (worse(rel) && rel.abs() > threshold).then(|| Anomaly {
        method: "moving_average",
        observed: x,
        expected: m,
        score: rel,
        threshold,
        samples: recent.len(),
        severity: if rel.abs() > 3.0 * threshold {
            Severity::High
        } else {
            Severity::Medium
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_sensitivity() {
        assert!((z_threshold(0.7) - 3.0).abs() < 1e-12);
        assert!((z_threshold(0.0) - 5.0).abs() < 1e-12);
        assert!(z_threshold(1.0) < 2.2);
        assert_eq!(z_severity(-5.5), Severity::Critical);
        assert_eq!(z_severity(4.5), Severity::High);
        assert_eq!(z_severity(3.5), Severity::Medium);
        assert_eq!(z_severity(1.0), Severity::Low);
    }

    #[test]
    fn z_score_needs_100_samples() {
        let hist: Vec<f64> = (0..100)
            .map(|i| 0.95 + if i % 2 == 0 { 0.01 } else { -0.01 })
            .collect();
        let a = detect(&hist, 0.80, Bad::Low, 0.7, 0.3).expect("recall drop");
        assert_eq!(a.method, "z_score");
        assert!(a.score < -3.0);
        assert_eq!(a.severity, Severity::Critical);
        // The good direction is not an anomaly.
        assert!(detect(&hist, 1.0, Bad::Low, 0.7, 0.3).is_none());
        // 99 samples: the moving average decides (0.80 vs 0.95 is -16 %, under 30 %).
        assert!(detect(&hist[..99], 0.80, Bad::Low, 0.7, 0.3).is_none());
        let a = detect(&hist[..99], 0.60, Bad::Low, 0.7, 0.3).unwrap();
        assert_eq!(a.method, "moving_average");
    }

    #[test]
    fn moving_average_from_five_samples() {
        let hist = [0.1, 0.1, 0.1, 0.1];
        assert!(
            detect(&hist, 0.9, Bad::High, 0.7, 0.3).is_none(),
            "4 samples"
        );
        let hist = [0.1, 0.1, 0.1, 0.1, 0.1];
        let a = detect(&hist, 0.2, Bad::High, 0.7, 0.3).unwrap();
        assert_eq!(a.method, "moving_average");
        assert!((a.score - 1.0).abs() < 1e-9);
        assert_eq!(a.severity, Severity::High);
        assert!(detect(&hist, 0.12, Bad::High, 0.7, 0.3).is_none());
        assert!(
            detect(&[0.0; 6], 0.5, Bad::High, 0.7, 0.3).is_none(),
            "zero baseline"
        );
    }
}
