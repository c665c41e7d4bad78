//! The Postgres side of diagnosis (`diagnose::cause` decides): for one
//! issue, the evidence — recall at the production search setting, trial
//! builds of a sample of the table, the tuning search — gathered, the
//! diagnosis made, and recorded on the issue row (`cause`, `diagnosis`).
//!
//! Trial builds: a random sample of the table's indexed column (a tenth of
//! the table, at least 2,000 rows or the whole table, at most 10,000) in a
//! temporary table, indexed with the index's own options and then with
//! candidate options, cheapest first, each measured on the same sample
//! (stranded elements, recall@10 of 100 of its rows at the production
//! setting). Trials are compared with each other only: a sample is easier
//! than the full table. They run in a subtransaction, so a failed trial
//! leaves nothing behind and only makes the cause undetermined.

use std::time::Instant;

use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use crate::detect::index_health::Thresholds;
use crate::diagnose::cause::{self, Diagnosis, Evidence, Outcome, Trial};
use crate::diagnose::options::{hnsw_candidates, Allowance, BuildOptions};
use crate::diagnose::IssueKind;
use crate::inspect::relation::{resolve, Am};
use crate::recall::measure::{per_query_at, summary, tune_index};
use crate::recall::stats::wilson95;

pub const TRIAL_MIN_ROWS: i64 = 2_000;
pub const TRIAL_MAX_ROWS: i64 = 10_000;
pub const TRIAL_QUERIES: i32 = 100;
/// Candidates tried beyond what the worker may build (for the advice).
const BEYOND: usize = 2;
/// A diagnosis is reused while younger than this, the table within 20 %
/// of its size then and the index's options unchanged.
pub const REUSE_S: f64 = 6.0 * 3600.0;

/// pgvector's defaults when nothing is set.
fn pgvector_default(am: Am) -> i32 {
    match am {
        Am::Hnsw => 40,
        Am::IvfFlat => 1,
    }
}

/// The search setting production runs an index at: the lowest value any
/// session of this database starts with. A session's value is its role's
/// setting in this database (`ALTER ROLE ... IN DATABASE`), else its
/// role's (`ALTER ROLE`), else the database's (`ALTER DATABASE`), else the
/// server's (configuration file, else pgvector's default) — PostgreSQL's
/// own precedence. With `ruvector.dag_adaptive_search` on, an index with a
/// value of its own (`ruvector_dag_set_search_setting`) runs at that value:
/// the executor hooks apply it over every default. (The captured workload
/// will refine this with the values queries actually ran at.)
pub fn production_setting(index: pg_sys::Oid, am: Am) -> (String, i32) {
    let name = crate::recall::measure::setting_name(am);
    // The index's own value, where queries run with it.
    if crate::config::ADAPTIVE_SEARCH.get() {
        if let Some(v) = crate::adaptive::stored::value_of_oid(index) {
            return (name.to_string(), v);
        }
    }
    let server = crate::sql::get_one::<String>(
        "SELECT setting FROM pg_catalog.pg_file_settings
          WHERE name = $1 AND applied AND error IS NULL ORDER BY seqno DESC LIMIT 1",
        &[name.into()],
    )
    .ok()
    .flatten()
    .and_then(|v| v.parse::<i32>().ok())
    .unwrap_or(pgvector_default(am));
    let (database, roles) = crate::sql::get_two::<i32, i32>(
        "WITH s AS (SELECT s.setdatabase AS db, s.setrole AS r, split_part(c, '=', 2)::int AS v
                      FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
                     WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
                       AND split_part(c, '=', 1) = $1 AND split_part(c, '=', 2) ~ '^[0-9]+$')
         SELECT (SELECT v FROM s WHERE db <> 0 AND r = 0),
                (SELECT min(coalesce((SELECT v FROM s s2 WHERE s2.db <> 0 AND s2.r = x.r),
                                     (SELECT v FROM s s3 WHERE s3.db = 0 AND s3.r = x.r)))
                   FROM (SELECT DISTINCT r FROM s WHERE r <> 0) x)",
        &[name.into()],
    )
    .unwrap_or((None, None));
    let base = database.unwrap_or(server);
    (name.to_string(), roles.map_or(base, |r| r.min(base)))
}

