//! The repair engine against a real server: rebuilds of degraded HNSW and
//! drifted IVFFlat indexes checked with recall measured here in plain SQL
//! (exact answers with index scans disabled) and against a fresh build of
//! a copy of the table; table contents checked with count(*) and a
//! checksum; repairs under pgbench; the worker killed and the server
//! stopped at every step; validation failure, rollback and bad input.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;
use serde_json::Value;

use crate::common::*;

/// `(count, md5 of every row)`: what a repair must never change.
fn checksum(c: &mut Client, table: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*)::int8, md5(coalesce(string_agg(id::text || ':' || embedding::text, ',' ORDER BY id), ''))
                   FROM {table}"
            ),
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// `(name, valid)` of every index of a table.
fn indexes(c: &mut Client, table: &str) -> Vec<(String, bool)> {
    c.query(
        &format!(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = '{table}'::regclass ORDER BY 1"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn oid_of(c: &mut Client, rel: &str) -> i64 {
    query_i64(c, &format!("SELECT '{rel}'::regclass::oid::int8"))
}

/// Table `t (id, embedding vector(dim))` with `rows` random rows (`with`:
/// table storage options, e.g. `WITH (autovacuum_enabled = off)`) and
/// `CREATE INDEX t_idx ON t USING <using>`.
fn indexed_table(c: &mut Client, dim: i32, rows: i64, with: &str, using: &str) {
    exec(
        c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector({dim})) {with};
             {};
             CREATE INDEX t_idx ON t USING {using};",
            random_rows("t", rows, dim, 0.0, 1.0)
        ),
    );
}

#[test]
fn degraded_hnsw_is_rebuilt() {
    let db = TestDb::new("rep_hnsw");
    let mut c = db.connect();
    indexed_table(
        &mut c,
        16,
        30_000,
        "WITH (autovacuum_enabled = off)",
        "hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32)",
    );
    exec(
        &mut c,
        "COMMENT ON INDEX t_idx IS 'the search index';
             DELETE FROM t WHERE id % 4 = 0;",
    );
    exec(&mut c, "VACUUM t");
    exec(
        &mut c,
        "DELETE FROM t WHERE id % 5 <> 0;
         UPDATE t SET embedding = array(SELECT random() + id * 0 FROM generate_series(1, 16))::vector
          WHERE id % 10 = 0;",
    );
    let before = checksum(&mut c, "t");
    let ids = sample_ids(&mut c, "t", 150);
    let setting = "SET hnsw.ef_search = 100";
    let recall_before = sql_recall(&mut c, "t", &ids, setting);
    let oid_before = oid_of(&mut c, "t_idx");

    exec(
        &mut c,
        "SET ruvector.dag_healing_rollback_enabled = off; SET hnsw.ef_search = 100",
    );
    let id = request(&mut c, "t_idx", "rebuild");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");

    let recall_after = sql_recall(&mut c, "t", &ids, setting);
    exec(
        &mut c,
        "CREATE TABLE fresh AS SELECT * FROM t;
         CREATE INDEX fresh_idx ON fresh USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32);",
    );
    let recall_fresh = sql_recall(&mut c, "fresh", &ids, setting);
    eprintln!(
        "hnsw repair: recall@10 (ef_search 100, {} queries) before {recall_before:.4}, after {recall_after:.4}, fresh build {recall_fresh:.4}; validation measured old {} new {}",
        ids.len(),
        r["after"]["recall"]["old"],
        r["after"]["recall"]["new"]
    );
    assert!(
        recall_after >= recall_fresh - 0.01,
        "recall after the repair {recall_after} < fresh build {recall_fresh} - 0.01"
    );
    assert!(
        recall_after > recall_before,
        "the repair did not improve recall: {recall_before} -> {recall_after}"
    );
    assert_eq!(checksum(&mut c, "t"), before, "the table changed");
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );
    assert_ne!(
        oid_of(&mut c, "t_idx"),
        oid_before,
        "the index was not replaced"
    );
    let comment: Option<String> = c
        .query_one("SELECT obj_description('t_idx'::regclass, 'pg_class')", &[])
        .unwrap()
        .get(0);
    assert_eq!(comment.as_deref(), Some("the search index"));
    let def: String = c
        .query_one("SELECT pg_get_indexdef('t_idx'::regclass)", &[])
        .unwrap()
        .get(0);
    assert!(
        def.contains("m='8'") && def.contains("ef_construction='32'"),
        "{def}"
    );
    // History: before and after figures, no backup kept.
    assert!(
        r["before"]["health"]["elements_total"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    assert_eq!(r["after"]["validation"]["passed"], true, "{r:#}");
    assert_eq!(r["backup"]["kept"], false, "{r:#}");
    let steps: Vec<String> = c
        .query(
            &format!("SELECT step FROM ruvector_healing.repair_steps WHERE repair_id = {id} ORDER BY step_id"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        steps,
        [
            "building",
            "validating",
            "swapping",
            "swapped",
            "retiring",
            "done"
        ],
        "journal"
    );
    let counters = json_of(&mut c, "ruvector_dag_healing_status()->'repairs'");
    assert!(
        counters["repairs_successful"].as_u64().unwrap() >= 1,
        "{counters}"
    );
}

#[test]
fn drifted_ivfflat_is_rebuilt_with_lists_for_its_size() {
    let db = TestDb::new("rep_ivf");
    let mut c = db.connect();
    // 100 lists trained on 3,000 rows of 3 topics, then 30,000 rows of 100
    // others, arriving topic by topic: stale centers, and too many lists
    // for the size (pgvector's advice: rows / 1000 = 33).
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(32));
             {};
             CREATE INDEX t_idx ON t USING ivfflat (embedding vector_cosine_ops) WITH (lists = 100);
             {};",
            clustered_rows("t", 3_000, 32, 1, 3, 0.4),
            clustered_rows("t", 30_000, 32, 4, 100, 0.4)
        ),
    );
    let rows = query_i64(&mut c, "SELECT count(*) FROM t");
    let before = checksum(&mut c, "t");
    let issues = json_of(&mut c, "ruvector_dag_health_check('t')->'issues'");
    assert!(
        issues
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "stale_training"),
        "{issues:#}"
    );
    let ids = sample_ids(&mut c, "t", 150);
    // The production setting: pgvector's default, probes = 1.
    let setting = "SET ivfflat.probes = 1";
    let recall_before = sql_recall_with(&mut c, "t", "<=>", &ids, setting);
    // Queries use per-index values, and tuning stores them per index: the
    // probes the new lists need for the old recall become the index's.
    exec(
        &mut c,
        &format!(
            "SET ruvector.dag_healing_rollback_enabled = off;
             SET ruvector.dag_healing_tuning_scope = 'index';
             ALTER DATABASE {} SET ruvector.dag_adaptive_search = on",
            db.name
        ),
    );
    let id = request(&mut c, "t_idx", "auto");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    assert_eq!(r["strategy"], "rebuild");
    let probes = r["after"]["probes_for_same_recall"]["value"].as_i64();
    assert!(probes.is_some(), "{r:#}");
    assert_eq!(r["after"]["search_value"].as_i64(), probes, "{r:#}");
    assert_eq!(
        Some(query_i64(
            &mut c,
            "SELECT search_value::int8 FROM ruvector_healing.index_policies WHERE object_name = 't_idx'"
        )),
        probes
    );
    let lists = rows / 1000;
    assert_eq!(r["plan"]["lists"]["new"], lists, "rows / 1000: {r:#}");
    assert!(
        r["issue_id"].is_i64(),
        "auto repairs the recorded issue: {r:#}"
    );

    let recall_after = sql_recall_with(&mut c, "t", "<=>", &ids, setting);
    exec(
        &mut c,
        &format!(
            "CREATE TABLE fresh AS SELECT * FROM t;
             CREATE INDEX fresh_idx ON fresh USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists});
             SELECT ruvector_dag_set_index_policy('fresh_idx', excluded => true);"
        ),
    );
    let recall_fresh = sql_recall_with(&mut c, "fresh", "<=>", &ids, setting);
    eprintln!(
        "ivfflat repair: recall@10 at probes 1: before {recall_before:.4} (100 lists), after {recall_after:.4}, fresh build {recall_fresh:.4} ({lists} lists); validation {}",
        r["after"]["recall"]
    );
    assert!(
        recall_after >= recall_fresh - 0.02,
        "{recall_after} < {recall_fresh} - 0.02"
    );
    assert!(
        recall_after > recall_before,
        "{recall_after} <= {recall_before}"
    );
    assert_eq!(checksum(&mut c, "t"), before);
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );
    let after = json_of(&mut c, "ruvector_dag_health_check('t')->'issues'");
    assert!(
        !after
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "stale_training"),
        "{after:#}"
    );
}

