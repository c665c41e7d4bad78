// In-database tests (`cargo pgrx test`): the Rust layer against a real
// server. Each test runs in its own rolled-back transaction. The SQL surface
// (messages, hints, output shapes) is covered by `pg_regress/`.

use pgrx::prelude::*;
use serde_json::Value;

use crate::config::HealingConfig;
use crate::inspect::hnsw;
use crate::inspect::relation::resolve;
use crate::inspect::report::{hnsw_scan, ivf_scan, with_pages};

fn oid_of(name: &str) -> pg_sys::Oid {
    Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[name.into()])
        .unwrap()
        .unwrap()
}

fn count(query: &str) -> i64 {
    Spi::get_one::<i64>(query).unwrap().unwrap()
}

/// `rows` distinct 4-dimensional vectors (correlated subquery, so each row
/// draws its own values) and one NULL vector, which no index stores.
fn make_table(name: &str, rows: i32) {
    Spi::run(&format!(
        "CREATE TABLE {name} (id serial PRIMARY KEY, embedding vector(4));
         INSERT INTO {name} (embedding)
              SELECT array(SELECT random() + g * 0 FROM generate_series(1, 4))::vector
                FROM generate_series(1, {rows}) g;
         INSERT INTO {name} (embedding) VALUES (NULL);"
    ))
    .unwrap();
}

#[pg_test]
fn library_is_preloaded_and_settings_have_spec_defaults() {
    assert!(crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed));
    let c = serde_json::to_value(HealingConfig::current()).unwrap();
    assert_eq!(c["enabled"], Value::Bool(true));
    // The test server sets a day between cycles; the default is 5 minutes.
    assert_eq!(c["interval_ms"], 86_400_000);
    let boot = Spi::get_one::<String>(
        "SELECT boot_val FROM pg_settings WHERE name = 'ruvector.dag_healing_interval_ms'",
    )
    .unwrap()
    .unwrap();
    assert_eq!(boot, "300000");
    assert_eq!(c["threshold"], 0.3);
    assert_eq!(c["anomaly_sensitivity"], 0.7);
    assert_eq!(c["max_concurrent_repairs"], 3);
    assert_eq!(c["rollback_enabled"], Value::Bool(true));
    assert_eq!(c["history_retention_days"], 30);
    assert_eq!(c["target_recall"], 0.95);
}

#[pg_test]
fn config_snapshot_follows_set() {
    Spi::run("SET LOCAL ruvector.dag_healing_target_recall = 0.9").unwrap();
    Spi::run("SET LOCAL ruvector.dag_healing_enabled = off").unwrap();
    let c = serde_json::to_value(HealingConfig::current()).unwrap();
    assert_eq!(c["target_recall"], 0.9);
    assert_eq!(c["enabled"], Value::Bool(false));
}

#[pg_test(
    error = "7 is outside the valid range for parameter \"ruvector.dag_healing_threshold\" (0.01 .. 1)"
)]
fn threshold_out_of_range_is_refused() {
    Spi::run("SET ruvector.dag_healing_threshold = 7").unwrap();
}

#[pg_test(error = "invalid configuration parameter name \"ruvector.nonsense\"")]
fn ruvector_prefix_is_reserved() {
    Spi::run("SET ruvector.nonsense = 1").unwrap();
}

#[pg_test]
fn hnsw_walk_counts_what_the_table_holds() {
    make_table("t_hnsw", 600);
    Spi::run("CREATE INDEX t_hnsw_idx ON t_hnsw USING hnsw (embedding vector_l2_ops) WITH (m = 4)")
        .unwrap();
    let t = resolve(Some(oid_of("t_hnsw_idx")));
    let (scan, bytes) = hnsw_scan(&t);
    let rows = count("SELECT count(embedding) FROM t_hnsw");
    assert_eq!(scan.heap_tids as i64, rows);
    assert_eq!(scan.elements_live as i64, rows);
    assert_eq!(bytes as i64, count("SELECT pg_relation_size('t_hnsw_idx')"));

    // Every unreachable element names heap rows that exist.
    let (list, _) = with_pages(&t, |src| hnsw::unreachable_elements(src, 100_000));
    let list = list.unwrap();
    assert_eq!(list.len() as u64, scan.unreachable());
    for u in list {
        for h in u.heap_tids {
            let found = count(&format!(
                "SELECT count(*) FROM t_hnsw WHERE ctid = '({},{})'",
                h.block, h.offset
            ));
            assert_eq!(found, 1);
        }
    }
}

