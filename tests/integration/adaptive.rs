//! Per-index search settings applied by the executor hooks
//! (`ruvector.dag_adaptive_search`): in effect inside a query that scans
//! the index, the caller's value after it (also after an error and a
//! cancel, and between a cursor's fetches), the larger of two, a
//! session's own `SET` wins, prepared statements with a generic plan are
//! adjusted, and the effort really changes (pgvector returns at most
//! `ef_search` rows from an HNSW scan).

use postgres::Client;

use crate::common::*;

const Q: &str = "'[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]'";

/// The value of `setting` while a query scanning `table`'s index runs.
fn inside(c: &mut Client, table: &str, setting: &str) -> String {
    c.query_one(
        &format!(
            "SELECT current_setting('{setting}') FROM (SELECT id FROM {table} ORDER BY embedding <-> {Q} LIMIT 1) s"
        ),
        &[],
    )
    .unwrap_or_else(|e| panic!("{}", err_text(&e)))
    .get(0)
}

fn show(c: &mut Client, setting: &str) -> String {
    c.query_one(&format!("SELECT current_setting('{setting}')"), &[])
        .unwrap()
        .get(0)
}

fn setup(c: &mut Client) {
    exec(
        c,
        &format!(
            "CREATE TABLE h (id bigserial PRIMARY KEY, embedding vector(8)); {};
             CREATE INDEX h_idx ON h USING hnsw (embedding vector_l2_ops);
             CREATE TABLE h2 (id bigserial PRIMARY KEY, embedding vector(8)); {};
             CREATE INDEX h2_idx ON h2 USING hnsw (embedding vector_l2_ops);
             CREATE TABLE v (id bigserial PRIMARY KEY, embedding vector(8)); {};
             CREATE INDEX v_idx ON v USING ivfflat (embedding vector_l2_ops) WITH (lists = 10);
             SELECT ruvector_dag_set_search_setting('h_idx', 123);
             SELECT ruvector_dag_set_search_setting('h2_idx', 50);
             SELECT ruvector_dag_set_search_setting('v_idx', 7);",
            random_rows("h", 2_000, 8, 0.0, 1.0),
            random_rows("h2", 2_000, 8, 0.0, 1.0),
            random_rows("v", 2_000, 8, 0.0, 1.0),
        ),
    );
}

/// A session with sequential scans off (the indexes are always used) and
/// adaptive search on.
fn session(db: &str) -> Client {
    let mut c = connect(db);
    exec(
        &mut c,
        "LOAD 'vector'; SET enable_seqscan = off; SET ruvector.dag_adaptive_search = on",
    );
    c
}

#[test]
fn an_index_setting_holds_inside_its_queries_only() {
    let db = TestDb::new("ad_inside");
    let mut c = db.connect();
    setup(&mut c);
    // A session whose first query loads pgvector (the value is set on
    // pgvector's own setting, not on a placeholder).
    let mut first = connect(&db.name);
    exec(
        &mut first,
        "SET enable_seqscan = off; SET ruvector.dag_adaptive_search = on",
    );
    assert_eq!(inside(&mut first, "h", "hnsw.ef_search"), "123");
    assert_eq!(show(&mut first, "hnsw.ef_search"), "40");
    let mut c = session(&db.name);
    let default_ef = show(&mut c, "hnsw.ef_search");
    assert_eq!(default_ef, "40");
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "123");
    assert_eq!(
        show(&mut c, "hnsw.ef_search"),
        default_ef,
        "restored after the query"
    );
    assert_eq!(inside(&mut c, "v", "ivfflat.probes"), "7");
    assert_eq!(show(&mut c, "ivfflat.probes"), "1");

    // Two indexes of one query: each setting gets its index's value, and
    // of two HNSW values the larger.
    let both: (String, String) = {
        let r = c
            .query_one(
                &format!(
                    "SELECT current_setting('hnsw.ef_search'), current_setting('ivfflat.probes')
                       FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 1) a,
                            (SELECT id FROM v ORDER BY embedding <-> {Q} LIMIT 1) b,
                            (SELECT id FROM h2 ORDER BY embedding <-> {Q} LIMIT 1) d"
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(both, ("123".into(), "7".into()));

    // The effort really changes: an HNSW scan returns at most ef_search
    // rows (iterative scans off).
    exec(&mut c, "SELECT ruvector_dag_set_search_setting('h_idx', 5)");
    let rows = |c: &mut Client| {
        query_i64(
            c,
            &format!(
                "SELECT count(*) FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 20) s"
            ),
        )
    };
    assert_eq!(rows(&mut c), 5);
    exec(&mut c, "SET ruvector.dag_adaptive_search = off");
    assert_eq!(rows(&mut c), 20, "off: pgvector's own value (40)");
    exec(&mut c, "SET ruvector.dag_adaptive_search = on");
    assert_eq!(rows(&mut c), 5);

    // NULL removes the index's value.
    exec(
        &mut c,
        "SELECT ruvector_dag_set_search_setting('h_idx', NULL)",
    );
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "40");
    exec(
        &mut c,
        "SELECT ruvector_dag_set_search_setting('h_idx', 123)",
    );
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "123");
}

