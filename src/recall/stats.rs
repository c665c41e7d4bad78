//! The recall estimate's confidence interval, and the search for the
//! smallest search setting that reaches a recall target.

use serde::Serialize;

/// 97.5 % quantile of the standard normal: two-sided 95 % intervals.
const Z95: f64 = 1.959_963_984_540_054;

/// 95 % interval for mean recall over `n` queries.
///
/// Per-query recall lies in [0, 1], so its variance is at most
/// `mean · (1 − mean)` (the Bernoulli case). The Wilson score interval with
/// that variance bound is therefore conservative for any distribution of
/// per-query recall, and, unlike mean ± 1.96·s/√n, it stays honest when
/// every sampled query scored 1.0 (it does not collapse to a point).
pub fn wilson95(mean: f64, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = mean.clamp(0.0, 1.0);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// One measured point of the recall/latency curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub value: u32,
    pub recall: f64,
    pub mean_query_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tuned {
    /// Smallest value reaching the target, if any value in range does.
    pub best: Option<u32>,
    /// Every point measured, by value.
    pub curve: Vec<CurvePoint>,
}

/// Binary search for the smallest value in `lo..=hi` whose recall reaches
/// `target`, assuming recall does not fall as the value grows (more
/// candidates or probes). Costs O(log(hi − lo)) evaluations: `hi` first
/// (if it misses, nothing in range reaches the target), then halving.
pub fn tune(lo: u32, hi: u32, target: f64, mut eval: impl FnMut(u32) -> CurvePoint) -> Tuned {
    let mut curve = Vec::new();
    let mut measure = |v: u32, curve: &mut Vec<CurvePoint>| {
        let p = eval(v);
        curve.push(p);
        p.recall >= target
    };
    let best = if !measure(hi, &mut curve) {
        None
    } else {
        // Invariant: `hi` reaches the target; values below `lo` are unknown.
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if measure(mid, &mut curve) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(hi)
    };
    curve.sort_by_key(|p| p.value);
    curve.dedup_by_key(|p| p.value);
    Tuned { best, curve }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_is_honest_at_the_edges() {
        let (lo, hi) = wilson95(1.0, 100);
        assert!(lo > 0.95 && lo < 0.97 && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = wilson95(0.5, 100);
        assert!((lo - 0.404).abs() < 0.002 && (hi - 0.596).abs() < 0.002);
        assert_eq!(wilson95(0.7, 0), (0.0, 1.0));
        let (lo, hi) = wilson95(0.9, 10_000);
        assert!(hi - lo < 0.013);
    }

    #[test]
    fn wilson_covers_the_true_mean_of_bounded_samples() {
        // Per-query recall drawn from {0.6, 0.9, 1.0}: the interval from
        // 100 draws covers the true mean in at least 95 % of repetitions.
        let values = [0.6, 0.9, 1.0];
        let truth = (0.6 + 0.9 + 1.0) / 3.0;
        let mut s = 7u64;
        let mut covered = 0;
        for _ in 0..1000 {
            let mut sum = 0.0;
            for _ in 0..100 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                sum += values[((s >> 33) % 3) as usize];
            }
            let (lo, hi) = wilson95(sum / 100.0, 100);
            if lo <= truth && truth <= hi {
                covered += 1;
            }
        }
        assert!(covered >= 950, "covered {covered} of 1000");
    }

    fn curve_of(f: impl Fn(u32) -> f64) -> impl FnMut(u32) -> CurvePoint {
        move |v| CurvePoint {
            value: v,
            recall: f(v),
            mean_query_ms: v as f64,
        }
    }

    #[test]
    fn tune_finds_the_smallest_value_in_log_steps() {
        let t = tune(1, 1000, 0.95, curve_of(|v| (v as f64 / 400.0).min(1.0)));
        assert_eq!(t.best, Some(380));
        assert!(t.curve.len() <= 12, "{} evaluations", t.curve.len());
        assert!(t.curve.windows(2).all(|w| w[0].value < w[1].value));
    }

    #[test]
    fn tune_reports_an_unreachable_target() {
        let t = tune(1, 1000, 0.95, curve_of(|_| 0.8));
        assert_eq!(t.best, None);
        assert_eq!(t.curve.len(), 1);
        let t = tune(1, 1000, 0.5, curve_of(|_| 0.8));
        assert_eq!(t.best, Some(1));
    }
}
