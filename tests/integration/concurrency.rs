//! Inspection, verification and recall estimates while pgbench inserts and
//! deletes: no error, no violation, no writer held up by the inspector, and
//! figures consistent with what was committed.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::common::*;

/// Kills pgbench (our own child, by its handle) if the test fails early.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut ch) = self.0.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }
}

/// Each transaction inserts a random vector and deletes a random existing
/// row. Client k only deletes ids = k + 1 (mod 4), so two clients never
/// wait for each other on a row; deleted ids are logged in t_deleted, so
/// that rows in t plus rows in t_deleted, read in one snapshot, are the
/// inserts committed by then.
const SCRIPT: &str = "\
INSERT INTO t (embedding) SELECT array_agg(random())::vector(16) FROM generate_series(1, 16);
WITH d AS (DELETE FROM t WHERE id = (SELECT floor(random() * (SELECT last_value FROM t_id_seq) / 4)::bigint * 4 + :client_id + 1) RETURNING id) INSERT INTO t_deleted SELECT id FROM d;
";

/// Stops the sampler thread however the test ends.
struct StopGuard(Arc<AtomicBool>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
struct LockWait {
    pid: i32,
    event: String,
    blockers: Vec<i32>,
}

impl std::fmt::Display for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} blocked by {:?}",
            self.pid, self.event, self.blockers
        )
    }
}

fn describe(waits: &[LockWait]) -> String {
    waits
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Default)]
struct Sampled {
    samples: u64,
    pgbench_pids: HashSet<i32>,
    lock_waits: Vec<LockWait>,
    /// Longest run of consecutive samples with one statement of one
    /// backend waiting on the same LWLock: (samples, event).
    longest_lwlock: (u32, String),
    error: Option<String>,
}

/// Samples pg_stat_activity every ~100 ms for pgbench backends of `db`
/// that wait on a heavyweight lock or an LWLock.
fn sample(mut s: Client, db: String, stop: Arc<AtomicBool>) -> Sampled {
    let mut out = Sampled::default();
    let mut runs: HashMap<(i32, String, String), u32> = HashMap::new();
    let stmt = s
        .prepare(
            "SELECT a.pid, coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''),
                    coalesce(a.query_start::text, ''), pg_blocking_pids(a.pid)
               FROM pg_stat_activity a
              WHERE a.datname = $1 AND a.application_name = 'pgbench'",
        )
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let rows = match s.query(&stmt, &[&db]) {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(err_text(&e));
                break;
            }
        };
        out.samples += 1;
        let mut now: HashMap<(i32, String, String), u32> = HashMap::new();
        for r in &rows {
            let pid: i32 = r.get(0);
            out.pgbench_pids.insert(pid);
            let kind: &str = r.get(1);
            let event: String = r.get(2);
            if kind == "Lock" {
                out.lock_waits.push(LockWait {
                    pid,
                    event,
                    blockers: r.get(4),
                });
            } else if kind == "LWLock" {
                let key = (pid, event, r.get(3));
                let n = runs.get(&key).copied().unwrap_or(0) + 1;
                if n > out.longest_lwlock.0 {
                    out.longest_lwlock = (n, key.1.clone());
                }
                now.insert(key, n);
            }
        }
        runs = now;
        thread::sleep(Duration::from_millis(100));
    }
    out
}

fn pgbench_figure(out: &str, prefix: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
}

