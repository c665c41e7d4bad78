//! The health score of the statistics view: one number, 0..100, recall at
//! the production setting against the target first (70 points), the
//! structure second (30 points). Each structural figure is compared with its
//! default detection threshold; at the threshold half of the structure's
//! points are lost, at twice the threshold all of them.

use super::index_health::Thresholds;

/// The last inspection's figures the score reads (`None`: not measured, or
/// not of this access method).
#[derive(Debug, Clone, Copy, Default)]
pub struct Structure {
    pub unreachable_ratio: Option<f64>,
    pub fragmentation: Option<f64>,
    pub connectivity_score: Option<f64>,
    pub cluster_balance: Option<f64>,
    pub centroid_drift: Option<f64>,
}

impl Structure {
    fn any(&self) -> bool {
        [
            self.unreachable_ratio,
            self.fragmentation,
            self.connectivity_score,
            self.cluster_balance,
            self.centroid_drift,
        ]
        .iter()
        .any(Option::is_some)
    }

    /// 0..1: 1 for figures well within the thresholds.
    fn share(&self, t: &Thresholds) -> f64 {
        let over = |v: Option<f64>, limit: f64| v.map_or(0.0, |v| (v / limit).max(0.0));
        let worst = over(self.unreachable_ratio, t.max_unreachable_ratio)
            .max(over(self.fragmentation, t.max_fragmentation))
            .max(over(
                self.connectivity_score.map(|c| 1.0 - c),
                1.0 - t.min_connectivity,
            ))
            .max(over(self.cluster_balance, t.max_cluster_balance))
            .max(over(self.centroid_drift, t.max_centroid_drift));
        1.0 - (worst / 2.0).min(1.0)
    }
}

/// The score; `None` with neither a recall nor a structural figure.
pub fn health_score(recall: Option<f64>, target: f64, s: &Structure) -> Option<i32> {
    let t = Thresholds::default();
    let structure = s.share(&t);
    let score = match recall.filter(|r| r.is_finite()) {
        Some(r) => 0.7 * (r / target.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) + 0.3 * structure,
        None if s.any() => structure,
        None => return None,
    };
    Some((100.0 * score).round() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hnsw(unreachable: f64) -> Structure {
        Structure {
            unreachable_ratio: Some(unreachable),
            fragmentation: Some(0.0),
            connectivity_score: Some(1.0 - unreachable),
            ..Structure::default()
        }
    }

    #[test]
    fn recall_first_structure_second() {
        assert_eq!(health_score(None, 0.95, &Structure::default()), None);
        assert_eq!(health_score(Some(0.95), 0.95, &hnsw(0.0)), Some(100));
        assert_eq!(health_score(Some(1.0), 0.95, &hnsw(0.0)), Some(100));
        // At the unreachable threshold: half the structure's points.
        assert_eq!(health_score(None, 0.95, &hnsw(0.01)), Some(50));
        assert_eq!(health_score(Some(0.95), 0.95, &hnsw(0.01)), Some(85));
        // Twice the threshold: all of them; recall still counts.
        assert_eq!(health_score(Some(0.95), 0.95, &hnsw(0.02)), Some(70));
        assert_eq!(health_score(Some(0.90), 0.95, &hnsw(0.0)), Some(96));
        assert_eq!(
            health_score(Some(0.475), 0.95, &Structure::default()),
            Some(65)
        );
        assert_eq!(health_score(Some(0.475), 0.95, &hnsw(0.5)), Some(35));
    }

    #[test]
    fn ivfflat_figures_count_against_their_thresholds() {
        let s = Structure {
            cluster_balance: Some(1.0),
            centroid_drift: Some(0.1),
            ..Structure::default()
        };
        // balance at half its threshold is the worst: a quarter lost.
        assert_eq!(health_score(Some(0.99), 0.95, &s), Some(93));
    }
}