fn pgbench_figure(out: &str, prefix: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
}

fn pgbench(db: &str, script_dir: &std::path::Path, seconds: u32) -> std::process::Child {
    let st = settings();
    Command::new(format!("{}/pgbench", st.pgbin))
        .args(["-n", "-c", "4", "-j", "2", "-T", &seconds.to_string()])
        .arg("-f")
        .arg(script_dir.join("read.sql@3"))
        .arg("-f")
        .arg(script_dir.join("write.sql@1"))
        .args([
            "-h",
            &st.host,
            "-p",
            &st.port.to_string(),
            "-U",
            "postgres",
            db,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start pgbench: {e}"))
}

fn finish_pgbench(child: std::process::Child) -> (f64, String) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pgbench failed:\n{stdout}\n{stderr}");
    let failed = pgbench_figure(&stdout, "number of failed transactions:").unwrap_or(0.0);
    (failed, stdout)
}

/// Rows the write script inserted between two instants (server clock).
fn writes_between(c: &mut Client, from: &str, to: &str) -> f64 {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*)::float8 / greatest(extract(epoch FROM '{to}'::timestamptz - '{from}'::timestamptz), 0.001)::float8
                   FROM t WHERE created_at >= '{from}' AND created_at < '{to}'"
            ),
            &[],
        )
        .unwrap();
    r.get(0)
}

