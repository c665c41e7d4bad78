//! Observability: the statistics view against PostgreSQL's own counters
//! and the pages, the Prometheus text checked by `promtool` and scraped
//! through a real `prometheus-postgres-exporter` with our queries file,
//! the alert rules and the dashboard checked against that scrape, and the
//! progress view during a large rebuild.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;
use serde_json::Value;

use crate::common::*;

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring")
        .join(file)
}

/// The view's row of an index, as JSON.
fn stat_row(c: &mut Client, index: &str) -> Value {
    json_of(
        c,
        &format!(
            "(SELECT to_jsonb(s) FROM ruvector_dag_stat_indexes s WHERE indexrelname = '{index}')"
        ),
    )
}

/// Flushes this session's statistics and waits until another session sees
/// `column` of the view reach `want`.
fn flushed(c: &mut Client, db: &str, index: &str, column: &str, want: i64) -> Value {
    exec(c, "SELECT pg_stat_force_next_flush()");
    let mut other = connect(db);
    let mut last = Value::Null;
    wait_until(&format!("{column} = {want} in the view"), 30, || {
        last = stat_row(&mut other, index);
        last[column].as_i64() == Some(want)
    });
    last
}

fn cycles(c: &mut Client, db: &str) -> u64 {
    database(&healing(c), db).map_or(0, |d| d["cycles"].as_u64().unwrap_or(0))
}

/// Asks for a cycle of this database and waits for it to end.
fn one_cycle(c: &mut Client, db: &str) {
    let before = cycles(c, db);
    exec(c, "SELECT ruvector_dag_run_cycle()");
    wait_until("a healing cycle", 120, || cycles(c, db) > before);
}

fn census_fragmentation(c: &mut Client, index: &str) -> f64 {
    let s = hnsw_census(&raw_pages(c, index));
    (s.elements - s.live) as f64 / s.elements as f64
}

