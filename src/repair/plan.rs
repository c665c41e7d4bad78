//! The pure part of a repair: strategies, the journal's states and what a
//! restart does at each, names of the indexes a rebuild creates, the
//! rebuilt definition, IVFFlat's `lists`, and the validation verdict.
//! Everything here is plain Rust, unit-tested without a server.

use serde::Serialize;
use serde_json::Value;

use crate::detect::index_health::Thresholds;
use crate::diagnose::IssueKind;

use crate::inspect::relation::Am;

/// The specification's `RepairStrategy`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Shadow build with `CREATE INDEX CONCURRENTLY`, validate, swap names,
    /// keep or retire the old index.
    Rebuild,
    /// `VACUUM` the table: pgvector repairs the graph around deleted
    /// elements and frees their space.
    Vacuum,
    /// Apply a tuned `hnsw.ef_search` / `ivfflat.probes` with
    /// `ALTER DATABASE|ROLE ... SET`.
    TuneSearch,
}

pub const STRATEGY_NAMES: [&str; 4] = ["auto", "rebuild", "vacuum", "tune_search"];

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Rebuild => "rebuild",
            Strategy::Vacuum => "vacuum",
            Strategy::TuneSearch => "tune_search",
        }
    }

    /// `None` for "auto" (chosen from the index's issues); `Err` for names
    /// that do not exist.
    pub fn parse(s: &str) -> Result<Option<Strategy>, String> {
        match s {
            "auto" => Ok(None),
            "rebuild" => Ok(Some(Strategy::Rebuild)),
            "vacuum" => Ok(Some(Strategy::Vacuum)),
            "tune_search" => Ok(Some(Strategy::TuneSearch)),
            other => Err(format!(
                "unknown repair strategy \"{other}\"; strategies are {}",
                STRATEGY_NAMES.join(", ")
            )),
        }
    }

    /// Whether the strategy can repair an index of this access method.
    /// Every strategy applies to both access methods: a vacuum removes
    /// dead entries from IVFFlat lists and repairs HNSW graphs.
    pub fn can_repair(&self, _am: Am) -> Result<(), String> {
        Ok(())
    }

    /// Whether a rollback can undo the strategy.
    pub fn reversible(&self) -> bool {
        !matches!(self, Strategy::Vacuum)
    }
}

/// pgvector's guidance for `lists`: rows / 1000 up to 1M rows, sqrt(rows)
/// above; at least 1, at most pgvector's maximum of 32768.
pub fn ivfflat_lists(rows: i64) -> i32 {
    let rows = rows.max(0) as f64;
    let lists = if rows <= 1_000_000.0 {
        (rows / 1000.0).round()
    } else {
        rows.sqrt().round()
    };
    (lists as i64).clamp(1, 32_768) as i32
}

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_NAME: usize = 63;

/// `base` + `suffix`, cutting `base` on a character boundary so the whole
/// stays within 63 bytes (as PostgreSQL's own `ChooseRelationName` does).
pub fn derived_name(base: &str, suffix: &str) -> String {
    let room = MAX_NAME.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &base[..cut], suffix)
}

pub fn shadow_name(index: &str, repair_id: i64) -> String {
    derived_name(index, &format!("_rvnew{repair_id}"))
}

pub fn backup_name(index: &str, repair_id: i64) -> String {
    derived_name(index, &format!("_rvold{repair_id}"))
}

