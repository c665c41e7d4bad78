//! Partitioned indexes (one report per leaf partition) and empty indexes.

use serde_json::Value;

use crate::common::*;

/// Test 6: an index on a range-partitioned table.
#[test]
fn partitioned_index_reports_every_partition() {
    let db = TestDb::new("partitioned");
    let mut c = db.connect();
    exec(
        &mut c,
        "SELECT setseed(0.66);
         CREATE TABLE p (id int NOT NULL, embedding vector(8)) PARTITION BY RANGE (id);
         CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (0) TO (1000);
         CREATE TABLE p_high PARTITION OF p FOR VALUES FROM (1000) TO (3000);
         INSERT INTO p
           SELECT g, CASE WHEN g % 400 = 3 THEN NULL
                          ELSE array(SELECT random() + g * 0 FROM generate_series(1, 8))::vector END
             FROM generate_series(0, 2499) g;
         CREATE INDEX p_hnsw ON p USING hnsw (embedding vector_l2_ops);
         CREATE INDEX p_ivf ON p USING ivfflat (embedding vector_l2_ops) WITH (lists = 5);",
    );
    let total = query_i64(&mut c, "SELECT count(embedding) FROM p") as u64;
    assert_eq!(total, 2493);
    // The leaf indexes and their tables, from the catalog.
    let leaves: Vec<(String, String, String)> = c
        .query(
            "SELECT pt.relid::regclass::text, i.indrelid::regclass::text, parent.relname::text
               FROM (VALUES ('p_hnsw'), ('p_ivf')) v(parent_name)
               JOIN pg_class parent ON parent.relname = v.parent_name
               CROSS JOIN LATERAL pg_partition_tree(parent.oid) pt
               JOIN pg_index i ON i.indexrelid = pt.relid
              WHERE pt.isleaf ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(leaves.len(), 4);

    for (parent, count_key) in [("p_hnsw", "heap_tids"), ("p_ivf", "tuples")] {
        let h = health(&mut c, parent);
        assert_eq!(h["partitioned"], true, "{h:#}");
        assert_eq!(h["index"], parent);
        assert_eq!(h["table"], "p");
        let parts = h["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "{h:#}");
        let mut sum = 0;
        for part in parts {
            assert_eq!(part["partitioned"], false);
            assert_eq!(part["am"], h["am"]);
            let index = part["index"].as_str().unwrap();
            let table = part["table"].as_str().unwrap();
            let leaf = leaves
                .iter()
                .find(|l| l.0 == index)
                .unwrap_or_else(|| panic!("{index} is not a leaf index of {parent}"));
            assert_eq!((leaf.1.as_str(), leaf.2.as_str()), (table, parent));
            let rows = query_i64(&mut c, &format!("SELECT count(embedding) FROM {table}")) as u64;
            assert_eq!(
                u(part, count_key),
                rows,
                "{index}: {count_key} vs count(*) of {table}"
            );
            assert_eq!(u(part, "bytes"), relation_size(&mut c, index));
            // The same figures as inspecting the leaf directly.
            let direct = health(&mut c, index);
            assert_eq!(direct[count_key], part[count_key]);
            assert_eq!(direct["pages"], part["pages"]);
            sum += u(part, count_key);
        }
        assert_eq!(
            sum, total,
            "{parent}: {count_key} summed over partitions vs count(*)"
        );
    }

    // Per-level and per-list detail need one partition's index.
    let e = c.query("SELECT * FROM ruvector_dag_hnsw_levels('p_hnsw')", &[]);
    expect_guided_error(e, "0A000", "partitioned index");
    let e = c.query("SELECT * FROM ruvector_dag_ivfflat_lists('p_ivf')", &[]);
    expect_guided_error(e, "0A000", "partitioned index");

    // The table-wide check goes through the partitioned indexes too.
    let check = json_of(&mut c, "ruvector_dag_health_check('p')");
    let reports = check["indexes"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{check:#}");
    assert!(reports.iter().all(|r| r["partitioned"] == true));
    assert_eq!(check["issues"], serde_json::json!([]), "{check:#}");
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// Indexes built on an empty table: nothing to count, nothing to divide by.
#[test]
fn empty_indexes() {
    let db = TestDb::new("empty");
    let mut c = db.connect();
    exec(
        &mut c,
        "SET client_min_messages = error;
         CREATE TABLE e (id bigserial PRIMARY KEY, embedding vector(4));
         CREATE INDEX e_hnsw ON e USING hnsw (embedding vector_l2_ops);
         CREATE INDEX e_ivf ON e USING ivfflat (embedding vector_l2_ops) WITH (lists = 3);",
    );
    let h = health(&mut c, "e_hnsw");
    for k in [
        "elements_total",
        "elements_live",
        "heap_tids",
        "unreachable",
    ] {
        assert_eq!(u(&h, k), 0, "{k}: {h:#}");
    }
    assert_eq!(h["entry_point"], Value::Null);
    assert_eq!(f(&h, "connectivity_score"), 1.0);
    assert_eq!(f(&h, "fragmentation"), 0.0);
    assert_eq!(u(&h, "bytes"), relation_size(&mut c, "e_hnsw"));
    let i = health(&mut c, "e_ivf");
    assert_eq!(u(&i, "tuples"), 0, "{i:#}");
    assert_eq!(u(&i, "lists"), 3);
    assert_eq!(u(&i, "empty_clusters"), 3);
    let check = json_of(&mut c, "ruvector_dag_health_check('e')");
    assert_eq!(check["issues"], serde_json::json!([]), "{check:#}");

    // The first rows: every one of them counted.
    exec(
        &mut c,
        "INSERT INTO e (embedding)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 4))::vector
             FROM generate_series(1, 50) g;",
    );
    assert_eq!(u(&health(&mut c, "e_hnsw"), "heap_tids"), 50);
    assert_eq!(u(&health(&mut c, "e_ivf"), "tuples"), 50);
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}