#[test]
fn repair_under_pgbench_fails_no_transaction() {
    let db = TestDb::new("rep_bench");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16),
                             created_at timestamptz NOT NULL DEFAULT clock_timestamp());
             {};
             CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32);
             DELETE FROM t WHERE id % 3 = 0;",
            random_rows("t", 30_000, 16, 0.0, 1.0)
        ),
    );
    let dir = std::env::temp_dir().join(format!("{}_pgbench", db.name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("read.sql"),
        "\\set id random(1, 30000)\n\
         SELECT id FROM t ORDER BY embedding <-> (SELECT embedding FROM t WHERE id >= :id ORDER BY id LIMIT 1) LIMIT 10;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("write.sql"),
        "\\set id random(1, 30000)\n\
         INSERT INTO t (embedding) SELECT array(SELECT random() + g * 0 FROM generate_series(1, 16))::vector FROM generate_series(1, 1) g;\n\
         UPDATE t SET embedding = array(SELECT random() + :id * 0 FROM generate_series(1, 16))::vector WHERE id = :id;\n",
    )
    .unwrap();
    // Baseline write rate.
    let t0: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .unwrap()
        .get(0);
    let (failed, _) = finish_pgbench(pgbench(&db.name, &dir, 8));
    let t1: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0.0);
    let base = writes_between(&mut c, &t0, &t1);

    let before_rows = query_i64(&mut c, "SELECT count(*) FROM t");
    let child = pgbench(&db.name, &dir, 40);
    std::thread::sleep(Duration::from_secs(3));
    exec(&mut c, "SET ruvector.dag_healing_rollback_enabled = off");
    let id = request(&mut c, "t_idx", "rebuild");
    let r = wait(&mut c, id);
    let (failed, out) = finish_pgbench(child);
    assert_eq!(status(&r), "done", "{r:#}");
    assert_eq!(
        failed, 0.0,
        "pgbench transactions failed during the repair:\n{out}"
    );
    let started = r["started_at"].as_str().unwrap().to_string();
    let finished = r["finished_at"].as_str().unwrap().to_string();
    let during = writes_between(&mut c, &started, &finished);
    let tps = pgbench_figure(&out, "tps =").unwrap_or(0.0);
    eprintln!(
        "repair under pgbench: {} ms; writes/s before {base:.1}, during the repair {during:.1} (ratio {:.2}); pgbench {tps:.1} tps, 0 failed",
        r["duration_ms"],
        during / base.max(0.001)
    );
    assert!(during > 0.0, "no write committed during the repair");
    assert!(query_i64(&mut c, "SELECT count(*) FROM t") > before_rows);
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );
    // The rebuilt index holds every row, including those written meanwhile.
    let n = query_i64(&mut c, "SELECT count(*) FROM t");
    let h = health(&mut c, "t_idx");
    // (it may also hold versions of rows updated meanwhile, until a vacuum)
    assert!(h["heap_tids"].as_i64().unwrap() >= n, "{n} rows: {h:#}");
    let _ = std::fs::remove_dir_all(dir);
}

// ------------------------------------------------------------------ crashes

fn immediate_restart() {
    let st = settings();
    let pg_ctl = format!("{}/pg_ctl", st.pgbin);
    let out = as_server_user(&pg_ctl, &["stop", "-m", "immediate", "-w", "-D", &st.data]);
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = format!("{}/server.log", st.data);
    let out = as_server_user(
        &pg_ctl,
        &["start", "-w", "-t", "120", "-D", &st.data, "-l", &log],
    );
    assert!(
        out.status.success(),
        "pg_ctl start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls until `sql` returns true.
fn until(c: &mut Client, sql: &str, what: &str) {
    let started = Instant::now();
    loop {
        let yes: bool = c.query_one(sql, &[]).unwrap().get(0);
        if yes {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Clone, Copy, Debug)]
enum Crash {
    KillWorker,
    ImmediateStop,
}

#[test]
fn crash_at_every_step_leaves_one_valid_index() {
    let mut db = TestDb::new("rep_crash");
    let mut c = db.connect();
    indexed_table(
        &mut c,
        8,
        8_000,
        "",
        "hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32)",
    );
    let before = checksum(&mut c, "t");
    let points = [
        "before_build",
        "during_build",
        "after_build",
        "during_validation",
        "after_swap",
    ];
    for crash in [Crash::KillWorker, Crash::ImmediateStop] {
        for point in points {
            let mut c = db.connect();
            exec(
                &mut c,
                "SET ruvector.dag_healing_rollback_enabled = off; SET ruvector.dag_healing_cooldown_s = 0;
                 SET ruvector.dag_healing_max_attempts = 100",
            );
            // During the build: an open snapshot makes CREATE INDEX
            // CONCURRENTLY wait, with its new index already in the catalog.
            let mut holder = db.connect();
            if point == "during_build" {
                exec(
                    &mut holder,
                    "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1",
                );
            } else {
                exec(
                    &mut c,
                    &format!("SET ruvector.dag_healing_test_pause_at = '{point}'"),
                );
            }
            let id = request(&mut c, "t_idx", "rebuild");
            if point == "during_build" {
                until(
                    &mut c,
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 't_idx_rvnew{id}')"
                    ),
                    "the shadow index",
                );
                std::thread::sleep(Duration::from_millis(300));
            } else {
                until(
                    &mut c,
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM ruvector_healing.repair_steps WHERE repair_id = {id} AND step = 'paused_for_test')"
                    ),
                    "the pause",
                );
            }
            let pid = query_i64(
                &mut c,
                &format!(
                    "SELECT worker_pid::int8 FROM ruvector_healing.repairs WHERE repair_id = {id}"
                ),
            );
            let at = status(&row(&mut c, id)).to_string();
            drop(c);
            // The snapshot holder goes down with the crash, not before it.
            match crash {
                Crash::KillWorker => kill_worker(pid),
                Crash::ImmediateStop => immediate_restart(),
            }
            drop(holder);
            let mut c = wait_for_server(&db.name);
            db.crashes_expected();
            exec(&mut c, "SELECT ruvector_dag_recover_repairs()");
            until(
                &mut c,
                &format!(
                    "SELECT status IN ('done','failed','rolled_back','cancelled') FROM ruvector_healing.repairs WHERE repair_id = {id}"
                ),
                "recovery",
            );
            // Recovery of a swapped repair drops the old index concurrently
            // after recording the outcome.
            until(
                &mut c,
                "SELECT count(*) = 2 FROM pg_index WHERE indrelid = 't'::regclass",
                "leftovers to be dropped",
            );
            let r = row(&mut c, id);
            eprintln!(
                "crash {crash:?} at {point} (status {at}): {} — {}",
                status(&r),
                r["error"].as_str().unwrap_or("")
            );
            assert_eq!(
                indexes(&mut c, "t"),
                vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)],
                "{crash:?} at {point}"
            );
            let expected = if point == "after_swap" {
                "done"
            } else {
                "rolled_back"
            };
            assert_eq!(status(&r), expected, "{crash:?} at {point}: {r:#}");
            if expected == "rolled_back" {
                assert!(
                    r["error"].as_str().unwrap_or("").contains("interrupted"),
                    "{r:#}"
                );
            }
            assert_eq!(checksum(&mut c, "t"), before, "{crash:?} at {point}");
        }
    }
}