/// Recall@10 of the index at the production setting on `sample` of its
/// rows, with its 95 % interval; and the mean index-scan time in ms.
pub fn probe(index: pg_sys::Oid, am: Am, sample: i32) -> Option<(Outcome, f64)> {
    let (setting, value) = production_setting(index, am);
    let (per_query, ms) = per_query_at(index, Some(value), sample, 10);
    if per_query.is_empty() {
        return None;
    }
    let recall = summary(&per_query);
    Some((
        Outcome {
            setting,
            value,
            ci: wilson95(recall.recall, recall.queries),
            recall,
        },
        ms,
    ))
}

/// The low-recall rule: the interval's upper bound under the target.
pub fn low_recall(o: &Outcome, target: f64) -> bool {
    o.ci.1 < target
}

/// What a trial needs of the index: the plain column it indexes, its
/// type, operator class and table.
struct Key {
    column: String,
    type_name: String,
    opclass: String,
    table: String,
    rows: i64,
}

fn key_of(index: pg_sys::Oid) -> Result<Key, String> {
    let r = pgrx::spi::Spi::connect(|c| {
        let row = c
            .select(
                "SELECT quote_ident(a.attname), format_type(ia.atttypid, ia.atttypmod),
                        quote_ident(ocn.nspname) || '.' || quote_ident(oc.opcname),
                        quote_ident(tn.nspname) || '.' || quote_ident(t.relname),
                        -- reltuples is as old as the last ANALYZE or CREATE INDEX:
                        -- scaled to today's pages, as the planner does, and never
                        -- under the statistics' live count.
                        greatest(CASE WHEN t.relpages > 0
                                      THEN t.reltuples / t.relpages
                                           * (pg_catalog.pg_relation_size(t.oid)
                                              / current_setting('block_size')::int)
                                      ELSE 0 END,
                                 coalesce(pg_catalog.pg_stat_get_live_tuples(t.oid), 0),
                                 0)::int8,
                        i.indpred IS NOT NULL
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
                   JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
                   JOIN pg_catalog.pg_opclass oc ON oc.oid = i.indclass[0]
                   JOIN pg_catalog.pg_namespace ocn ON ocn.oid = oc.opcnamespace
                   JOIN pg_catalog.pg_attribute ia ON ia.attrelid = i.indexrelid AND ia.attnum = 1
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                  WHERE i.indexrelid = $1",
                None,
                &[index.into()],
            )
            .ok()?
            .next()?;
        Some((
            row.get::<String>(1).ok()?,
            row.get::<String>(2).ok()??,
            row.get::<String>(3).ok()??,
            row.get::<String>(4).ok()??,
            row.get::<i64>(5).ok()??,
            row.get::<bool>(6).ok()??,
        ))
    });
    let Some((column, type_name, opclass, table, rows, partial)) = r else {
        return Err("the index is gone".into());
    };
    // Trials evaluate only plain columns: an index expression or predicate
    // would run with this worker's rights, not the table owner's.
    let Some(column) = column else {
        return Err("an expression index: trial builds sample plain columns only".into());
    };
    if partial {
        return Err("a partial index: trial builds sample whole tables only".into());
    }
    Ok(Key {
        column,
        type_name,
        opclass,
        table,
        rows,
    })
}

/// Rows a trial samples from a table of `rows`.
pub fn trial_rows(rows: i64) -> i64 {
    (rows / 10).clamp(TRIAL_MIN_ROWS.min(rows), TRIAL_MAX_ROWS)
}

