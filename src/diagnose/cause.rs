//! Root cause of an issue, from evidence: what caused it, what it costs,
//! and the repair that addresses that cause (or none, and why). Pure
//! Rust: the evidence is gathered by `healing::diagnosis` (measurements,
//! trial builds of a sample), the decision is made here.
//!
//! The causes told apart:
//!
//! - **churn**: deleted or updated rows — dead tuples not vacuumed,
//!   deleted slots, elements a delete left without in-edges. Vacuum, or a
//!   rebuild with the same options.
//! - **build options**: a trial build of a sample with the index's own
//!   options is clearly worse than one with candidate options on the same
//!   sample (compared with each other, never a sample with the full index):
//!   a rebuild with the same options would reproduce the problem.
//! - **data drift** (IVFFlat): the index's recall at the production probes
//!   is clearly below that of a fresh build of a sample with the same
//!   `lists` at the same probes: the centers no longer describe the data.
//! - **search setting**: the index is as good as a fresh build, but the
//!   production `ef_search` / `probes` is too low for the target: no
//!   rebuild; the recommended value is recorded.
//! - **inherent**: what a fresh build with sound options shows too: never
//!   "repaired" by a rebuild that would reproduce it.

use serde::Serialize;
use serde_json::{json, Value};

use super::options::{Allowance, BuildOptions};
use super::IssueKind;
use crate::inspect::relation::Am;

/// A measurement of recall@10 on sampled queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recall {
    pub recall: f64,
    /// Standard error of the mean over the queries.
    pub se: f64,
    pub queries: usize,
}

/// Recall at the production search setting (see `production_setting`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub setting: String,
    pub value: i32,
    pub recall: Recall,
    /// 95 % interval (Wilson).
    pub ci: (f64, f64),
}

/// A trial build of a sample of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    pub options: BuildOptions,
    pub rows: u64,
    /// HNSW: unreachable live elements / live elements of the trial index.
    pub unreachable_ratio: Option<f64>,
    /// At the production setting (IVFFlat: the same probes).
    pub recall: Recall,
    pub build_ms: f64,
}

/// What `diagnose` looks at.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    #[serde(skip)]
    pub am: Am,
    #[serde(skip)]
    pub kind: IssueKind,
    pub target_recall: f64,
    pub max_unreachable_ratio: f64,
    pub max_dead_share: f64,
    pub current: BuildOptions,
    /// Dead heap tuples / all (pg_stat_all_tables).
    pub dead_share: f64,
    /// HNSW: deleted and zombie element slots / all slots.
    pub deleted_share: f64,
    pub unreachable_ratio: Option<f64>,
    pub outcome: Option<Outcome>,
    /// Trial builds: the index's own options first, then candidates.
    pub trials: Vec<Trial>,
    /// Why trials could not be run, if so.
    pub trial_error: Option<String>,
    /// The smallest setting reaching the target on the index itself
    /// (`None` inside: none in range did), and the best recall measured.
    pub tuned: Option<(Option<i32>, f64)>,
    #[serde(skip)]
    pub allowance: Allowance,
    /// IVFFlat: `lists` for the table's size (pgvector's guidance), when
    /// the policy does not pin it.
    pub lists_for_rows: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Churn,
    BuildOptions,
    DataDrift,
    SearchSetting,
    Inherent,
    /// The index's pages break pgvector's invariants.
    Corruption,
    /// The evidence a decision needs could not be gathered.
    Undetermined,
}

impl Cause {
    pub fn name(&self) -> &'static str {
        match self {
            Cause::Churn => "churn",
            Cause::BuildOptions => "build_options",
            Cause::DataDrift => "data_drift",
            Cause::SearchSetting => "search_setting",
            Cause::Inherent => "inherent",
            Cause::Corruption => "corruption",
            Cause::Undetermined => "undetermined",
        }
    }
}

