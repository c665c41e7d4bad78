//! HNSW: element counts through DELETE and VACUUM, checked against
//! `count(*)` and the raw pages; unreachable elements checked against
//! searches through the index itself.

use postgres::Client;
use serde_json::Value;

use crate::common::*;

/// Compares a report with the index's pages decoded here (pageinspect).
fn check_against_pages(c: &mut Client, index: &str, h: &Value) {
    let pages = raw_pages(c, index);
    assert_eq!(u(h, "pages"), pages.len() as u64, "pages");

    let meta = hnsw_meta_raw(&pages[0]);
    assert_eq!(meta.magic, 0xA953_A953, "hnsw meta magic");
    assert_eq!(meta.version, 1, "hnsw format version");
    assert_eq!(
        u(h, "dimensions"),
        meta.dimensions as u64,
        "dimensions vs meta page"
    );
    assert_eq!(u(h, "m"), meta.m as u64, "m vs meta page");
    assert_eq!(
        u(h, "ef_construction"),
        meta.ef_construction as u64,
        "ef_construction vs meta page"
    );
    assert_eq!(
        h["entry_level"].as_i64(),
        Some(meta.entry_level as i64),
        "entry_level vs meta page"
    );
    assert_eq!(
        h["entry_point"].as_str(),
        Some(format!("({},{})", meta.entry_block, meta.entry_offset).as_str()),
        "entry_point vs meta page"
    );

    let census = hnsw_census(&pages);
    // pageinspect's own reading of the page headers: line pointers per page.
    let lp = query_i64(
        c,
        &format!(
            "SELECT sum((lower - 24) / 4)::bigint
               FROM generate_series(1, pg_relation_size('{index}') / 8192 - 1) b,
                    page_header(get_raw_page('{index}', b::int))"
        ),
    );
    assert_eq!(
        census.line_pointers, lp as u64,
        "line pointers vs page_header()"
    );
    // Every element (live, zombie or deleted) keeps its neighbor tuple.
    assert_eq!(
        census.neighbor_tuples, census.elements,
        "one neighbor tuple per element"
    );
    assert_eq!(
        u(h, "elements_total"),
        census.elements,
        "elements_total vs pages"
    );
    assert_eq!(u(h, "elements_live"), census.live, "elements_live vs pages");
    assert_eq!(
        u(h, "elements_zombie"),
        census.zombie,
        "elements_zombie vs pages"
    );
    assert_eq!(
        u(h, "elements_deleted"),
        census.deleted,
        "elements_deleted vs pages"
    );
    assert_eq!(u(h, "heap_tids"), census.heap_tids, "heap_tids vs pages");
    let dist: Vec<u64> = h["layer_distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(
        dist, census.levels,
        "layer_distribution vs element levels on the pages"
    );
    assert_eq!(
        h["max_level"].as_u64(),
        Some(census.levels.len() as u64 - 1),
        "max_level vs pages"
    );
    // The entry point sits on the level the meta page says.
    let entry_level = hnsw_element_level(&pages, meta.entry_block, meta.entry_offset);
    assert_eq!(
        entry_level as i16, meta.entry_level,
        "level of the entry element"
    );
}

/// Figures that must agree with the catalog and with each other.
fn check_consistency(c: &mut Client, index: &str, h: &Value) {
    let size = relation_size(c, index);
    assert_eq!(u(h, "bytes"), size, "bytes vs pg_relation_size");
    assert_eq!(
        u(h, "pages"),
        size / 8192,
        "pages vs pg_relation_size / 8192"
    );
    let live = u(h, "elements_live");
    assert_eq!(
        u(h, "elements_total"),
        live + u(h, "elements_zombie") + u(h, "elements_deleted"),
        "total = live + zombie + deleted"
    );
    assert_eq!(
        u(h, "reachable") + u(h, "unreachable"),
        live,
        "reachable + unreachable = live"
    );
    let sum: u64 = h["layer_distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(sum, live, "sum of layer_distribution vs elements_live");
    let row = c
        .query_one(
            "SELECT sum(live_elements)::bigint, max(live_in_layer) FILTER (WHERE level = 0), count(*)
               FROM ruvector_dag_hnsw_levels($1::text::regclass)",
            &[&index],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0) as u64,
        live,
        "sum of hnsw_levels.live_elements"
    );
    assert_eq!(
        row.get::<_, i64>(1) as u64,
        live,
        "live_in_layer of level 0"
    );
    assert_eq!(
        row.get::<_, i64>(2) as usize,
        h["layer_distribution"].as_array().unwrap().len(),
        "one hnsw_levels row per level"
    );
    let listed = c
        .query_one(
            "SELECT count(*) FROM ruvector_dag_hnsw_unreachable($1::text::regclass, 10000000)",
            &[&index],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        listed as u64,
        u(h, "unreachable"),
        "rows of ruvector_dag_hnsw_unreachable"
    );
}