#[pg_test]
fn ivfflat_walk_counts_what_the_table_holds() {
    make_table("t_ivf", 800);
    Spi::run(
        "CREATE INDEX t_ivf_idx ON t_ivf USING ivfflat (embedding vector_l2_ops) WITH (lists = 4)",
    )
    .unwrap();
    Spi::run("DELETE FROM t_ivf WHERE id % 4 = 0").unwrap();
    let t = resolve(Some(oid_of("t_ivf_idx")));
    let (scan, _) = ivf_scan(&t);
    assert_eq!(scan.lists.len(), 4);
    // Without VACUUM the deleted rows' entries are still in the lists.
    assert_eq!(scan.tuples(), 800);
}

#[pg_test]
fn health_check_records_then_updates_one_issue() {
    make_table("t_check", 50);
    Spi::run("CREATE INDEX t_check_idx ON t_check USING hnsw (embedding vector_l2_ops)").unwrap();
    // An index whose build failed stays invalid; simulate that in-catalog.
    Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 't_check_idx'::regclass")
        .unwrap();
    Spi::run("SELECT ruvector_dag_health_check('t_check')").unwrap();
    Spi::run("SELECT ruvector_dag_health_check('t_check')").unwrap();
    let (n, seen) = Spi::get_two::<i64, i32>(
        "SELECT count(*), max(times_seen) FROM ruvector_dag_detected_issues('t_check')
          WHERE kind = 'invalid_index' AND status = 'open'",
    )
    .unwrap();
    assert_eq!((n, seen), (Some(1), Some(2)));

    Spi::run("UPDATE pg_index SET indisvalid = true WHERE indexrelid = 't_check_idx'::regclass")
        .unwrap();
    Spi::run("SELECT ruvector_dag_health_check('t_check')").unwrap();
    assert_eq!(
        count("SELECT count(*) FROM ruvector_dag_detected_issues('t_check') WHERE status = 'open'"),
        0
    );
}

#[pg_test]
fn local_settings_are_restored_for_the_caller() {
    use crate::recall::scan::{setting, LocalSettings};
    // Loads pgvector, which defines its settings.
    Spi::run("SELECT '[1,2]'::vector").unwrap();
    Spi::run("SET ivfflat.probes = 3").unwrap();
    {
        let local = LocalSettings::new();
        local.set("ivfflat.probes", "7");
        assert_eq!(setting("ivfflat.probes").as_deref(), Some("7"));
    }
    assert_eq!(setting("ivfflat.probes").as_deref(), Some("3"));
}

#[pg_test]
fn recall_of_an_exhaustive_ivfflat_scan_is_one() {
    make_table("t_recall", 500);
    Spi::run("CREATE INDEX t_recall_idx ON t_recall USING ivfflat (embedding vector_l2_ops) WITH (lists = 4)")
        .unwrap();
    Spi::run("SET ivfflat.probes = 4").unwrap();
    let r = Spi::get_one::<pgrx::JsonB>("SELECT ruvector_dag_recall_estimate('t_recall_idx', 50, 5)")
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(r["recall"], 1.0);
    assert_eq!(r["rows"], 500);
    assert_eq!(r["short_results"], 0);
}

/// Index values over 512 bytes of a column with storage EXTENDED are
/// compressed inline by `index_form_tuple`: the IVFFlat walk decodes those
/// from a copy of their page, through the server's detoasting.
#[pg_test]
fn ivfflat_walk_decodes_compressed_values() {
    use crate::inspect::layout::{varlena, IndexTuple, Page, Varlena, INVALID_BLOCK};
    use crate::inspect::PageSource;
    Spi::run(
        "CREATE TABLE t_cmp (id serial PRIMARY KEY, embedding vector(300));
         ALTER TABLE t_cmp ALTER COLUMN embedding SET STORAGE EXTENDED;
         INSERT INTO t_cmp (embedding)
              SELECT array_fill((g % 3 + 1)::real, ARRAY[300])::vector
                FROM generate_series(1, 90) g;
         CREATE INDEX t_cmp_idx ON t_cmp USING ivfflat (embedding vector_l2_ops) WITH (lists = 2);",
    )
    .unwrap();
    let t = resolve(Some(oid_of("t_cmp_idx")));
    // The entries really are compressed.
    let (compressed, _) = with_pages(&t, |src| {
        let mut n = 0;
        for blk in 2..src.nblocks() {
            src.with_page(blk, |b| {
                let page = Page::new(b).unwrap();
                for off in 1..=page.max_offset() {
                    if let Some(it) = page.item(off).and_then(|t| IndexTuple::parse(t).ok()) {
                        n += matches!(varlena(it.value), Ok(Varlena::Compressed(_))) as u32;
                    }
                }
            })
            .unwrap();
        }
        n
    });
    assert!(compressed > 0);
    let (scan, _) = ivf_scan(&t);
    assert_eq!(scan.tuples(), 90);
    assert_eq!(scan.lists.iter().map(|l| l.decoded).sum::<u64>(), 90);
    assert!(scan.lists.iter().all(|l| l.start_page == INVALID_BLOCK || l.pages > 0));
    // Each value sits in the list of its nearest center.
    let centers: Vec<&Vec<f32>> = scan.lists.iter().map(|l| l.center.as_ref().unwrap()).collect();
    let mut want = 0.0;
    for g in 1..=90 {
        let x = (g % 3 + 1) as f64;
        want += centers
            .iter()
            .map(|c| c.iter().map(|y| (x - *y as f64).powi(2)).sum::<f64>().sqrt())
            .fold(f64::INFINITY, f64::min);
    }
    let got: f64 = scan.lists.iter().map(|l| l.distance_sum).sum();
    assert!((got - want).abs() <= 1e-5 * want.max(1.0), "{got} vs {want}");
    assert_eq!(scan.sample.len(), 90);
}