/// The repair that addresses the cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Remedy {
    Vacuum,
    /// A shadow rebuild; `options` when they differ from the index's.
    Rebuild {
        #[serde(skip_serializing_if = "Option::is_none")]
        options: Option<BuildOptions>,
    },
    /// No rebuild: the search setting that reaches the target (recorded;
    /// applied per index once per-index settings exist).
    Setting {
        setting: String,
        value: i32,
    },
    /// Nothing the worker may do: what a person should decide.
    None {
        advice: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub cause: Cause,
    pub remedy: Remedy,
    /// Why, in one sentence.
    pub reason: String,
    /// Measured or estimated cost: recall lost against the target and
    /// against the best trial.
    pub impact: Value,
    /// The remedy is not one the worker runs by itself.
    pub needs_person: bool,
}

/// Unpaired difference that counts as "clearly" better: at least 0.03, and
/// beyond 2.58 standard errors of the difference (99 % one-sided).
pub fn clear_margin(a: &Recall, b: &Recall) -> f64 {
    0.03f64.max(2.58 * (a.se.powi(2) + b.se.powi(2)).sqrt())
}

/// Share of dead rows above which an HNSW vacuum costs more than a rebuild
/// (pgvector's advice: "speed it up by reindexing first").
pub const VACUUM_MAX_DEAD_SHARE: f64 = 0.2;

/// Share of deleted or zombie HNSW slots that counts as churn.
pub const CHURN_DELETED_SHARE: f64 = 0.05;

/// Which evidence the decision for an issue kind needs, so that trials run
/// only when they can change it.
pub fn needs_trials(
    am: Am,
    kind: IssueKind,
    dead_share: f64,
    deleted_share: f64,
    max_dead_share: f64,
) -> bool {
    match kind {
        IssueKind::DeadTuples
        | IssueKind::Fragmentation
        | IssueKind::InvalidIndex
        | IssueKind::Corruption => false,
        _ if dead_share > max_dead_share => false,
        _ if am == Am::Hnsw && deleted_share >= CHURN_DELETED_SHARE => false,
        _ => true,
    }
}

/// Churn: dead rows are vacuumed (IVFFlat always; HNSW while a vacuum is
/// cheaper than a rebuild); a graph whose slots deletes emptied, or whose
/// elements they stranded, is rebuilt with its own options (a vacuum marks
/// slots reusable but neither compacts nor reconnects).
fn churn(e: &Evidence, why: String) -> Diagnosis {
    let dead_rows = e.kind == IssueKind::DeadTuples
        || (e.kind != IssueKind::Fragmentation && e.deleted_share < CHURN_DELETED_SHARE);
    let remedy = if dead_rows && (e.am == Am::IvfFlat || e.dead_share <= VACUUM_MAX_DEAD_SHARE) {
        Remedy::Vacuum
    } else {
        Remedy::Rebuild { options: None }
    };
    Diagnosis {
        cause: Cause::Churn,
        remedy,
        reason: why,
        impact: impact(e, None),
        needs_person: false,
    }
}

fn impact(e: &Evidence, best: Option<&Trial>) -> Value {
    let recall = e.outcome.as_ref().map(|o| o.recall.recall);
    json!({
        "recall_at_production": recall,
        "production_setting": e.outcome.as_ref().map(|o| json!({"name": o.setting, "value": o.value})),
        "recall_below_target": recall.map(|r| (e.target_recall - r).max(0.0)),
        "recall_of_best_trial": best.map(|t| t.recall.recall),
        "unreachable_ratio": e.unreachable_ratio,
    })
}

/// A trial reaches the targets: recall at the production setting, and (HNSW)
/// stranded elements under the threshold.
pub fn trial_meets(e: &Evidence, t: &Trial) -> bool {
    t.recall.recall >= e.target_recall
        && t.unreachable_ratio
            .is_none_or(|u| u <= e.max_unreachable_ratio)
}

/// `b` is clearly better than `a`: more recall beyond the noise, or half
/// the stranded elements (and more than half a percent fewer).
pub fn trial_better(b: &Trial, a: &Trial) -> bool {
    let recall = b.recall.recall > a.recall.recall + clear_margin(&a.recall, &b.recall);
    let stranded = match (a.unreachable_ratio, b.unreachable_ratio) {
        (Some(x), Some(y)) => y <= 0.5 * x && x - y > 0.005,
        _ => false,
    };
    recall || stranded
}

