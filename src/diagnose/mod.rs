//! Diagnosis: issue kinds, severities and the priority scoring; the root
//! cause of an issue and the repair that addresses it (`cause`); build
//! options and their bounds (`options`); the memory of what was tried
//! (`futility`). Plain Rust, unit-tested without a server.

use serde::Serialize;

pub mod cause;
pub mod futility;
pub mod options;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    Fragmentation,
    UnreachableElements,
    PoorConnectivity,
    UnbalancedClusters,
    StaleTraining,
    InvalidIndex,
    DeadTuples,
    /// Recall at the production search setting below the target.
    LowRecall,
    /// The index breaks pgvector's invariants (`crate::verify`).
    Corruption,
}

impl IssueKind {
    pub fn name(&self) -> &'static str {
        match self {
            IssueKind::Fragmentation => "fragmentation",
            IssueKind::UnreachableElements => "unreachable_elements",
            IssueKind::PoorConnectivity => "poor_connectivity",
            IssueKind::UnbalancedClusters => "unbalanced_clusters",
            IssueKind::StaleTraining => "stale_training",
            IssueKind::InvalidIndex => "invalid_index",
            IssueKind::DeadTuples => "dead_tuples",
            IssueKind::LowRecall => "low_recall",
            IssueKind::Corruption => "corruption",
        }
    }

    pub const ALL: [IssueKind; 9] = [
        IssueKind::Fragmentation,
        IssueKind::UnreachableElements,
        IssueKind::PoorConnectivity,
        IssueKind::UnbalancedClusters,
        IssueKind::StaleTraining,
        IssueKind::InvalidIndex,
        IssueKind::DeadTuples,
        IssueKind::LowRecall,
        IssueKind::Corruption,
    ];

    pub fn parse(name: &str) -> Option<IssueKind> {
        IssueKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(&self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Priority 0..=100, higher first. Severity sets the band — low 0..24,
/// medium 25..49, high 50..74, critical 75..100 — so a critical issue never
/// ranks below a less severe one; within the band, the specification's
/// score places it: fragmentation its level (0..1), unreachable ("orphan")
/// elements their count (saturating at 1,000), a recall shortfall its size
/// (a shortfall of 0.25 fills the band), every other kind the middle.
pub fn priority(kind: IssueKind, severity: Severity, value: f64) -> u32 {
    let score = match kind {
        IssueKind::Fragmentation => value.clamp(0.0, 1.0),
        IssueKind::UnreachableElements => (value.max(0.0) / 1000.0).min(1.0),
        IssueKind::LowRecall => (value.max(0.0) / 0.25).min(1.0),
        _ => 0.5,
    };
    let band = match severity {
        Severity::Low => 0,
        Severity::Medium => 25,
        Severity::High => 50,
        Severity::Critical => 75,
    };
    let width = if severity == Severity::Critical {
        25.0
    } else {
        24.0
    };
    band + (score * width).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_severity_then_the_score() {
        assert_eq!(priority(IssueKind::Fragmentation, Severity::High, 0.7), 67);
        assert_eq!(
            priority(IssueKind::Fragmentation, Severity::Critical, 1.7),
            100
        );
        assert_eq!(
            priority(IssueKind::UnreachableElements, Severity::Medium, 12.0),
            25
        );
        assert_eq!(
            priority(IssueKind::UnreachableElements, Severity::Medium, 5000.0),
            49
        );
        assert_eq!(
            priority(IssueKind::UnbalancedClusters, Severity::High, 9.0),
            62
        );
        // The least critical issue outranks the most urgent high one.
        let worst_high = IssueKind::ALL
            .iter()
            .map(|k| priority(*k, Severity::High, 1e9))
            .max()
            .unwrap();
        let least_critical = IssueKind::ALL
            .iter()
            .map(|k| priority(*k, Severity::Critical, 0.0))
            .min()
            .unwrap();
        assert!(
            least_critical > worst_high,
            "{least_critical} vs {worst_high}"
        );
        assert!(Severity::Critical > Severity::Low);
    }
}
