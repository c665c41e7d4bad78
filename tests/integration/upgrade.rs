//! Releases. Every earlier release's install script (`sql/install/`),
//! filled with history, updated with `ALTER EXTENSION ... UPDATE`, must
//! describe exactly like a fresh install of this release, object by object
//! (`describe_extension.sql`), and keep every row. A database that still
//! needs the update is skipped by the background cycle (one log line, no
//! error per cycle) and resumes after the update. A dump restores into a
//! new database without errors, and the OIDs in its history are resolved
//! again by name.

use std::process::Command;

use postgres::Client;
use serde_json::Value;

use crate::common::*;

const LIBRARY: &str = env!("CARGO_PKG_VERSION");

/// Versions whose full install script ships in `sql/install/`.
fn earlier_versions() -> Vec<String> {
    let dir = format!("{}/sql/install", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let v = name
                .strip_prefix("ruvector_healing--")?
                .strip_suffix(".sql")?;
            (!v.contains("--")).then(|| v.to_string())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no earlier release in {dir}");
    v
}

/// `describe_extension.sql`: one line per fact about the extension's objects.
fn describe(c: &mut Client) -> Vec<String> {
    c.query(include_str!("describe_extension.sql"), &[])
        .unwrap_or_else(|e| panic!("describing the extension: {}", err_text(&e)))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// The lines only one side has, for the failure message.
fn difference(updated: &[String], fresh: &[String]) -> String {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|l| !b.contains(l)).cloned().collect()
    };
    format!(
        "only after the update:\n  {}\nonly in a fresh install:\n  {}",
        only(updated, fresh).join("\n  "),
        only(fresh, updated).join("\n  ")
    )
}

/// History written with plain SQL against an earlier release's tables (its
/// C functions refuse to run under this library until the update): a
/// table with an HNSW index, an issue, a finished rebuild whose backup is
/// kept (a real invalid index), its step, a policy, a tuning result and an
/// observation.
fn fill(c: &mut Client) {
    exec(
        c,
        &format!(
            "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(4));
             {};
             CREATE INDEX items_idx ON items USING hnsw (embedding vector_l2_ops);
             CREATE INDEX items_idx_rvold1 ON items USING hnsw (embedding vector_l2_ops);
             UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'items_idx_rvold1'::regclass;
             SELECT ruvector_healing.record_issue('items_idx', 'items'::regclass, 'fragmentation',
                                                  'high', 70, '{{\"fragmentation\": 0.7}}');
             INSERT INTO ruvector_healing.repairs
                    (index_oid, index_name, schema_name, relname, table_oid, table_name, strategy,
                     status, requested_by, started_at, finished_at, plan, before, after, backup)
             VALUES ('items_idx_rvold1'::regclass, 'items_idx', 'public', 'items_idx', 'items'::regclass,
                     'public.items', 'rebuild', 'done', 'postgres', now(), now(),
                     '{{\"schema\": \"public\", \"backup_name\": \"items_idx_rvold1\"}}', '{{}}', '{{}}',
                     jsonb_build_object('index', 'items_idx_rvold1', 'kept', true, 'keep_minutes', 600,
                                        'oid', 'items_idx_rvold1'::regclass::oid::int8));
             INSERT INTO ruvector_healing.repair_steps (repair_id, step)
                  SELECT repair_id, 'done' FROM ruvector_healing.repairs;
             SELECT ruvector_dag_set_index_policy('items_idx', strategy => 'vacuum');
             INSERT INTO ruvector_healing.search_settings
                    (index_oid, index_name, setting, value, target_recall, measured_recall, reachable,
                     k, sample_size, curve)
             VALUES ('items_idx'::regclass, 'items_idx', 'hnsw.ef_search', 40, 0.95, 0.97, true, 10,
                     100, '[]');
             INSERT INTO ruvector_healing.observations
                    (index_oid, schema_name, index_name, table_oid, metrics, recall)
             VALUES ('items_idx'::regclass, 'public', 'items_idx', 'items'::regclass,
                     '{{\"fragmentation\": 0.1}}', 0.97);",
            random_rows("items", 300, 4, 0.0, 1.0)
        ),
    );
}

/// Every row of every table whose data pg_dump keeps, as JSON, by table.
fn rows(c: &mut Client) -> Vec<(String, Vec<Value>)> {
    let tables: Vec<String> = c
        .query(
            "SELECT t.relid::regclass::text FROM pg_extension e, unnest(e.extconfig) t(relid)
               JOIN pg_class k ON k.oid = t.relid
              WHERE e.extname = 'ruvector_healing' AND k.relkind = 'r' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let j = json_of(
                c,
                &format!("SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]') FROM {t} x"),
            );
            (t, j.as_array().cloned().unwrap_or_default())
        })
        .collect()
}