fn describe(o: &BuildOptions) -> String {
    o.storage()
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn below_target(e: &Evidence) -> bool {
    e.outcome.as_ref().is_some_and(|o| o.ci.1 < e.target_recall)
}

fn setting_name(am: Am) -> &'static str {
    match am {
        Am::Hnsw => "hnsw.ef_search",
        Am::IvfFlat => "ivfflat.probes",
    }
}

/// A cause that is not the index: the setting, if one reaches the target.
fn setting_or_inherent(e: &Evidence, best: Option<&Trial>, inherent_why: String) -> Diagnosis {
    let name = setting_name(e.am);
    if below_target(e) {
        if let Some((Some(v), _)) = e.tuned {
            return Diagnosis {
                cause: Cause::SearchSetting,
                remedy: Remedy::Setting {
                    setting: name.into(),
                    value: v,
                },
                reason: format!(
                    "the index is as good as a fresh build, but {name} = {} reaches recall {:.3}, below the target {}; {name} = {v} reaches it",
                    e.outcome.as_ref().map_or(0, |o| o.value),
                    e.outcome.as_ref().map_or(0.0, |o| o.recall.recall),
                    e.target_recall
                ),
                impact: impact(e, best),
                needs_person: false,
            };
        }
        return Diagnosis {
            cause: Cause::Inherent,
            remedy: Remedy::None {
                advice: format!(
                    "no {name} in range reaches recall {} on this index, and a fresh build with the allowed options is no better: lower the target, or rebuild with larger options (ruvector_dag_repair_index(index, 'rebuild', options => ...))",
                    e.target_recall
                ),
            },
            reason: inherent_why,
            impact: impact(e, best),
            needs_person: true,
        };
    }
    Diagnosis {
        cause: Cause::Inherent,
        remedy: Remedy::None {
            advice: "nothing to repair: a fresh build shows the same, and recall at the production setting reaches the target".into(),
        },
        reason: inherent_why,
        impact: impact(e, best),
        needs_person: false,
    }
}

fn hnsw(e: &Evidence) -> Diagnosis {
    let Some(cur) = e.trials.first() else {
        return undetermined(e);
    };
    let (cm, ce) = (
        e.current.m.unwrap_or(16),
        e.current.ef_construction.unwrap_or(64),
    );
    let candidates = &e.trials[1..];
    let fit = |t: &&Trial| trial_meets(e, t) && trial_better(t, cur);
    let allowed = candidates.iter().filter(|t| {
        e.allowance.allows(
            (cm, ce),
            t.options.m.unwrap_or(cm),
            t.options.ef_construction.unwrap_or(ce),
        )
    });
    if !trial_meets(e, cur) {
        // The options strand no more than the threshold and a higher
        // search setting reaches the target: no rebuild, the setting.
        let stranded_ok = cur
            .unreachable_ratio
            .is_none_or(|u| u <= e.max_unreachable_ratio);
        if stranded_ok && matches!(e.tuned, Some((Some(_), _))) {
            let best = candidates
                .iter()
                .max_by(|a, b| a.recall.recall.total_cmp(&b.recall.recall));
            return setting_or_inherent(
                e,
                best,
                format!(
                    "a trial build of {} sampled rows with the index's options strands {:.2} % (threshold {:.2} %): the graph is sound, the search setting is short",
                    cur.rows,
                    100.0 * cur.unreachable_ratio.unwrap_or(0.0),
                    100.0 * e.max_unreachable_ratio
                ),
            );
        }
        if let Some(best) = allowed.clone().find(fit) {
            return Diagnosis {
                cause: Cause::BuildOptions,
                remedy: Remedy::Rebuild {
                    options: Some(best.options),
                },
                reason: format!(
                    "a trial build of {} sampled rows with the index's options (m = {cm}, ef_construction = {ce}) reaches recall {:.3} and strands {:.1} %; with {} it reaches {:.3} and strands {:.1} %: a rebuild with the same options would reproduce the problem",
                    cur.rows,
                    cur.recall.recall,
                    100.0 * cur.unreachable_ratio.unwrap_or(0.0),
                    describe(&best.options),
                    best.recall.recall,
                    100.0 * best.unreachable_ratio.unwrap_or(0.0)
                ),
                impact: impact(e, Some(best)),
                needs_person: false,
            };
        }
        if let Some(best) = candidates.iter().find(fit) {
            return Diagnosis {
                cause: Cause::BuildOptions,
                remedy: Remedy::None {
                    advice: format!(
                        "rebuild with {}: ruvector_dag_repair_index(index, 'rebuild', options => '{}'), or allow the worker to (ruvector.dag_healing_allow_option_changes = 'any', or the index's policy); the worker may raise options only up to {}",
                        describe(&best.options),
                        serde_json::to_string(&best.options).unwrap_or_default(),
                        e.allowance.name()
                    ),
                },
                reason: format!(
                    "trial builds of {} sampled rows: the index's options reach recall {:.3}, {} reaches {:.3}",
                    cur.rows,
                    cur.recall.recall,
                    describe(&best.options),
                    best.recall.recall
                ),
                impact: impact(e, Some(best)),
                needs_person: true,
            };
        }
    }
    let best = candidates
        .iter()
        .max_by(|a, b| a.recall.recall.total_cmp(&b.recall.recall));
    setting_or_inherent(
        e,
        best,
        format!(
            "trial builds of {} sampled rows with the index's options and with {} candidate options are alike (recall {:.3} vs at best {:.3}): the options are not the cause",
            cur.rows,
            candidates.len(),
            cur.recall.recall,
            best.map_or(cur.recall.recall, |b| b.recall.recall)
        ),
    )
}

