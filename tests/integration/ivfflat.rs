//! IVFFlat: list and tuple counts against `count(*)` and the raw pages;
//! cluster balance and centroid drift against the same figures computed in
//! SQL from the centers read off the list page; the issues a health check
//! records, their deduplication and their resolution after REINDEX.

use postgres::Client;
use serde_json::Value;

use crate::common::*;

/// `ruvector_dag_ivfflat_lists` as (list, tuples, pages, start_page,
/// mean_distance_to_center).
fn list_rows(c: &mut Client, index: &str) -> Vec<(i32, i64, i64, i64, Option<f64>)> {
    c.query(
        "SELECT list, tuples, pages, start_page, mean_distance_to_center
           FROM ruvector_dag_ivfflat_lists($1::text::regclass) ORDER BY list",
        &[&index],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

fn mean_sd(sizes: &[u64]) -> (f64, f64) {
    let n = sizes.len() as f64;
    let mean = sizes.iter().sum::<u64>() as f64 / n;
    let var = sizes
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Checks a report and the per-list rows against the pages decoded here;
/// returns the lists read from the pages.
fn check_against_pages(c: &mut Client, index: &str, h: &Value, centers: bool) -> Vec<IvfListRaw> {
    let pages = raw_pages(c, index);
    let size = relation_size(c, index);
    assert_eq!(u(h, "bytes"), size, "bytes vs pg_relation_size");
    assert_eq!(
        u(h, "pages"),
        size / 8192,
        "pages vs pg_relation_size / 8192"
    );
    assert_eq!(u(h, "pages"), pages.len() as u64);
    let raw = ivfflat_census(&pages, centers);
    assert_eq!(u(h, "lists"), raw.len() as u64, "lists vs list page");
    let rows = list_rows(c, index);
    assert_eq!(rows.len(), raw.len(), "one ivfflat_lists row per list");
    for (i, (row, l)) in rows.iter().zip(&raw).enumerate() {
        assert_eq!(row.0 as usize, i, "list numbers");
        assert_eq!(row.1 as u64, l.entries, "tuples of list {i} vs its pages");
        assert_eq!(row.2 as u64, l.pages, "pages of list {i} vs its chain");
        assert_eq!(row.3 as u64, l.start_page as u64, "start_page of list {i}");
    }
    let sizes: Vec<u64> = raw.iter().map(|l| l.entries).collect();
    let total: u64 = sizes.iter().sum();
    assert_eq!(u(h, "tuples"), total, "tuples vs entries on the pages");
    assert_eq!(
        rows.iter().map(|r| r.1).sum::<i64>() as u64,
        total,
        "sum of ivfflat_lists.tuples"
    );
    assert_eq!(u(h, "list_size_min"), *sizes.iter().min().unwrap());
    assert_eq!(u(h, "list_size_max"), *sizes.iter().max().unwrap());
    assert_eq!(
        u(h, "empty_clusters"),
        sizes.iter().filter(|&&s| s == 0).count() as u64
    );
    let (mean, sd) = mean_sd(&sizes);
    assert_close("list_size_mean", f(h, "list_size_mean"), mean, 1e-6);
    assert_close("list_size_stddev", f(h, "list_size_stddev"), sd, 1e-6);
    assert_close("cluster_balance", f(h, "cluster_balance"), sd / mean, 1e-6);
    raw
}

/// Test 2: tuple counts of an IVFFlat index before and after DELETE + VACUUM.
#[test]
fn ivfflat_counts_through_delete_and_vacuum() {
    let db = TestDb::new("ivf_counts");
    let mut c = db.connect();
    exec(
        &mut c,
        "CREATE EXTENSION pageinspect;
         SELECT setseed(0.22);
         CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16))
           WITH (autovacuum_enabled = false);
         INSERT INTO t (embedding)
           SELECT CASE WHEN g % 1000 = 500 THEN NULL
                       ELSE array(SELECT random() + g * 0 FROM generate_series(1, 16))::vector END
             FROM generate_series(1, 5005) g;
         CREATE INDEX t_ivf ON t USING ivfflat (embedding vector_l2_ops) WITH (lists = 10);",
    );
    let n0 = query_i64(&mut c, "SELECT count(*) FROM t WHERE embedding IS NOT NULL") as u64;
    assert_eq!(n0, 5000);
    let h = health(&mut c, "t_ivf");
    assert_eq!(h["am"], "ivfflat");
    assert_eq!(h["partitioned"], false);
    assert_eq!(u(&h, "lists"), 10);
    assert_eq!(u(&h, "dimensions"), 16);
    assert_eq!(
        u(&h, "tuples"),
        n0,
        "tuples vs count(*) of non-null vectors"
    );
    assert_eq!(u(&h, "dead_items"), 0);
    assert_eq!(h["skipped_metrics"], serde_json::json!([]));
    // pgvector puts every row in the list of its nearest center.
    assert_eq!(f(&h, "centroid_quality"), 1.0);
    let raw = check_against_pages(&mut c, "t_ivf", &h, true);
    assert_eq!(raw.len(), 10);
    assert!(raw.iter().all(|l| l.center.len() == 16));

    let deleted = c
        .execute(
            "DELETE FROM t WHERE id % 3 = 0 AND embedding IS NOT NULL",
            &[],
        )
        .unwrap();
    let n1 = query_i64(&mut c, "SELECT count(*) FROM t WHERE embedding IS NOT NULL") as u64;
    assert_eq!(n1, n0 - deleted);
    let before = health(&mut c, "t_ivf");
    assert_eq!(u(&before, "tuples"), n0, "index entries stay until VACUUM");
    check_against_pages(&mut c, "t_ivf", &before, false);

    exec(&mut c, "VACUUM t");
    let after = health(&mut c, "t_ivf");
    assert_eq!(u(&after, "tuples"), n1, "tuples vs count(*) after VACUUM");
    assert_eq!(u(&after, "dead_items"), 0);
    check_against_pages(&mut c, "t_ivf", &after, false);
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// Per list, computed in SQL from the centers on the list page: rows whose
/// nearest center it is, their mean distance to it and their mean vector.
struct ListTruth {
    rows: u64,
    mean_distance: f64,
    mean: Vec<f64>,
}

fn truth_from_centers(c: &mut Client, table: &str, raw: &[IvfListRaw]) -> Vec<ListTruth> {
    let values: Vec<String> = raw
        .iter()
        .enumerate()
        .map(|(i, l)| format!("({i}, '{}'::vector)", vector_literal(&l.center)))
        .collect();
    let sql = format!(
        "WITH c(list, center) AS (VALUES {}),
              a AS (SELECT t.embedding, n.list, n.center FROM {table} t
                    CROSS JOIN LATERAL (SELECT list, center FROM c
                                         ORDER BY t.embedding <-> c.center, list LIMIT 1) n
                    WHERE t.embedding IS NOT NULL)
         SELECT c.list, count(a.list), coalesce(avg(a.embedding <-> a.center), 0),
                coalesce(avg(a.embedding)::text, '')
           FROM c LEFT JOIN a ON a.list = c.list GROUP BY c.list ORDER BY c.list",
        values.join(", ")
    );
    c.query(&sql, &[])
        .unwrap()
        .iter()
        .map(|r| {
            let mean: String = r.get(3);
            ListTruth {
                rows: r.get::<_, i64>(1) as u64,
                mean_distance: r.get(2),
                mean: mean
                    .trim_matches(|ch| ch == '[' || ch == ']')
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// Centroid drift as the extension documents it: per list, the distance
/// between the trained center and the mean of its rows, over the rows' mean
/// distance to the center; averaged with the lists' sizes as weights.
fn drift(raw: &[IvfListRaw], truth: &[ListTruth]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (l, t) in raw.iter().zip(truth) {
        if t.rows == 0 || t.mean_distance <= 0.0 {
            continue;
        }
        let shift = l
            .center
            .iter()
            .zip(&t.mean)
            .map(|(c, m)| (m - *c as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        num += t.rows as f64 * shift / t.mean_distance;
        den += t.rows as f64;
    }
    num / den
}

/// Compares balance, drift and mean distances of a report with the SQL
/// ground truth; returns (balance, drift) of the ground truth.
fn check_drift_figures(c: &mut Client, h: &Value) -> (f64, f64) {
    let raw = check_against_pages(c, "d_ivf", h, true);
    let truth = truth_from_centers(c, "d", &raw);
    // Every row sits in the list of its nearest center (ties, which need two
    // equal float distances, aside).
    let misplaced: u64 = raw
        .iter()
        .zip(&truth)
        .map(|(l, t)| l.entries.abs_diff(t.rows))
        .sum();
    assert!(
        misplaced <= 2,
        "rows not in their nearest center's list: {misplaced}"
    );
    let rows = list_rows(c, "d_ivf");
    let total: u64 = truth.iter().map(|t| t.rows).sum();
    let mut dist_sum = 0.0;
    for (i, (r, t)) in rows.iter().zip(&truth).enumerate() {
        if t.rows > 0 {
            let got = r.4.expect("mean_distance_to_center of a non-empty list");
            assert_close(
                &format!("mean_distance_to_center of list {i}"),
                got,
                t.mean_distance,
                1e-4 * t.mean_distance.max(1.0),
            );
        }
        dist_sum += t.mean_distance * t.rows as f64;
    }
    let md = dist_sum / total as f64;
    assert_close(
        "mean_distance_to_center",
        f(h, "mean_distance_to_center"),
        md,
        1e-4 * md,
    );
    let want = drift(&raw, &truth);
    assert_close(
        "centroid_drift",
        f(h, "centroid_drift"),
        want,
        1e-3 * want.max(0.01),
    );
    let sizes: Vec<u64> = raw.iter().map(|l| l.entries).collect();
    let (mean, sd) = mean_sd(&sizes);
    (sd / mean, want)
}

fn issues(c: &mut Client) -> Vec<(i64, String, i32, String)> {
    c.query(
        "SELECT issue_id, kind, times_seen, status FROM ruvector_dag_detected_issues('d')
          ORDER BY issue_id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn issue_kinds(check: &Value) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = check["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["index"], "d_ivf");
            (
                i["kind"].as_str().unwrap().to_string(),
                i["issue_id"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Test 4: data moving away from where k-means put the centers.
#[test]
fn ivfflat_drift_is_detected_deduplicated_and_resolved() {
    let db = TestDb::new("ivf_drift");
    let mut c = db.connect();
    exec(
        &mut c,
        "CREATE EXTENSION pageinspect;
         SELECT setseed(0.33);
         CREATE TABLE d (id bigserial PRIMARY KEY, embedding vector(8))
           WITH (autovacuum_enabled = false);
         INSERT INTO d (embedding)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 8))::vector
             FROM generate_series(1, 2000) g;
         CREATE INDEX d_ivf ON d USING ivfflat (embedding vector_l2_ops) WITH (lists = 10);",
    );
    let h = health(&mut c, "d_ivf");
    assert_eq!(u(&h, "tuples"), 2000);
    let (balance, drift0) = check_drift_figures(&mut c, &h);
    assert!(
        f(&h, "cluster_balance") < 0.5,
        "balance of fresh lists: {balance}"
    );
    assert!(drift0 < 0.5, "drift of a fresh index: {drift0}");
    let relfilenode = query_i64(
        &mut c,
        "SELECT relfilenode::bigint FROM pg_class WHERE relname = 'd_ivf'",
    );
    assert_eq!(h["training"]["relfilenode"].as_i64(), Some(relfilenode));
    let check = json_of(&mut c, "ruvector_dag_health_check('d')");
    assert_eq!(check["table"], "d");
    assert_eq!(
        check["issues"],
        serde_json::json!([]),
        "fresh index: {check:#}"
    );
    assert!(issues(&mut c).is_empty());

    // 20000 rows far from every center: they all go to the nearest list.
    exec(
        &mut c,
        "INSERT INTO d (embedding)
           SELECT array(SELECT 2 + 0.3 * random() + g * 0 FROM generate_series(1, 8))::vector
             FROM generate_series(1, 20000) g;",
    );
    let h2 = health(&mut c, "d_ivf");
    assert_eq!(u(&h2, "tuples"), 22000);
    let (balance2, drift2) = check_drift_figures(&mut c, &h2);
    let cb = f(&h2, "cluster_balance");
    let cd = f(&h2, "centroid_drift");
    eprintln!(
        "ivfflat drift: before cluster_balance {:.3} drift {drift0:.3}; after insert \
         cluster_balance {cb} (truth {balance2:.6}) centroid_drift {cd} (truth {drift2:.6})",
        f(&h, "cluster_balance")
    );
    assert!(cb > 1.5, "cluster_balance after skewed inserts: {cb}");
    assert!(cd > 0.5, "centroid_drift after skewed inserts: {cd}");

    let check = json_of(&mut c, "ruvector_dag_health_check('d')");
    let kinds = issue_kinds(&check);
    assert_eq!(
        kinds.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["stale_training", "unbalanced_clusters"],
        "{check:#}"
    );
    for i in check["issues"].as_array().unwrap() {
        let d = &i["details"];
        match i["kind"].as_str().unwrap() {
            "unbalanced_clusters" => {
                // 10 lists: the threshold is capped at half of sqrt(9).
                assert_eq!(f(d, "threshold"), 1.5);
                assert_eq!(f(d, "cluster_balance"), cb);
                assert!(cb > f(d, "threshold"));
            }
            _ => {
                assert_eq!(f(d, "threshold"), 0.5);
                assert_eq!(f(d, "centroid_drift"), cd);
            }
        }
    }
    let first = issues(&mut c);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|i| i.2 == 1 && i.3 == "open"), "{first:?}");

    // Found again: the same open rows, seen twice.
    let again = json_of(&mut c, "ruvector_dag_health_check('d')");
    assert_eq!(
        issue_kinds(&again),
        kinds,
        "same issue ids on a second check"
    );
    assert_eq!(again["resolved_issues"], 0);
    let second = issues(&mut c);
    assert_eq!(
        second.iter().map(|i| i.0).collect::<Vec<_>>(),
        first.iter().map(|i| i.0).collect::<Vec<_>>()
    );
    assert!(
        second.iter().all(|i| i.2 == 2 && i.3 == "open"),
        "{second:?}"
    );
    let status = json_of(&mut c, "ruvector_dag_healing_status()");
    let open: u64 = status["open_issues_by_severity"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(open, 2, "{status:#}");

    // The original rows go away: the data has moved entirely, the centers
    // have not, and the issues stay open (seen a third time). (With the
    // old rows kept, k-means may leave 2 of 10 centers on the dense new
    // cluster, and the retrained lists would still be unbalanced by chance.)
    exec(&mut c, "DELETE FROM d WHERE id <= 2000");
    exec(&mut c, "VACUUM d");
    let third = json_of(&mut c, "ruvector_dag_health_check('d')");
    assert_eq!(
        issue_kinds(&third),
        kinds,
        "same issue ids on a third check"
    );
    let h_moved = health(&mut c, "d_ivf");
    assert_eq!(u(&h_moved, "tuples"), 20000);
    check_drift_figures(&mut c, &h_moved);

    // REINDEX trains new centers on the data as it is now.
    exec(&mut c, "REINDEX INDEX d_ivf");
    let h3 = health(&mut c, "d_ivf");
    let (balance3, drift3) = check_drift_figures(&mut c, &h3);
    eprintln!("after REINDEX: cluster_balance {balance3:.3} centroid_drift {drift3:.3}");
    assert!(balance3 < 1.5 && drift3 < 0.5, "retrained: {h3:#}");
    assert_ne!(h3["training"]["relfilenode"].as_i64(), Some(relfilenode));
    let done = json_of(&mut c, "ruvector_dag_health_check('d')");
    assert_eq!(done["issues"], serde_json::json!([]), "{done:#}");
    assert_eq!(done["resolved_issues"], 2);
    let resolved = c
        .query(
            "SELECT issue_id, status, resolved_at IS NOT NULL, times_seen
               FROM ruvector_dag_detected_issues('d') ORDER BY issue_id",
            &[],
        )
        .unwrap();
    assert_eq!(resolved.len(), 2);
    for (r, f0) in resolved.iter().zip(&first) {
        assert_eq!(r.get::<_, i64>(0), f0.0);
        assert_eq!(r.get::<_, &str>(1), "resolved");
        assert!(r.get::<_, bool>(2));
        assert_eq!(r.get::<_, i32>(3), 3);
    }
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}