/// An index definition in catalog pieces, each already quoted by the
/// server (`quote_ident`, `pg_get_indexdef(oid, col, false)`,
/// `pg_get_expr`), so nothing from a user reaches the statement unquoted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    /// Quoted `schema.table`.
    pub table: String,
    /// Quoted access method.
    pub am: String,
    /// Each key column with its operator class, as `pg_get_indexdef`
    /// prints it.
    pub columns: Vec<String>,
    /// `(name, value)` storage options, unquoted.
    pub options: Vec<(String, String)>,
    /// Quoted tablespace, when not the database's default.
    pub tablespace: Option<String>,
    /// Partial-index predicate.
    pub predicate: Option<String>,
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"name"` with inner quotes doubled: always quoted, so any name is safe.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Whether a storage option name is a plain lower-case identifier (the
/// only kind pgvector and PostgreSQL define).
fn plain_option(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Definition {
    /// Replaces (or adds) one storage option.
    pub fn set_option(&mut self, name: &str, value: &str) {
        match self.options.iter_mut().find(|(n, _)| n == name) {
            Some(o) => o.1 = value.to_string(),
            None => self.options.push((name.to_string(), value.to_string())),
        }
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `CREATE INDEX CONCURRENTLY <name> ON ...`.
    pub fn create_concurrently(&self, name: &str) -> Result<String, String> {
        if self.columns.is_empty() {
            return Err("the index has no key column".into());
        }
        if let Some((bad, _)) = self.options.iter().find(|(n, _)| !plain_option(n)) {
            return Err(format!("unexpected storage option name {bad:?}"));
        }
        let mut sql = format!(
            "CREATE INDEX CONCURRENTLY {} ON {} USING {} ({})",
            quote_ident(name),
            self.table,
            self.am,
            self.columns.join(", ")
        );
        if !self.options.is_empty() {
            let opts: Vec<String> = self
                .options
                .iter()
                .map(|(n, v)| format!("{n} = {}", quote_literal(v)))
                .collect();
            sql.push_str(&format!(" WITH ({})", opts.join(", ")));
        }
        if let Some(ts) = &self.tablespace {
            sql.push_str(&format!(" TABLESPACE {ts}"));
        }
        if let Some(p) = &self.predicate {
            sql.push_str(&format!(" WHERE {p}"));
        }
        Ok(sql)
    }
}

/// States of a repair, in the journal (`ruvector_healing.repairs.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Planned,
    Building,
    Validating,
    Swapping,
    Swapped,
    Retiring,
    RollingBack,
    Done,
    Failed,
    RolledBack,
    Cancelled,
    Refused,
    DryRun,
    /// A rollback was asked for and did not happen: the repair stands.
    RollbackFailed,
}

/// Unfinished states; `ruvector_healing.repair_active()` in `sql/schema.sql`
/// says the same in SQL.
pub const ACTIVE: [Status; 7] = [
    Status::Planned,
    Status::Building,
    Status::Validating,
    Status::Swapping,
    Status::Swapped,
    Status::Retiring,
    Status::RollingBack,
];

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Planned => "planned",
            Status::Building => "building",
            Status::Validating => "validating",
            Status::Swapping => "swapping",
            Status::Swapped => "swapped",
            Status::Retiring => "retiring",
            Status::RollingBack => "rolling_back",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
            Status::Cancelled => "cancelled",
            Status::Refused => "refused",
            Status::DryRun => "dry_run",
            Status::RollbackFailed => "rollback_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        ACTIVE
            .iter()
            .chain(FINAL.iter())
            .copied()
            .find(|x| x.name() == s)
    }

    pub fn is_final(&self) -> bool {
        FINAL.contains(self)
    }

    /// Whether the new index has replaced the old one under its name.
    pub fn past_swap(&self) -> bool {
        matches!(
            self,
            Status::Swapped | Status::Retiring | Status::Done | Status::RollbackFailed
        )
    }
}

pub const FINAL: [Status; 7] = [
    Status::Done,
    Status::Failed,
    Status::RolledBack,
    Status::Cancelled,
    Status::Refused,
    Status::DryRun,
    Status::RollbackFailed,
];

/// What the next run does with a repair whose worker is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was built yet: record the failure.
    NothingToUndo,
    /// Before the swap: drop the shadow (if it exists), keep the original.
    DropShadow,
    /// After the swap: finish (keep or retire the old index).
    Finish,
    /// A rollback was interrupted before its own swap: the repair stands
    /// (`rollback_failed`), its backup still kept.
    RollbackNotApplied,
}

pub fn recovery(status: Status) -> Option<Recovery> {
    match status {
        Status::Planned => Some(Recovery::NothingToUndo),
        Status::Building | Status::Validating | Status::Swapping => Some(Recovery::DropShadow),
        Status::Swapped | Status::Retiring => Some(Recovery::Finish),
        Status::RollingBack => Some(Recovery::RollbackNotApplied),
        _ => None,
    }
}

