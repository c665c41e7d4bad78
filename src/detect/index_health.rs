//! The specification's index rules (`IndexHealthChecker::needs_repair`),
//! applied to the metrics of one inspection. Each rule is a threshold
//! returning an issue with its kind, severity, priority and evidence.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::diagnose::{priority, IssueKind, Severity};

/// Thresholds, with the specification's defaults.
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    /// HNSW: share of element slots without a live element.
    pub max_fragmentation: f64,
    /// HNSW: absolute number of unreachable live elements.
    pub max_unreachable: u64,
    /// HNSW: unreachable live elements as a share of live elements.
    pub max_unreachable_ratio: f64,
    /// HNSW: reachable live / live.
    pub min_connectivity: f64,
    /// IVFFlat: list-size coefficient of variation (stddev / mean).
    pub max_cluster_balance: f64,
    /// IVFFlat: centroid drift (see `metrics::centroid_drift`).
    pub max_centroid_drift: f64,
    /// Both: dead rows not yet vacuumed as a share of the table's rows
    /// (`pg_stat_all_tables`), and their least number.
    pub max_dead_share: f64,
    pub min_dead_tuples: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_fragmentation: 0.5,
            max_unreachable: 100,
            max_unreachable_ratio: 0.01,
            min_connectivity: 0.8,
            max_cluster_balance: 2.0,
            max_centroid_drift: 0.5,
            max_dead_share: 0.1,
            min_dead_tuples: 10_000,
        }
    }
}

impl Thresholds {
    /// These thresholds with the numeric fields of `over` (a policy's
    /// `thresholds`) replacing the defaults; unknown keys are ignored (the
    /// policy functions refuse them).
    pub fn with_overrides(mut self, over: &Value) -> Thresholds {
        let num = |k: &str| over.get(k).and_then(Value::as_f64).filter(|v| *v >= 0.0);
        if let Some(v) = num("max_fragmentation") {
            self.max_fragmentation = v;
        }
        if let Some(v) = num("max_unreachable") {
            self.max_unreachable = v as u64;
        }
        if let Some(v) = num("max_unreachable_ratio") {
            self.max_unreachable_ratio = v;
        }
        if let Some(v) = num("min_connectivity") {
            self.min_connectivity = v;
        }
        if let Some(v) = num("max_cluster_balance") {
            self.max_cluster_balance = v;
        }
        if let Some(v) = num("max_centroid_drift") {
            self.max_centroid_drift = v;
        }
        if let Some(v) = num("max_dead_share") {
            self.max_dead_share = v;
        }
        if let Some(v) = num("min_dead_tuples") {
            self.min_dead_tuples = v as u64;
        }
        self
    }
}

/// A problem found in one index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexIssue {
    pub kind: IssueKind,
    pub severity: Severity,
    pub priority: u32,
    pub details: Value,
}

