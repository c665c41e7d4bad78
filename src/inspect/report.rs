//! Runs a walk over a resolved index inside the server and shapes the
//! health report (a JSON object). Shared by the SQL functions and the
//! table-wide health check.

use std::time::Instant;

use pgrx::prelude::*;
use serde_json::{json, Map, Value};

use super::hnsw::{self, HnswScan};
use super::ivfflat::{self, IvfScan, ValueDecoder};
use super::metrics;
use super::pages::{BufferPages, ServerDecoder};
use super::relation::{raise, Am, IndexTarget, OpenIndex};
use super::vectors::Metric;

/// Entries sampled for IVFFlat's centroid quality.
pub const CENTROID_SAMPLE: usize = 1000;

pub fn walk_error(t: &IndexTarget, e: String) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        &format!("cannot read {} index \"{}\": {e}", t.am.name(), t.name),
        "the index is not in a pgvector format this version understands (pgvector 0.5 to 0.8, format version 1); REINDEX it or upgrade ruvector_healing",
    )
}

/// Opens the index and runs `f` with a page source over it.
pub fn with_pages<R>(t: &IndexTarget, f: impl FnOnce(&mut BufferPages) -> R) -> (R, u64) {
    let open = OpenIndex::open(t);
    let mut src = unsafe { BufferPages::new(open.rel) };
    let r = f(&mut src);
    let bytes = open.size_bytes();
    open.close();
    (r, bytes)
}

pub fn hnsw_scan(t: &IndexTarget) -> (HnswScan, u64) {
    let (r, bytes) = with_pages(t, hnsw::walk);
    match r {
        Ok(s) => (s, bytes),
        Err(e) => walk_error(t, e),
    }
}

pub fn ivf_scan(t: &IndexTarget) -> (IvfScan, u64) {
    let metric = t.metric.unwrap_or(Metric::L2);
    let ty = t.vector_type;
    let mut decoder = ty
        .filter(|ty| ty.decodable())
        .map(|ty| ServerDecoder { ty });
    let (r, bytes) = with_pages(t, |src| {
        ivfflat::walk(
            src,
            metric,
            ty.unwrap_or(super::vectors::VectorType::Bit),
            decoder.as_mut().map(|d| d as &mut dyn ValueDecoder),
            CENTROID_SAMPLE,
        )
    });
    match r {
        Ok(s) => (s, bytes),
        Err(e) => walk_error(t, e),
    }
}

/// What is known about when an IVFFlat index was trained. Postgres does not
/// record build times; the pg_class row is rewritten by CREATE INDEX,
/// REINDEX (and ALTER INDEX), so its xmin dates the last one, and
/// `track_commit_timestamp` turns that into a time when it is on.
fn training_info(t: &IndexTarget) -> Value {
    let row = crate::sql::get_three::<i64, i64, String>(
        "SELECT c.relfilenode::bigint, age(c.xmin)::bigint,
                CASE WHEN current_setting('track_commit_timestamp')::bool
                     THEN pg_xact_commit_timestamp(c.xmin)::text END
           FROM pg_class c WHERE c.oid = $1",
        &[t.oid.into()],
    );
    match row {
        Ok((Some(relfilenode), Some(age), built_at)) => json!({
            "relfilenode": relfilenode,
            "transactions_since_build": age,
            "built_at": built_at,
            "built_at_source": if built_at.is_some() {
                "commit timestamp of the index's pg_class row"
            } else {
                "unknown: Postgres keeps no build time (set track_commit_timestamp = on to get one)"
            },
        }),
        _ => Value::Null,
    }
}

fn header(t: &IndexTarget) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("am".into(), json!(t.am.name()));
    m.insert("index".into(), json!(t.name));
    m.insert("table".into(), json!(t.table));
    m.insert("opclass".into(), json!(t.opclass));
    m.insert("type".into(), json!(t.type_name));
    m.insert("metric".into(), json!(t.metric.map(|x| x.name())));
    m
}

/// The full health report of one (non-partitioned) index.
pub fn index_health(t: &IndexTarget) -> Map<String, Value> {
    let started = Instant::now();
    let mut out = header(t);
    let mut skipped = Vec::new();
    match t.am {
        Am::Hnsw => {
            let (s, bytes) = hnsw_scan(t);
            out.extend(metrics::hnsw_metrics(&s, bytes));
        }
        Am::IvfFlat => {
            let (s, bytes) = ivf_scan(t);
            out.extend(metrics::ivfflat_metrics(
                &s,
                t.metric.unwrap_or(Metric::L2),
                bytes,
            ));
            if !t.vector_type.is_some_and(|v| v.decodable()) {
                for k in [
                    "mean_distance_to_center",
                    "centroid_quality",
                    "centroid_drift",
                ] {
                    skipped.push(json!({
                        "metric": k,
                        "reason": format!("values of type {} are not decoded; distance metrics need vector or halfvec", t.type_name),
                    }));
                }
            } else if let Some(why) = &s.drift_skipped {
                skipped.push(json!({"metric": "centroid_drift", "reason": why}));
            }
            out.insert("training".into(), training_info(t));
        }
    }
    out.insert("skipped_metrics".into(), Value::Array(skipped));
    out.insert(
        "inspection_ms".into(),
        json!(metrics::r6(started.elapsed().as_secs_f64() * 1000.0)),
    );
    out
}

/// Health of one index; a partitioned index reports each leaf partition.
pub fn health_value(t: &IndexTarget) -> Value {
    if !t.partitioned {
        let mut m = index_health(t);
        m.insert("partitioned".into(), json!(false));
        return Value::Object(m);
    }
    let parts: Vec<Value> = t
        .partitions
        .iter()
        .map(|oid| health_value(&super::relation::resolve(Some(*oid))))
        .collect();
    json!({
        "am": t.am.name(),
        "index": t.name,
        "table": t.table,
        "partitioned": true,
        "partitions": parts,
    })
}