#[test]
fn repair_timeout_drops_the_shadow() {
    let db = TestDb::new("rep_timeout");
    let mut c = db.connect();
    indexed_table(&mut c, 8, 2_000, "", "hnsw (embedding vector_l2_ops)");
    let oid = oid_of(&mut c, "t_idx");
    let mut holder = db.connect();
    exec(
        &mut holder,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1",
    );
    exec(&mut c, "SET ruvector.dag_healing_repair_timeout_s = 10");
    let id = request(&mut c, "t_idx", "rebuild");
    let r = wait(&mut c, id);
    exec(&mut holder, "COMMIT");
    assert_eq!(status(&r), "failed", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 10 s"),
        "{r:#}"
    );
    assert_eq!(oid_of(&mut c, "t_idx"), oid);
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );
}

#[test]
fn failed_validation_keeps_the_original_and_rollback_restores_it() {
    let db = TestDb::new("rep_validate");
    let mut c = db.connect();
    indexed_table(
        &mut c,
        16,
        10_000,
        "",
        "hnsw (embedding vector_l2_ops) WITH (m = 4, ef_construction = 16)",
    );
    let oid = oid_of(&mut c, "t_idx");
    let def: String = c
        .query_one("SELECT pg_get_indexdef('t_idx'::regclass)", &[])
        .unwrap()
        .get(0);
    // An impossible floor: recall@10 of 1.0 at ef_search = 10 on m = 4.
    exec(
        &mut c,
        "SET ruvector.dag_healing_min_recall = 1.0; SET hnsw.ef_search = 10;
         SET ruvector.dag_healing_cooldown_s = 0",
    );
    let id = request(&mut c, "t_idx", "rebuild");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "failed", "{r:#}");
    assert!(
        r["error"].as_str().unwrap().contains("validation failed"),
        "{r:#}"
    );
    assert_eq!(r["after"]["validation"]["passed"], false);
    assert_eq!(oid_of(&mut c, "t_idx"), oid, "the original was replaced");
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );

    // A successful repair keeps the old index; rollback brings it back.
    exec(
        &mut c,
        "RESET ruvector.dag_healing_min_recall; RESET hnsw.ef_search",
    );
    let id = request(&mut c, "t_idx", "rebuild");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    assert_eq!(r["backup"]["kept"], true, "{r:#}");
    let backup = r["backup"]["index"].as_str().unwrap().to_string();
    assert_ne!(oid_of(&mut c, "t_idx"), oid);
    assert_eq!(
        indexes(&mut c, "t"),
        vec![
            ("t_idx".to_string(), true),
            (backup.clone(), false),
            ("t_pkey".to_string(), true)
        ]
    );
    // The kept index is not reported as a failed build.
    let check = json_of(&mut c, "ruvector_dag_health_check('t')->'issues'");
    assert!(
        !check
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "invalid_index"),
        "{check:#}"
    );
    exec(&mut c, &format!("SELECT ruvector_dag_rollback({id})"));
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "rolled_back", "{r:#}");
    until(
        &mut c,
        "SELECT count(*) = 2 FROM pg_index WHERE indrelid = 't'::regclass",
        "the rolled-back index to be dropped",
    );
    assert_eq!(
        oid_of(&mut c, "t_idx"),
        oid,
        "rollback did not restore the original"
    );
    let def_after: String = c
        .query_one("SELECT pg_get_indexdef('t_idx'::regclass)", &[])
        .unwrap()
        .get(0);
    assert_eq!(def_after, def);
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );
    let counters = json_of(&mut c, "ruvector_dag_healing_status()->'repairs'");
    assert!(
        counters["repairs_rolled_back"].as_u64().unwrap() >= 1,
        "{counters}"
    );
    assert!(
        counters["repairs_failed"].as_u64().unwrap() >= 1,
        "{counters}"
    );
}

