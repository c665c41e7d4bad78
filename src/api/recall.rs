//! `ruvector_dag_recall_estimate`, `ruvector_dag_tune_search` and
//! `ruvector_dag_search_settings`: recall measured with real index scans
//! against exact answers from one batched heap pass.

use std::time::Instant;

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::args::{oid_of, Regclass};
use crate::inspect::metrics::r6;
use crate::inspect::relation::{raise, resolve, Am, IndexTarget, OpenIndex};
use crate::inspect::vectors::{Metric, VectorType};
use crate::recall::exact::{query_recall, tie_tolerance, ExactSearch};
use crate::recall::scan::{self, AnnResult, LocalSettings, RowFetcher, Sample};
use crate::recall::stats::{tune, wilson95, CurvePoint};

/// Largest k: a recall@k above this is a different question (and each
/// query keeps k rows in memory).
pub const MAX_K: i32 = 1000;
/// Largest sample: the exact pass costs sample_size × rows distances.
pub const MAX_SAMPLE: i32 = 10_000;

fn check_range(name: &str, v: i32, max: i32, hint: &str) {
    if !(1..=max).contains(&v) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!("{name} must be between 1 and {max}, got {v}"),
            hint,
        );
    }
}

/// The index, checked for what recall measurement needs, with the range of
/// its search setting.
fn target(
    index: Option<Regclass>,
    function: &str,
) -> (IndexTarget, VectorType, Metric, (u32, u32)) {
    let t = resolve(oid_of(index));
    if t.partitioned {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("\"{}\" is a partitioned index", t.name),
            &format!("call {function} on the index of each partition"),
        );
    }
    let (Some(ty), Some(metric)) = (t.vector_type.filter(|v| v.decodable()), t.metric) else {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!(
                "recall of index \"{}\" cannot be measured: its values are of type {}",
                t.name, t.type_name
            ),
            "recall is measured for vector and halfvec indexes (l2, inner product, cosine, l1)",
        );
    };
    let range = search_range(&t);
    (t, ty, metric, range)
}

/// Range of the search setting, from the meta page: pgvector accepts
/// ef_search 1..1000; probes beyond the number of lists change nothing.
/// Reading the meta page also refuses an index whose format this release
/// does not know: the measurement runs pgvector's own scans, but a page
/// format we cannot vouch for is not one to report figures on.
fn search_range(t: &IndexTarget) -> (u32, u32) {
    use crate::inspect::layout::{HnswMeta, IvfMeta};
    use crate::inspect::read_meta;
    let (r, _) = crate::inspect::report::with_pages(t, |src| match t.am {
        Am::Hnsw => read_meta(src, HnswMeta::parse).map(|_| (1, 1000)),
        Am::IvfFlat => read_meta(src, IvfMeta::parse).map(|(m, _)| (1, (m.lists as u32).max(1))),
    });
    r.unwrap_or_else(|e| crate::inspect::report::walk_error(t, e))
}

/// What both functions start with: arguments checked, the index opened,
/// the sample drawn and its exact answers computed.
struct Prepared {
    t: IndexTarget,
    ty: VectorType,
    metric: Metric,
    range: (u32, u32),
    open: OpenIndex,
    g: Ground,
    k: usize,
}

fn prepare(index: Option<Regclass>, sample_size: i32, k: i32, function: &str) -> Prepared {
    check_range(
        "k",
        k,
        MAX_K,
        "recall@k is measured for 1 <= k <= 1000; the usual value is the LIMIT of your queries",
    );
    check_range(
        "sample_size",
        sample_size,
        MAX_SAMPLE,
        "100 sampled queries give a 95 % interval of about ±0.05; the exact pass costs sample_size × rows distances",
    );
    let (t, ty, metric, range) = target(index, function);
    let open = OpenIndex::open(&t);
    let g = ground(&open, &t, ty, metric, sample_size as usize, k as usize);
    Prepared {
        t,
        ty,
        metric,
        range,
        open,
        g,
        k: k as usize,
    }
}