/// Every row before is still there after: a row with every column it had,
/// with the same values (new columns may have been added).
fn assert_kept(before: &[(String, Vec<Value>)], after: &[(String, Vec<Value>)]) {
    for (table, old_rows) in before {
        let new_rows = &after
            .iter()
            .find(|(t, _)| t == table)
            .unwrap_or_else(|| panic!("table {table} is gone after the update"))
            .1;
        assert_eq!(new_rows.len(), old_rows.len(), "rows of {table}");
        for old in old_rows {
            let kept = new_rows.iter().any(|new| {
                old.as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| new.get(k) == Some(v))
            });
            assert!(kept, "{table}: row {old} was changed or lost by the update");
        }
    }
}

#[test]
fn every_earlier_release_updates_to_a_fresh_install() {
    let fresh = TestDb::new("up_fresh");
    let want = describe(&mut fresh.connect());
    for version in earlier_versions() {
        let old = TestDb::new_at("up_old", Some(&version));
        let mut c = old.connect();
        fill(&mut c);
        let before = rows(&mut c);
        assert!(before.iter().all(|(_, r)| !r.is_empty()), "{before:?}");
        exec(&mut c, "ALTER EXTENSION ruvector_healing UPDATE");
        let installed: String = c
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'ruvector_healing'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(installed, LIBRARY, "ALTER EXTENSION UPDATE from {version}");
        let got = describe(&mut c);
        assert!(
            got == want,
            "{version} updated to {LIBRARY} differs from a fresh install of {LIBRARY} \
             (a schema change without its upgrade script?):\n{}",
            difference(&got, &want)
        );
        assert_kept(&before, &rows(&mut c));
        // The kept backup is untouched: still there, still invalid.
        assert_eq!(
            query_i64(
                &mut c,
                "SELECT count(*) FROM pg_index WHERE indexrelid = 'items_idx_rvold1'::regclass AND NOT indisvalid"
            ),
            1
        );
        // The names the update filled in.
        assert_eq!(
            query_i64(
                &mut c,
                "SELECT count(*) FROM ruvector_healing.issues WHERE schema_name = 'public' AND relname = 'items_idx'"
            ),
            1
        );
        // And the functions work again.
        let check = json_of(&mut c, "ruvector_dag_health_check('items')");
        assert_eq!(check["indexes"].as_array().map(Vec::len), Some(2));
    }
}