#[test]
fn bad_requests_change_nothing() {
    let mut db = TestDb::new("rep_bad");
    let mut c = db.connect();
    indexed_table(&mut c, 8, 2_000, "", "hnsw (embedding vector_l2_ops)");
    let oid = oid_of(&mut c, "t_idx");
    let count = |c: &mut Client| query_i64(c, "SELECT count(*) FROM ruvector_healing.repairs");
    let n0 = count(&mut c);
    let r = c.query_one("SELECT ruvector_dag_cancel_repair(424242)", &[]);
    expect_guided_error(r, "P0002", "repair 424242 does not exist");
    let r = c.query_one("SELECT ruvector_dag_rollback(424242)", &[]);
    expect_guided_error(r, "P0002", "repair 424242 does not exist");
    let r = c.batch_execute("CALL ruvector_dag_wait_repair(424242)");
    expect_guided_error(r, "P0002", "repair 424242 does not exist");
    let r = c.query_one("SELECT ruvector_dag_repair_index('t_pkey')", &[]);
    expect_guided_error(r, "42809", "not pgvector's hnsw or ivfflat");
    let r = c.query_one("SELECT ruvector_dag_repair_index('t_idx', 'reindex')", &[]);
    expect_guided_error(r, "22023", "unknown repair strategy");
    let r = c.query_one("SELECT ruvector_dag_repair_index('t_idx', 'auto')", &[]);
    expect_guided_error(r, "55000", "has no detected issue");
    let r = c.query_one("SELECT ruvector_dag_repair('t', 999)", &[]);
    expect_guided_error(r, "P0002", "issue 999 does not exist");
    let r = c.batch_execute("BEGIN; CALL ruvector_dag_wait_repair(1); COMMIT");
    expect_guided_error(r, "25001", "cannot run inside a transaction block");
    exec(&mut c, "ROLLBACK");
    assert_eq!(count(&mut c), n0, "a refused request left a journal row");

    // A second repair of the table while one runs.
    exec(
        &mut c,
        "SET ruvector.dag_healing_test_pause_at = 'before_build'",
    );
    let first = request(&mut c, "t_idx", "rebuild");
    until(
        &mut c,
        &format!("SELECT EXISTS (SELECT 1 FROM ruvector_healing.repair_steps WHERE repair_id = {first} AND step = 'paused_for_test')"),
        "the first repair to start",
    );
    exec(&mut c, "RESET ruvector.dag_healing_test_pause_at");
    let n1 = count(&mut c);
    let r = c.query_one("SELECT ruvector_dag_repair_index('t_idx', 'rebuild')", &[]);
    expect_guided_error(r, "55P03", "one repair per table at a time");
    assert_eq!(count(&mut c), n1);
    exec(
        &mut c,
        &format!("SELECT ruvector_dag_cancel_repair({first})"),
    );
    let r = wait(&mut c, first);
    assert_eq!(status(&r), "cancelled", "{r:#}");
    assert_eq!(oid_of(&mut c, "t_idx"), oid);
    assert_eq!(
        indexes(&mut c, "t"),
        vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)]
    );

    // Privileges: a role that may read the table reads its history (and a
    // role that may not, sees none); neither may request repairs.
    let role = db.create_role("plain");
    let mut other = connect_as(&db.name, &role);
    assert_eq!(
        query_i64(
            &mut other,
            "SELECT count(*) FROM ruvector_dag_repair_history('t')"
        ),
        0,
        "rows about a table the role may not read are hidden"
    );
    exec(&mut c, &format!("GRANT SELECT ON t TO {role}"));
    let r = other.query_one("SELECT ruvector_dag_repair_index('t_idx', 'rebuild')", &[]);
    expect_error(
        r,
        "42501",
        "permission denied for function ruvector_dag_repair_index",
    );
    let r = other.query_one(&format!("SELECT ruvector_dag_cancel_repair({first})"), &[]);
    expect_error(r, "42501", "permission denied");
    let r = other.query_one(&format!("SELECT ruvector_dag_rollback({first})"), &[]);
    expect_error(r, "42501", "permission denied");
    assert!(
        query_i64(
            &mut other,
            "SELECT count(*) FROM ruvector_dag_repair_history('t')"
        ) >= 1
    );
    // A member of ruvector_healer may request a repair of a table it may
    // maintain, but not write the journal.
    exec(&mut c, &format!("GRANT ruvector_healer TO {role}"));
    let r = other.query_one(
        "SELECT ruvector_dag_repair_index('t_idx', 'rebuild', dry_run => true)",
        &[],
    );
    let e = expect_error(
        r,
        "42501",
        "permission denied to repair the indexes of table",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("GRANT MAINTAIN ON"),
        "{e:?}"
    );
    exec(&mut c, &format!("GRANT MAINTAIN ON t TO {role}"));
    let id = query_i64(
        &mut other,
        "SELECT ruvector_dag_repair_index('t_idx', 'rebuild', dry_run => true)",
    );
    let r = row(&mut other, id);
    assert_eq!(status(&r), "dry_run");
    assert_eq!(r["requested_by"], role.as_str());
    assert!(r["plan"]["preview"]["statement"]
        .as_str()
        .unwrap()
        .contains("CREATE INDEX CONCURRENTLY"));
    let r = other.batch_execute("UPDATE ruvector_healing.repairs SET status = 'planned'");
    expect_error(r, "42501", "permission denied for table repairs");
    exec(&mut c, &format!("REVOKE ruvector_healer FROM {role}"));
    assert_eq!(oid_of(&mut c, "t_idx"), oid);
}

