//! Errors: another session's temporary index, missing privileges, invalid
//! indexes and wrong arguments, each with its SQLSTATE and a hint.

use crate::common::*;

fn setup(c: &mut postgres::Client) {
    exec(
        c,
        "SELECT setseed(0.77);
         CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8), note text);
         INSERT INTO t (embedding)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 8))::vector
             FROM generate_series(1, 500) g;
         CREATE INDEX t_hnsw ON t USING hnsw (embedding vector_l2_ops);
         CREATE INDEX t_ivf ON t USING ivfflat (embedding vector_l2_ops) WITH (lists = 4);
         CREATE INDEX t_btree ON t (id);",
    );
}

/// Test 7a: a temporary table's index belongs to the session that made it.
#[test]
fn temporary_index_of_another_session() {
    let db = TestDb::new("err_temp");
    let mut owner = db.connect();
    exec(
        &mut owner,
        "CREATE TEMPORARY TABLE tmp (id serial, embedding vector(3));
         INSERT INTO tmp (embedding) SELECT ARRAY[g, g * 2, g * 3]::vector
           FROM generate_series(1, 100) g;
         CREATE INDEX tmp_hnsw ON tmp USING hnsw (embedding vector_l2_ops);",
    );
    let oid: u32 = owner
        .query_one("SELECT 'tmp_hnsw'::regclass::oid", &[])
        .unwrap()
        .get(0);
    // Its own session may inspect it.
    let own = json_of(
        &mut owner,
        &format!("ruvector_dag_index_health({oid}::oid::regclass)"),
    );
    assert_eq!(u(&own, "heap_tids"), 100);

    let mut other = db.connect();
    for sql in [
        format!("SELECT ruvector_dag_index_health({oid}::oid::regclass)::text"),
        format!("SELECT count(*) FROM ruvector_dag_hnsw_levels({oid}::oid::regclass)"),
        format!("SELECT count(*) FROM ruvector_dag_hnsw_unreachable({oid}::oid::regclass)"),
    ] {
        let rep = expect_guided_error(
            other.query_one(&sql, &[]).map(|_| ()),
            "0A000",
            "another session's temporary",
        );
        assert!(rep.message.contains("tmp_hnsw"), "{rep:?}");
    }
    // Both sessions are still fine.
    assert_eq!(query_i64(&mut other, "SELECT 1"), 1);
    assert_eq!(query_i64(&mut owner, "SELECT count(*) FROM tmp"), 100);
}

/// Test 7b: inspecting reads the vectors, so it needs SELECT on the table
/// (or on the indexed column).
#[test]
fn privileges() {
    let mut db = TestDb::new("err_priv");
    let mut c = db.connect();
    setup(&mut c);
    let role = db.create_role("reader");
    let mut r = connect_as(&db.name, &role);
    for index in ["t_hnsw", "t_ivf"] {
        let e = try_health(&mut r, index);
        let rep = expect_guided_error(e, "42501", "permission denied");
        assert!(rep.message.contains(index), "{rep:?}");
        let guidance = rep.hint.unwrap_or_default();
        assert!(
            guidance.contains("SELECT"),
            "tells which privilege is missing: {guidance}"
        );
    }
    for sql in [
        "SELECT count(*) FROM ruvector_dag_hnsw_levels('t_hnsw')",
        "SELECT count(*) FROM ruvector_dag_hnsw_unreachable('t_hnsw')",
        "SELECT count(*) FROM ruvector_dag_ivfflat_lists('t_ivf')",
    ] {
        expect_guided_error(
            r.query_one(sql, &[]).map(|_| ()),
            "42501",
            "permission denied",
        );
    }
    // Recording issues is not for PUBLIC (Postgres's own EXECUTE check).
    let e = r.query_one("SELECT ruvector_dag_health_check('t')::text", &[]);
    expect_error(e, "42501", "permission denied for function");

    // SELECT on the indexed column is enough...
    exec(&mut c, &format!("GRANT SELECT (embedding) ON t TO {role}"));
    assert_eq!(u(&health(&mut r, "t_hnsw"), "heap_tids"), 500);
    exec(
        &mut c,
        &format!("REVOKE SELECT (embedding) ON t FROM {role}"),
    );
    expect_guided_error(try_health(&mut r, "t_hnsw"), "42501", "permission denied");
    // ...a different column is not...
    exec(&mut c, &format!("GRANT SELECT (note) ON t TO {role}"));
    expect_guided_error(try_health(&mut r, "t_hnsw"), "42501", "permission denied");
    // ...and SELECT on the table is.
    exec(&mut c, &format!("GRANT SELECT ON t TO {role}"));
    assert_eq!(u(&health(&mut r, "t_hnsw"), "heap_tids"), 500);
    assert_eq!(u(&health(&mut r, "t_ivf"), "tuples"), 500);
    let levels = query_i64(
        &mut r,
        "SELECT sum(live_elements)::bigint FROM ruvector_dag_hnsw_levels('t_hnsw')",
    );
    assert_eq!(levels, 500);
    // Checks that record issues are for members of ruvector_healer.
    exec(&mut c, &format!("GRANT ruvector_healer TO {role}"));
    let mut r = connect_as(&db.name, &role);
    let check = json_of(&mut r, "ruvector_dag_health_check('t')");
    assert_eq!(check["indexes"].as_array().unwrap().len(), 2);
    assert_eq!(query_i64(&mut r, "SELECT 1"), 1);
}