#[test]
fn the_view_follows_the_workload() {
    let mut db = TestDb::new("obs_view");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE EXTENSION pageinspect;
             CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16)); {};
             CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops);",
            clustered_rows("t", 3_000, 16, 1, 30, 0.05)
        ),
    );
    let rows = query_i64(&mut c, "SELECT count(*) FROM t");
    // Before any cycle: counted since PostgreSQL's statistics began.
    let r = flushed(&mut c, &db.name, "t_idx", "rows_inserted", rows);
    assert_eq!(r["writes_since"], "stats_reset", "{r:#}");
    assert_eq!(r["am"], "hnsw");
    assert_eq!(r["schemaname"], "public");
    assert_eq!(r["relname"], "t");
    assert_eq!(
        r["size_bytes"].as_i64().unwrap() as u64,
        relation_size(&mut c, "t_idx")
    );
    assert!(
        r["recall"].is_null() && r["inspected_at"].is_null(),
        "{r:#}"
    );
    assert!(r["health_score"].is_null(), "no figures yet: {r:#}");

    // 25 index scans with sequential scans off: idx_scan + 25.
    let scans = r["idx_scan"].as_i64().unwrap();
    exec(&mut c, "SET enable_seqscan = off");
    for i in 0..25 {
        let q = format!("[{}]", vec![format!("{}", 0.01 * i as f64); 16].join(","));
        let n = query_i64(
            &mut c,
            &format!(
                "SELECT count(*) FROM (SELECT id FROM t ORDER BY embedding <-> '{q}' LIMIT 5) s"
            ),
        );
        assert_eq!(n, 5);
    }
    exec(&mut c, "RESET enable_seqscan");
    flushed(&mut c, &db.name, "t_idx", "idx_scan", scans + 25);

    // 1,500 deleted rows are counted, then VACUUM marks their elements.
    exec(
        &mut c,
        "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 1500)",
    );
    flushed(&mut c, &db.name, "t_idx", "rows_deleted", 1500);
    exec(&mut c, "VACUUM t");

    // A cycle: the count starts there (the build predates the extension's
    // first look), and the inspection's figures appear.
    one_cycle(&mut c, &db.name);
    let r = stat_row(&mut c, "t_idx");
    assert_eq!(r["writes_since"], "first_seen", "{r:#}");
    assert_eq!(r["rows_deleted"], 0, "{r:#}");
    assert_close(
        "fragmentation against the pages",
        r["fragmentation"].as_f64().unwrap(),
        census_fragmentation(&mut c, "t_idx"),
        1e-5,
    );
    assert!(r["fragmentation"].as_f64().unwrap() > 0.3, "{r:#}");
    let recall = r["recall"]
        .as_f64()
        .expect("the first cycle measures recall");
    let (lo, hi) = (
        r["recall_ci_low"].as_f64().unwrap(),
        r["recall_ci_high"].as_f64().unwrap(),
    );
    assert!(lo <= recall && recall <= hi, "{r:#}");
    assert_eq!(r["recall_setting"], "hnsw.ef_search");
    assert_eq!(r["recall_setting_value"], 40);
    let score = r["health_score"].as_i64().unwrap();
    assert!((0..=100).contains(&score), "{r:#}");
    let open: i64 = ["critical", "high", "medium", "low"]
        .iter()
        .map(|s| r[&format!("open_issues_{s}")].as_i64().unwrap())
        .sum();
    assert_eq!(
        open,
        query_i64(
            &mut c,
            "SELECT count(*) FROM ruvector_healing.issues WHERE relname = 't_idx' AND status = 'open'"
        ),
        "{r:#}"
    );
    assert!(r["next_check_at"].is_string(), "{r:#}");

    // The view reaches the history through its indexes (a scrape every
    // 15 s must not read every observation): with sequential scans off, no
    // history table is scanned sequentially.
    // The view's query runs inside ruvector_healing.stat_indexes():
    // auto_explain shows its plan, in a session of its own (the plan is
    // made once per session).
    let st = settings();
    let out = std::process::Command::new(format!("{}/psql", st.pgbin))
        .args([
            "-X",
            "-q",
            "-h",
            &st.host,
            "-p",
            &st.port.to_string(),
            "-U",
            "postgres",
            "-d",
            &db.name,
        ])
        .args(["-c", "LOAD 'auto_explain'"])
        .args([
            "-c",
            "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
                      SET auto_explain.log_level = notice; SET enable_seqscan = off",
        ])
        .args(["-c", "SELECT count(*) FROM ruvector_dag_stat_indexes"])
        .output()
        .expect("psql");
    let plan = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && plan.contains("Index Scan"),
        "{plan}"
    );
    for table in ["observations", "repairs", "issues", "index_stats"] {
        assert!(
            !plan.contains(&format!("Seq Scan on {table}")),
            "the view scans {table} sequentially:\n{plan}"
        );
    }

    // New writes count from the first look.
    exec(&mut c, &clustered_rows("t", 100, 16, 1, 30, 0.05));
    let added = query_i64(&mut c, "SELECT count(*) FROM t") - (rows - 1500);
    flushed(&mut c, &db.name, "t_idx", "rows_inserted", added);

    // A rebuild restarts the count at the build, and is the last repair.
    let id = request(&mut c, "t_idx", "rebuild");
    assert_eq!(status(&wait(&mut c, id)), "done");
    let r = stat_row(&mut c, "t_idx");
    assert_eq!(r["writes_since"], "build", "{r:#}");
    assert_eq!(r["rows_inserted"], 0, "{r:#}");
    assert_eq!(r["last_repair_id"], id, "{r:#}");
    assert_eq!(r["last_repair_status"], "done", "{r:#}");
    assert_eq!(r["circuit_breaker_open"], false, "{r:#}");

    // A role without SELECT on the table sees no row; with it, the row.
    let role = db.create_role("reader");
    let mut other = connect_as(&db.name, &role);
    assert_eq!(
        query_i64(&mut other, "SELECT count(*) FROM ruvector_dag_stat_indexes"),
        0
    );
    exec(&mut c, &format!("GRANT SELECT ON t TO {role}"));
    let seen = stat_row(&mut other, "t_idx");
    assert_eq!(seen["last_repair_id"], id, "{seen:#}");
    assert_eq!(seen["health_score"], r["health_score"]);

    // The reset zeroes the counters and keeps the history.
    let history = query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.repairs");
    exec(&mut c, "SELECT ruvector_dag_stat_reset()");
    let err = other
        .batch_execute("SELECT ruvector_dag_stat_reset()")
        .unwrap_err();
    assert_eq!(err.code().map(|s| s.code()), Some("42501"), "{err}");
    let h = healing(&mut c);
    assert_eq!(h["metrics"]["repairs_successful"], 0, "{h:#}");
    assert_eq!(h["metrics"]["checks_performed"], 0, "{h:#}");
    assert!(h["metrics"]["stats_reset"].is_string(), "{h:#}");
    assert_eq!(cycles(&mut c, &db.name), 0);
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.repairs"),
        history
    );
    assert_eq!(stat_row(&mut c, "t_idx")["last_repair_id"], id);
}