/// Test 1: counts before and after DELETE, and after VACUUM.
#[test]
fn hnsw_counts_through_delete_and_vacuum() {
    let db = TestDb::new("hnsw_counts");
    let mut c = db.connect();
    exec(
        &mut c,
        "CREATE EXTENSION pageinspect;
         SELECT setseed(0.11);
         CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16))
           WITH (autovacuum_enabled = false);
         INSERT INTO t (embedding)
           SELECT CASE WHEN g % 1000 = 500 THEN NULL
                       ELSE array(SELECT random() + g * 0 FROM generate_series(1, 16))::vector END
             FROM generate_series(1, 5005) g;
         CREATE INDEX t_hnsw ON t USING hnsw (embedding vector_l2_ops)
           WITH (m = 12, ef_construction = 48);",
    );
    let n0 = query_i64(&mut c, "SELECT count(*) FROM t WHERE embedding IS NOT NULL") as u64;
    assert_eq!(n0, 5000);
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM t WHERE embedding IS NULL"),
        5
    );
    // Distinct vectors: each row is one element with one heap tid.
    assert_eq!(
        query_i64(&mut c, "SELECT count(DISTINCT embedding) FROM t") as u64,
        n0,
        "test data must be distinct vectors"
    );

    let h = health(&mut c, "t_hnsw");
    assert_eq!(h["am"], "hnsw");
    assert_eq!(h["index"], "t_hnsw");
    assert_eq!(h["table"], "t");
    assert_eq!(h["partitioned"], false);
    assert_eq!(u(&h, "dimensions"), 16);
    assert_eq!(u(&h, "m"), 12, "m from WITH (m = 12)");
    assert_eq!(u(&h, "ef_construction"), 48, "ef_construction from WITH");
    assert_eq!(
        u(&h, "heap_tids"),
        n0,
        "heap_tids vs count(*) of non-null vectors"
    );
    assert_eq!(u(&h, "elements_live"), n0, "elements_live vs count(*)");
    assert_eq!(u(&h, "elements_total"), n0);
    assert_eq!(u(&h, "elements_deleted"), 0);
    assert_eq!(u(&h, "elements_zombie"), 0);
    assert_eq!(f(&h, "fragmentation"), 0.0);
    assert_eq!(h["skipped_metrics"], serde_json::json!([]));
    check_consistency(&mut c, "t_hnsw", &h);
    check_against_pages(&mut c, "t_hnsw", &h);

    // Delete a third of the vectors. The index is untouched until VACUUM:
    // the dead rows' tids are still there.
    let deleted = c
        .execute(
            "DELETE FROM t WHERE id % 3 = 0 AND embedding IS NOT NULL",
            &[],
        )
        .unwrap();
    assert!(deleted > 1500, "deleted {deleted}");
    let n1 = query_i64(&mut c, "SELECT count(*) FROM t WHERE embedding IS NOT NULL") as u64;
    assert_eq!(n1, n0 - deleted);
    let before_vacuum = health(&mut c, "t_hnsw");
    assert_eq!(
        u(&before_vacuum, "heap_tids"),
        n0,
        "dead tids stay until VACUUM"
    );
    assert_eq!(u(&before_vacuum, "elements_live"), n0);
    assert_eq!(u(&before_vacuum, "elements_deleted"), 0);
    check_consistency(&mut c, "t_hnsw", &before_vacuum);
    check_against_pages(&mut c, "t_hnsw", &before_vacuum);

    exec(&mut c, "VACUUM t");
    let after = health(&mut c, "t_hnsw");
    assert_eq!(
        u(&after, "heap_tids"),
        n1,
        "heap_tids vs count(*) after VACUUM"
    );
    assert_eq!(u(&after, "elements_live"), n1);
    assert_eq!(
        u(&after, "elements_deleted"),
        deleted,
        "one deleted element per deleted row"
    );
    assert_eq!(u(&after, "elements_zombie"), 0, "VACUUM leaves no zombie");
    assert_eq!(u(&after, "elements_total"), n0, "slots are kept for reuse");
    assert_close(
        "fragmentation",
        f(&after, "fragmentation"),
        deleted as f64 / n0 as f64,
        1e-6,
    );
    check_consistency(&mut c, "t_hnsw", &after);
    check_against_pages(&mut c, "t_hnsw", &after);
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// The same nearest-neighbour query the test uses as ground truth: the row
/// with id `$1` is only returned if a search from the index's entry point,
/// ordered by distance to the row's own vector `$2`, reaches its element.
/// `id + 0` keeps the primary key out of the plan.
const FIND_SELF: &str =
    "SELECT id FROM u WHERE id + 0 = $1 ORDER BY embedding <-> $2::text::vector LIMIT 1";