/// The search setting that governs an index's scans.
fn setting_name(am: Am) -> &'static str {
    match am {
        Am::Hnsw => "hnsw.ef_search",
        Am::IvfFlat => "ivfflat.probes",
    }
}

fn iterative_setting(am: Am) -> &'static str {
    match am {
        Am::Hnsw => "hnsw.iterative_scan",
        Am::IvfFlat => "ivfflat.iterative_scan",
    }
}

/// Sample queries and their exact answers: the part of a measurement that
/// does not depend on the search setting.
struct Ground {
    sample: Sample,
    exact: ExactSearch,
    sample_ms: f64,
    exact_ms: f64,
}

fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ ((unsafe { pg_sys::MyProcPid } as u64) << 32)
}

fn ground(
    open: &OpenIndex,
    t: &IndexTarget,
    ty: VectorType,
    metric: Metric,
    n: usize,
    k: usize,
) -> Ground {
    let fail = |e: String| -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            &format!("cannot measure recall of \"{}\": {e}", t.name),
            "the indexed values must all be dense vectors of the index's dimensions",
        )
    };
    let started = Instant::now();
    let sample = scan::sample(open, ty, n, seed()).unwrap_or_else(|e| fail(e));
    let sample_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let mut exact = ExactSearch::new(metric, k, &sample.vectors);
    scan::exact_pass(open, ty, &mut exact).unwrap_or_else(|e| fail(e));
    Ground {
        sample,
        exact,
        sample_ms,
        exact_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Per-query recall of one set of index answers.
fn score(
    g: &Ground,
    fetch: &mut RowFetcher,
    metric: Metric,
    k: usize,
    ann: &AnnResult,
) -> Vec<f64> {
    ann.ids
        .iter()
        .enumerate()
        .filter_map(|(q, ids)| {
            let top = &g.exact.tops[q];
            let dists: Vec<f64> = ids
                .iter()
                .map(|id| {
                    top.distance_of(*id)
                        .or_else(|| {
                            // Not among the exact top-k: a miss unless it ties
                            // the k-th distance, so score it exactly.
                            fetch
                                .get(*id)
                                .map(|v| metric.distance(&g.sample.vectors[q], &v))
                        })
                        .unwrap_or(f64::INFINITY)
                })
                .collect();
            let tol = tie_tolerance(metric, g.exact.dim(), top.kth().unwrap_or(0.0));
            query_recall(top, k, &dists, tol)
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn ms(x: f64) -> Value {
    json!(r6(x))
}

#[pg_extern(volatile)]
fn ruvector_dag_recall_estimate(
    index: Option<Regclass>,
    sample_size: default!(i32, 100),
    k: default!(i32, 10),
    queries: default!(Option<&str>, "'table'"),
) -> JsonB {
    crate::release::require_current();
    let total = Instant::now();
    match queries {
        Some("table") => {}
        Some("workload") => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "queries => 'workload' is not available yet",
            "captured workload queries come with workload learning; use queries => 'table' (a sample of the table's own vectors)",
        ),
        other => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!("unknown queries source '{}'", other.unwrap_or("NULL")),
            "queries must be 'table' (a random sample of the table's own vectors)",
        ),
    }
    let Prepared {
        t,
        ty,
        metric,
        open,
        g,
        k,
        ..
    } = prepare(index, sample_size, k, "ruvector_dag_recall_estimate");
    let setting = setting_name(t.am);
    let mut report = json!({
        "index": t.name,
        "table": t.table,
        "am": t.am.name(),
        "metric": metric.name(),
        "type": t.type_name,
        "k": k,
        "requested_sample_size": sample_size,
        "rows": g.sample.population,
        "setting": {"name": setting, "value": scan::setting(setting)},
        "iterative_scan": scan::setting(iterative_setting(t.am)),
        "self_match": "counted: each sampled row is part of its own ground truth",
        "ci_method": "Wilson score interval over the sampled queries (conservative: per-query recall is bounded in [0, 1])",
        "sample_ms": ms(g.sample_ms),
        "exact_ms": ms(g.exact_ms),
    });
    if g.sample.tids.is_empty() {
        report["sample_size"] = json!(0);
        report["recall"] = Value::Null;
        report["recall_ci95"] = Value::Null;
        report["note"] = json!("the index holds no rows: there is nothing to measure");
        open.close();
        return JsonB(report);
    }
    let ann = scan::ann(&open, &g.sample.raw, k);
    let started = Instant::now();
    let mut fetch = RowFetcher::new(&open, ty);
    let per_query = score(&g, &mut fetch, metric, k, &ann);
    drop(fetch);
    let evaluation_ms = started.elapsed().as_secs_f64() * 1000.0;
    open.close();
    let n = per_query.len();
    let recall = mean(&per_query);
    let sd = (per_query.iter().map(|r| (r - recall).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
    let (lo, hi) = wilson95(recall, n);
    let extra = json!({
        "sample_size": n,
        "recall": r6(recall),
        "recall_ci95": [r6(lo), r6(hi)],
        "recall_stddev": r6(sd),
        "min_query_recall": r6(per_query.iter().copied().fold(1.0, f64::min)),
        "perfect_queries": per_query.iter().filter(|r| **r >= 1.0).count(),
        "short_results": ann.short_results,
        "ann_ms": ms(ann.elapsed_ms),
        "ann_mean_query_ms": ms(ann.elapsed_ms / n as f64),
        "evaluation_ms": ms(evaluation_ms),
        "exact_rescored_pairs": g.exact.rescored,
        "total_ms": ms(total.elapsed().as_secs_f64() * 1000.0),
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut report, extra) {
        r.extend(e);
    }
    JsonB(report)
}

fn advice(am: Am) -> &'static str {
    match am {
        Am::Hnsw => "no ef_search up to 1000 reaches the target: the graph itself limits recall; rebuild the index (REINDEX INDEX CONCURRENTLY), with larger m or ef_construction if a fresh build still misses, and check ruvector_dag_index_health() for unreachable elements",
        Am::IvfFlat => "even probing every list misses the target, so the index is missing rows it should return (check ruvector_dag_index_health()) — rebuild it (REINDEX INDEX CONCURRENTLY)",
    }
}

#[pg_extern(volatile)]
fn ruvector_dag_tune_search(
    index: Option<Regclass>,
    target_recall: default!(
        Option<f64>,
        "current_setting('ruvector.dag_healing_target_recall')::float8"
    ),
    k: default!(i32, 10),
    sample_size: default!(i32, 100),
) -> JsonB {
    crate::release::require_current();
    let total = Instant::now();
    let Some(target_recall) = target_recall.filter(|r| *r > 0.0 && *r <= 1.0) else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!(
                "target_recall must be in (0, 1], got {}",
                target_recall.map_or("NULL".to_string(), |r| r.to_string())
            ),
            "for example 0.95; the default is ruvector.dag_healing_target_recall",
        );
    };
    let Prepared {
        t,
        ty,
        metric,
        range,
        open,
        g,
        k,
    } = prepare(index, sample_size, k, "ruvector_dag_tune_search");
    let name = setting_name(t.am);
    let current = scan::setting(name);
    if g.sample.tids.is_empty() {
        open.close();
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "index \"{}\" holds no rows: there is nothing to tune on",
                t.name
            ),
            "tune after the table has data",
        );
    }
    let (lo, hi) = range;
    let mut fetch = RowFetcher::new(&open, ty);
    let tuned = {
        let local = LocalSettings::new();
        tune(lo, hi, target_recall, |value| {
            local.set(name, &value.to_string());
            let ann = scan::ann(&open, &g.sample.raw, k);
            let per_query = score(&g, &mut fetch, metric, k, &ann);
            CurvePoint {
                value,
                recall: r6(mean(&per_query)),
                mean_query_ms: r6(ann.elapsed_ms / per_query.len().max(1) as f64),
            }
        })
        // `local` drops here: the caller's setting is back.
    };
    drop(fetch);
    open.close();
    let best_point = tuned
        .best
        .and_then(|b| tuned.curve.iter().find(|p| p.value == b).copied());
    let reachable = tuned.best.is_some();
    let curve = serde_json::to_value(&tuned.curve).unwrap_or(Value::Null);
    let report = json!({
        "index": t.name,
        "am": t.am.name(),
        "setting": name,
        "current_value": current,
        "recommended_value": tuned.best,
        "target_recall": target_recall,
        "reachable": reachable,
        "recall_at_recommended": best_point.map(|p| p.recall),
        "best_recall_measured": tuned.curve.iter().map(|p| p.recall).fold(0.0, f64::max),
        "search_range": [lo, hi],
        "evaluations": tuned.curve.len(),
        "curve": curve,
        "k": k,
        "sample_size": g.sample.tids.len(),
        "rows": g.sample.population,
        "advice": if reachable { Value::Null } else { json!(advice(t.am)) },
        "exact_ms": ms(g.exact_ms),
        "total_ms": ms(total.elapsed().as_secs_f64() * 1000.0),
        "applied": false,
    });
    let id = Spi::get_one_with_args::<i64>(
        "INSERT INTO ruvector_healing.search_settings
                (index_oid, index_name, setting, value, target_recall, measured_recall,
                 reachable, k, sample_size, curve, schema_name, relname)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, n.nspname, c.relname
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = $1
         RETURNING setting_id",
        &[
            t.oid.into(),
            t.name.clone().into(),
            name.into(),
            tuned.best.map(|b| b as i32).into(),
            target_recall.into(),
            best_point
                .map(|p| p.recall)
                .unwrap_or_else(|| tuned.curve.iter().map(|p| p.recall).fold(0.0, f64::max))
                .into(),
            reachable.into(),
            (k as i32).into(),
            (g.sample.tids.len() as i32).into(),
            JsonB(curve).into(),
        ],
    );
    let mut report = report;
    report["setting_id"] = json!(id.ok().flatten());
    JsonB(report)
}

