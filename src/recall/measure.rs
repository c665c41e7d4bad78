//! Recall measurement, the engine behind `ruvector_dag_recall_estimate`,
//! `ruvector_dag_tune_search` and repair validation: a sample of the
//! index's own rows as queries, their exact answers from one batched heap
//! pass, real index scans under a given search setting, and per-query
//! recall with ties. `Prepared` is the part that does not depend on the
//! search setting; `paired_recall` compares two indexes on the same
//! queries.

use std::time::Instant;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::exact::{query_recall, tie_tolerance, ExactSearch};
use super::scan::{self, AnnResult, LocalSettings, RowFetcher, Sample};
use crate::inspect::metrics::r6;
use crate::inspect::relation::{raise, resolve, Am, IndexTarget, OpenIndex};
use crate::inspect::vectors::{Metric, VectorType};

/// Largest k: a recall@k above this is a different question (and each
/// query keeps k rows in memory).
pub const MAX_K: i32 = 1000;
/// Largest sample: the exact pass costs sample_size × rows distances.
pub const MAX_SAMPLE: i32 = 10_000;

pub fn check_range(name: &str, v: i32, max: i32, hint: &str) {
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
pub fn target(
    index: Option<pg_sys::Oid>,
    function: &str,
) -> (IndexTarget, VectorType, Metric, (u32, u32)) {
    let t = resolve(index);
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
pub fn search_range(t: &IndexTarget) -> (u32, u32) {
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
pub struct Prepared {
    pub t: IndexTarget,
    pub ty: VectorType,
    pub metric: Metric,
    pub range: (u32, u32),
    pub open: OpenIndex,
    pub g: Ground,
    pub k: usize,
}

pub fn prepare(index: Option<pg_sys::Oid>, sample_size: i32, k: i32, function: &str) -> Prepared {
    check_arguments(k, sample_size);
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

/// Checks `k` and `sample_size` (the errors every recall function gives).
pub fn check_arguments(k: i32, sample_size: i32) {
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
}

/// The search setting that governs an index's scans.
pub fn setting_name(am: Am) -> &'static str {
    match am {
        Am::Hnsw => "hnsw.ef_search",
        Am::IvfFlat => "ivfflat.probes",
    }
}

pub fn iterative_setting(am: Am) -> &'static str {
    match am {
        Am::Hnsw => "hnsw.iterative_scan",
        Am::IvfFlat => "ivfflat.iterative_scan",
    }
}

/// Sample queries and their exact answers: the part of a measurement that
/// does not depend on the search setting.
pub struct Ground {
    pub sample: Sample,
    pub exact: ExactSearch,
    pub sample_ms: f64,
    pub exact_ms: f64,
}

fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ ((unsafe { pg_sys::MyProcPid } as u64) << 32)
}

pub fn ground(
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
pub fn score(
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

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
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
    } = prepare(Some(old), sample_size, k, "the repair validation");
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

/// Per-query recall@k of one index at a setting value (`None`: the
/// session's), on `sample_size` rows of its own table as queries; and the
/// mean time of one index scan, in ms.
pub fn per_query_at(
    index: pg_sys::Oid,
    value: Option<i32>,
    sample_size: i32,
    k: i32,
) -> (Vec<f64>, f64) {
    let Prepared {
        t,
        ty,
        metric,
        open,
        g,
        k,
        ..
    } = prepare(Some(index), sample_size, k, "the recall measurement");
    if g.sample.tids.is_empty() {
        open.close();
        return (Vec::new(), 0.0);
    }
    let local = LocalSettings::new();
    if let Some(v) = value {
        local.set(setting_name(t.am), &v.to_string());
    }
    let ann = scan::ann(&open, &g.sample.raw, k);
    let mut fetch = RowFetcher::new(&open, ty);
    let per_query = score(&g, &mut fetch, metric, k, &ann);
    drop(fetch);
    drop(local);
    open.close();
    let ms = ann.elapsed_ms / per_query.len().max(1) as f64;
    (per_query, ms)
}

/// Mean and standard error of per-query recall.
pub fn summary(per_query: &[f64]) -> crate::diagnose::cause::Recall {
    let n = per_query.len();
    let m = mean(per_query);
    let var = if n > 1 {
        per_query.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    crate::diagnose::cause::Recall {
        recall: r6(m),
        se: r6((var / n.max(1) as f64).sqrt()),
        queries: n,
    }
}

/// The tuning search on one index: the smallest setting in range whose
/// recall@k on the sample reaches `target`, and the curve it measured.
pub struct Tuning {
    pub t: IndexTarget,
    pub tuned: super::stats::Tuned,
    pub range: (u32, u32),
    pub sample: usize,
    pub rows: u64,
    pub k: usize,
    pub exact_ms: f64,
}

pub fn tune_index(
    index: pg_sys::Oid,
    target: f64,
    k: i32,
    sample_size: i32,
    function: &str,
) -> Option<Tuning> {
    let Prepared {
        t,
        ty,
        metric,
        range,
        open,
        g,
        k,
    } = prepare(Some(index), sample_size, k, function);
    if g.sample.tids.is_empty() {
        open.close();
        return None;
    }
    let name = setting_name(t.am);
    let (lo, hi) = range;
    let mut fetch = RowFetcher::new(&open, ty);
    let tuned = {
        let local = LocalSettings::new();
        super::stats::tune(lo, hi, target, |value| {
            local.set(name, &value.to_string());
            let ann = scan::ann(&open, &g.sample.raw, k);
            let per_query = score(&g, &mut fetch, metric, k, &ann);
            super::stats::CurvePoint {
                value,
                recall: r6(mean(&per_query)),
                mean_query_ms: r6(ann.elapsed_ms / per_query.len().max(1) as f64),
            }
        })
    };
    drop(fetch);
    open.close();
    Some(Tuning {
        t,
        tuned,
        range,
        sample: g.sample.tids.len(),
        rows: g.sample.population,
        k,
        exact_ms: g.exact_ms,
    })
}

/// Records a tuning result in `ruvector_healing.search_settings` (nobody's
/// setting changes); returns its id.
pub fn record_tuning(t: &Tuning, target: f64) -> Option<i64> {
    use pgrx::JsonB;
    let best = t
        .tuned
        .best
        .and_then(|b| t.tuned.curve.iter().find(|p| p.value == b))
        .map(|p| p.recall)
        .unwrap_or_else(|| t.tuned.curve.iter().map(|p| p.recall).fold(0.0, f64::max));
    pgrx::spi::Spi::get_one_with_args::<i64>(
        "INSERT INTO ruvector_healing.search_settings
                (index_oid, index_name, setting, value, target_recall, measured_recall,
                 reachable, k, sample_size, curve, schema_name, relname, table_oid)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, n.nspname, c.relname, x.indrelid
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
          WHERE c.oid = $1
         RETURNING setting_id",
        &[
            t.t.oid.into(),
            t.t.name.clone().into(),
            setting_name(t.t.am).into(),
            t.tuned.best.map(|b| b as i32).into(),
            target.into(),
            best.into(),
            t.tuned.best.is_some().into(),
            (t.k as i32).into(),
            (t.sample as i32).into(),
            JsonB(serde_json::to_value(&t.tuned.curve).unwrap_or_default()).into(),
        ],
    )
    .ok()
    .flatten()
}