/// Test 7c: arguments that are not a readable pgvector index.
#[test]
fn wrong_arguments() {
    let db = TestDb::new("err_args");
    let mut c = db.connect();
    setup(&mut c);
    let cases: [(&str, &str, &str); 9] = [
        (
            "SELECT ruvector_dag_index_health(NULL)::text",
            "22004",
            "must not be NULL",
        ),
        (
            "SELECT ruvector_dag_index_health('t')::text",
            "42809",
            "is not an index",
        ),
        (
            "SELECT ruvector_dag_index_health('t_btree')::text",
            "42809",
            "access method btree",
        ),
        (
            "SELECT ruvector_dag_index_health(4000000000::oid::regclass)::text",
            "42P01",
            "does not exist",
        ),
        (
            "SELECT count(*) FROM ruvector_dag_ivfflat_lists('t_hnsw')",
            "42809",
            "not ivfflat",
        ),
        (
            "SELECT count(*) FROM ruvector_dag_hnsw_levels('t_ivf')",
            "42809",
            "not hnsw",
        ),
        (
            "SELECT count(*) FROM ruvector_dag_hnsw_unreachable('t_hnsw', 0)",
            "22023",
            "max_rows",
        ),
        (
            "SELECT ruvector_dag_health_check('t_hnsw')::text",
            "42809",
            "not a table",
        ),
        (
            "SELECT ruvector_dag_health_check(4000000000::oid::regclass)::text",
            "42P01",
            "does not exist",
        ),
    ];
    for (sql, code, needle) in cases {
        let r = c.query_one(sql, &[]).map(|_| ());
        if code == "22023" {
            // max_rows out of range: the message says it all.
            expect_error(r, code, needle);
        } else {
            expect_guided_error(r, code, needle);
        }
    }
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// Test 7d: a failed CREATE INDEX CONCURRENTLY leaves an invalid index.
#[test]
fn invalid_index() {
    let db = TestDb::new("err_invalid");
    let mut c = db.connect();
    setup(&mut c);
    // A row the index expression refuses makes the concurrent build fail.
    exec(
        &mut c,
        "INSERT INTO t (embedding) VALUES ('[9,9,9,9,9,9,9,9]');
         CREATE FUNCTION picky(v vector) RETURNS vector IMMUTABLE LANGUAGE plpgsql
           SET search_path = public AS $$
         BEGIN
             IF vector_norm(v) > 10 THEN
                 RAISE EXCEPTION 'refusing %', v;
             END IF;
             RETURN v;
         END $$;",
    );
    let e = c.batch_execute(
        "CREATE INDEX CONCURRENTLY t_bad ON t
           USING hnsw ((picky(embedding)::vector(8)) vector_l2_ops)",
    );
    let e = e.expect_err("the concurrent build should fail");
    assert!(err_text(&e).contains("refusing"), "{}", err_text(&e));
    let valid: bool = c
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_bad'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!valid);
    expect_guided_error(try_health(&mut c, "t_bad"), "55000", "is not valid");
    let check = json_of(&mut c, "ruvector_dag_health_check('t')");
    let kinds: Vec<(&str, &str)> = check["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["index"].as_str().unwrap(), i["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("t_bad", "invalid_index")], "{check:#}");
    let recorded = query_i64(
        &mut c,
        "SELECT count(*) FROM ruvector_dag_detected_issues('t')
          WHERE kind = 'invalid_index' AND status = 'open' AND index = 't_bad'",
    );
    assert_eq!(recorded, 1);
    // Dropping it resolves the issue on the next check.
    exec(&mut c, "DROP INDEX t_bad");
    let check = json_of(&mut c, "ruvector_dag_health_check('t')");
    assert_eq!(check["issues"], serde_json::json!([]));
    assert_eq!(check["resolved_issues"], 1);
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// Test 7e: the advice that comes with each error is sent as a HINT, where
/// clients show it as such (`DbError::hint()`, psql's "HINT:" line).
#[test]
fn errors_carry_a_hint() {
    let mut db = TestDb::new("err_hint");
    let mut c = db.connect();
    setup(&mut c);
    exec(
        &mut c,
        "CREATE TABLE p (id int, embedding vector(8)) PARTITION BY RANGE (id);
         CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);
         CREATE INDEX p_hnsw ON p USING hnsw (embedding vector_l2_ops);",
    );
    let mut owner = db.connect();
    exec(
        &mut owner,
        "CREATE TEMPORARY TABLE tmp (embedding vector(3));
         CREATE INDEX tmp_hnsw ON tmp USING hnsw (embedding vector_l2_ops);",
    );
    let temp_oid: u32 = owner
        .query_one("SELECT 'tmp_hnsw'::regclass::oid", &[])
        .unwrap()
        .get(0);
    let role = db.create_role("nohint");
    let mut r = connect_as(&db.name, &role);

    let mut reports = vec![
        expect_error(
            c.query_one("SELECT ruvector_dag_index_health(NULL)::text", &[]),
            "22004",
            "",
        ),
        expect_error(try_health(&mut c, "t"), "42809", "not an index"),
        expect_error(try_health(&mut c, "t_btree"), "42809", "btree"),
        expect_error(
            c.query_one(
                "SELECT ruvector_dag_index_health(4000000000::oid::regclass)::text",
                &[],
            ),
            "42P01",
            "",
        ),
        expect_error(
            c.query_one(
                &format!("SELECT ruvector_dag_index_health({temp_oid}::oid::regclass)::text"),
                &[],
            ),
            "0A000",
            "temporary",
        ),
        expect_error(try_health(&mut r, "t_hnsw"), "42501", ""),
        expect_error(
            c.query("SELECT * FROM ruvector_dag_hnsw_levels('p_hnsw')", &[]),
            "0A000",
            "",
        ),
        expect_error(
            c.query("SELECT * FROM ruvector_dag_hnsw_levels('t_ivf')", &[]),
            "42809",
            "",
        ),
        expect_error(
            c.query_one("SELECT ruvector_dag_health_check('t_hnsw')::text", &[]),
            "42809",
            "",
        ),
    ];
    let without: Vec<String> = reports
        .drain(..)
        .filter(|r| r.hint.as_deref().is_none_or(|h| h.trim().is_empty()))
        .map(|r| format!("{:?} (DETAIL: {:?})", r.message, r.detail))
        .collect();
    assert!(
        without.is_empty(),
        "{} error(s) without a HINT (the advice arrives as DETAIL):\n  {}",
        without.len(),
        without.join("\n  ")
    );
    assert_eq!(query_i64(&mut owner, "SELECT 1"), 1);
}