/// Trial builds of one sample, in order, until `done` says enough.
fn run_trials(
    key: &Key,
    am: Am,
    value: i32,
    mut next: impl FnMut(&[Trial]) -> Option<BuildOptions>,
) -> Result<(Vec<Trial>, f64), String> {
    let started = Instant::now();
    let n = trial_rows(key.rows.max(1));
    let pct = (150.0 * n as f64 / key.rows.max(1) as f64).min(100.0);
    let am_name = am.name();
    crate::sql::subtransaction(|| {
        Spi::run(&format!(
            "CREATE TEMP TABLE rv_trial (v {}) ON COMMIT DROP",
            key.type_name
        ))
        .expect("trial table");
        Spi::run(&format!(
            // Shuffled before the limit: the first rows of a Bernoulli
            // sample are the table's oldest, and data arrives topic by topic.
            "INSERT INTO pg_temp.rv_trial SELECT {c}::{t} FROM {tbl} TABLESAMPLE BERNOULLI ({pct})
              WHERE {c} IS NOT NULL ORDER BY random() LIMIT {n}",
            c = key.column,
            t = key.type_name,
            tbl = key.table
        ))
        .expect("trial sample");
        let rows = crate::sql::get_one::<i64>("SELECT count(*) FROM pg_temp.rv_trial", &[])
            .ok()
            .flatten()
            .unwrap_or(0) as u64;
        let mut trials: Vec<Trial> = Vec::new();
        while let Some(options) = next(&trials) {
            let with = options
                .storage()
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let t0 = Instant::now();
            Spi::run(&format!(
                "CREATE INDEX rv_trial_idx ON pg_temp.rv_trial USING {am_name} (v {}) WITH ({with})",
                key.opclass
            ))
            .expect("trial build");
            let build_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let oid = crate::sql::get_one::<pg_sys::Oid>(
                "SELECT 'pg_temp.rv_trial_idx'::regclass::oid",
                &[],
            )
            .ok()
            .flatten()
            .expect("trial index");
            let unreachable_ratio = match am {
                Am::Hnsw => crate::inspect::report::index_health(&resolve(Some(oid)))
                    .get("unreachable_ratio")
                    .and_then(Value::as_f64),
                Am::IvfFlat => None,
            };
            // The sample was written by this transaction, after the
            // statement's snapshot: measure under a snapshot that sees it.
            let recall = unsafe {
                pg_sys::CommandCounterIncrement();
                pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
                let r = summary(&per_query_at(oid, Some(value), TRIAL_QUERIES, 10).0);
                pg_sys::PopActiveSnapshot();
                r
            };
            Spi::run("DROP INDEX pg_temp.rv_trial_idx").expect("trial drop");
            trials.push(Trial {
                options,
                rows,
                unreachable_ratio,
                recall,
                build_ms: crate::inspect::metrics::r6(build_ms),
            });
        }
        Spi::run("DROP TABLE pg_temp.rv_trial").expect("trial table drop");
        trials
    })
    .map(|t| (t, started.elapsed().as_secs_f64() * 1000.0))
}

/// The HNSW trials: the index's options; then candidates the worker may
/// build, cheapest first, until one meets the targets and beats the
/// index's; then (when none did) up to two beyond, for the advice.
fn hnsw_next(e: &Evidence, current: (u16, u16), trials: &[Trial]) -> Option<BuildOptions> {
    let Some(cur) = trials.first() else {
        return Some(BuildOptions::hnsw(current.0, current.1));
    };
    let good = |t: &Trial| cause::trial_meets(e, t) && cause::trial_better(t, cur);
    let setting_will_do = cur
        .unreachable_ratio
        .is_none_or(|u| u <= e.max_unreachable_ratio)
        && matches!(e.tuned, Some((Some(_), _)));
    if cause::trial_meets(e, cur) || setting_will_do || trials[1..].iter().any(good) {
        return None;
    }
    let tried: Vec<BuildOptions> = trials.iter().map(|t| t.options).collect();
    type Options = Vec<(u16, u16)>;
    let (allowed, beyond): (Options, Options) = hnsw_candidates(current)
        .into_iter()
        .partition(|(m, ef)| e.allowance.allows(current, *m, *ef));
    allowed
        .into_iter()
        .chain(beyond.into_iter().take(BEYOND))
        .map(|(m, ef)| BuildOptions::hnsw(m, ef))
        .find(|o| !tried.contains(o))
}