fn ivfflat(e: &Evidence) -> Diagnosis {
    let (Some(fresh), Some(o)) = (e.trials.first(), e.outcome.as_ref()) else {
        return undetermined(e);
    };
    let margin = clear_margin(&fresh.recall, &o.recall);
    if fresh.recall.recall > o.recall.recall + margin {
        // Retrained centers; lists for the table's size unless a trial
        // with those lists does worse at the production probes.
        let lists = match (e.lists_for_rows, e.trials.get(1)) {
            (Some(l), Some(t)) if t.recall.recall + 0.01 >= fresh.recall.recall => Some(l),
            _ => e.current.lists,
        };
        return Diagnosis {
            cause: Cause::DataDrift,
            remedy: Remedy::Rebuild {
                options: lists.map(BuildOptions::ivfflat),
            },
            reason: format!(
                "recall at {} = {} is {:.3}, a fresh build of {} sampled rows with the same lists reaches {:.3} at the same probes: the centers no longer describe the data",
                o.setting, o.value, o.recall.recall, fresh.rows, fresh.recall.recall
            ),
            impact: impact(e, Some(fresh)),
            needs_person: false,
        };
    }
    // Centers as good as new, but as many lists as the table's size calls
    // for reach more at the same probes: the option is wrong, not the data.
    if let (Some(lists), Some(sized)) = (e.lists_for_rows, e.trials.get(1)) {
        if sized.recall.recall > o.recall.recall + clear_margin(&sized.recall, &o.recall) {
            return Diagnosis {
                cause: Cause::BuildOptions,
                remedy: Remedy::Rebuild {
                    options: Some(BuildOptions::ivfflat(lists)),
                },
                reason: format!(
                    "recall at {} = {} is {:.3}; on a sample of {} rows a fresh build with the same lists reaches {:.3}, with lists = {lists} (for the table's size) {:.3}: the lists are wrong for the table's size",
                    o.setting, o.value, o.recall.recall, fresh.rows, fresh.recall.recall, sized.recall.recall
                ),
                impact: impact(e, Some(sized)),
                needs_person: false,
            };
        }
    }
    setting_or_inherent(
        e,
        Some(fresh),
        format!(
            "a fresh build of {} sampled rows with the same lists reaches {:.3} at {} = {}, the index {:.3}: the centers still describe the data (uneven lists are what this data gives)",
            fresh.rows, fresh.recall.recall, o.setting, o.value, o.recall.recall
        ),
    )
}