/// Validation tolerates a drop in recall of at most
/// `max(RECALL_TOLERANCE, 0.01 + 2.58 × SE)`, where SE is the standard
/// error of the per-query difference (new − old) over the sampled queries:
/// the comparison is paired (same queries, same exact answers), and at low
/// recall two builds of the same data differ query by query far more than
/// at high recall (measured: ±0.012 at recall 0.9, −0.034..+0.023 at 0.45
/// with 100 queries). 2.58 is the one-sided 99.5 % point, so a rebuild as
/// good as the original is rejected for noise about once in 200.
pub const RECALL_TOLERANCE: f64 = 0.02;

pub fn recall_tolerance(diff_se: f64) -> f64 {
    RECALL_TOLERANCE.max(0.01 + 2.58 * diff_se.max(0.0))
}

/// Standard error of the mean of paired differences.
pub fn paired_se(old: &[f64], new: &[f64]) -> f64 {
    let n = old.len().min(new.len());
    if n < 2 {
        return 0.0;
    }
    let d: Vec<f64> = old.iter().zip(new).map(|(o, n)| n - o).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// The validation verdict of a shadow index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub reasons: Vec<String>,
}

/// `old_issues`/`new_issues`: issue kinds found by the detection rules.
/// Recall figures are measured on the same sampled queries at equal
/// search effort; `min_recall` is the requester's floor (0 = none).
pub fn validate(
    new_valid: bool,
    old_issues: &[String],
    new_issues: &[String],
    old_recall: Option<f64>,
    new_recall: Option<f64>,
    tolerance: f64,
    min_recall: f64,
) -> Verdict {
    let mut reasons = Vec::new();
    if !new_valid {
        reasons.push("the new index is not valid".to_string());
    }
    for k in new_issues {
        if !old_issues.contains(k) {
            reasons.push(format!(
                "the new index has an issue the old one did not: {k}"
            ));
        }
    }
    match (old_recall, new_recall) {
        (Some(old), Some(new)) if new < old - tolerance => reasons.push(format!(
            "recall of the new index {new:.4} is below the old index's {old:.4} by more than the tolerance {tolerance:.4}"
        )),
        _ => {}
    }
    if let Some(new) = new_recall {
        if new < min_recall {
            reasons.push(format!(
                "recall of the new index {new:.4} is below ruvector.dag_healing_min_recall = {min_recall}"
            ));
        }
    }
    Verdict {
        passed: reasons.is_empty(),
        reasons,
    }
}

/// Build rate assumed before this database has a past rebuild to learn
/// from: 0.25 MB/s, about half of what a 200,000 x 128 HNSW build
/// (158 MB) reached on a 2-core machine with the default
/// `maintenance_work_mem` (64 MB, so the graph is built on disk).
pub const DEFAULT_BUILD_BYTES_PER_S: f64 = 250_000.0;

/// The time a repair may take: the larger of the setting and twice the
/// build time expected for `bytes` at `rate` (bytes per second measured on
/// past rebuilds, else the default); the second half covers validation
/// and the swap. A large index thus gets the time its build needs instead
/// of being cancelled by a limit meant for small ones.
pub fn repair_timeout_s(setting_s: i32, bytes: u64, rate: Option<f64>) -> i32 {
    let rate = rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .unwrap_or(DEFAULT_BUILD_BYTES_PER_S);
    let expected = 2.0 * bytes as f64 / rate;
    (setting_s as f64).max(expected).min(i32::MAX as f64) as i32
}

/// The median of past build rates (bytes per second), `None` without any.
pub fn median_rate(mut rates: Vec<f64>) -> Option<f64> {
    rates.retain(|r| r.is_finite() && *r > 0.0);
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    Some(rates[rates.len() / 2])
}