/// Overwrites four bytes of block 0 of `index` on disk and evicts the
/// index from shared buffers, so the next read sees the change.
fn patch_meta(c: &mut postgres::Client, index: &str, offset: usize, value: u32) {
    exec(c, "CHECKPOINT");
    let rel: String = c
        .query_one("SELECT pg_relation_filepath($1::text::regclass)", &[&index])
        .unwrap()
        .get(0);
    let path = format!("{}/{rel}", settings().data);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    exec(
        c,
        &format!("SELECT pg_buffercache_evict_relation('{index}'::regclass)"),
    );
}

/// An index whose meta page does not carry pgvector's magic number or a
/// format version this release reads is refused with an error, never
/// guessed at. (The meta page data starts after the 24-byte page header:
/// magic number, then version. Data checksums would reject the patched page
/// first, so the test lets Postgres read it anyway.)
#[test]
fn unknown_pgvector_format() {
    let db = TestDb::new("format");
    let mut c = db.connect();
    setup(&mut c);
    exec(
        &mut c,
        "CREATE EXTENSION pg_buffercache;
         CREATE INDEX fmt_ivf ON t USING ivfflat (embedding vector_l2_ops) WITH (lists = 2);",
    );
    exec(
        &mut c,
        "SET ignore_checksum_failure = on; SET client_min_messages = error",
    );
    let hnsw_version: i64 = query_i64(
        &mut c,
        "SELECT (ruvector_dag_index_health('t_hnsw')->>'format_version')::bigint",
    );
    assert_eq!(hnsw_version, 1);

    patch_meta(&mut c, "t_hnsw", 24, 0xDEAD_BEEF);
    let rep = expect_guided_error(
        try_health(&mut c, "t_hnsw"),
        "XX002",
        "cannot read hnsw index",
    );
    assert!(rep.message.contains("magic"), "{rep:?}");

    patch_meta(&mut c, "fmt_ivf", 28, 99);
    let rep = expect_guided_error(
        try_health(&mut c, "fmt_ivf"),
        "XX002",
        "cannot read ivfflat index",
    );
    assert!(rep.message.contains("version"), "{rep:?}");
    expect_guided_error(
        c.query_one("SELECT ruvector_dag_recall_estimate('fmt_ivf')", &[]),
        "XX002",
        "ivfflat",
    );
    // The session and the server are fine; the broken indexes can be dropped.
    exec(&mut c, "DROP INDEX t_hnsw; DROP INDEX fmt_ivf;");
    assert_eq!(query_i64(&mut c, "SELECT count(*) FROM t"), 500);
}