#[test]
fn vacuum_and_tuning_strategies() {
    let db = TestDb::new("rep_vac");
    let mut c = db.connect();
    indexed_table(
        &mut c,
        8,
        5_000,
        "WITH (autovacuum_enabled = off)",
        "hnsw (embedding vector_l2_ops) WITH (m = 8)",
    );
    exec(&mut c, "DELETE FROM t WHERE id % 10 = 0;");
    let before = checksum(&mut c, "t");
    let oid = oid_of(&mut c, "t_idx");
    // Vacuum: the deleted rows' elements are marked deleted in the graph.
    let id = request(&mut c, "t_idx", "vacuum");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    let deleted_after = r["after"]["health"]["elements_deleted"].as_u64().unwrap();
    assert_eq!(
        deleted_after, 500,
        "pageinspect-free check: 10 % of 5000 rows deleted: {r:#}"
    );
    assert_eq!(
        r["before"]["health"]["elements_deleted"].as_u64().unwrap(),
        0
    );
    assert_eq!(oid_of(&mut c, "t_idx"), oid, "a vacuum keeps the index");
    assert_eq!(checksum(&mut c, "t"), before);
    let r = c.query_one(&format!("SELECT ruvector_dag_rollback({id})"), &[]);
    expect_error(r, "0A000", "cannot be undone");

    // Tuning: the tuned ef_search is applied to the database, and rollback
    // removes it again.
    let setting = |c: &mut Client| -> Option<String> {
        c.query_opt(
            "SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) c
              WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND s.setrole = 0 AND c LIKE 'hnsw.ef_search=%'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
    };
    assert_eq!(setting(&mut c), None);
    exec(
        &mut c,
        "SET ruvector.dag_healing_target_recall = 0.9; SET ruvector.dag_healing_cooldown_s = 0",
    );
    let id = request(&mut c, "t_idx", "tune_search");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    let applied = r["after"]["applied"].as_u64().unwrap();
    assert_eq!(setting(&mut c), Some(format!("hnsw.ef_search={applied}")));
    assert!(
        r["after"]["tuning"]["recall_at_recommended"]
            .as_f64()
            .unwrap()
            >= 0.9,
        "{r:#}"
    );
    assert_eq!(r["backup"]["previous"], Value::Null);
    // New sessions of the database get it.
    let mut fresh = db.connect();
    let v: String = fresh.query_one("SHOW hnsw.ef_search", &[]).unwrap().get(0);
    assert_eq!(v, applied.to_string());
    exec(&mut c, &format!("SELECT ruvector_dag_rollback({id})"));
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "rolled_back", "{r:#}");
    assert_eq!(setting(&mut c), None);
}