#[test]
fn the_callers_value_is_back_after_errors_cancels_and_between_fetches() {
    let db = TestDb::new("ad_restore");
    let mut c = db.connect();
    setup(&mut c);
    let mut c = session(&db.name);

    // An error raised while the query runs under the index's value.
    let e = c
        .query(
            &format!(
                "SELECT 1 / (current_setting('hnsw.ef_search')::int - 123)
                   FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 1) s"
            ),
            &[],
        )
        .unwrap_err();
    assert_eq!(
        e.code().map(|s| s.code()),
        Some("22012"),
        "{}",
        err_text(&e)
    );
    assert_eq!(show(&mut c, "hnsw.ef_search"), "40");

    // The same inside a transaction, caught by a savepoint.
    exec(&mut c, "BEGIN; SAVEPOINT s");
    assert!(c
        .query(
            &format!(
                "SELECT 1 / (current_setting('hnsw.ef_search')::int - 123)
                   FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 1) s"
            ),
            &[],
        )
        .is_err());
    exec(&mut c, "ROLLBACK TO SAVEPOINT s");
    assert_eq!(show(&mut c, "hnsw.ef_search"), "40");
    exec(&mut c, "COMMIT");

    // A cancel (statement_timeout) while the query sleeps under the value.
    exec(&mut c, "SET statement_timeout = '300ms'");
    let e = c
        .query(
            &format!(
                "SELECT pg_sleep(5), current_setting('hnsw.ef_search')
                   FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 1) s"
            ),
            &[],
        )
        .unwrap_err();
    assert_eq!(
        e.code().map(|s| s.code()),
        Some("57014"),
        "{}",
        err_text(&e)
    );
    exec(&mut c, "RESET statement_timeout");
    assert_eq!(show(&mut c, "hnsw.ef_search"), "40");

    // A cursor: each fetch runs under the value, the session between them
    // has its own.
    exec(
        &mut c,
        &format!(
            "BEGIN; DECLARE cur CURSOR FOR SELECT current_setting('hnsw.ef_search')
               FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 5) s"
        ),
    );
    for _ in 0..3 {
        let v: String = c.query_one("FETCH 1 FROM cur", &[]).unwrap().get(0);
        assert_eq!(v, "123");
        assert_eq!(show(&mut c, "hnsw.ef_search"), "40");
    }
    exec(&mut c, "COMMIT");
}

#[test]
fn a_sessions_own_setting_wins_and_generic_plans_are_adjusted() {
    let db = TestDb::new("ad_session");
    let mut c = db.connect();
    setup(&mut c);
    // A database default is what per-index values refine: the index's wins.
    exec(
        &mut c,
        &format!("ALTER DATABASE {} SET hnsw.ef_search = 60", db.name),
    );
    let mut c = session(&db.name);
    assert_eq!(show(&mut c, "hnsw.ef_search"), "60");
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "123");

    // The session's own SET, SET LOCAL and a function's SET clause win.
    exec(&mut c, "SET hnsw.ef_search = 77");
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "77");
    exec(&mut c, "RESET hnsw.ef_search");
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "123");
    exec(&mut c, "BEGIN; SET LOCAL hnsw.ef_search = 88");
    assert_eq!(inside(&mut c, "h", "hnsw.ef_search"), "88");
    exec(&mut c, "COMMIT");
    exec(
        &mut c,
        &format!(
            "CREATE FUNCTION near() RETURNS text LANGUAGE sql SET hnsw.ef_search = 99 AS $$
               SELECT current_setting('hnsw.ef_search')
                 FROM (SELECT id FROM h ORDER BY embedding <-> {Q} LIMIT 1) s $$"
        ),
    );
    let v: String = c.query_one("SELECT near()", &[]).unwrap().get(0);
    assert_eq!(v, "99");

    // Prepared statements: a generic plan, and the extended protocol with
    // a bound vector.
    exec(
        &mut c,
        "SET plan_cache_mode = force_generic_plan;
         PREPARE p(vector) AS SELECT current_setting('hnsw.ef_search')
           FROM (SELECT id FROM h ORDER BY embedding <-> $1 LIMIT 1) s",
    );
    for _ in 0..3 {
        let v: String = c.query_one(&format!("EXECUTE p({Q})"), &[]).unwrap().get(0);
        assert_eq!(v, "123");
    }
    let q = "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]".to_string();
    let v: String = c
        .query_one(
            "SELECT current_setting('hnsw.ef_search')
               FROM (SELECT id FROM h ORDER BY embedding <-> $1::text::vector LIMIT 1) s",
            &[&q],
        )
        .unwrap()
        .get(0);
    assert_eq!(v, "123");

    // Another session sees a change within a second.
    let mut other = session(&db.name);
    assert_eq!(inside(&mut other, "h", "hnsw.ef_search"), "123");
    exec(
        &mut c,
        "SELECT ruvector_dag_set_search_setting('h_idx', 150)",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(inside(&mut other, "h", "hnsw.ef_search"), "150");
}

#[test]
fn bad_values_are_refused() {
    let db = TestDb::new("ad_bad");
    let mut c = db.connect();
    setup(&mut c);
    for (sql, code) in [
        (
            "SELECT ruvector_dag_set_search_setting('h_idx', 0)",
            "22023",
        ),
        (
            "SELECT ruvector_dag_set_search_setting('h_idx', 1001)",
            "22023",
        ),
        (
            "SELECT ruvector_dag_set_search_setting('v_idx', 40000)",
            "22023",
        ),
        (
            "SELECT ruvector_dag_set_search_setting('h_pkey', 10)",
            "42809",
        ),
        ("SELECT ruvector_dag_set_search_setting(NULL, 10)", "22004"),
    ] {
        let e = c.query(sql, &[]).unwrap_err();
        assert_eq!(
            e.code().map(|s| s.code()),
            Some(code),
            "{sql}: {}",
            err_text(&e)
        );
    }
    let r = json_of(&mut c, "ruvector_dag_set_search_setting('v_idx', 32768)");
    assert_eq!(r["setting"], "ivfflat.probes");
    assert_eq!(r["value"], 32768);
}
