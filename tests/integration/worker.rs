//! The background worker on its own: with a short interval set through
//! ALTER SYSTEM, degraded indexes are found and repaired with no call from
//! the test but reading status and history; healthy indexes and other
//! databases are left alone; the switch, crashes of the launcher and of a
//! repair worker, and databases created and dropped while it runs.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::Value;

use crate::common::*;

/// A drifted IVFFlat index (stale_training), an HNSW index with most
/// elements deleted (fragmentation), and a healthy HNSW index.
fn degraded(c: &mut Client) {
    exec(
        c,
        &format!(
            "CREATE TABLE drift (id bigserial PRIMARY KEY, embedding vector(32));
             {};
             CREATE INDEX drift_idx ON drift USING ivfflat (embedding vector_cosine_ops) WITH (lists = 5);
             {};
             CREATE TABLE frag (id bigserial PRIMARY KEY, embedding vector(8)) WITH (autovacuum_enabled = off);
             {};
             CREATE INDEX frag_idx ON frag USING hnsw (embedding vector_l2_ops) WITH (m = 8);
             DELETE FROM frag WHERE id % 10 < 7;
             CREATE TABLE fine (id bigserial PRIMARY KEY, embedding vector(8));
             {};
             CREATE INDEX fine_idx ON fine USING hnsw (embedding vector_l2_ops) WITH (m = 8);",
            // Trained on 3 topics, then fed 100 others topic by topic.
            clustered_rows("drift", 1_000, 32, 1, 3, 0.4),
            clustered_rows("drift", 10_000, 32, 4, 100, 0.4),
            random_rows("frag", 6_000, 8, 0.0, 1.0),
            random_rows("fine", 3_000, 8, 0.0, 1.0),
        ),
    );
    exec(c, "VACUUM frag");
}