/// Recall@k of two indexes with the same key, measured on the same sampled
/// queries and exact answers (a paired comparison), each under its own
/// value of the search setting (`None`: the session's).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paired {
    pub old: f64,
    pub new: f64,
    /// Standard error of the per-query difference new - old.
    pub diff_se: f64,
    pub queries: usize,
    pub k: usize,
    pub setting: &'static str,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

pub fn paired_recall(
    old: pg_sys::Oid,
    new: pg_sys::Oid,
    old_value: Option<String>,
    new_value: Option<String>,
    sample_size: i32,
    k: i32,
) -> Option<Paired> {
    let Prepared {
        t,
        ty,
        metric,
        open,
        g,
        k,
        ..
    } = prepare(Some(Regclass(old)), sample_size, k, "the repair validation");
    if g.sample.tids.is_empty() {
        open.close();
        return None;
    }
    let name = setting_name(t.am);
    let measure = |open: &OpenIndex, value: &Option<String>| {
        let local = LocalSettings::new();
        if let Some(v) = value {
            local.set(name, v);
        }
        let ann = scan::ann(open, &g.sample.raw, k);
        let mut fetch = RowFetcher::new(open, ty);
        let per_query = score(&g, &mut fetch, metric, k, &ann);
        drop(fetch);
        drop(local);
        per_query
    };
    let old_q = measure(&open, &old_value);
    let new_open = OpenIndex::open(&resolve(Some(new)));
    let new_q = measure(&new_open, &new_value);
    new_open.close();
    open.close();
    Some(Paired {
        old: r6(mean(&old_q)),
        new: r6(mean(&new_q)),
        diff_se: r6(crate::repair::plan::paired_se(&old_q, &new_q)),
        queries: g.sample.tids.len(),
        k,
        setting: name,
        old_value: old_value.or_else(|| scan::setting(name)),
        new_value: new_value.or_else(|| scan::setting(name)),
    })
}