fn undetermined(e: &Evidence) -> Diagnosis {
    Diagnosis {
        cause: Cause::Undetermined,
        remedy: Remedy::None {
            advice: format!(
                "the evidence to tell the cause could not be gathered{}; the worker does not rebuild on a guess",
                e.trial_error
                    .as_deref()
                    .map_or(String::new(), |x| format!(" ({x})"))
            ),
        },
        reason: "no trial builds or recall measurement".into(),
        impact: impact(e, None),
        needs_person: true,
    }
}

/// The value to recommend from a tuning curve `(value, recall)` when the
/// index misses the target at `current`: the tuning's own `best` if above
/// `current`, else the smallest value above `current` whose recall reaches
/// the target. A value at or under `current` is never recommended: the
/// production measurement already found it short (the tuning's sample was
/// luckier), and recommending it would change nothing.
pub fn recommended(
    curve: &[(u32, f64)],
    best: Option<u32>,
    current: i32,
    target: f64,
) -> Option<i32> {
    if let Some(b) = best.filter(|b| *b as i64 > current as i64) {
        return Some(b as i32);
    }
    curve
        .iter()
        .filter(|(v, r)| *v as i64 > current as i64 && *r >= target)
        .map(|(v, _)| *v as i32)
        .min()
}

/// An invalid index: a failed or running concurrent build, for a person.
pub fn diagnose_invalid() -> Diagnosis {
    Diagnosis {
        cause: Cause::Undetermined,
        remedy: Remedy::None {
            advice: "an invalid index is a failed or running CREATE INDEX CONCURRENTLY: drop it, or REINDEX INDEX CONCURRENTLY it".into(),
        },
        reason: "pg_index.indisvalid is false".into(),
        impact: json!({"queries_served": 0}),
        needs_person: true,
    }
}

/// A verification found broken invariants: whatever broke them (a bug, a
/// storage fault), the table still holds every row, and a rebuild writes
/// the index anew from it; the new index is verified before it is swapped
/// in.
pub fn diagnose_corruption() -> Diagnosis {
    Diagnosis {
        cause: Cause::Corruption,
        remedy: Remedy::Rebuild { options: None },
        reason: "the verification found pages that break pgvector's invariants (see the issue's violations)".into(),
        impact: json!({"queries": "may miss rows, return wrong neighbours or fail"}),
        needs_person: false,
    }
}