/// A session's own temporary indexes live in local buffers: the walks
/// read them through the same read stream and recent-buffer paths.
#[pg_test]
fn walks_read_temporary_indexes() {
    Spi::run(
        "CREATE TEMP TABLE t_tmp (id serial PRIMARY KEY, embedding vector(4));
         INSERT INTO t_tmp (embedding)
              SELECT array(SELECT random() + g * 0 FROM generate_series(1, 4))::vector
                FROM generate_series(1, 700) g;
         CREATE INDEX t_tmp_hnsw ON t_tmp USING hnsw (embedding vector_l2_ops) WITH (m = 4);
         CREATE INDEX t_tmp_ivf ON t_tmp USING ivfflat (embedding vector_l2_ops) WITH (lists = 5);",
    )
    .unwrap();
    let (h, _) = hnsw_scan(&resolve(Some(oid_of("t_tmp_hnsw"))));
    assert_eq!(h.elements_live, 700);
    assert_eq!(h.heap_tids, 700);
    assert_eq!(h.reachable_live + h.unreachable(), 700);
    assert!(h.reachable_live > 600, "{}", h.reachable_live);
    let (i, _) = ivf_scan(&resolve(Some(oid_of("t_tmp_ivf"))));
    assert_eq!(i.tuples(), 700);
    assert_eq!(i.lists.iter().map(|l| l.decoded).sum::<u64>(), 700);
}

/// The statement a rebuild runs reproduces the original's definition from
/// the catalog: expression key, operator class, storage options, predicate.
#[pg_test]
fn rebuild_statement_reproduces_the_definition() {
    Spi::run(
        "CREATE SCHEMA \"We ird\";
         CREATE TABLE \"We ird\".\"T\" (id int PRIMARY KEY, v vector(3));
         CREATE INDEX \"odd name\" ON \"We ird\".\"T\" USING hnsw ((v::halfvec(3)) halfvec_cosine_ops)
           WITH (m = 6, ef_construction = 20) WHERE id > 10;
         COMMENT ON INDEX \"We ird\".\"odd name\" IS 'it''s mine';",
    )
    .unwrap();
    let oid = oid_of("\"We ird\".\"odd name\"");
    let f = crate::repair::catalog::facts(oid).expect("facts");
    assert_eq!(f.relname, "odd name");
    assert_eq!(f.schema, "We ird");
    assert_eq!(f.comment.as_deref(), Some("it's mine"));
    assert!(f.unsafe_to_rebuild().is_none());
    let sql = f.definition.create_concurrently("twin").unwrap();
    assert!(sql.starts_with("CREATE INDEX CONCURRENTLY \"twin\" ON \"We ird\".\"T\" USING hnsw"), "{sql}");
    // Inside a test transaction the same statement runs without CONCURRENTLY.
    Spi::run(&sql.replacen("CREATE INDEX CONCURRENTLY", "CREATE INDEX", 1)).unwrap();
    let defs: Vec<String> = ["\"We ird\".\"odd name\"", "\"We ird\".twin"]
        .iter()
        .map(|n| {
            Spi::get_one::<String>(&format!("SELECT pg_get_indexdef('{n}'::regclass)"))
                .unwrap()
                .unwrap()
        })
        .collect();
    assert_eq!(
        defs[0].replacen("\"odd name\"", "twin", 1),
        defs[1],
        "the rebuilt definition differs"
    );
}