/// Test 8: inspections of an HNSW and an IVFFlat index during churn.
#[test]
fn inspection_during_concurrent_writes() {
    let db = TestDb::new("concurrency");
    let mut c = db.connect();
    exec(
        &mut c,
        "SELECT setseed(0.88);
         CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16));
         ALTER TABLE t SET (autovacuum_enabled = false);
         CREATE TABLE t_deleted (id bigint) WITH (autovacuum_enabled = false);
         INSERT INTO t (embedding)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 16))::vector
             FROM generate_series(1, 5000) g;
         CREATE INDEX t_hnsw ON t USING hnsw (embedding vector_l2_ops);
         CREATE INDEX t_ivf ON t USING ivfflat (embedding vector_l2_ops) WITH (lists = 10);",
    );

    let st = settings();
    let script = std::env::temp_dir().join(format!("{}_pgbench.sql", db.name));
    std::fs::write(&script, SCRIPT).unwrap();
    let port = st.port.to_string();
    let child = Command::new(format!("{}/pgbench", st.pgbin))
        .args(["-n", "-c", "4", "-j", "2", "-T", "15", "-f"])
        .arg(&script)
        .args(["-h", &st.host, "-p", &port, "-U", "postgres", &db.name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}/pgbench: {e}", st.pgbin));
    let mut pgbench = ChildGuard(Some(child));

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopGuard(stop.clone());
    let sampler = {
        let (s, name, stop) = (db.connect(), db.name.clone(), stop.clone());
        thread::spawn(move || sample(s, name, stop))
    };

    // Start inspecting once pgbench's clients are connected.
    let waited = Instant::now();
    while query_i64(
        &mut c,
        &format!(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = '{}' AND application_name = 'pgbench'",
            db.name
        ),
    ) < 4
    {
        if let Some(status) = pgbench.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("pgbench exited before its clients connected: {status}");
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "pgbench clients never connected"
        );
        thread::sleep(Duration::from_millis(50));
    }

    let mut ins = db.connect();
    let mut inspections = 0u64;
    let mut estimates = 0u64;
    let mut verifications = 0u64;
    let mut violations: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut error_count = 0u64;
    let mut out_of_bounds: Vec<String> = Vec::new();
    let mut concurrent_seen = 0u64;
    let committed_sql = "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM t_deleted)";
    let inserted_sql = "SELECT last_value FROM t_id_seq";
    while pgbench.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        // Inserts committed before the inspections start are in both
        // indexes; vacuum is off, so no tid leaves them. Every tid in them
        // came from a row that took an id, so the sequence bounds them.
        let low = query_i64(&mut ins, committed_sql) as u64;
        let h = try_health(&mut ins, "t_hnsw");
        let i = try_health(&mut ins, "t_ivf");
        let high = query_i64(&mut ins, inserted_sql) as u64;
        inspections += 1;
        match (h, i) {
            (Ok(h), Ok(i)) => {
                let tids = u(&h, "heap_tids");
                let tuples = u(&i, "tuples");
                for (what, n) in [("hnsw heap_tids", tids), ("ivfflat tuples", tuples)] {
                    if n < low || n > high {
                        out_of_bounds.push(format!("{what} {n} not in [{low}, {high}]"));
                    }
                }
                assert_eq!(
                    u(&h, "elements_deleted"),
                    0,
                    "no vacuum, no deleted element"
                );
                assert_eq!(u(&h, "elements_zombie"), 0, "no vacuum, no zombie");
                assert_eq!(
                    u(&h, "elements_live"),
                    tids,
                    "distinct vectors: one tid each"
                );
                assert_eq!(u(&i, "dead_items"), 0);
                concurrent_seen += u(&h, "concurrent_changes_seen");
            }
            (h, i) => {
                for e in [h.err(), i.err()].into_iter().flatten() {
                    error_count += 1;
                    if errors.len() < 5 {
                        errors.push(err_text(&e));
                    }
                }
            }
        }
        // A recall estimate (index scans plus two heap passes, under the
        // same AccessShareLock) on one of the indexes, in turn.
        let index = if inspections.is_multiple_of(2) {
            "t_hnsw"
        } else {
            "t_ivf"
        };
        match ins.query_one(
            "SELECT (ruvector_dag_recall_estimate($1::text::regclass, 20, 10)->>'recall')::float8",
            &[&index],
        ) {
            Ok(row) => {
                estimates += 1;
                let r: Option<f64> = row.get(0);
                if !r.is_some_and(|r| (0.0..=1.0).contains(&r)) {
                    out_of_bounds.push(format!("recall of {index} is {r:?}"));
                }
            }
            Err(e) => {
                error_count += 1;
                if errors.len() < 5 {
                    errors.push(err_text(&e));
                }
            }
        }
        // A verification of one of the indexes (with the table check every
        // other time), under the same AccessShareLock.
        let vindex = if inspections % 4 < 2 {
            "t_hnsw"
        } else {
            "t_ivf"
        };
        match ins.query(
            "SELECT kind || ' at (' || coalesce(block, -1) || ',' || coalesce(\"offset\", -1) || '): ' || detail
               FROM ruvector_dag_verify_index($1::text::regclass, $2)",
            &[&vindex, &inspections.is_multiple_of(2)],
        ) {
            Ok(rows) => {
                verifications += 1;
                violations.extend(rows.iter().map(|r| format!("{vindex}: {}", r.get::<_, String>(0))));
            }
            Err(e) => {
                error_count += 1;
                if errors.len() < 5 {
                    errors.push(err_text(&e));
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.join().unwrap();
    let output = pgbench.0.take().unwrap().wait_with_output().unwrap();
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pgbench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let transactions = pgbench_figure(&stdout, "number of transactions actually processed:")
        .unwrap_or_else(|| panic!("no transaction count in pgbench output:\n{stdout}"));
    let tps = pgbench_figure(&stdout, "tps =").unwrap_or(0.0);
    let failed = pgbench_figure(&stdout, "number of failed transactions:").unwrap_or(0.0);

    // The inspector takes AccessShareLock only, which conflicts with no
    // lock a writer takes, so no writer may wait on a heavyweight lock
    // because of it. pgbench's clients could, rarely, wait on each other
    // (relation extension, pgvector's HNSW entry-point page lock); such a
    // wait, blocked only by other pgbench backends, is reported, not failed.
    let inspector_pid: i32 = ins
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let (peer_waits, other_waits): (Vec<LockWait>, Vec<LockWait>) =
        sampled.lock_waits.iter().cloned().partition(|w| {
            !w.blockers.is_empty() && w.blockers.iter().all(|b| sampled.pgbench_pids.contains(b))
        });
    eprintln!(
        "concurrency: pgbench {transactions} transactions, {tps:.1} tps, {failed} failed; \
         {inspections} inspections of both indexes ({concurrent_seen} concurrent changes seen), \
         {estimates} recall estimates, {verifications} verifications; \
         {} activity samples, {} Lock waits ({}), longest LWLock wait {} samples ({})",
        sampled.samples,
        sampled.lock_waits.len(),
        describe(&sampled.lock_waits),
        sampled.longest_lwlock.0,
        sampled.longest_lwlock.1,
    );
    assert!(sampled.error.is_none(), "sampler: {:?}", sampled.error);
    assert!(
        errors.is_empty(),
        "{error_count} inspections failed, the first: {errors:?}"
    );
    assert!(
        out_of_bounds.is_empty(),
        "{} inconsistent counts, the first: {:?}",
        out_of_bounds.len(),
        &out_of_bounds[..out_of_bounds.len().min(5)]
    );
    assert!(transactions > 0.0, "pgbench ran no transaction:\n{stdout}");
    assert_eq!(failed, 0.0, "pgbench transactions failed:\n{stdout}");
    assert!(
        inspections >= 5,
        "only {inspections} inspections during the run"
    );
    assert!(
        estimates >= 4,
        "only {estimates} recall estimates during the run"
    );
    assert!(
        verifications >= 4,
        "only {verifications} verifications during the run"
    );
    assert!(
        violations.is_empty(),
        "a sound index under churn reported violations: {:?}",
        &violations[..violations.len().min(10)]
    );
    assert!(
        sampled.samples >= 50,
        "only {} activity samples",
        sampled.samples
    );
    assert!(
        sampled.pgbench_pids.len() >= 4,
        "pgbench backends seen: {:?}",
        sampled.pgbench_pids
    );
    assert!(
        !sampled
            .lock_waits
            .iter()
            .any(|w| w.blockers.contains(&inspector_pid)),
        "pgbench waited on a lock held by the inspector (pid {inspector_pid}): {}",
        describe(&sampled.lock_waits)
    );
    assert!(
        other_waits.is_empty(),
        "pgbench backends waited on heavyweight locks not held by pgbench: {}",
        describe(&other_waits)
    );
    if !peer_waits.is_empty() {
        eprintln!(
            "pgbench clients waited on each other: {}",
            describe(&peer_waits)
        );
    }
    assert!(
        sampled.longest_lwlock.0 < 10,
        "a pgbench statement waited on LWLock {} for {} samples in a row",
        sampled.longest_lwlock.1,
        sampled.longest_lwlock.0
    );

    // Once the writers are gone and VACUUM has run, every figure is exact.
    exec(&mut c, "VACUUM t");
    let rows = query_i64(&mut c, "SELECT count(*) FROM t") as u64;
    let deleted = query_i64(&mut c, "SELECT count(*) FROM t_deleted") as u64;
    let inserted = query_i64(&mut c, inserted_sql) as u64;
    assert_eq!(
        rows + deleted,
        inserted,
        "every id taken is a row, live or deleted"
    );
    let h = health(&mut c, "t_hnsw");
    let i = health(&mut c, "t_ivf");
    assert_eq!(
        u(&h, "heap_tids"),
        rows,
        "hnsw heap_tids vs count(*) after VACUUM"
    );
    assert_eq!(
        u(&i, "tuples"),
        rows,
        "ivfflat tuples vs count(*) after VACUUM"
    );
    assert_eq!(u(&h, "elements_live"), rows);
    assert_eq!(
        u(&h, "elements_deleted"),
        deleted,
        "one deleted element per deleted row"
    );
    assert_eq!(
        u(&h, "elements_total"),
        inserted,
        "one element slot per row ever inserted"
    );
    assert_eq!(u(&h, "elements_zombie"), 0);
    let listed = query_i64(
        &mut c,
        "SELECT sum(tuples)::bigint FROM ruvector_dag_ivfflat_lists('t_ivf')",
    );
    assert_eq!(listed as u64, rows);
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
    assert_eq!(query_i64(&mut ins, "SELECT 1"), 1);
}