/// How far a build is, in percent, from `pg_stat_progress_create_index`:
/// by tuples when the access method reports a total (and the count stays
/// within it), else by the table blocks scanned.
pub fn progress_percent(
    blocks_done: Option<i64>,
    blocks_total: Option<i64>,
    tuples_done: Option<i64>,
    tuples_total: Option<i64>,
) -> Option<f64> {
    let share = |d: Option<i64>, t: Option<i64>| match (d, t) {
        (Some(d), Some(t)) if t > 0 && d >= 0 && d <= t => Some(100.0 * d as f64 / t as f64),
        _ => None,
    };
    share(tuples_done, tuples_total).or_else(|| share(blocks_done, blocks_total))
}

/// Whether a repair fixed what it was for, by the issue's kind: `None` when
/// it did, else why not. `before` and `after` are the health reports of
/// the old and new index; recalls are at the production setting.
///
/// - unreachable elements: the share under the threshold, or at most half
///   of what it was;
/// - poor connectivity: at the threshold, or half the gap to 1 closed;
/// - fragmentation: under the threshold;
/// - low recall, unbalanced clusters, stale training: recall at least the
///   target, or up by more than the tolerance (these are judged by the
///   outcome: the structural figures of a clustered table stay uneven
///   after the best rebuild).
#[allow(clippy::too_many_arguments)]
pub fn not_fixed(
    kind: IssueKind,
    before: &Value,
    after: &Value,
    t: &Thresholds,
    old_recall: Option<f64>,
    new_recall: Option<f64>,
    target: f64,
    tolerance: f64,
) -> Option<String> {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    match kind {
        IssueKind::UnreachableElements => {
            let (b, a) = (
                num(before, "unreachable_ratio")?,
                num(after, "unreachable_ratio")?,
            );
            (a > t.max_unreachable_ratio && a > 0.5 * b).then(|| {
                format!(
                    "{:.2} % of the elements are unreachable (before: {:.2} %, threshold {:.2} %)",
                    100.0 * a,
                    100.0 * b,
                    100.0 * t.max_unreachable_ratio
                )
            })
        }
        IssueKind::PoorConnectivity => {
            let (b, a) = (
                num(before, "connectivity_score")?,
                num(after, "connectivity_score")?,
            );
            (a < t.min_connectivity && a < b + 0.5 * (1.0 - b)).then(|| {
                format!(
                    "connectivity {a:.3} (before: {b:.3}, threshold {})",
                    t.min_connectivity
                )
            })
        }
        IssueKind::Fragmentation => {
            let a = num(after, "fragmentation")?;
            (a > t.max_fragmentation)
                .then(|| format!("fragmentation {a:.3} (threshold {})", t.max_fragmentation))
        }
        IssueKind::LowRecall | IssueKind::UnbalancedClusters | IssueKind::StaleTraining => {
            let (o, n) = (old_recall?, new_recall?);
            (n < target && n < o + tolerance).then(|| {
                format!("recall at the production setting {n:.3} (before: {o:.3}; target {target}, tolerance {tolerance:.3})")
            })
        }
        // Corruption: validation verifies every new index (a violation fails it).
        IssueKind::DeadTuples | IssueKind::InvalidIndex | IssueKind::Corruption => None,
    }
}

/// Free bytes a rebuild needs on the index's tablespace: the new index
/// beside the old one, twice its size as margin (Qdrant's rule).
pub fn disk_needed(index_bytes: u64) -> u64 {
    index_bytes.saturating_mul(2)
}

