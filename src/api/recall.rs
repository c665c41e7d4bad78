//! `ruvector_dag_recall_estimate`, `ruvector_dag_tune_search` and
//! `ruvector_dag_search_settings`: recall measured with real index scans
//! against exact answers from one batched heap pass.

use std::time::Instant;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::args::{oid_of, Regclass};
use crate::inspect::metrics::r6;
use crate::inspect::relation::{raise, Am};
use crate::recall::measure::{
    check_arguments, iterative_setting, mean, prepare, record_tuning, score, setting_name,
    tune_index, Prepared, Tuning,
};
use crate::recall::scan::{self, RowFetcher};
use crate::recall::stats::wilson95;

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
    } = prepare(
        oid_of(index),
        sample_size,
        k,
        "ruvector_dag_recall_estimate",
    );
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
    // The argument checks of `prepare`, in its order, before the index is
    // resolved for its setting's name.
    check_arguments(k, sample_size);
    let t = crate::recall::measure::target(oid_of(index), "ruvector_dag_tune_search").0;
    let name = setting_name(t.am);
    let current = scan::setting(name);
    let Some(tuning) = tune_index(
        t.oid,
        target_recall,
        k,
        sample_size,
        "ruvector_dag_tune_search",
    ) else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "index \"{}\" holds no rows: there is nothing to tune on",
                t.name
            ),
            "tune after the table has data",
        );
    };
    let Tuning {
        t,
        tuned,
        range,
        sample,
        rows,
        k,
        exact_ms,
    } = &tuning;
    let (lo, hi) = *range;
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
        "sample_size": sample,
        "rows": rows,
        "advice": if reachable { Value::Null } else { json!(advice(t.am)) },
        "exact_ms": ms(*exact_ms),
        "total_ms": ms(total.elapsed().as_secs_f64() * 1000.0),
        "applied": false,
    });
    let id = record_tuning(&tuning, target_recall);
    let mut report = report;
    report["setting_id"] = json!(id);
    JsonB(report)
}
