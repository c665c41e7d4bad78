//! Trust boundaries. A role with no privilege at all calls every function
//! of the extension and reads every relation of its schema: each call is
//! refused or returns only what that role may see (nothing), and holding
//! the advisory locks the extension used before 0.2.0 neither stops nor
//! misdirects a repair. Rows follow the privilege on the table they
//! describe; notifications carry ids only.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::Value;

use crate::common::*;

/// The advisory-lock keys of releases before 0.2.0 (first key of
/// `pg_advisory_lock(int4, int4)`): a repair's liveness, a table's slot.
const OLD_REPAIR_KEY: i32 = 0x5256_0001;
const OLD_TABLE_KEY: i32 = 0x5256_0002;

/// A table with an HNSW index, a recorded issue, a tuning result, a policy
/// and a finished rebuild whose backup is kept.
fn history(c: &mut Client, table: &str) -> i64 {
    exec(
        c,
        &format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, embedding vector(8));
             {};
             CREATE INDEX {table}_idx ON {table} USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             SELECT ruvector_healing.record_issue('{table}_idx', '{table}'::regclass, 'fragmentation',
                                                  'medium', 60, '{{}}');
             SELECT ruvector_dag_tune_search('{table}_idx', 0.9, 10, 20);
             SELECT ruvector_dag_set_index_policy('{table}_idx', pin_lists => true);",
            random_rows(table, 2_000, 8, 0.0, 1.0)
        ),
    );
    let id = request(c, &format!("{table}_idx"), "rebuild");
    let r = wait(c, id);
    assert_eq!(status(&r), "done", "{r:#}");
    id
}