/// Makes a search as exhaustive as pgvector allows: a large candidate list,
/// then iterative scanning until everything reachable has been returned.
const EXHAUSTIVE: &str = "SET enable_seqscan = off; SET enable_tidscan = off;
    SET enable_bitmapscan = off; SET hnsw.ef_search = 1000;
    SET hnsw.iterative_scan = relaxed_order; SET hnsw.max_scan_tuples = 1000000;
    SET work_mem = '1GB'; SET hnsw.scan_mem_multiplier = 100;
    SET plan_cache_mode = force_custom_plan;";

/// How many of `rows` (id, vector) the index returns when searched for
/// with their own vector.
fn found(c: &mut Client, rows: &[(i64, String)]) -> usize {
    let stmt = c.prepare(FIND_SELF).unwrap();
    rows.iter()
        .filter(|(id, v)| {
            let got = c.query(&stmt, &[id, v]).unwrap();
            assert!(got.len() <= 1);
            got.first().map(|r| r.get::<_, i64>(0)) == Some(*id)
        })
        .count()
}

fn id_vectors(c: &mut Client, sql: &str) -> Vec<(i64, String)> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Test 3: an index built with m = 2, ef_construction = 4 leaves many
/// elements that no search can reach; they are reported, listed, and
/// indeed never found by an exhaustive search.
#[test]
fn hnsw_unreachable_elements_are_never_found() {
    let db = TestDb::new("hnsw_unreach");
    let mut c = db.connect();
    exec(
        &mut c,
        "SELECT setseed(0.7);
         CREATE TABLE u (id bigserial PRIMARY KEY, embedding vector(8))
           WITH (autovacuum_enabled = false);
         INSERT INTO u (embedding)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 8))::vector
             FROM generate_series(1, 20000) g;
         CREATE INDEX u_bad ON u USING hnsw (embedding vector_l2_ops)
           WITH (m = 2, ef_construction = 4);",
    );
    assert_eq!(
        query_i64(&mut c, "SELECT count(DISTINCT embedding) FROM u"),
        20000
    );
    let h = health(&mut c, "u_bad");
    let unreachable = u(&h, "unreachable");
    let live = u(&h, "elements_live");
    assert_eq!(live, 20000);
    assert_eq!(u(&h, "heap_tids"), 20000);
    assert!(unreachable >= 1000, "unreachable = {unreachable}");
    let conn = f(&h, "connectivity_score");
    assert!(conn < 0.95, "connectivity_score = {conn}");
    assert_close(
        "connectivity_score",
        conn,
        u(&h, "reachable") as f64 / live as f64,
        1e-6,
    );
    assert_close(
        "unreachable_ratio",
        f(&h, "unreachable_ratio"),
        unreachable as f64 / live as f64,
        1e-6,
    );
    assert_eq!(u(&h, "reachable") + unreachable, live);

    // The list of unreachable elements: one row per element (distinct
    // vectors hold one heap tid each), every heap tid a live row.
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT x.heap_tid), count(DISTINCT x.element_tid),
                    count(u.id), min(x.level)
               FROM ruvector_dag_hnsw_unreachable('u_bad', 100000) x
               LEFT JOIN u ON u.ctid = x.heap_tid",
            &[],
        )
        .unwrap();
    let listed = row.get::<_, i64>(0) as u64;
    assert_eq!(listed, unreachable, "rows of ruvector_dag_hnsw_unreachable");
    assert_eq!(row.get::<_, i64>(1) as u64, listed, "distinct heap tids");
    assert_eq!(row.get::<_, i64>(2) as u64, listed, "distinct element tids");
    assert_eq!(
        row.get::<_, i64>(3) as u64,
        listed,
        "every heap tid is a row of u"
    );
    assert!(row.get::<_, i32>(4) >= 0);
    let default_limit = query_i64(
        &mut c,
        "SELECT count(*) FROM ruvector_dag_hnsw_unreachable('u_bad')",
    );
    assert_eq!(
        default_limit as u64,
        unreachable.min(1000),
        "default max_rows is 1000"
    );

    let unreached = id_vectors(
        &mut c,
        "SELECT u.id, u.embedding::text
           FROM ruvector_dag_hnsw_unreachable('u_bad', 100000) x
           JOIN u ON u.ctid = x.heap_tid
          ORDER BY md5(u.id::text) LIMIT 300",
    );
    let reached = id_vectors(
        &mut c,
        "SELECT u.id, u.embedding::text FROM u
          WHERE NOT EXISTS (SELECT 1 FROM ruvector_dag_hnsw_unreachable('u_bad', 100000) x
                             WHERE x.heap_tid = u.ctid)
          ORDER BY md5(u.id::text) LIMIT 500",
    );
    assert_eq!((unreached.len(), reached.len()), (300, 500));

    let mut s = db.connect();
    exec(&mut s, EXHAUSTIVE);
    let plan: Vec<String> = s
        .query(
            &format!("EXPLAIN {FIND_SELF}"),
            &[&unreached[0].0, &unreached[0].1],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("Index Scan using u_bad")),
        "the ground-truth query must search the hnsw index:\n{}",
        plan.join("\n")
    );
    // Zero tolerance: an element no edge leads to can never be returned.
    let false_unreachable = found(&mut s, &unreached);
    assert_eq!(
        false_unreachable, 0,
        "rows reported unreachable that an index search found"
    );
    // Reachability is defined over the union of all layers from the entry
    // point, while a search descends the upper layers greedily and then
    // explores layer 0 from where it landed, so a reachable element can
    // still be missed by one particular search (1 to 3% here); most are
    // found. 500 rows keep the 95% bar well clear of sampling noise.
    let hits = found(&mut s, &reached);
    let rate = hits as f64 / reached.len() as f64;
    eprintln!(
        "hnsw m=2 ef_construction=4, 20000 rows: unreachable = {unreachable}, \
         connectivity_score = {conn}, unreachable sample found 0/300 (found {false_unreachable}), \
         reachable sample found {hits}/{} ({:.1}%)",
        reached.len(),
        rate * 100.0
    );
    assert!(
        rate >= 0.95,
        "reachable rows found by a search: {hits}/{}",
        reached.len()
    );

    // A well-built index on the same rows: everything reachable, and the
    // rows the bad index could not return are found through it.
    exec(
        &mut c,
        "DROP INDEX u_bad; CREATE INDEX u_good ON u USING hnsw (embedding vector_l2_ops);",
    );
    let g = health(&mut c, "u_good");
    assert_eq!(u(&g, "m"), 16, "default m");
    assert_eq!(u(&g, "ef_construction"), 64, "default ef_construction");
    assert_eq!(u(&g, "elements_live"), 20000);
    assert_eq!(u(&g, "unreachable"), 0);
    assert_eq!(f(&g, "connectivity_score"), 1.0);
    assert_eq!(
        query_i64(
            &mut c,
            "SELECT count(*) FROM ruvector_dag_hnsw_unreachable('u_good')"
        ),
        0
    );
    let mut s = db.connect();
    exec(&mut s, EXHAUSTIVE);
    let good_hits = found(&mut s, &unreached);
    eprintln!("default index: previously unreachable sample found {good_hits}/300");
    assert!(
        good_hits >= 297,
        "found through the m=16 index: {good_hits}/300"
    );
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