#[test]
fn a_database_that_needs_the_update_is_skipped_until_updated() {
    let oldest = earlier_versions().remove(0);
    let old = TestDb::new_at("up_wk", Some(&oldest));
    let mut c = old.connect();
    fill(&mut c);
    let issues = query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.issues");
    let from = log_len();
    let _s = SystemSettings::set(&[
        ("ruvector.dag_healing_interval_ms", "1000"),
        ("ruvector.dag_healing_auto_repair", "off"),
        ("ruvector.dag_healing_recall_interval_s", "0"),
    ]);
    // Several cycles find the old objects and skip the database.
    wait_until("three skipped cycles", 60, || {
        let h = healing(&mut c);
        database(&h, &old.name)
            .is_some_and(|d| d["state"] == "needs_update" && d["cycles"].as_u64().unwrap_or(0) >= 3)
    });
    let status = json_of(&mut c, "ruvector_dag_healing_status()");
    assert_eq!(status["extension_version"], oldest.as_str());
    assert_eq!(status["library_version"], LIBRARY);
    assert_eq!(
        status["needs_update"]["command"],
        "ALTER EXTENSION ruvector_healing UPDATE"
    );
    let log = log_since(from);
    let skipped = format!("skipping database {}", old.name);
    assert_eq!(
        log.matches(&skipped).count(),
        1,
        "one log line per change of state, not one per cycle:\n{log}"
    );
    let mine: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        mine.is_empty(),
        "errors while skipped:\n{}",
        mine.join("\n")
    );
    // A function called meanwhile refuses with the command to run.
    let e = expect_error(
        c.query_one("SELECT ruvector_dag_health_check('items')", &[]),
        "55000",
        "is installed in this database, but the loaded library is",
    );
    assert!(
        e.hint
            .as_deref()
            .is_some_and(|h| h.contains("ALTER EXTENSION ruvector_healing UPDATE")),
        "{e:?}"
    );
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.issues"),
        issues,
        "nothing lost while skipped"
    );

    exec(&mut c, "ALTER EXTENSION ruvector_healing UPDATE");
    let seen = query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.observations");
    wait_until("a normal cycle after the update", 60, || {
        query_i64(&mut c, "SELECT count(*) FROM ruvector_healing.observations") > seen
    });
    let h = healing(&mut c);
    let d = database(&h, &old.name).unwrap();
    assert_eq!(d["needs_update"], false, "{d}");
    assert!(
        log_since(from).contains(&format!("database {} was updated to {LIBRARY}", old.name)),
        "the resumption is logged"
    );
    assert!(json_of(&mut c, "ruvector_dag_healing_status()")["needs_update"].is_null());
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let s = settings();
    let out = Command::new(format!("{}/{program}", s.pgbin))
        .args(["-h", &s.host, "-p", &s.port.to_string(), "-U", "postgres"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn dump_and_restore_keep_the_history() {
    let source = TestDb::new("up_dump");
    let mut c = source.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(8));
             {};
             CREATE INDEX items_idx ON items USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             SELECT ruvector_dag_set_index_policy('items_idx', pin_lists => true);
             SELECT ruvector_dag_set_database_policy(thresholds => '{{\"max_fragmentation\": 0.4}}');
             SELECT ruvector_dag_tune_search('items_idx', 0.9, 10, 20);
             SELECT ruvector_dag_health_check('items');",
            random_rows("items", 2_000, 8, 0.0, 1.0)
        ),
    );
    exec(
        &mut c,
        "SELECT ruvector_healing.record_issue('items_idx', 'items'::regclass, 'fragmentation', 'medium', 60, '{}')",
    );
    // A real rebuild, its backup kept for rollback (an invalid index).
    let id = request(&mut c, "items_idx", "rebuild");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    assert_eq!(r["backup"]["kept"], true, "{r:#}");
    let before = rows(&mut c);

    let file = format!("/tmp/{}.dump", source.name);
    run("pg_dump", &["-Fc", "-f", &file, &source.name]);
    let target = TestDb::bare("up_restored");
    let out = run("pg_restore", &["-d", &target.name, &file]);
    let _ = std::fs::remove_file(&file);
    assert!(
        out.stderr.is_empty(),
        "pg_restore reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = target.connect();
    let after = rows(&mut t);
    for ((table, a), (_, b)) in before.iter().zip(&after) {
        if table != "ruvector_healing.origin" {
            assert_eq!(a.len(), b.len(), "rows of {table} after the restore");
        }
    }
    // The source's origin came along: the history is recognised as foreign
    // and its OIDs resolved again by name.
    assert_eq!(
        query_i64(&mut t, "SELECT count(*) FROM ruvector_healing.origin"),
        2
    );
    assert!(query_i64(&mut t, "SELECT ruvector_healing.adopt_restored()") > 0);
    assert_eq!(
        query_i64(&mut t, "SELECT count(*) FROM ruvector_healing.origin"),
        1
    );
    assert_eq!(
        query_i64(
            &mut t,
            "SELECT count(*) FROM ruvector_healing.issues
              WHERE index_oid <> 'items_idx'::regclass OR table_oid <> 'items'::regclass"
        ),
        0,
        "every issue names this database's index"
    );
    assert_eq!(
        query_i64(
            &mut t,
            "SELECT count(*) FROM ruvector_healing.search_settings WHERE index_oid <> 'items_idx'::regclass"
        ),
        0
    );
    assert_eq!(
        query_i64(
            &mut t,
            "SELECT count(*) FROM ruvector_healing.observations WHERE index_oid <> 'items_idx'::regclass"
        ),
        0
    );
    // pg_dump skips invalid indexes: the kept backup did not come along,
    // and the history says so.
    let restored = json_of(
        &mut t,
        &format!("SELECT backup FROM ruvector_healing.repairs WHERE repair_id = {id}"),
    );
    assert_eq!(restored["kept"], false, "{restored}");
    assert!(restored["not_restored"].is_string(), "{restored}");
    assert_eq!(
        query_i64(
            &mut t,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'items'::regclass"
        ),
        2,
        "the primary key and items_idx"
    );
    // Policies are kept by name and apply as before.
    assert_eq!(
        query_i64(
            &mut t,
            "SELECT count(*) FROM ruvector_healing.index_policies WHERE pin_lists"
        ),
        1
    );
    // A second call has nothing left to do; the functions work.
    assert_eq!(
        query_i64(&mut t, "SELECT ruvector_healing.adopt_restored()"),
        0
    );
    let check = json_of(&mut t, "ruvector_dag_health_check('items')");
    assert_eq!(check["indexes"].as_array().map(Vec::len), Some(1));
}