fn repairs(c: &mut Client) -> Vec<(String, String, String, String)> {
    c.query(
        "SELECT relname, status, strategy, requested_by FROM ruvector_healing.repairs ORDER BY repair_id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[test]
fn the_worker_heals_degraded_indexes_alone() {
    let a = TestDb::new("wk_heal");
    let b = TestDb::new("wk_other");
    let mut c = a.connect();
    degraded(&mut c);
    let mut other = b.connect();
    exec(
        &mut other,
        &format!(
            "CREATE TABLE fine (id bigserial PRIMARY KEY, embedding vector(8)); {};
             CREATE INDEX fine_idx ON fine USING hnsw (embedding vector_l2_ops);",
            random_rows("fine", 2_000, 8, 0.0, 1.0)
        ),
    );
    exec(&mut c, "LISTEN ruvector_healing");
    let drift_oid = query_i64(&mut c, "SELECT 'drift_idx'::regclass::oid::int8");
    let frag_oid = query_i64(&mut c, "SELECT 'frag_idx'::regclass::oid::int8");
    let fine_oid = query_i64(&mut c, "SELECT 'fine_idx'::regclass::oid::int8");
    let _s = SystemSettings::set(&[
        ("ruvector.dag_healing_interval_ms", "2000"),
        ("ruvector.dag_healing_rollback_enabled", "off"),
    ]);
    wait_until("both degraded indexes repaired", 240, || {
        let r = repairs(&mut c);
        ["drift_idx", "frag_idx"]
            .iter()
            .all(|n| r.iter().any(|(rel, st, ..)| rel == n && st == "done"))
    });
    // One more cycle after the repairs: the issues are resolved.
    let cycles = |c: &mut Client, db: &str| {
        database(&healing(c), db).map_or(0, |d| d["cycles"].as_u64().unwrap_or(0))
    };
    let n = cycles(&mut c, &a.name);
    wait_until("another cycle", 60, || cycles(&mut c, &a.name) >= n + 2);
    let r = repairs(&mut c);
    eprintln!("repairs by the worker: {r:?}");
    for (rel, status, strategy, by) in &r {
        assert_ne!(rel, "fine_idx", "the healthy index was repaired: {r:?}");
        assert_eq!(by, "background cycle");
        assert_eq!(strategy, "rebuild", "{r:?}");
        assert!(status == "done", "{r:?}");
    }
    assert_eq!(r.len(), 2, "one repair per degraded index: {r:?}");
    assert_ne!(
        query_i64(&mut c, "SELECT 'drift_idx'::regclass::oid::int8"),
        drift_oid
    );
    assert_ne!(
        query_i64(&mut c, "SELECT 'frag_idx'::regclass::oid::int8"),
        frag_oid
    );
    assert_eq!(
        query_i64(&mut c, "SELECT 'fine_idx'::regclass::oid::int8"),
        fine_oid
    );
    let open = query_i64(
        &mut c,
        "SELECT count(*) FROM ruvector_healing.issues WHERE status = 'open' AND kind NOT LIKE 'anomaly%'",
    );
    assert_eq!(open, 0, "issues left open after the repairs");
    // The other database: cycled, observed, never repaired.
    assert_eq!(
        query_i64(&mut other, "SELECT count(*) FROM ruvector_healing.repairs"),
        0
    );
    assert!(
        query_i64(
            &mut other,
            "SELECT count(*) FROM ruvector_healing.observations"
        ) > 0
    );
    let h = healing(&mut c);
    assert!(h["launcher"]["running"] == true, "{h:#}");
    let d = database(&h, &a.name).unwrap();
    assert!(d["indexes"].as_u64().unwrap() >= 3, "{d:#}");
    assert!(
        h["metrics"]["checks_performed"].as_u64().unwrap() >= 3,
        "{h:#}"
    );
    assert!(
        h["metrics"]["repairs_successful"].as_u64().unwrap() >= 2,
        "{h:#}"
    );
    // Clients listening were told of each issue and each repair outcome.
    let notes: Vec<Value> = c
        .notifications()
        .iter()
        .collect::<Vec<_>>()
        .unwrap()
        .iter()
        .filter(|n| n.channel() == "ruvector_healing")
        .map(|n| serde_json::from_str(n.payload()).unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n["event"] == "issue" && n["kind"] == "stale_training"),
        "{notes:#?}"
    );
    assert_eq!(
        notes
            .iter()
            .filter(|n| n["event"] == "repair" && n["status"] == "done")
            .count(),
        2,
        "{notes:#?}"
    );
    // Observations carry a recall probe per index (the first cycle is due).
    let probed = query_i64(
        &mut c,
        "SELECT count(DISTINCT index_name) FROM ruvector_healing.observations WHERE recall IS NOT NULL",
    );
    assert!(probed >= 3, "recall probes: {probed}");
}

#[test]
fn switching_healing_off_stops_cycles_and_repairs() {
    let a = TestDb::new("wk_switch");
    let mut c = a.connect();
    degraded(&mut c);
    let s = SystemSettings::set(&[
        ("ruvector.dag_healing_interval_ms", "1000"),
        ("ruvector.dag_healing_enabled", "off"),
    ]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(database(&healing(&mut c), &a.name).is_none_or(|d| d["cycles"] == 0));
    assert_eq!(repairs(&mut c).len(), 0, "repairs while healing is off");
    drop(s);
    let _s = SystemSettings::set(&[
        ("ruvector.dag_healing_interval_ms", "1000"),
        ("ruvector.dag_healing_rollback_enabled", "off"),
    ]);
    wait_until("a repair once healing is on again", 240, || {
        repairs(&mut c).iter().any(|(_, st, ..)| st == "done")
    });
}

#[test]
fn killed_launcher_and_repair_worker_come_back() {
    let mut a = TestDb::new("wk_kill");
    let mut c = a.connect();
    degraded(&mut c);
    let launcher = healing(&mut c)["launcher"]["pid"]
        .as_i64()
        .expect("launcher pid");
    // A repair started by the cycle pauses after its build; kill it there.
    let s = SystemSettings::set(&[
        ("ruvector.dag_healing_interval_ms", "1000"),
        ("ruvector.dag_healing_rollback_enabled", "off"),
        ("ruvector.dag_healing_test_pause_at", "after_build"),
    ]);
    wait_until("a paused repair", 240, || {
        query_i64(
            &mut c,
            "SELECT count(*) FROM ruvector_healing.repair_steps WHERE step = 'paused_for_test'",
        ) > 0
    });
    let (id, pid): (i64, i32) = {
        let r = c
            .query_one(
                "SELECT r.repair_id, r.worker_pid FROM ruvector_healing.repairs r
                  JOIN ruvector_healing.repair_steps s USING (repair_id)
                 WHERE s.step = 'paused_for_test' LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    drop(s);
    let _s = SystemSettings::set(&[
        ("ruvector.dag_healing_interval_ms", "1000"),
        ("ruvector.dag_healing_rollback_enabled", "off"),
    ]);
    kill_worker(pid as i64);
    // The postmaster restarts every backend after a crash: reconnect.
    std::thread::sleep(Duration::from_millis(500));
    let mut c = wait_for_server(&a.name);
    a.crashes_expected();
    wait_until("the launcher back", 60, || {
        let h = healing(&mut c);
        h["launcher"]["running"] == true && h["launcher"]["pid"].as_i64() != Some(launcher)
    });
    // The next cycle recovers the interrupted repair (rolled back), and the
    // index is then repaired for good.
    wait_until("recovery and a new repair", 240, || {
        let st: String = c
            .query_one(
                &format!("SELECT status FROM ruvector_healing.repairs WHERE repair_id = {id}"),
                &[],
            )
            .unwrap()
            .get(0);
        st == "rolled_back" && repairs(&mut c).iter().any(|(_, st, ..)| st == "done")
    });
    // The cycle may be repairing the other degraded index meanwhile: its
    // new index is invalid until it is built. Wait for every repair.
    wait_until("no repair in flight", 240, || {
        query_i64(
            &mut c,
            "SELECT count(*) FROM ruvector_healing.repairs
              WHERE status IN ('planned','building','validating','swapping','swapped','retiring','rolling_back')",
        ) == 0
    });
    let invalid = query_i64(
        &mut c,
        "SELECT count(*) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
          WHERE NOT i.indisvalid AND t.relname IN ('drift', 'frag', 'fine')",
    );
    assert_eq!(invalid, 0, "invalid leftovers");
    // Killing the launcher alone: it comes back too.
    let launcher = healing(&mut c)["launcher"]["pid"].as_i64().unwrap();
    kill_worker(launcher);
    std::thread::sleep(Duration::from_secs(2));
    let mut c = wait_for_server(&a.name);
    a.crashes_expected();
    wait_until("the launcher back after its own kill", 60, || {
        let h = healing(&mut c);
        h["launcher"]["running"] == true && h["launcher"]["pid"].as_i64() != Some(launcher)
    });
}

#[test]
fn databases_created_and_dropped_while_running() {
    let _s = SystemSettings::set(&[("ruvector.dag_healing_interval_ms", "1000")]);
    let observer = TestDb::new("wk_observer");
    let mut admin = observer.connect();
    let name;
    {
        let a = TestDb::new("wk_new");
        name = a.name.clone();
        let mut c = a.connect();
        exec(
            &mut c,
            &format!(
                "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8)); {};
                 CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops);",
                random_rows("t", 1_000, 8, 0.0, 1.0)
            ),
        );
        wait_until("a cycle of the new database", 60, || {
            database(&healing(&mut c), &name)
                .is_some_and(|d| d["cycles"].as_u64().unwrap_or(0) >= 1)
                && query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.observations") > 0
        });
        // Dropped here (WITH (FORCE), ending a cycle worker if one runs).
    }
    wait_until("the dropped database forgotten", 60, || {
        database(&healing(&mut admin), &name).is_none()
    });
    let h = healing(&mut admin);
    assert_eq!(h["launcher"]["running"], true, "{h:#}");
}

#[test]
fn overhead_of_twenty_healthy_indexes() {
    let a = TestDb::new("wk_cost");
    let mut c = a.connect();
    for i in 0..20 {
        exec(
            &mut c,
            &format!(
                "CREATE TABLE t{i} (id bigserial PRIMARY KEY, embedding vector(16)); {};
                 CREATE INDEX t{i}_idx ON t{i} USING hnsw (embedding vector_l2_ops);",
                random_rows(&format!("t{i}"), 2_000, 16, 0.0, 1.0)
            ),
        );
    }
    let _s = SystemSettings::set(&[("ruvector.dag_healing_interval_ms", "1500")]);
    let cycles = |c: &mut Client| {
        database(&healing(c), &a.name).map_or(0, |d| d["cycles"].as_u64().unwrap_or(0))
    };
    // The first cycle probes recall of every index (due once an hour by
    // default); the next ones only inspect.
    wait_until("two cycles", 120, || cycles(&mut c) >= 2);
    let first = query_i64(
        &mut c,
        "SELECT count(*) FROM ruvector_healing.observations WHERE recall IS NOT NULL",
    );
    assert_eq!(first, 20, "one recall probe per index in the first cycle");
    let d = database(&healing(&mut c), &a.name).unwrap().clone();
    let n0 = d["cycles"].as_u64().unwrap();
    let cpu0 = d["total_cpu_ms"].as_u64().unwrap();
    wait_until("five more cycles", 120, || cycles(&mut c) >= n0 + 5);
    let d = database(&healing(&mut c), &a.name).unwrap().clone();
    let plain = (d["total_cpu_ms"].as_u64().unwrap() - cpu0) as f64
        / (d["cycles"].as_u64().unwrap() - n0) as f64;
    // The first cycle also probed recall of the 20 indexes.
    let probes = (cpu0 as f64 - n0 as f64 * plain).max(0.0);
    let h = healing(&mut c);
    let launcher_ms = h["launcher"]["cpu_ms"].as_f64().unwrap_or(0.0);
    let per_wakeup = launcher_ms / h["launcher"]["wakeups"].as_f64().unwrap_or(1.0).max(1.0);
    // An hour at the defaults: a cycle every 300 s (12), each index's
    // recall probed once (ruvector.dag_healing_recall_interval_s = 3600),
    // the launcher waking every 5 s (720).
    let per_hour_ms = 12.0 * plain + probes + 720.0 * per_wakeup;
    eprintln!(
        "overhead, 20 healthy HNSW indexes (2000 x 16 each): {plain:.1} ms CPU per cycle, {probes:.0} ms for the 20 recall probes, \
         launcher {per_wakeup:.2} ms per wake-up; CPU per hour at the defaults {per_hour_ms:.0} ms = {:.4} % of one core",
        per_hour_ms / 3_600_000.0 * 100.0
    );
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.repairs"),
        0
    );
}

#[test]
fn run_cycle_starts_one_now() {
    // The test server waits a day between cycles.
    let a = TestDb::new("wk_now");
    let mut c = a.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8)); {};
             CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops);",
            random_rows("t", 1_000, 8, 0.0, 1.0)
        ),
    );
    let r = json_of(&mut c, "ruvector_dag_run_cycle()");
    assert_eq!(r["requested"], true, "{r}");
    wait_until("the requested cycle", 60, || {
        database(&healing(&mut c), &a.name).is_some_and(|d| d["cycles"].as_u64().unwrap_or(0) >= 1)
    });
    // (At least one: a previous test's short interval may linger for a
    // wake-up of the launcher.)
    assert!(query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.observations") >= 1);
    let d = database(&healing(&mut c), &a.name).unwrap().clone();
    assert_eq!(d["indexes"], 1, "{d:#}");
    assert!(d["next_cycle"].is_string(), "{d:#}");
}
