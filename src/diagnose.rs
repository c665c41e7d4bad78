//! Diagnosis: issue kinds, severities and the specification's priority
//! scoring (`SelfHealingEngine::compute_priority`).

use serde::Serialize;

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
        }
    }

    pub const ALL: [IssueKind; 7] = [
        IssueKind::Fragmentation,
        IssueKind::UnreachableElements,
        IssueKind::PoorConnectivity,
        IssueKind::UnbalancedClusters,
        IssueKind::StaleTraining,
        IssueKind::InvalidIndex,
        IssueKind::DeadTuples,
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

/// Priority 0..=100, higher first. Index issues follow the specification:
/// fragmentation scores its level x 100, unreachable ("orphan") elements
/// their count capped at 90, every other index issue 50.
pub fn priority(kind: IssueKind, _severity: Severity, value: f64) -> u32 {
    match kind {
        IssueKind::Fragmentation => (value.clamp(0.0, 1.0) * 100.0) as u32,
        IssueKind::UnreachableElements => (value.max(0.0) as u32).min(90),
        _ => 50,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_priorities() {
        assert_eq!(priority(IssueKind::Fragmentation, Severity::High, 0.7), 70);
        assert_eq!(priority(IssueKind::Fragmentation, Severity::High, 1.7), 100);
        assert_eq!(
            priority(IssueKind::UnreachableElements, Severity::Low, 12.0),
            12
        );
        assert_eq!(
            priority(IssueKind::UnreachableElements, Severity::Low, 5000.0),
            90
        );
        assert_eq!(
            priority(IssueKind::UnbalancedClusters, Severity::High, 9.0),
            50
        );
        assert!(Severity::Critical > Severity::Low);
    }
}