/// The diagnosis of one issue.
pub fn diagnose(e: &Evidence) -> Diagnosis {
    match e.kind {
        IssueKind::DeadTuples => {
            return churn(
                e,
                format!(
                    "{:.1} % of the table's rows are dead and not vacuumed: every scan meets their entries",
                    100.0 * e.dead_share
                ),
            )
        }
        IssueKind::Fragmentation => {
            return churn(
                e,
                "most element slots hold deleted or dead rows: deletes since the build".into(),
            )
        }
        IssueKind::InvalidIndex => return diagnose_invalid(),
        IssueKind::Corruption => return diagnose_corruption(),
        _ => {}
    }
    if e.dead_share > e.max_dead_share {
        return churn(
            e,
            format!(
                "{:.1} % of the table's rows are dead: entries every scan meets and discards",
                100.0 * e.dead_share
            ),
        );
    }
    if e.am == Am::Hnsw && e.deleted_share >= CHURN_DELETED_SHARE {
        return churn(
            e,
            format!(
                "{:.1} % of the graph's slots hold deleted or dead elements: deletes since the build left elements without in-edges",
                100.0 * e.deleted_share
            ),
        );
    }
    match e.am {
        Am::Hnsw => hnsw(e),
        Am::IvfFlat => ivfflat(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(recall: f64) -> Recall {
        Recall {
            recall,
            se: 0.01,
            queries: 100,
        }
    }

    fn trial(m: u16, e: u16, recall: f64, unreachable: f64) -> Trial {
        Trial {
            options: BuildOptions::hnsw(m, e),
            rows: 2000,
            unreachable_ratio: Some(unreachable),
            recall: r(recall),
            build_ms: 10.0,
        }
    }

    fn outcome(recall: f64, value: i32) -> Outcome {
        Outcome {
            setting: "hnsw.ef_search".into(),
            value,
            recall: r(recall),
            ci: (recall - 0.03, recall + 0.03),
        }
    }

    fn evidence(kind: IssueKind, trials: Vec<Trial>, out: Option<Outcome>) -> Evidence {
        Evidence {
            am: Am::Hnsw,
            kind,
            target_recall: 0.95,
            max_unreachable_ratio: 0.01,
            max_dead_share: 0.1,
            current: BuildOptions::hnsw(2, 4),
            dead_share: 0.0,
            deleted_share: 0.0,
            unreachable_ratio: Some(0.185),
            outcome: out,
            trials,
            trial_error: None,
            tuned: None,
            allowance: Allowance::UpToDefaults,
            lists_for_rows: None,
        }
    }

    #[test]
    fn poor_options_are_rebuilt_with_the_cheapest_that_works() {
        // The quick start: m = 2 strands 18 %; m = 8 is enough on the sample.
        let e = evidence(
            IssueKind::UnreachableElements,
            vec![
                trial(2, 4, 0.30, 0.17),
                trial(8, 32, 0.99, 0.001),
                trial(16, 64, 1.0, 0.0),
            ],
            Some(outcome(0.21, 40)),
        );
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::BuildOptions);
        assert_eq!(
            d.remedy,
            Remedy::Rebuild {
                options: Some(BuildOptions::hnsw(8, 32))
            }
        );
        assert!(!d.needs_person);
        assert!(d.reason.contains("would reproduce"), "{}", d.reason);
    }

    #[test]
    fn options_beyond_the_allowance_are_recommended_not_built() {
        let mut e = evidence(
            IssueKind::LowRecall,
            vec![trial(16, 64, 0.80, 0.02), trial(24, 96, 0.97, 0.002)],
            Some(outcome(0.78, 40)),
        );
        e.current = BuildOptions::hnsw(16, 64);
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::BuildOptions);
        assert!(d.needs_person);
        match &d.remedy {
            Remedy::None { advice } => assert!(advice.contains("m = 24"), "{advice}"),
            other => panic!("{other:?}"),
        }
        e.allowance = Allowance::Any;
        assert_eq!(
            diagnose(&e).remedy,
            Remedy::Rebuild {
                options: Some(BuildOptions::hnsw(24, 96))
            }
        );
    }

    #[test]
    fn sound_options_with_a_low_setting_are_a_setting_cause() {
        let mut e = evidence(
            IssueKind::LowRecall,
            vec![trial(16, 64, 0.90, 0.004), trial(16, 96, 0.905, 0.004)],
            Some(outcome(0.85, 10)),
        );
        e.current = BuildOptions::hnsw(16, 64);
        e.tuned = Some((Some(48), 0.99));
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::SearchSetting);
        assert_eq!(
            d.remedy,
            Remedy::Setting {
                setting: "hnsw.ef_search".into(),
                value: 48
            }
        );
    }

    #[test]
    fn what_a_fresh_build_shows_too_is_inherent() {
        // Default options strand 1.4 % of clustered data; so does every
        // candidate on the sample; recall at production is fine.
        let mut e = evidence(
            IssueKind::UnreachableElements,
            vec![
                trial(16, 64, 0.99, 0.012),
                trial(16, 96, 0.99, 0.011),
                trial(24, 96, 0.995, 0.010),
            ],
            Some(outcome(0.98, 40)),
        );
        e.current = BuildOptions::hnsw(16, 64);
        e.unreachable_ratio = Some(0.014);
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::Inherent);
        assert!(matches!(d.remedy, Remedy::None { .. }));
        assert!(!d.needs_person);
    }

    #[test]
    fn churn_is_vacuumed_while_cheap() {
        let mut e = evidence(IssueKind::DeadTuples, vec![], None);
        e.dead_share = 0.15;
        assert_eq!(diagnose(&e).remedy, Remedy::Vacuum);
        e.dead_share = 0.4;
        assert_eq!(diagnose(&e).remedy, Remedy::Rebuild { options: None });
        let mut e = evidence(IssueKind::UnreachableElements, vec![], None);
        e.deleted_share = 0.3;
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::Churn);
        assert_eq!(d.remedy, Remedy::Rebuild { options: None });
        assert!(!needs_trials(
            Am::Hnsw,
            IssueKind::UnreachableElements,
            0.0,
            0.3,
            0.1
        ));
        assert!(needs_trials(
            Am::Hnsw,
            IssueKind::UnreachableElements,
            0.0,
            0.0,
            0.1
        ));
    }

    #[test]
    fn a_drifted_ivfflat_index_is_retrained() {
        let fresh = Trial {
            options: BuildOptions::ivfflat(20),
            rows: 4000,
            unreachable_ratio: None,
            recall: r(0.86),
            build_ms: 30.0,
        };
        let mut e = evidence(IssueKind::LowRecall, vec![fresh.clone()], None);
        e.am = Am::IvfFlat;
        e.current = BuildOptions::ivfflat(20);
        e.outcome = Some(Outcome {
            setting: "ivfflat.probes".into(),
            value: 1,
            recall: r(0.77),
            ci: (0.72, 0.81),
        });
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::DataDrift);
        assert_eq!(
            d.remedy,
            Remedy::Rebuild {
                options: Some(BuildOptions::ivfflat(20))
            }
        );
        // After the rebuild: as good as a fresh build, still below the
        // target at probes = 1: the setting, not another rebuild.
        e.outcome.as_mut().unwrap().recall = r(0.85);
        e.tuned = Some((Some(3), 0.97));
        assert_eq!(diagnose(&e).cause, Cause::SearchSetting);
        // Lists for the size are taken when a trial with them is as good.
        e.outcome.as_mut().unwrap().recall = r(0.70);
        e.lists_for_rows = Some(40);
        e.trials.push(Trial {
            options: BuildOptions::ivfflat(40),
            recall: r(0.80),
            ..fresh
        });
        assert_eq!(
            diagnose(&e).remedy,
            Remedy::Rebuild {
                options: Some(BuildOptions::ivfflat(20))
            },
            "40 lists lose recall at the same probes: keep 20"
        );
    }

    #[test]
    fn too_many_lists_for_the_size_are_build_options() {
        // Centers as good as new (the same lists reach no more), but 100
        // lists on a table that calls for 20 split neighbors over lists.
        let same = Trial {
            options: BuildOptions::ivfflat(100),
            rows: 2000,
            unreachable_ratio: None,
            recall: r(0.52),
            build_ms: 30.0,
        };
        let sized = Trial {
            options: BuildOptions::ivfflat(20),
            recall: r(0.81),
            ..same.clone()
        };
        let mut e = evidence(IssueKind::LowRecall, vec![same, sized], None);
        e.am = Am::IvfFlat;
        e.current = BuildOptions::ivfflat(100);
        e.lists_for_rows = Some(20);
        e.outcome = Some(Outcome {
            setting: "ivfflat.probes".into(),
            value: 1,
            recall: r(0.55),
            ci: (0.50, 0.60),
        });
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::BuildOptions, "{}", d.reason);
        assert_eq!(
            d.remedy,
            Remedy::Rebuild {
                options: Some(BuildOptions::ivfflat(20))
            }
        );
        // Without a sized trial that does clearly better: nothing to rebuild.
        e.trials[1].recall = r(0.57);
        assert_ne!(diagnose(&e).cause, Cause::BuildOptions);
    }

    #[test]
    fn a_recommendation_is_above_the_value_in_use() {
        let curve = [(10, 0.951), (20, 0.97), (40, 0.99)];
        assert_eq!(recommended(&curve, Some(10), 10, 0.95), Some(20));
        assert_eq!(recommended(&curve, Some(20), 10, 0.95), Some(20));
        assert_eq!(recommended(&curve, Some(10), 5, 0.95), Some(10));
        assert_eq!(recommended(&curve, Some(10), 40, 0.95), None);
        assert_eq!(recommended(&curve, None, 10, 0.98), Some(40));
    }

    #[test]
    fn no_evidence_no_rebuild() {
        let mut e = evidence(
            IssueKind::UnreachableElements,
            vec![],
            Some(outcome(0.2, 40)),
        );
        e.trial_error = Some("out of memory".into());
        let d = diagnose(&e);
        assert_eq!(d.cause, Cause::Undetermined);
        assert!(d.needs_person);
    }
}
