//! Every pgvector key type and distance an index can have: counts against
//! `count(*)`, the type and metric against the catalog, and which metrics
//! are skipped (and why) for the types whose values are not decoded.

use std::collections::BTreeSet;

use postgres::Client;
use serde_json::{json, Value};

use crate::common::*;

/// Opclass, key type and metric name of an index, read from the catalog.
fn catalog(c: &mut Client, index: &str) -> (String, String, String) {
    let r = c
        .query_one(
            "SELECT am.amname::text, opc.opcname::text, ty.typname::text
               FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
               JOIN pg_am am ON am.oid = x.relam
               JOIN pg_opclass opc ON opc.oid = i.indclass[0]
               JOIN pg_type ty ON ty.oid = opc.opcintype
              WHERE i.indexrelid = $1::text::regclass",
            &[&index],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

fn skipped_names(h: &Value) -> BTreeSet<String> {
    h["skipped_metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("skipped_metrics is not an array: {h:#}"))
        .iter()
        .map(|s| {
            let reason = s["reason"].as_str().unwrap_or("");
            assert!(
                !reason.trim().is_empty(),
                "skipped metric without a reason: {s}"
            );
            s["metric"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Keys of `reference` whose value there is not null must be present and
/// not null in `h`, unless `h` names them in skipped_metrics (or they are
/// in `except`).
fn reported_or_skipped(reference: &Value, h: &Value, except: &[&str]) {
    let skipped = skipped_names(h);
    for (k, v) in reference.as_object().unwrap() {
        if v.is_null() || skipped.contains(k) || except.contains(&k.as_str()) {
            continue;
        }
        assert!(
            h.get(k).is_some_and(|x| !x.is_null()),
            "{}: metric {k:?} is neither reported nor named in skipped_metrics: {h:#}",
            h["index"]
        );
    }
    for k in &skipped {
        assert!(
            h.get(k).is_none_or(Value::is_null),
            "{k} is named as skipped but has a value"
        );
    }
}

/// Test 5: halfvec, cosine, inner product, bit and sparsevec indexes.
#[test]
fn every_key_type_and_metric() {
    let db = TestDb::new("types");
    let mut c = db.connect();
    exec(
        &mut c,
        "SELECT setseed(0.55);
         CREATE TABLE ty (id bigserial PRIMARY KEY, e vector(8), h halfvec(8), b bit(64),
                          s sparsevec(8));
         INSERT INTO ty (e, h, s, b)
           SELECT v, v::halfvec(8), v::sparsevec(8),
                  CASE WHEN v IS NOT NULL THEN
                       ((floor(random() * 4294967296)::bigint << 32)
                        | floor(random() * 4294967296)::bigint)::bit(64) END
             FROM (SELECT CASE WHEN g % 500 = 7 THEN NULL
                               ELSE array(SELECT random() + g * 0
                                            FROM generate_series(1, 8))::vector(8) END
                     FROM generate_series(1, 2000) g OFFSET 0) x(v);
         CREATE INDEX ty_h_hnsw ON ty USING hnsw (h halfvec_l2_ops);
         CREATE INDEX ty_h_ivf ON ty USING ivfflat (h halfvec_l2_ops) WITH (lists = 10);
         CREATE INDEX ty_cos_hnsw ON ty USING hnsw (e vector_cosine_ops);
         CREATE INDEX ty_cos_ivf ON ty USING ivfflat (e vector_cosine_ops) WITH (lists = 10);
         CREATE INDEX ty_ip_hnsw ON ty USING hnsw (e vector_ip_ops);
         CREATE INDEX ty_ip_ivf ON ty USING ivfflat (e vector_ip_ops) WITH (lists = 10);
         CREATE INDEX ty_l2_hnsw ON ty USING hnsw (e vector_l2_ops);
         CREATE INDEX ty_l2_ivf ON ty USING ivfflat (e vector_l2_ops) WITH (lists = 10);
         CREATE INDEX ty_b_hnsw ON ty USING hnsw (b bit_hamming_ops);
         CREATE INDEX ty_b_ivf ON ty USING ivfflat (b bit_hamming_ops) WITH (lists = 10);
         CREATE INDEX ty_bj_hnsw ON ty USING hnsw (b bit_jaccard_ops);
         CREATE INDEX ty_s_hnsw ON ty USING hnsw (s sparsevec_l2_ops);",
    );
    let n = query_i64(&mut c, "SELECT count(e) FROM ty") as u64;
    assert_eq!(n, 1996);
    for col in ["h", "b", "s"] {
        assert_eq!(
            query_i64(&mut c, &format!("SELECT count({col}) FROM ty")) as u64,
            n
        );
    }
    assert_eq!(
        query_i64(&mut c, "SELECT count(DISTINCT b) FROM ty") as u64,
        n
    );

    let reference_hnsw = health(&mut c, "ty_l2_hnsw");
    let reference_ivf = health(&mut c, "ty_l2_ivf");
    let indexes = [
        ("ty_h_hnsw", "l2", true),
        ("ty_h_ivf", "l2", true),
        ("ty_cos_hnsw", "cosine", true),
        ("ty_cos_ivf", "cosine", true),
        ("ty_ip_hnsw", "inner_product", true),
        ("ty_ip_ivf", "inner_product", true),
        ("ty_l2_hnsw", "l2", true),
        ("ty_l2_ivf", "l2", true),
        ("ty_b_hnsw", "hamming", false),
        ("ty_b_ivf", "hamming", false),
        ("ty_bj_hnsw", "jaccard", false),
        ("ty_s_hnsw", "l2", false),
    ];
    for (index, metric, dense) in indexes {
        let h = health(&mut c, index);
        let (am, opclass, ty) = catalog(&mut c, index);
        assert_eq!(h["am"], am.as_str(), "{index}");
        assert_eq!(h["opclass"], opclass.as_str(), "{index}");
        assert_eq!(h["type"], ty.as_str(), "{index}");
        assert_eq!(h["metric"], metric, "{index}");
        let size = relation_size(&mut c, index);
        assert_eq!(u(&h, "bytes"), size, "{index} bytes");
        let dims = if ty == "bit" { 64 } else { 8 };
        assert_eq!(u(&h, "dimensions"), dims, "{index} dimensions");
        let skipped = skipped_names(&h);
        if am == "hnsw" {
            assert_eq!(u(&h, "heap_tids"), n, "{index} heap_tids vs count(*)");
            assert_eq!(
                u(&h, "elements_live"),
                n,
                "{index} elements_live vs count(*)"
            );
            assert_eq!(
                u(&h, "reachable") + u(&h, "unreachable"),
                n,
                "{index} reachable + unreachable"
            );
            // No HNSW metric reads the vectors, whatever their type.
            assert!(skipped.is_empty(), "{index}: {h:#}");
            reported_or_skipped(&reference_hnsw, &h, &[]);
        } else {
            assert_eq!(u(&h, "tuples"), n, "{index} tuples vs count(*)");
            let per_list = query_i64(
                &mut c,
                &format!("SELECT sum(tuples)::bigint FROM ruvector_dag_ivfflat_lists('{index}')"),
            );
            assert_eq!(per_list as u64, n, "{index} sum of list tuples");
            if dense {
                assert!(skipped.is_empty(), "{index}: {h:#}");
                assert!(h["mean_distance_to_center"].is_number(), "{index}");
                if metric != "inner_product" {
                    assert!(h["centroid_drift"].is_number(), "{index}");
                }
                // Each row is in its nearest center's list; halfvec rounding
                // can flip a near tie.
                let q = f(&h, "centroid_quality");
                assert!(q >= 0.99, "{index} centroid_quality {q}");
            } else {
                assert_eq!(
                    skipped,
                    [
                        "centroid_drift",
                        "centroid_quality",
                        "mean_distance_to_center"
                    ]
                    .map(String::from)
                    .into(),
                    "{index}: {h:#}"
                );
                for s in h["skipped_metrics"].as_array().unwrap() {
                    assert!(
                        s["reason"].as_str().unwrap().contains(&ty),
                        "reason names the type: {s}"
                    );
                }
            }
            // Inner product: see ivfflat_inner_product_drift_is_reported_or_skipped.
            let except: &[&str] = if metric == "inner_product" {
                &["centroid_drift"]
            } else {
                &[]
            };
            reported_or_skipped(&reference_ivf, &h, except);
        }
    }

    // The status function lists exactly these indexes, with their sizes.
    let status = json_of(&mut c, "ruvector_dag_healing_status()");
    assert_eq!(
        u(&status, "index_count"),
        indexes.len() as u64,
        "{status:#}"
    );
    for entry in status["indexes"].as_array().unwrap() {
        let index = entry["index"].as_str().unwrap();
        let (am, opclass, _) = catalog(&mut c, index);
        assert_eq!(entry["am"], am.as_str());
        assert_eq!(entry["opclass"], opclass.as_str());
        assert_eq!(entry["bytes"].as_u64(), Some(relation_size(&mut c, index)));
        assert_eq!(entry["valid"], true);
        assert_eq!(entry["table"], "ty");
    }
    let pgvector: String = c
        .query_one(
            "SELECT extversion::text FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status["pgvector_version"], pgvector.as_str());
    let preloaded: bool = c
        .query_one(
            "SELECT 'ruvector_healing' = ANY (string_to_array(
                      replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status["preloaded"], json!(preloaded));
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// An IVFFlat index with `vector_ip_ops` gets a centroid drift too: drift
/// is Euclidean whatever the metric (the mean `<#>` "distance" is negative,
/// so it cannot be the yardstick), and a fresh index has little of it.
#[test]
fn ivfflat_inner_product_drift_is_reported() {
    let db = TestDb::new("ip_drift");
    let mut c = db.connect();
    exec(
        &mut c,
        "SELECT setseed(0.56);
         CREATE TABLE ip (id bigserial PRIMARY KEY, e vector(8));
         INSERT INTO ip (e)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 8))::vector
             FROM generate_series(1, 2000) g;
         CREATE INDEX ip_ivf ON ip USING ivfflat (e vector_ip_ops) WITH (lists = 10);",
    );
    let h = health(&mut c, "ip_ivf");
    assert_eq!(u(&h, "tuples"), 2000);
    assert!(
        f(&h, "centroid_drift") < 0.5,
        "fresh inner-product index: drift {}",
        h["centroid_drift"]
    );
    assert!(skipped_names(&h).is_empty(), "{}", h["skipped_metrics"]);
}