fn f(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

fn issue(kind: IssueKind, severity: Severity, value: f64, details: Value) -> IndexIssue {
    IndexIssue {
        kind,
        severity,
        priority: priority(kind, severity, value),
        details,
    }
}

/// Dead rows the table's statistics report and no vacuum has removed yet
/// (`heap_dead_tuples`, `heap_live_tuples` in the report): every index scan
/// meets their entries and throws them away, so a search returns fewer
/// live rows than it looked at — invisible in the index's own pages.
pub fn dead_tuple_issue(m: &Map<String, Value>, t: &Thresholds) -> Option<IndexIssue> {
    let dead = m.get("heap_dead_tuples").and_then(Value::as_u64)?;
    let live = m
        .get("heap_live_tuples")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let share = dead as f64 / (dead + live).max(1) as f64;
    if dead < t.min_dead_tuples || share <= t.max_dead_share {
        return None;
    }
    let sev = if share > 0.3 {
        Severity::High
    } else {
        Severity::Medium
    };
    Some(issue(
        IssueKind::DeadTuples,
        sev,
        share,
        json!({"heap_dead_tuples": dead, "heap_live_tuples": live, "dead_share": share,
               "threshold": t.max_dead_share, "min_dead_tuples": t.min_dead_tuples,
               "source": "pg_stat_all_tables (approximate, updated as transactions end)"}),
    ))
}

/// With `lists` lists, the largest possible balance is sqrt(lists - 1)
/// (every row in one list); below 17 lists the threshold is capped at half
/// of that so that it can still be crossed.
pub fn balance_threshold(t: &Thresholds, lists: u64) -> f64 {
    let max_possible = ((lists.max(1) - 1) as f64).sqrt();
    t.max_cluster_balance.min(0.5 * max_possible)
}

pub fn hnsw_issues(m: &Map<String, Value>, t: &Thresholds) -> Vec<IndexIssue> {
    let mut out = Vec::new();
    if let Some(frag) = f(m, "fragmentation") {
        if frag > t.max_fragmentation {
            let sev = if frag > 0.8 {
                Severity::Critical
            } else if frag > 0.65 {
                Severity::High
            } else {
                Severity::Medium
            };
            out.push(issue(
                IssueKind::Fragmentation,
                sev,
                frag,
                json!({
                    "fragmentation": frag, "threshold": t.max_fragmentation,
                    "elements_total": m.get("elements_total"),
                    "elements_live": m.get("elements_live"),
                    "elements_zombie": m.get("elements_zombie"),
                    "elements_deleted": m.get("elements_deleted"),
                }),
            ));
        }
    }
    let unreachable = m.get("unreachable").and_then(Value::as_u64).unwrap_or(0);
    let ratio = f(m, "unreachable_ratio").unwrap_or(0.0);
    // Both an absolute floor and a share: a freshly built graph already
    // strands a few elements (measured: 0.66 % of 200,000 × 128 random
    // vectors at m = 16) that a rebuild would strand again, so counting
    // alone would flag every large healthy index.
    if unreachable > t.max_unreachable && ratio > t.max_unreachable_ratio {
        let sev = if ratio > 0.10 {
            Severity::Critical
        } else if ratio > 0.05 {
            Severity::High
        } else {
            Severity::Medium
        };
        out.push(issue(
            IssueKind::UnreachableElements,
            sev,
            unreachable as f64,
            json!({
                "unreachable": unreachable, "unreachable_ratio": ratio,
                "threshold": t.max_unreachable, "ratio_threshold": t.max_unreachable_ratio,
                "elements_live": m.get("elements_live"),
            }),
        ));
    }
    if let Some(c) = f(m, "connectivity_score") {
        if c < t.min_connectivity {
            let sev = if c < 0.5 {
                Severity::Critical
            } else if c < 0.65 {
                Severity::High
            } else {
                Severity::Medium
            };
            out.push(issue(
                IssueKind::PoorConnectivity,
                sev,
                c,
                json!({"connectivity_score": c, "threshold": t.min_connectivity}),
            ));
        }
    }
    out
}

pub fn ivfflat_issues(m: &Map<String, Value>, t: &Thresholds) -> Vec<IndexIssue> {
    let mut out = Vec::new();
    let lists = m.get("lists").and_then(Value::as_u64).unwrap_or(0);
    let tuples = m.get("tuples").and_then(Value::as_u64).unwrap_or(0);
    let threshold = balance_threshold(t, lists);
    if let Some(b) = f(m, "cluster_balance") {
        if tuples > 0 && lists > 1 && b > threshold {
            let sev = if b > 2.0 * threshold {
                Severity::High
            } else {
                Severity::Medium
            };
            out.push(issue(
                IssueKind::UnbalancedClusters,
                sev,
                b,
                json!({
                    "cluster_balance": b, "threshold": threshold,
                    "scan_cost_factor": m.get("scan_cost_factor"),
                    "list_size_min": m.get("list_size_min"),
                    "list_size_max": m.get("list_size_max"),
                    "list_size_mean": m.get("list_size_mean"),
                    "empty_clusters": m.get("empty_clusters"),
                }),
            ));
        }
    }
    if let Some(d) = f(m, "centroid_drift") {
        if d > t.max_centroid_drift {
            let sev = if d > 2.0 * t.max_centroid_drift {
                Severity::High
            } else {
                Severity::Medium
            };
            out.push(issue(
                IssueKind::StaleTraining,
                sev,
                d,
                json!({
                    "centroid_drift": d, "threshold": t.max_centroid_drift,
                    "centroid_quality": m.get("centroid_quality"),
                    "training": m.get("training"),
                }),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn healthy_hnsw_has_no_issue() {
        let m = map(
            json!({"fragmentation": 0.1, "unreachable": 3, "unreachable_ratio": 0.0003,
                          "connectivity_score": 0.9997}),
        );
        assert!(hnsw_issues(&m, &Thresholds::default()).is_empty());
    }

    #[test]
    fn hnsw_rules_fire_with_severity_and_priority() {
        let m = map(
            json!({"fragmentation": 0.85, "unreachable": 4000, "unreachable_ratio": 0.2,
                          "connectivity_score": 0.8}),
        );
        let is = hnsw_issues(&m, &Thresholds::default());
        assert_eq!(is.len(), 2);
        assert_eq!(is[0].kind, IssueKind::Fragmentation);
        assert_eq!(is[0].severity, Severity::Critical);
        // Critical band 75..100, placed by the fragmentation level.
        assert_eq!(is[0].priority, 96);
        assert_eq!(is[1].kind, IssueKind::UnreachableElements);
        assert_eq!(is[1].priority, 100);
        // Exactly at the threshold is not an issue (the rule is strict).
        let at = map(json!({"connectivity_score": 0.8, "fragmentation": 0.5}));
        assert!(hnsw_issues(&at, &Thresholds::default()).is_empty());
    }

    #[test]
    fn unreachable_needs_both_count_and_share() {
        let t = Thresholds::default();
        let many_and_large = map(json!({"unreachable": 3000, "unreachable_ratio": 0.15}));
        let is = hnsw_issues(&many_and_large, &t);
        assert_eq!(is[0].priority, 100);
        assert_eq!(is[0].severity, Severity::Critical);
        let medium = map(json!({"unreachable": 150, "unreachable_ratio": 0.02}));
        assert_eq!(hnsw_issues(&medium, &t)[0].severity, Severity::Medium);
        assert_eq!(hnsw_issues(&medium, &t)[0].priority, 29);
        // A fresh large graph: many, but a small share.
        let fresh = map(json!({"unreachable": 1321, "unreachable_ratio": 0.0066}));
        assert!(hnsw_issues(&fresh, &t).is_empty());
        // A small index: a large share, but few elements.
        let few = map(json!({"unreachable": 20, "unreachable_ratio": 0.02}));
        assert!(hnsw_issues(&few, &t).is_empty());
    }

    #[test]
    fn ivfflat_balance_threshold_scales_with_lists() {
        let t = Thresholds::default();
        assert_eq!(balance_threshold(&t, 100), 2.0);
        assert!((balance_threshold(&t, 5) - 1.0).abs() < 1e-12);
        let m = map(json!({"lists": 100, "tuples": 1000, "cluster_balance": 2.5}));
        let is = ivfflat_issues(&m, &t);
        assert_eq!(is.len(), 1);
        assert_eq!(is[0].kind, IssueKind::UnbalancedClusters);
        assert_eq!(is[0].priority, 37);
        let ok = map(json!({"lists": 100, "tuples": 1000, "cluster_balance": 0.4,
                            "centroid_drift": 0.1}));
        assert!(ivfflat_issues(&ok, &t).is_empty());
        let drift = map(json!({"lists": 100, "tuples": 1000, "cluster_balance": 0.4,
                               "centroid_drift": 1.2}));
        assert_eq!(ivfflat_issues(&drift, &t)[0].kind, IssueKind::StaleTraining);
    }

    #[test]
    fn policy_overrides_replace_thresholds() {
        let t = Thresholds::default().with_overrides(
            &serde_json::json!({"max_fragmentation": 0.2, "max_unreachable": 5, "bogus": 1}),
        );
        assert_eq!(t.max_fragmentation, 0.2);
        assert_eq!(t.max_unreachable, 5);
        assert_eq!(t.min_connectivity, 0.8);
    }

    #[test]
    fn dead_tuples_need_a_share_and_a_count() {
        let t = Thresholds::default();
        let m = |dead: u64, live: u64| {
            let mut m = Map::new();
            m.insert("heap_dead_tuples".into(), json!(dead));
            m.insert("heap_live_tuples".into(), json!(live));
            m
        };
        assert!(dead_tuple_issue(&m(9_999, 10_000), &t).is_none(), "too few");
        assert!(
            dead_tuple_issue(&m(10_000, 200_000), &t).is_none(),
            "share 0.048"
        );
        let i = dead_tuple_issue(&m(20_000, 80_000), &t).unwrap();
        assert_eq!(i.kind, IssueKind::DeadTuples);
        assert_eq!(i.severity, Severity::Medium);
        assert_eq!(
            dead_tuple_issue(&m(50_000, 50_000), &t).unwrap().severity,
            Severity::High
        );
        assert!(dead_tuple_issue(&Map::new(), &t).is_none(), "no statistics");
    }
}