/// Gathers the evidence for an issue of kind `kind` on `index` (its health
/// `report`) and diagnoses it. `outcome`: a production-recall measurement
/// already made this cycle, if any.
pub fn diagnose(
    index: pg_sys::Oid,
    kind: IssueKind,
    report: &Value,
    thresholds: &Thresholds,
    allowance: Allowance,
    pin_lists: bool,
    outcome_now: Option<Outcome>,
) -> (Diagnosis, Value) {
    if kind == IssueKind::InvalidIndex {
        // Nothing to measure: an invalid index cannot be opened for it.
        let d = cause::diagnose_invalid();
        let record = json!({"cause": d.cause, "reason": d.reason, "remedy": d.remedy,
                            "impact": d.impact, "needs_person": d.needs_person});
        return (d, record);
    }
    let t = resolve(Some(index));
    let am = t.am;
    let num = |k: &str| report.get(k).and_then(Value::as_f64);
    let current = match am {
        Am::Hnsw => BuildOptions::hnsw(
            num("m").unwrap_or(16.0) as u16,
            num("ef_construction").unwrap_or(64.0) as u16,
        ),
        Am::IvfFlat => BuildOptions::ivfflat(num("lists").unwrap_or(100.0) as u32),
    };
    let (dead, live) = crate::repair::catalog::tuple_stats(t.table_oid);
    let dead_share = dead as f64 / (dead + live).max(1) as f64;
    let deleted_share = match (
        num("elements_total"),
        num("elements_deleted"),
        num("elements_zombie"),
    ) {
        (Some(total), d, z) if total > 0.0 => (d.unwrap_or(0.0) + z.unwrap_or(0.0)) / total,
        _ => 0.0,
    };
    let target = crate::config::TARGET_RECALL.get();
    let mut e = Evidence {
        am,
        kind,
        target_recall: target,
        max_unreachable_ratio: thresholds.max_unreachable_ratio,
        max_dead_share: thresholds.max_dead_share,
        current,
        dead_share,
        deleted_share,
        unreachable_ratio: num("unreachable_ratio"),
        outcome: outcome_now,
        trials: Vec::new(),
        trial_error: None,
        tuned: None,
        allowance,
        lists_for_rows: None,
    };
    let mut trial_ms = 0.0;
    let mut measure_ms = 0.0;
    if cause::needs_trials(
        am,
        kind,
        dead_share,
        deleted_share,
        thresholds.max_dead_share,
    ) {
        let started = Instant::now();
        if e.outcome.is_none() {
            e.outcome = probe(index, am, crate::config::RECALL_SAMPLE_SIZE.get()).map(|p| p.0);
        }
        let value = e.outcome.as_ref().map_or(pgvector_default(am), |o| o.value);
        // The setting that would reach the target, when it is missed.
        if e.outcome.as_ref().is_some_and(|o| low_recall(o, target)) {
            if let Some(tuning) = tune_index(index, target, 10, 100, "the diagnosis") {
                let best = tuning
                    .tuned
                    .curve
                    .iter()
                    .map(|p| p.recall)
                    .fold(0.0, f64::max);
                let curve: Vec<(u32, f64)> = tuning
                    .tuned
                    .curve
                    .iter()
                    .map(|p| (p.value, p.recall))
                    .collect();
                let rec = cause::recommended(&curve, tuning.tuned.best, value, target);
                e.tuned = Some((rec, best));
                // The recommended value is recorded; nobody's setting changes.
                crate::recall::measure::record_tuning(&tuning, target);
            }
        }
        measure_ms += started.elapsed().as_secs_f64() * 1000.0;
        let result = key_of(index).and_then(|key| match am {
            Am::Hnsw => {
                let cur = (
                    current.m.unwrap_or(16),
                    current.ef_construction.unwrap_or(64),
                );
                let probe = e.clone();
                run_trials(&key, am, value, |done| hnsw_next(&probe, cur, done))
            }
            Am::IvfFlat => {
                let lists = current.lists.unwrap_or(100);
                let for_rows = (!pin_lists)
                    .then(|| crate::repair::plan::ivfflat_lists(key.rows) as u32)
                    .filter(|l| *l != lists);
                e.lists_for_rows = for_rows;
                let plan: Vec<BuildOptions> = std::iter::once(lists)
                    .chain(for_rows)
                    .map(BuildOptions::ivfflat)
                    .collect();
                run_trials(&key, am, value, |done| plan.get(done.len()).copied())
            }
        });
        match result {
            Ok((trials, ms)) => {
                e.trials = trials;
                trial_ms = ms;
            }
            Err(why) => e.trial_error = Some(why),
        }
    }
    let d = cause::diagnose(&e);
    let record = json!({
        "cause": d.cause,
        "reason": d.reason,
        "remedy": d.remedy,
        "impact": d.impact,
        "needs_person": d.needs_person,
        "evidence": e,
        "rows": live,
        "trial_ms": crate::inspect::metrics::r6(trial_ms),
        "measure_ms": crate::inspect::metrics::r6(measure_ms),
    });
    (d, record)
}