/// What a role may expect of a call: refused with this SQLSTATE, or rows.
enum Expect {
    Refused(&'static str),
    NoRows,
    Runs,
}

/// Every function the extension owns, with what a role without privileges
/// gets. A function missing here fails the test: a new function must say
/// what a stranger may do with it.
fn expectations(repair: i64) -> Vec<(&'static str, String, Expect)> {
    use Expect::*;
    let r = repair;
    vec![
        ("ruvector_dag_index_health", "SELECT ruvector_dag_index_health('a_idx')".into(), Refused("42501")),
        ("ruvector_dag_verify_index", "SELECT * FROM ruvector_dag_verify_index('a_idx', true)".into(), Refused("42501")),
        ("ruvector_dag_hnsw_levels", "SELECT * FROM ruvector_dag_hnsw_levels('a_idx')".into(), Refused("42501")),
        ("ruvector_dag_ivfflat_lists", "SELECT * FROM ruvector_dag_ivfflat_lists('a_idx')".into(), Refused("42501")),
        ("ruvector_dag_hnsw_unreachable", "SELECT * FROM ruvector_dag_hnsw_unreachable('a_idx')".into(), Refused("42501")),
        ("ruvector_dag_recall_estimate", "SELECT ruvector_dag_recall_estimate('a_idx')".into(), Refused("42501")),
        ("ruvector_dag_health_check", "SELECT ruvector_dag_health_check('a')".into(), Refused("42501")),
        ("ruvector_dag_tune_search", "SELECT ruvector_dag_tune_search('a_idx')".into(), Refused("42501")),
        ("ruvector_dag_repair_index", "SELECT ruvector_dag_repair_index('a_idx', 'rebuild')".into(), Refused("42501")),
        ("ruvector_dag_repair", "SELECT ruvector_dag_repair('a', 1)".into(), Refused("42501")),
        ("ruvector_dag_cancel_repair", format!("SELECT ruvector_dag_cancel_repair({r})"), Refused("42501")),
        ("ruvector_dag_rollback", format!("SELECT ruvector_dag_rollback({r})"), Refused("42501")),
        ("ruvector_dag_recover_repairs", "SELECT ruvector_dag_recover_repairs()".into(), Refused("42501")),
        ("ruvector_dag_run_cycle", "SELECT ruvector_dag_run_cycle()".into(), Refused("42501")),
        ("ruvector_dag_set_index_policy", "SELECT ruvector_dag_set_index_policy('a_idx', excluded => true)".into(), Refused("42501")),
        ("ruvector_dag_set_table_policy", "SELECT ruvector_dag_set_table_policy('a', excluded => true)".into(), Refused("42501")),
        ("ruvector_dag_set_schema_policy", "SELECT ruvector_dag_set_schema_policy('public', excluded => true)".into(), Refused("42501")),
        ("ruvector_dag_set_database_policy", "SELECT ruvector_dag_set_database_policy(excluded => true)".into(), Refused("42501")),
        ("ruvector_dag_set_search_setting", "SELECT ruvector_dag_set_search_setting('a_idx', 10)".into(), Refused("42501")),
        ("set_search_value", "SELECT ruvector_healing.set_search_value('a_idx', 10)".into(), Refused("42501")),
        ("ruvector_dag_reset_policy", "SELECT ruvector_dag_reset_policy('index', 'public', 'a_idx')".into(), Refused("42501")),
        ("ruvector_dag_detected_issues", "SELECT * FROM ruvector_dag_detected_issues('a')".into(), NoRows),
        ("ruvector_dag_search_settings", "SELECT * FROM ruvector_dag_search_settings()".into(), NoRows),
        ("ruvector_dag_repair_history", "SELECT * FROM ruvector_dag_repair_history(NULL)".into(), NoRows),
        ("ruvector_dag_wait_repair", format!("CALL ruvector_dag_wait_repair({r}, 1, NULL)"), Refused("P0002")),
        ("ruvector_dag_healing_status", "SELECT ruvector_dag_healing_status()".into(), Runs),
        ("ruvector_dag_in_transaction_block", "SELECT ruvector_dag_in_transaction_block()".into(), Runs),
        ("record_issue", "SELECT ruvector_healing.record_issue('a_idx', 'a'::regclass, 'x', 'low', 1, '{}')".into(), Refused("42501")),
        ("resolve_issues", "SELECT ruvector_healing.resolve_issues('a'::regclass, '{}', true)".into(), Refused("42501")),
        ("set_policy", "SELECT ruvector_healing.set_policy('database', '', '', true, NULL, NULL, NULL, NULL)".into(), Refused("42501")),
        ("adopt_restored", "SELECT ruvector_healing.adopt_restored()".into(), Refused("42501")),
        ("repair_row", format!("SELECT ruvector_healing.repair_row(r) FROM ruvector_healing.repairs r WHERE repair_id = {r}"), NoRows),
        ("repair_active", "SELECT ruvector_healing.repair_active('planned')".into(), Runs),
        ("split_name", "SELECT ruvector_healing.split_name('public.a_idx')".into(), Runs),
        ("index_by_name", "SELECT ruvector_healing.index_by_name('public', 'a_idx')".into(), Runs),
        ("visible", "SELECT ruvector_healing.visible('a'::regclass)".into(), Runs),
        ("policy_table", "SELECT ruvector_healing.policy_table('table', 'public', 'a')".into(), Runs),
        ("policy_visible", "SELECT ruvector_healing.policy_visible('table', 'public', 'a')".into(), Runs),
        ("require_maintain", "SELECT ruvector_healing.require_maintain('table', 'public', 'a')".into(), Refused("42501")),
        ("ruvector_dag_stat_reset", "SELECT ruvector_dag_stat_reset()".into(), Refused("42501")),
        ("ruvector_dag_metrics", "SELECT ruvector_dag_metrics() WHERE ruvector_dag_metrics() LIKE '%a_idx%'".into(), NoRows),
        ("stat_indexes (view)", "SELECT * FROM ruvector_dag_stat_indexes".into(), NoRows),
        ("repair_progress (view)", "SELECT * FROM ruvector_dag_repair_progress".into(), NoRows),
        ("repair_progress", "SELECT * FROM ruvector_healing.repair_progress()".into(), NoRows),
        ("stat_indexes", "SELECT * FROM ruvector_healing.stat_indexes()".into(), NoRows),
        ("next_cycle_at", "SELECT ruvector_healing.next_cycle_at()".into(), Runs),
        ("health_score", "SELECT ruvector_healing.health_score(0.9, 0.95, 0, 0, 1, NULL, NULL)".into(), Runs),
        ("count_writes_from", "SELECT ruvector_healing.count_writes_from('a_idx'::regclass, 'build')".into(), Refused("42501")),
        ("observe", "SELECT ruvector_healing.observe('a_idx'::regclass, 'public', 'a_idx', 'a'::regclass, '{}', NULL, NULL)".into(), Refused("42501")),
        ("keep_write_count", "SELECT ruvector_healing.keep_write_count('a_idx'::regclass)".into(), Refused("42501")),
    ]
}

#[test]
fn a_role_without_privileges_can_neither_steer_nor_see() {
    let mut db = TestDb::new("tr_nobody");
    let mut c = db.connect();
    let repair = history(&mut c, "a");
    let nobody = db.create_role("nobody");
    let mut n = connect_as(&db.name, &nobody);

    // Every function the extension owns is listed with its expectation.
    let owned: Vec<String> = c
        .query(
            "SELECT p.proname::text FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
              WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ruvector_healing')
                AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expect = expectations(repair);
    for f in &owned {
        assert!(
            expect.iter().any(|(name, ..)| name == f),
            "function {f} has no expectation for a role without privileges"
        );
    }
    for (name, sql, e) in &expect {
        let got = n.query(sql.as_str(), &[]);
        match e {
            Expect::Refused(code) => {
                let err = got
                    .err()
                    .unwrap_or_else(|| panic!("{name}: {sql} was not refused"));
                let d = err.as_db_error().unwrap_or_else(|| panic!("{name}: {err}"));
                assert_eq!(d.code().code(), *code, "{name}: {}", d.message());
            }
            Expect::NoRows => {
                let rows = got.unwrap_or_else(|e| panic!("{name}: {}", err_text(&e)));
                assert!(rows.is_empty(), "{name}: {} rows seen", rows.len());
            }
            Expect::Runs => {
                got.unwrap_or_else(|e| panic!("{name}: {}", err_text(&e)));
            }
        }
    }
    // The status shows nothing of the table.
    let s = json_of(&mut n, "ruvector_dag_healing_status()");
    assert_eq!(s["index_count"], 0, "{s}");
    assert_eq!(s["open_issues_by_severity"], serde_json::json!({}), "{s}");
    assert_eq!(s["active_repairs"], serde_json::json!([]), "{s}");

    // Every relation of the schema: no row, or no access at all.
    let relations: Vec<String> = c
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
              WHERE c.relnamespace = 'ruvector_healing'::regnamespace AND c.relkind IN ('r', 'v', 'm')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(relations.len() >= 7, "{relations:?}");
    for rel in &relations {
        match n.query_one(&format!("SELECT count(*) FROM {rel}"), &[]) {
            Ok(row) => assert_eq!(row.get::<_, i64>(0), 0, "{rel} shows rows to {nobody}"),
            Err(e) => assert_eq!(
                e.as_db_error().map(|d| d.code().code()),
                Some("42501"),
                "{rel}: {}",
                err_text(&e)
            ),
        }
    }

    // The advisory locks of earlier releases, on this table and on the next
    // repair's id, held by the stranger: repairs go on.
    let table_oid = query_i64(&mut c, "SELECT 'a'::regclass::oid::int8");
    let next = query_i64(
        &mut c,
        "SELECT max(repair_id) + 1 FROM ruvector_healing.repairs",
    );
    exec(
        &mut n,
        &format!(
            "SELECT pg_advisory_lock({OLD_TABLE_KEY}, {table_oid}::int4);
             SELECT pg_advisory_lock({OLD_REPAIR_KEY}, {next}::int4)"
        ),
    );
    exec(&mut c, "SET ruvector.dag_healing_cooldown_s = 0");
    let id = request(&mut c, "a_idx", "rebuild");
    assert_eq!(id, next);
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "done", "{r:#}");

    // A cancel signals the repair's worker, never the stranger that holds
    // the old key of that repair while it runs a query.
    exec(
        &mut c,
        "SET ruvector.dag_healing_test_pause_at = 'after_build'",
    );
    let id = request(&mut c, "a_idx", "rebuild");
    exec(&mut c, "RESET ruvector.dag_healing_test_pause_at");
    wait_until("the repair to pause", 120, || {
        query_i64(
            &mut c,
            &format!("SELECT count(*) FROM ruvector_healing.repair_steps WHERE repair_id = {id} AND step = 'paused_for_test'"),
        ) == 1
    });
    let name = db.name.clone();
    let who = nobody.clone();
    let sleeper = std::thread::spawn(move || {
        let mut s = connect_as(&name, &who);
        exec(
            &mut s,
            &format!("SELECT pg_advisory_lock({OLD_REPAIR_KEY}, {id}::int4)"),
        );
        s.batch_execute("SELECT pg_sleep(3)")
            .map_err(|e| err_text(&e))
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = json_of(&mut c, &format!("ruvector_dag_cancel_repair({id})"));
    assert!(out["worker_pid"].is_i64(), "{out}");
    let r = wait(&mut c, id);
    assert_eq!(status(&r), "cancelled", "{r:#}");
    assert_eq!(
        sleeper.join().unwrap(),
        Ok(()),
        "the stranger's query was cancelled"
    );
}

#[test]
fn rows_follow_the_privilege_on_their_table() {
    let mut db = TestDb::new("tr_rows");
    let mut c = db.connect();
    exec(&mut c, "LISTEN ruvector_healing");
    history(&mut c, "a");
    history(&mut c, "b");
    exec(
        &mut c,
        "SELECT ruvector_dag_set_database_policy(thresholds => '{\"max_fragmentation\": 0.4}')",
    );
    // Notifications name nothing: ids, statuses, codes.
    let notes: Vec<Value> = c
        .notifications()
        .iter()
        .collect::<Vec<_>>()
        .unwrap()
        .iter()
        .map(|n| serde_json::from_str(n.payload()).unwrap())
        .collect();
    assert!(!notes.is_empty());
    for p in &notes {
        for k in p.as_object().unwrap().keys() {
            assert!(
                [
                    "event",
                    "repair_id",
                    "issue_id",
                    "strategy",
                    "status",
                    "kind",
                    "severity",
                    "priority"
                ]
                .contains(&k.as_str()),
                "notification field {k} may carry a name: {p}"
            );
        }
    }

    let reader = db.create_role("reader");
    exec(
        &mut c,
        &format!("GRANT SELECT ON a TO {reader}; GRANT ruvector_healer TO {reader}"),
    );
    let mut r = connect_as(&db.name, &reader);
    let count = |cl: &mut Client, sql: &str| query_i64(cl, sql);
    assert!(
        count(
            &mut r,
            "SELECT count(*) FROM ruvector_dag_detected_issues('a')"
        ) > 0
    );
    assert_eq!(
        count(
            &mut r,
            "SELECT count(*) FROM ruvector_dag_detected_issues('b')"
        ),
        0
    );
    let tables: Vec<String> = r
        .query(
            "SELECT DISTINCT index FROM ruvector_dag_repair_history(NULL)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|x| x.get(0))
        .collect();
    assert_eq!(tables, vec!["public.a_idx".to_string()]);
    for (rel, col) in [
        ("ruvector_healing.issues", "relname"),
        ("ruvector_healing.search_settings", "relname"),
        ("ruvector_healing.repairs", "relname"),
        ("ruvector_healing.observations", "index_name"),
    ] {
        assert_eq!(
            count(
                &mut r,
                &format!("SELECT count(*) FROM {rel} WHERE {col} LIKE 'b%'")
            ),
            0,
            "{rel}"
        );
    }
    assert_eq!(
        count(&mut r, "SELECT count(*) FROM ruvector_healing.repair_steps s JOIN ruvector_healing.repairs p USING (repair_id) WHERE p.relname LIKE 'b%'"),
        0
    );
    assert!(count(&mut r, "SELECT count(*) FROM ruvector_healing.repair_steps") > 0);
    // Policies: the table it may read, and the database-wide one (a
    // ruvector_healer member), not b's.
    let policies: Vec<(String, String)> = r
        .query(
            "SELECT scope, object_name FROM ruvector_healing.index_policies ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|x| (x.get(0), x.get(1)))
        .collect();
    assert_eq!(
        policies,
        vec![
            ("database".into(), "".into()),
            ("index".into(), "a_idx".into())
        ]
    );
    // Reading a table is not maintaining it: no policy of its own.
    let e = r.query_one(
        "SELECT ruvector_dag_set_index_policy('a_idx', excluded => true)",
        &[],
    );
    expect_error(e, "42501", "permission denied to set the policy");

    // pg_read_all_stats sees everything; rows about a dropped table only
    // it and superusers see.
    let stats = db.create_role("stats");
    exec(&mut c, &format!("GRANT pg_read_all_stats TO {stats}"));
    let mut s = connect_as(&db.name, &stats);
    let all = count(&mut c, "SELECT count(*) FROM ruvector_healing.repairs");
    assert_eq!(
        count(&mut s, "SELECT count(*) FROM ruvector_healing.repairs"),
        all
    );
    exec(&mut c, "GRANT SELECT ON b TO PUBLIC");
    assert!(
        count(
            &mut r,
            "SELECT count(*) FROM ruvector_healing.repairs WHERE relname = 'b_idx'"
        ) > 0
    );
    exec(&mut c, "DROP TABLE b");
    assert_eq!(
        count(
            &mut r,
            "SELECT count(*) FROM ruvector_healing.repairs WHERE relname = 'b_idx'"
        ),
        0
    );
    assert!(
        count(
            &mut s,
            "SELECT count(*) FROM ruvector_healing.repairs WHERE relname = 'b_idx'"
        ) > 0
    );
}

#[test]
fn index_expressions_run_with_the_table_owners_rights() {
    // A table owner's expression index on a function that refuses to run
    // with superuser rights: measuring recall and verifying every row
    // evaluate it for each row, and must do so as the owner, never as the
    // superuser who asks (the worker is one).
    let mut db = TestDb::new("tr_owner");
    let mut c = db.connect();
    let owner = db.create_role("owner");
    exec(&mut c, &format!("GRANT CREATE ON SCHEMA public TO {owner}"));
    let mut o = connect_as(&db.name, &owner);
    exec(
        &mut o,
        &format!(
            "CREATE FUNCTION owner_only(v vector) RETURNS vector IMMUTABLE LANGUAGE plpgsql AS $$
             BEGIN
               IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                 RAISE EXCEPTION 'evaluated with superuser rights';
               END IF;
               RETURN v;
             END $$;
             CREATE TABLE e (id bigserial PRIMARY KEY, embedding vector(8));
             {};
             CREATE INDEX e_idx ON e USING hnsw ((owner_only(embedding)::vector(8)) vector_l2_ops);
             CREATE INDEX e_part ON e USING hnsw (embedding vector_l2_ops)
               WHERE owner_only(embedding) IS NOT NULL;",
            random_rows("e", 500, 8, 0.0, 1.0)
        ),
    );
    for index in ["e_idx", "e_part"] {
        let r = json_of(
            &mut c,
            &format!("ruvector_dag_recall_estimate('{index}', sample_size => 20)"),
        );
        assert!(r["recall"].as_f64().is_some(), "{index}: {r:#}");
        let v = c
            .query(
                "SELECT count(*) FROM ruvector_dag_verify_index($1::text::regclass, true)",
                &[&index],
            )
            .unwrap_or_else(|e| panic!("verifying {index}: {}", err_text(&e)));
        assert_eq!(v[0].get::<_, i64>(0), 0, "{index}");
    }
    // The caller's identity and search_path are back afterwards.
    assert_eq!(
        query_i64(
            &mut c,
            "SELECT (current_user = session_user AND current_setting('search_path') <> 'pg_catalog, pg_temp')::int::int8"
        ),
        1
    );
}