/// Whether an index's repairs are paused: `max_failures` consecutive
/// failed attempts (newest first in `recent`), the newest within
/// `window_s` seconds.
pub fn breaker_open(recent: &[(Status, f64)], max_failures: usize, window_s: f64) -> bool {
    let failed = recent
        .iter()
        .take_while(|(s, _)| matches!(s, Status::Failed | Status::RolledBack))
        .count();
    failed >= max_failures && recent.first().is_some_and(|(_, age)| *age < window_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_by_tuples_then_blocks() {
        assert_eq!(
            progress_percent(Some(5), Some(10), Some(30), Some(120)),
            Some(25.0)
        );
        assert_eq!(
            progress_percent(Some(5), Some(10), Some(30), Some(0)),
            Some(50.0)
        );
        assert_eq!(
            progress_percent(Some(5), Some(10), Some(300), Some(120)),
            Some(50.0)
        );
        assert_eq!(progress_percent(None, Some(0), None, None), None);
    }

    #[test]
    fn lists_follow_pgvector_guidance() {
        assert_eq!(ivfflat_lists(0), 1);
        assert_eq!(ivfflat_lists(400), 1);
        assert_eq!(ivfflat_lists(50_000), 50);
        assert_eq!(ivfflat_lists(1_000_000), 1000);
        assert_eq!(ivfflat_lists(4_000_000), 2000);
        assert_eq!(ivfflat_lists(i64::MAX), 32_768);
    }

    #[test]
    fn names_stay_within_63_bytes() {
        assert_eq!(shadow_name("items_idx", 7), "items_idx_rvnew7");
        let long = "é".repeat(40); // 80 bytes
        let n = backup_name(&long, 123);
        assert!(n.len() <= MAX_NAME, "{}", n.len());
        assert!(n.ends_with("_rvold123"));
        assert!(n.starts_with("éé"));
    }

    #[test]
    fn strategy_names_parse() {
        assert_eq!(Strategy::parse("auto"), Ok(None));
        assert_eq!(Strategy::parse("rebuild"), Ok(Some(Strategy::Rebuild)));
        let e = Strategy::parse("reindex").unwrap_err();
        assert!(e.contains("auto, rebuild, vacuum, tune_search"), "{e}");
        assert!(Strategy::Vacuum.can_repair(Am::IvfFlat).is_ok());
        assert!(Strategy::Vacuum.can_repair(Am::Hnsw).is_ok());
    }

    fn def() -> Definition {
        Definition {
            table: "public.items".into(),
            am: "hnsw".into(),
            columns: vec!["embedding vector_l2_ops".into()],
            options: vec![("m".into(), "8".into())],
            tablespace: None,
            predicate: None,
        }
    }

    #[test]
    fn definition_quotes_names_and_values() {
        let mut d = def();
        d.set_option("ef_construction", "it's");
        d.tablespace = Some("fast".into());
        d.predicate = Some("(id > 3)".into());
        assert_eq!(
            d.create_concurrently("we\"ird").unwrap(),
            "CREATE INDEX CONCURRENTLY \"we\"\"ird\" ON public.items USING hnsw (embedding vector_l2_ops) \
             WITH (m = '8', ef_construction = 'it''s') TABLESPACE fast WHERE (id > 3)"
        );
        d.set_option("m", "16");
        assert_eq!(d.option("m"), Some("16"));
        d.options.push(("x); DROP".into(), "1".into()));
        assert!(d.create_concurrently("n").is_err());
        d.columns.clear();
        assert!(d.create_concurrently("n").is_err());
    }

    #[test]
    fn states_and_recovery() {
        for s in ACTIVE.iter().chain(FINAL.iter()) {
            assert_eq!(Status::parse(s.name()), Some(*s));
            assert_eq!(s.is_final(), recovery(*s).is_none(), "{s:?}");
        }
        assert_eq!(recovery(Status::Validating), Some(Recovery::DropShadow));
        assert_eq!(recovery(Status::Swapped), Some(Recovery::Finish));
        assert!(Status::Retiring.past_swap() && !Status::Swapping.past_swap());
    }

    #[test]
    fn validation_verdicts() {
        let none: Vec<String> = vec![];
        let frag = vec!["fragmentation".to_string()];
        let tol = RECALL_TOLERANCE;
        assert!(validate(true, &frag, &none, Some(0.9), Some(0.89), tol, 0.0).passed);
        let v = validate(true, &none, &frag, Some(0.9), Some(0.95), tol, 0.0);
        assert!(!v.passed && v.reasons[0].contains("fragmentation"));
        assert!(!validate(true, &none, &none, Some(0.9), Some(0.85), tol, 0.0).passed);
        assert!(validate(true, &none, &none, Some(0.9), Some(0.85), 0.06, 0.0).passed);
        assert!(!validate(true, &none, &none, Some(0.9), Some(0.95), tol, 0.99).passed);
        assert!(!validate(false, &none, &none, None, None, tol, 0.0).passed);
        assert!(validate(true, &none, &none, None, Some(0.5), tol, 0.0).passed);
    }

    #[test]
    fn tolerance_grows_with_the_noise_of_the_pairs() {
        // Identical answers: the floor.
        let same = [1.0, 0.9, 0.8, 1.0];
        assert_eq!(paired_se(&same, &same), 0.0);
        assert_eq!(recall_tolerance(0.0), RECALL_TOLERANCE);
        // Differences of +-0.1 on 100 queries: SE 0.01, tolerance 0.0358.
        let old = vec![0.5; 100];
        let new: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 0.6 } else { 0.4 })
            .collect();
        let se = paired_se(&old, &new);
        assert!((se - 0.01005).abs() < 1e-4, "{se}");
        assert!((recall_tolerance(se) - 0.03593).abs() < 1e-4);
        assert_eq!(paired_se(&[1.0], &[0.0]), 0.0);
    }

    #[test]
    fn the_timeout_grows_with_the_index() {
        // A small index: the setting.
        assert_eq!(repair_timeout_s(300, 1_000_000, None), 300);
        // 158 MB with no history: 2 x 632 s.
        assert_eq!(repair_timeout_s(300, 158_000_000, None), 1264);
        // The same with a measured 0.54 MB/s.
        assert_eq!(repair_timeout_s(300, 158_000_000, Some(540_000.0)), 585);
        // A larger setting wins; nonsense rates fall back to the default.
        assert_eq!(repair_timeout_s(3600, 158_000_000, Some(540_000.0)), 3600);
        assert_eq!(repair_timeout_s(300, 158_000_000, Some(0.0)), 1264);
        assert_eq!(median_rate(vec![3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_rate(vec![]), None);
    }

    #[test]
    fn a_repair_must_fix_its_issue() {
        let t = Thresholds::default();
        let u = |r: f64| serde_json::json!({"unreachable_ratio": r, "fragmentation": r, "connectivity_score": 1.0 - r});
        let nf =
            |k, b: f64, a: f64| not_fixed(k, &u(b), &u(a), &t, Some(0.2), Some(0.2), 0.95, 0.02);
        // The quick start's m = 2 rebuilt with the same options: 18.5 % -> 16.3 %.
        assert!(nf(IssueKind::UnreachableElements, 0.185, 0.163).is_some());
        assert!(nf(IssueKind::UnreachableElements, 0.185, 0.005).is_none());
        assert!(
            nf(IssueKind::UnreachableElements, 0.185, 0.09).is_none(),
            "halved"
        );
        assert!(nf(IssueKind::Fragmentation, 0.7, 0.6).is_some());
        assert!(nf(IssueKind::Fragmentation, 0.7, 0.1).is_none());
        assert!(nf(IssueKind::PoorConnectivity, 0.4, 0.35).is_some());
        let r = |o, n| {
            not_fixed(
                IssueKind::LowRecall,
                &u(0.0),
                &u(0.0),
                &t,
                Some(o),
                Some(n),
                0.95,
                0.02,
            )
        };
        assert!(r(0.21, 0.16).is_some(), "worse is not fixed");
        assert!(r(0.21, 0.22).is_some(), "within the tolerance is not fixed");
        assert!(r(0.77, 0.85).is_none(), "clearly up");
        assert!(r(0.90, 0.96).is_none(), "at the target");
        assert!(not_fixed(
            IssueKind::DeadTuples,
            &u(0.0),
            &u(0.0),
            &t,
            None,
            None,
            0.95,
            0.02
        )
        .is_none());
    }

    #[test]
    fn breaker_opens_after_consecutive_failures() {
        let f = (Status::Failed, 10.0);
        let ok = (Status::Done, 5.0);
        assert!(breaker_open(&[f, f, f], 3, 86_400.0));
        assert!(!breaker_open(&[f, f], 3, 86_400.0));
        assert!(!breaker_open(&[ok, f, f, f], 3, 86_400.0));
        assert!(!breaker_open(
            &[(Status::Failed, 90_000.0), f, f],
            3,
            86_400.0
        ));
        assert_eq!(disk_needed(10), 20);
    }
}