/// Indexes a shadow build cannot replace are refused with the reason.
#[pg_test]
fn unsafe_indexes_are_refused() {
    Spi::run(
        "CREATE TABLE parted (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
         CREATE INDEX parted_idx ON parted USING hnsw (v vector_l2_ops);",
    )
    .unwrap();
    let parent = crate::repair::catalog::facts(oid_of("parted_idx")).unwrap();
    assert!(parent.unsafe_to_rebuild().unwrap().contains("partitioned index"));
    let leaf_oid = Spi::get_one::<pg_sys::Oid>(
        "SELECT indexrelid FROM pg_index WHERE indrelid = 'parted_1'::regclass",
    )
    .unwrap()
    .unwrap();
    let leaf = crate::repair::catalog::facts(leaf_oid).unwrap();
    assert!(leaf.unsafe_to_rebuild().unwrap().contains("REINDEX INDEX CONCURRENTLY"));
    assert!(crate::repair::catalog::facts(pg_sys::Oid::from(1)).is_none());
}

/// The shared-memory counters exist when preloaded and add up.
#[pg_test]
fn repair_counters_live_in_shared_memory() {
    use crate::repair::counters;
    let before = counters::snapshot().expect("preloaded");
    counters::record(counters::Outcome::Succeeded { ms: 40 });
    counters::record(counters::Outcome::Failed);
    let after = counters::snapshot().unwrap();
    assert_eq!(after.successful, before.successful + 1);
    assert_eq!(after.failed, before.failed + 1);
    assert_eq!(after.total_ms, before.total_ms + 40);
}

/// The registry lives in shared memory: an entry this backend takes is
/// seen, refuses another owner's table, and leaves with the call.
#[pg_test]
fn repair_registry_lives_in_shared_memory() {
    use crate::repair::registry;
    let table = pg_sys::Oid::from(424_242);
    registry::enter(-7).expect("an entry");
    assert_eq!(registry::holder(-7).map(|e| e.pid), Some(unsafe { pg_sys::MyProcPid }));
    registry::claim_table(-7, table, 1).expect("the table's slot");
    assert_eq!(registry::table_holder(table).map(|e| e.repair_id), Some(-7));
    registry::enter(-8).unwrap();
    assert!(registry::claim_table(-8, pg_sys::Oid::from(1), 1).is_err(), "the cap of 1 is taken");
    registry::leave(-8);
    registry::leave(-7);
    assert!(registry::holder(-7).is_none());
    assert!(registry::table_holder(table).is_none());
}

/// The most specific policy applies: index, then table, schema, database.
#[pg_test]
fn policies_from_specific_to_general() {
    use crate::healing::policy::policy;
    make_table("pol", 20);
    Spi::run("CREATE INDEX pol_idx ON pol USING hnsw (embedding vector_l2_ops)").unwrap();
    let idx = oid_of("pol_idx");
    assert_eq!(policy(idx).strategy, "auto", "no policy: defaults");
    let schema = Spi::get_one_with_args::<String>(
        "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = $1",
        &[idx.into()],
    )
    .unwrap()
    .unwrap();
    Spi::run(&format!(
        "SELECT ruvector_dag_set_database_policy(strategy => 'none', thresholds => '{{\"max_fragmentation\": 0.1}}');
         SELECT ruvector_dag_set_schema_policy('{schema}', strategy => 'rebuild');
         SELECT ruvector_dag_set_table_policy('pol', strategy => 'vacuum', pin_lists => true);
         SELECT ruvector_dag_set_index_policy('pol_idx', excluded => true);"
    ))
    .unwrap();
    let p = policy(idx);
    assert!(p.excluded && p.strategy == "auto" && !p.pin_lists, "{p:?}");
    Spi::run(&format!("SELECT ruvector_dag_reset_policy('index', '{schema}', 'pol_idx')")).unwrap();
    let p = policy(idx);
    assert!(!p.excluded && p.strategy == "vacuum" && p.pin_lists, "{p:?}");
    Spi::run(&format!("SELECT ruvector_dag_reset_policy('table', '{schema}', 'pol')")).unwrap();
    assert_eq!(policy(idx).strategy, "rebuild");
    Spi::run(&format!("SELECT ruvector_dag_reset_policy('schema', '{schema}')")).unwrap();
    let p = policy(idx);
    assert_eq!(p.strategy, "none");
    assert_eq!(p.thresholds().max_fragmentation, 0.1);
}