#[test]
fn dead_rows_are_found_and_vacuumed() {
    let db = TestDb::new("rep_dead");
    let mut c = db.connect();
    indexed_table(
        &mut c,
        8,
        60_000,
        "WITH (autovacuum_enabled = off)",
        "ivfflat (embedding vector_l2_ops) WITH (lists = 60)",
    );
    exec(&mut c, "DELETE FROM t WHERE id % 5 = 0");
    // The statistics arrive when the deleting session goes idle.
    let started = Instant::now();
    while query_i64(
        &mut c,
        "SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = 't'::regclass",
    ) < 12_000
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "statistics never showed the dead rows"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = checksum(&mut c, "t");
    let check = json_of(&mut c, "ruvector_dag_health_check('t')");
    let issue = check["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "dead_tuples")
        .unwrap_or_else(|| panic!("no dead_tuples issue: {check:#}"))
        .clone();
    assert_eq!(issue["details"]["heap_dead_tuples"], 12_000);
    let id = query_i64(
        &mut c,
        &format!("SELECT ruvector_dag_repair('t', {})", issue["issue_id"]),
    );
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    assert_eq!(
        r["strategy"], "vacuum",
        "an IVFFlat index's dead rows are vacuumed: {r:#}"
    );
    assert_eq!(r["issue_id"], issue["issue_id"]);
    assert_eq!(checksum(&mut c, "t"), before);
    // The lists hold only live rows now, and the issue is resolved.
    assert_eq!(r["after"]["health"]["tuples"], 48_000, "{r:#}");
    assert_eq!(r["before"]["health"]["tuples"], 60_000, "{r:#}");
    let after = json_of(&mut c, "ruvector_dag_health_check('t')");
    assert!(
        !after["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "dead_tuples"),
        "{after:#}"
    );
}

/// Marks the paused worker of repair `id` to go on.
fn resume(c: &mut Client, id: i64) {
    exec(
        c,
        &format!("INSERT INTO ruvector_healing.repair_steps (repair_id, step) VALUES ({id}, 'resume_for_test')"),
    );
}

fn paused(c: &mut Client, id: i64, n: i64) {
    until(
        c,
        &format!(
            "SELECT count(*) >= {n} FROM ruvector_healing.repair_steps WHERE repair_id = {id} AND step = 'paused_for_test'"
        ),
        "the pause",
    );
}

/// The pid of the background worker whose application_name starts with
/// `prefix` ("ruvector_healing rollback 7", "ruvector_healing recover").
fn worker_named(c: &mut Client, prefix: &str) -> i64 {
    query_i64(
        c,
        &format!(
            "SELECT pid::int8 FROM pg_stat_activity WHERE application_name LIKE '{prefix}%' LIMIT 1"
        ),
    )
}

#[test]
fn a_renamed_original_fails_the_swap_cleanly() {
    let db = TestDb::new("rep_rename");
    let mut c = db.connect();
    indexed_table(&mut c, 8, 3_000, "", "hnsw (embedding vector_l2_ops)");
    let original = oid_of(&mut c, "t_idx");
    exec(
        &mut c,
        "SET ruvector.dag_healing_test_pause_at = 'after_build'",
    );
    let id = request(&mut c, "t_idx", "rebuild");
    exec(&mut c, "RESET ruvector.dag_healing_test_pause_at");
    paused(&mut c, id, 1);
    // Meanwhile someone renames the original and gives its name to an
    // unrelated index.
    let mut other = db.connect();
    exec(
        &mut other,
        "ALTER INDEX t_idx RENAME TO t_idx_moved; CREATE INDEX t_idx ON t (id)",
    );
    let unrelated = oid_of(&mut other, "t_idx");
    resume(&mut c, id);
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "failed", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("was renamed to \"t_idx_moved\""),
        "{r:#}"
    );
    // The unrelated index is untouched, the original kept, the shadow gone.
    assert_eq!(oid_of(&mut c, "t_idx"), unrelated);
    assert_eq!(oid_of(&mut c, "t_idx_moved"), original);
    let def: String = c
        .query_one("SELECT pg_get_indexdef('t_idx'::regclass)", &[])
        .unwrap()
        .get(0);
    assert!(def.contains("btree (id)"), "{def}");
    assert_eq!(
        indexes(&mut c, "t"),
        vec![
            ("t_idx".to_string(), true),
            ("t_idx_moved".to_string(), true),
            ("t_pkey".to_string(), true)
        ]
    );
}

/// Crashes on the default path, where the replaced index is kept for
/// rollback: at `swapped`, during a rollback and during the retirement of
/// the backup after its keep time; rows written between the swap and the
/// rollback are found through the restored index.
#[test]
fn crashes_with_the_backup_kept() {
    let mut db = TestDb::new("rep_kept");
    let mut c = db.connect();
    indexed_table(
        &mut c,
        8,
        6_000,
        "",
        "hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32)",
    );
    let setup =
        "SET ruvector.dag_healing_cooldown_s = 0; SET ruvector.dag_healing_max_attempts = 100";
    for crash in [Crash::KillWorker, Crash::ImmediateStop] {
        let crash_it = |pid: i64, db: &mut TestDb| {
            match crash {
                Crash::KillWorker => kill_worker(pid),
                Crash::ImmediateStop => immediate_restart(),
            }
            let c = wait_for_server(&db.name);
            db.crashes_expected();
            c
        };
        // 1. At `swapped`: recovery finishes the repair, the backup kept.
        let mut c = db.connect();
        exec(&mut c, setup);
        let original = oid_of(&mut c, "t_idx");
        exec(
            &mut c,
            "SET ruvector.dag_healing_test_pause_at = 'after_swap'",
        );
        let id = request(&mut c, "t_idx", "rebuild");
        paused(&mut c, id, 1);
        let pid = query_i64(
            &mut c,
            &format!(
                "SELECT worker_pid::int8 FROM ruvector_healing.repairs WHERE repair_id = {id}"
            ),
        );
        assert_eq!(status(&row(&mut c, id)), "swapped");
        drop(c);
        let mut c = crash_it(pid, &mut db);
        exec(&mut c, "SELECT ruvector_dag_recover_repairs()");
        until(
            &mut c,
            &format!("SELECT status = 'done' FROM ruvector_healing.repairs WHERE repair_id = {id}"),
            "recovery",
        );
        let r = row(&mut c, id);
        assert_eq!(r["backup"]["kept"], true, "{crash:?}: {r:#}");
        assert_eq!(
            indexes(&mut c, "t"),
            vec![
                ("t_idx".to_string(), true),
                (format!("t_idx_rvold{id}"), false),
                ("t_pkey".to_string(), true)
            ],
            "{crash:?} at swapped"
        );
        assert_eq!(oid_of(&mut c, &format!("t_idx_rvold{id}")), original);

        // 2. During a rollback: it did not happen, and says so; the backup
        // is still kept, and a second rollback restores it, with the rows
        // written since the swap.
        exec(
            &mut c,
            &format!("{setup}; {}", random_rows("t", 200, 8, 0.0, 1.0)),
        );
        exec(&mut c, &format!("UPDATE ruvector_healing.repairs SET plan = jsonb_set(plan, '{{settings,pause_at}}', '\"during_rollback\"') WHERE repair_id = {id}"));
        exec(&mut c, &format!("SELECT ruvector_dag_rollback({id})"));
        paused(&mut c, id, 2);
        let pid = worker_named(&mut c, &format!("ruvector_healing rollback {id}"));
        assert_eq!(status(&row(&mut c, id)), "rolling_back");
        drop(c);
        let mut c = crash_it(pid, &mut db);
        exec(&mut c, "SELECT ruvector_dag_recover_repairs()");
        until(&mut c, &format!("SELECT status = 'rollback_failed' FROM ruvector_healing.repairs WHERE repair_id = {id}"), "recovery of the rollback");
        let r = row(&mut c, id);
        assert!(
            r["error"]
                .as_str()
                .unwrap_or("")
                .contains("the repair stands"),
            "{r:#}"
        );
        assert_eq!(r["backup"]["kept"], true, "{r:#}");
        resume(&mut c, id);
        exec(&mut c, &format!("SELECT ruvector_dag_rollback({id})"));
        let r = wait(&mut c, id);
        assert_eq!(status(&r), "rolled_back", "{crash:?}: {r:#}");
        until(
            &mut c,
            "SELECT count(*) = 2 FROM pg_index WHERE indrelid = 't'::regclass",
            "the rebuilt index to be dropped",
        );
        assert_eq!(oid_of(&mut c, "t_idx"), original, "the original is back");
        assert!(r["backup"]["dropped"].is_object(), "{r:#}");
        let newest: Vec<(i64, String)> = c
            .query(
                "SELECT id, embedding::text FROM t ORDER BY id DESC LIMIT 50",
                &[],
            )
            .unwrap()
            .iter()
            .map(|x| (x.get(0), x.get(1)))
            .collect();
        exec(&mut c, "SET enable_seqscan = off; SET hnsw.ef_search = 100");
        for (id, v) in &newest {
            let found: i64 = c
                .query_one(
                    &format!("SELECT id FROM t ORDER BY embedding <-> '{v}' LIMIT 1"),
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(
                found, *id,
                "a row written between the swap and the rollback"
            );
        }
        exec(&mut c, "RESET enable_seqscan; RESET hnsw.ef_search");

        // 3. During the retirement of a kept backup past its keep time.
        exec(
            &mut c,
            &format!("{setup}; SET ruvector.dag_healing_test_pause_at = 'during_retire'"),
        );
        let id = request(&mut c, "t_idx", "rebuild");
        let r = wait(&mut c, id);
        assert_eq!(status(&r), "done", "{r:#}");
        let backup = oid_of(&mut c, &format!("t_idx_rvold{id}"));
        exec(&mut c, &format!("UPDATE ruvector_healing.repairs SET finished_at = now() - interval '1 day' WHERE repair_id = {id}"));
        exec(&mut c, "SELECT ruvector_dag_recover_repairs()");
        paused(&mut c, id, 1);
        let pid = worker_named(&mut c, "ruvector_healing recover");
        assert_eq!(
            query_i64(&mut c, &format!("SELECT count(*) FROM pg_class WHERE oid = {backup} AND relname = 't_idx_rvdrop{id}'")),
            1,
            "renamed aside before the drop"
        );
        drop(c);
        let mut c = crash_it(pid, &mut db);
        let r = row(&mut c, id);
        assert_eq!(
            r["backup"]["kept"], true,
            "not dropped yet, not marked dropped: {r:#}"
        );
        resume(&mut c, id);
        exec(&mut c, "SELECT ruvector_dag_recover_repairs()");
        until(&mut c, &format!("SELECT NOT coalesce((backup->>'kept')::bool, false) FROM ruvector_healing.repairs WHERE repair_id = {id}"), "the retirement");
        let r = row(&mut c, id);
        assert!(r["backup"]["dropped_at"].is_string(), "{r:#}");
        assert_eq!(
            query_i64(
                &mut c,
                &format!("SELECT count(*) FROM pg_class WHERE oid = {backup}")
            ),
            0
        );
        assert_eq!(
            indexes(&mut c, "t"),
            vec![("t_idx".to_string(), true), ("t_pkey".to_string(), true)],
            "{crash:?} during retirement"
        );
    }
}

/// The one large build of the suite: a rebuild of a 200,000 x 128 HNSW
/// index (158 MB, built on disk with the default maintenance_work_mem)
/// under the default ruvector.dag_healing_repair_timeout_s finishes: the
/// timeout grows with the index instead of cancelling the build.
#[test]
fn a_large_rebuild_finishes_under_the_default_timeout() {
    let db = TestDb::new("rep_large");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(128));
             {};
             SET maintenance_work_mem = '1GB';
             CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops);
             RESET maintenance_work_mem;",
            random_rows("t", 200_000, 128, 0.0, 1.0)
        ),
    );
    let setting: i64 = query_i64(&mut c, "SELECT setting::int8 FROM pg_settings WHERE name = 'ruvector.dag_healing_repair_timeout_s'");
    let id = request(&mut c, "t_idx", "rebuild");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    let timeout = r["plan"]["timeout_s"].as_i64().unwrap();
    let took = r["duration_ms"].as_f64().unwrap() / 1000.0;
    eprintln!(
        "rebuild of {} bytes: {took:.0} s, timeout {timeout} s (setting {setting} s)",
        r["plan"]["preview"]["index_bytes"]
    );
    assert!(
        timeout > setting,
        "the timeout grew with the index: {timeout}"
    );
    assert!(took < timeout as f64);
}