/// Records a diagnosis on the issue row.
pub fn record(issue_id: i64, d: &Diagnosis, mut record: Value) {
    record["diagnosed_at"] = crate::sql::get_one::<String>("SELECT now()::text", &[])
        .ok()
        .flatten()
        .map(Value::from)
        .unwrap_or(Value::Null);
    let _ = Spi::run_with_args(
        "UPDATE ruvector_healing.issues SET cause = $2, diagnosis = $3 WHERE issue_id = $1",
        &[issue_id.into(), d.cause.name().into(), JsonB(record).into()],
    );
}

/// Whether the diagnosis recorded on an issue can be reused: recent, the
/// table within 20 % of its size then, the index's options unchanged.
pub fn fresh(recorded: &Value, report: &Value, live_rows: i64, age_s: f64) -> bool {
    if recorded.is_null() || age_s > REUSE_S {
        return false;
    }
    let then = recorded["rows"].as_i64().unwrap_or(-1);
    let same_size = ((live_rows - then).abs() as f64)
        <= crate::diagnose::futility::EVIDENCE_CHANGE * then.max(1) as f64;
    let cur = &recorded["evidence"]["current"];
    let same_options = ["m", "ef_construction", "lists"]
        .iter()
        .all(|k| cur.get(*k).is_none() || cur.get(*k) == report.get(*k));
    same_size && same_options
}

/// The issue's recorded diagnosis and its age in seconds.
pub fn recorded(issue_id: i64) -> (Value, f64) {
    crate::sql::get_two::<JsonB, f64>(
        "SELECT diagnosis, extract(epoch FROM now() - (diagnosis->>'diagnosed_at')::timestamptz)::float8
           FROM ruvector_healing.issues WHERE issue_id = $1",
        &[issue_id.into()],
    )
    .ok()
    .map(|(d, a)| (d.map(|j| j.0).unwrap_or(Value::Null), a.unwrap_or(f64::MAX)))
    .unwrap_or((Value::Null, f64::MAX))
}

/// Diagnoses an issue unless a fresh diagnosis is recorded; returns the
/// recorded diagnosis.
#[allow(clippy::too_many_arguments)]
pub fn ensure(
    issue_id: i64,
    index: pg_sys::Oid,
    kind: IssueKind,
    report: &Value,
    thresholds: &Thresholds,
    allowance: Allowance,
    pin_lists: bool,
    outcome_now: Option<Outcome>,
) -> Value {
    let (then, age) = recorded(issue_id);
    let table = crate::sql::get_one::<pg_sys::Oid>(
        "SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid = $1",
        &[index.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(pg_sys::Oid::INVALID);
    let live = crate::repair::catalog::tuple_stats(table).1;
    if fresh(&then, report, live, age) {
        return then;
    }
    let (d, rec) = diagnose(
        index,
        kind,
        report,
        thresholds,
        allowance,
        pin_lists,
        outcome_now,
    );
    record(issue_id, &d, rec);
    recorded(issue_id).0
}