/// A free TCP port on the loopback address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0: the body, or `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let ok = head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200");
    ok.then(|| body.to_string())
}

/// Runs `promtool` with `args`, the text on stdin; panics with its output
/// when it fails.
fn promtool(args: &[&str], stdin: &str, dir: &Path) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exporter, stopped when dropped.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the sample of `name` whose labels include every pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every `ruvector_*` metric name in a text.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("ruvector_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        // Function names in descriptions and SQL are not metrics.
        if !name.starts_with("ruvector_dag") && !name.starts_with("ruvector_healing") {
            out.push(name);
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn metrics_pass_promtool_and_a_real_exporter_shows_the_view() {
    let db = TestDb::new("obs_prom");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE \"we\"\"ird\" (id bigserial PRIMARY KEY, embedding vector(16)); {};
             CREATE INDEX t_h ON \"we\"\"ird\" USING hnsw (embedding vector_l2_ops);
             CREATE INDEX t_i ON \"we\"\"ird\" USING ivfflat (embedding vector_l2_ops) WITH (lists = 20);",
            clustered_rows("\"we\"\"ird\"", 4_000, 16, 1, 40, 0.05)
        ),
    );
    // A finished repair, so that every series the dashboard uses exists.
    let id = request(&mut c, "t_i", "rebuild");
    assert_eq!(status(&wait(&mut c, id)), "done");
    one_cycle(&mut c, &db.name);

    // The function's text passes promtool and shows the view's figures.
    let text: String = c
        .query_one("SELECT ruvector_dag_metrics()", &[])
        .unwrap()
        .get(0);
    promtool(&["check", "metrics"], &text, Path::new("/"));
    for index in ["t_h", "t_i"] {
        let r = stat_row(&mut c, index);
        let l = [
            ("database", db.name.as_str()),
            ("index", index),
            ("table", "we\\\"ird"),
        ];
        assert_eq!(
            sample(&text, "ruvector_index_health_score", &l),
            r["health_score"].as_f64(),
            "{index}: {r:#}\n{text}"
        );
        assert_eq!(
            sample(&text, "ruvector_index_size_bytes", &l),
            r["size_bytes"].as_f64()
        );
        assert_eq!(
            sample(&text, "ruvector_index_recall_ratio", &l),
            r["recall"].as_f64()
        );
    }
    assert_eq!(
        sample(
            &text,
            "ruvector_cycle_runs_total",
            &[("database", db.name.as_str())]
        ),
        Some(cycles(&mut c, &db.name) as f64)
    );
    assert!(sample(&text, "ruvector_launcher_up", &[("scope", "cluster")]) == Some(1.0));

    // The real exporter with our queries file, scraped over HTTP.
    let st = settings();
    let port = free_port();
    let dsn = format!(
        "postgresql://postgres@{}:{}/{}?sslmode=disable",
        st.host, st.port, db.name
    );
    let _exporter = Exporter(
        Command::new("prometheus-postgres-exporter")
            .arg(format!(
                "--extend.query-path={}",
                monitoring("postgres_exporter_queries.yaml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .env("DATA_SOURCE_NAME", dsn)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-postgres-exporter (scripts/setup.sh installs it)"),
    );
    let started = Instant::now();
    let scrape = loop {
        if let Some(body) = http_get(port, "/metrics").filter(|b| b.contains("ruvector_index_")) {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the exporter on port {port} served no ruvector series"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        sample(&scrape, "pg_exporter_last_scrape_error", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&scrape, "pg_exporter_user_queries_load_error", &[]),
        Some(0.0)
    );
    // Ours pass the linter (the exporter's own pg_* series do not).
    let ours: String = scrape
        .lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("ruvector_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    promtool(&["check", "metrics"], &ours, Path::new("/"));
    // A missing figure is a missing series, never NaN (an IVFFlat index
    // has no HNSW figures).
    let nan: Vec<&str> = ours
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(" NaN"))
        .collect();
    assert!(nan.is_empty(), "NaN series in the scrape: {nan:#?}");
    for index in ["t_h", "t_i"] {
        let r = stat_row(&mut c, index);
        let l = [
            ("database", db.name.as_str()),
            ("index", index),
            ("table", "we\\\"ird"),
        ];
        for (metric, column) in [
            ("ruvector_index_health_score", "health_score"),
            ("ruvector_index_size_bytes", "size_bytes"),
            ("ruvector_index_recall_ratio", "recall"),
            ("ruvector_index_recall_target_ratio", "recall_target"),
        ] {
            assert_eq!(
                sample(&scrape, metric, &l),
                r[column].as_f64(),
                "{metric} of {index}: {r:#}"
            );
        }
        let crit = r["open_issues_critical"].as_f64();
        let mut with_sev = l.to_vec();
        with_sev.push(("severity", "critical"));
        assert_eq!(
            sample(&scrape, "ruvector_index_open_issues", &with_sev),
            crit
        );
    }
    let r = stat_row(&mut c, "t_i");
    let l = [("index", "t_i"), ("percentile", "50")];
    assert_eq!(
        sample(&scrape, "ruvector_index_list_size_rows", &l),
        r["list_size_p50"].as_f64()
    );
    assert_eq!(
        sample(
            &scrape,
            "ruvector_cycle_runs_total",
            &[("database", db.name.as_str())]
        ),
        Some(cycles(&mut c, &db.name) as f64)
    );
    assert_eq!(
        sample(
            &scrape,
            "ruvector_repairs_total",
            &[("outcome", "initiated")]
        ),
        healing(&mut c)["metrics"]["repairs_initiated"].as_f64()
    );

    // The same names from both sources.
    let from_exporter = metric_names(&scrape);
    for name in metric_names(&text) {
        assert!(
            from_exporter.contains(&name),
            "{name} missing from the exporter's scrape"
        );
    }

    // Every metric the dashboard and the alerts use is in the real scrape;
    // the rules pass promtool's check and their unit tests.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana_dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let alerts = std::fs::read_to_string(monitoring("alerts.yml")).unwrap();
    for name in metric_names(&exprs.join("\n"))
        .into_iter()
        .chain(metric_names(&alerts))
    {
        assert!(
            from_exporter.contains(&name),
            "{name} (dashboard or alerts) missing from the scrape"
        );
    }
    let dir = monitoring("");
    promtool(&["check", "rules", "alerts.yml"], "", &dir);
    promtool(&["test", "rules", "alerts_test.yml"], "", &dir);
}

#[test]
fn the_progress_view_follows_a_large_rebuild() {
    let mut db = TestDb::new("obs_prog");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16)); {};
             CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops);",
            clustered_rows("t", 100_000, 16, 1, 200, 0.05)
        ),
    );
    assert!(query_i64(&mut c, "SELECT count(*) FROM t") >= 99_000);
    let reader = db.create_role("reader");
    let stranger = db.create_role("stranger");
    exec(&mut c, &format!("GRANT SELECT ON t TO {reader}"));
    let mut as_reader = connect_as(&db.name, &reader);
    let mut as_stranger = connect_as(&db.name, &stranger);

    let id = request(&mut c, "t_idx", "rebuild");
    let mut seen: Vec<(String, Option<f64>, Option<String>)> = Vec::new();
    let mut stranger_rows = 0;
    let started = Instant::now();
    loop {
        let rows = as_reader
            .query(
                "SELECT phase, percent, build_phase, repair_id FROM ruvector_dag_repair_progress",
                &[],
            )
            .unwrap();
        stranger_rows += query_i64(
            &mut as_stranger,
            "SELECT count(*) FROM ruvector_dag_repair_progress",
        );
        let done = !ACTIVE.contains(&status(&row(&mut c, id)));
        for r in &rows {
            assert_eq!(r.get::<_, i64>(3), id);
            seen.push((r.get(0), r.get(1), r.get(2)));
        }
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the rebuild did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&wait(&mut c, id)), "done");
    assert_eq!(
        stranger_rows, 0,
        "a role that cannot read the table saw the repair"
    );
    let building: Vec<_> = seen
        .iter()
        .filter(|(phase, p, _)| phase == "building" && p.is_some_and(|p| p > 0.0 && p < 100.0))
        .collect();
    assert!(
        !building.is_empty(),
        "no building row with 0 < percent < 100: {:?}",
        &seen[..seen.len().min(40)]
    );
    assert!(building.iter().all(|(_, _, b)| b.is_some()), "{building:?}");
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM ruvector_dag_repair_progress"),
        0,
        "the row is gone once the repair ended"
    );
    eprintln!(
        "progress: {} samples, {} while building with a percentage (first {:?}, last {:?})",
        seen.len(),
        building.len(),
        building.first(),
        building.last()
    );
}

const ACTIVE: [&str; 7] = [
    "planned",
    "building",
    "validating",
    "swapping",
    "swapped",
    "retiring",
    "rolling_back",
];