/// Identical vectors share one element (up to 10 heap tids each), so
/// heap_tids, not elements_live, is what matches `count(*)`.
#[test]
fn hnsw_duplicate_vectors_share_elements() {
    let db = TestDb::new("hnsw_dups");
    let mut c = db.connect();
    exec(
        &mut c,
        "CREATE EXTENSION pageinspect;
         SELECT setseed(0.12);
         CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8))
           WITH (autovacuum_enabled = false);
         INSERT INTO t (embedding)
           SELECT array(SELECT random() + g * 0 FROM generate_series(1, 8))::vector
             FROM generate_series(1, 500) g;
         INSERT INTO t (embedding)
           SELECT '[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]' FROM generate_series(1, 100);
         CREATE INDEX t_hnsw ON t USING hnsw (embedding vector_l2_ops);",
    );
    let h = health(&mut c, "t_hnsw");
    assert_eq!(u(&h, "heap_tids"), 600, "heap_tids vs count(*)");
    let live = u(&h, "elements_live");
    assert!(
        (510..600).contains(&live),
        "100 copies need 10 to 99 elements: elements_live = {live}"
    );
    check_consistency(&mut c, "t_hnsw", &h);
    check_against_pages(&mut c, "t_hnsw", &h);

    exec(
        &mut c,
        "DELETE FROM t WHERE embedding = '[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]'",
    );
    exec(&mut c, "VACUUM t");
    let after = health(&mut c, "t_hnsw");
    assert_eq!(
        u(&after, "heap_tids"),
        500,
        "heap_tids vs count(*) after VACUUM"
    );
    assert_eq!(u(&after, "elements_live"), 500);
    assert_eq!(u(&after, "elements_deleted"), live - 500);
    check_consistency(&mut c, "t_hnsw", &after);
    check_against_pages(&mut c, "t_hnsw", &after);
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}
