//! `ruvector_dag_verify_index` against damage made on disk: copies of an
//! index are corrupted in their files (server stopped cleanly, bytes
//! written, server started again; the session reads past the checksums with
//! `ignore_checksum_failure`), and each damage is reported with its kind
//! and place, never a crash. Sound indexes (fresh, churned and vacuumed,
//! rebuilt) report nothing.

use std::io::{Seek, SeekFrom, Write};

use postgres::Client;

use crate::common::*;

/// `(kind, block, offset)` of the violations the function reports.
fn violations(c: &mut Client, index: &str, heap: bool) -> Vec<(String, Option<i64>, Option<i32>)> {
    c.query(
        "SELECT kind, block, \"offset\" FROM ruvector_dag_verify_index($1::text::regclass, $2)",
        &[&index, &heap],
    )
    .unwrap_or_else(|e| panic!("verifying {index}: {}", err_text(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Byte position of item `offset` of a page (its line pointer's offset).
fn item_at(page: &[u8], offset: u16) -> usize {
    let (off, flags, len) = line_pointers(page)[offset as usize - 1];
    assert!(flags == 1 && len > 0, "no item at offset {offset}");
    off
}

/// The items of an HNSW page that start with `kind` (1 element, 2 neighbors).
fn items_of(page: &[u8], kind: u8) -> Vec<u16> {
    line_pointers(page)
        .iter()
        .enumerate()
        .filter(|(_, (off, flags, len))| *flags == 1 && *len > 0 && page[*off] == kind)
        .map(|(i, _)| i as u16 + 1)
        .collect()
}

fn tid_bytes(block: u32, offset: u16) -> Vec<u8> {
    let mut b = ((block >> 16) as u16).to_le_bytes().to_vec();
    b.extend_from_slice(&((block & 0xFFFF) as u16).to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b
}

/// One write into a relation's file: block, byte within the page, bytes.
struct Edit {
    rel: String,
    block: u32,
    at: usize,
    bytes: Vec<u8>,
}

/// Stops the server cleanly (every page on disk), writes the edits, starts
/// it again.
fn write_to_disk(c: &mut Client, edits: &[Edit]) {
    let st = settings();
    let paths: Vec<String> = edits
        .iter()
        .map(|e| {
            let p: String = c
                .query_one("SELECT pg_relation_filepath($1::text::regclass)", &[&e.rel])
                .unwrap()
                .get(0);
            format!("{}/{p}", st.data)
        })
        .collect();
    exec(c, "CHECKPOINT");
    let pg_ctl = format!("{}/pg_ctl", st.pgbin);
    let out = as_server_user(&pg_ctl, &["stop", "-m", "fast", "-w", "-D", &st.data]);
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (e, path) in edits.iter().zip(&paths) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap_or_else(|err| panic!("{path}: {err}"));
        f.seek(SeekFrom::Start(
            e.block as u64 * BLCKSZ as u64 + e.at as u64,
        ))
        .unwrap();
        f.write_all(&e.bytes).unwrap();
    }
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

#[test]
fn each_damage_is_reported_with_its_kind_and_place() {
    let db = TestDb::new("vf_damage");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE EXTENSION pageinspect;
             CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8)); {};
             SELECT ruvector_dag_set_table_policy('t', excluded => true);
             CREATE INDEX sound ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX to_heap ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX past_end ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX truncated ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX entry ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX missing_row ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX garbage ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX garbage_header ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);
             CREATE INDEX looped ON t USING ivfflat (embedding vector_l2_ops) WITH (lists = 1);",
            clustered_rows("t", 3_000, 8, 1, 20, 0.1)
        ),
    );
    let pages = |c: &mut Client, rel: &str| raw_pages(c, rel);
    let mut edits = Vec::new();

    // A neighbor TID naming the table row (0,1): on the index, block 0 is
    // the meta page.
    let p = pages(&mut c, "to_heap");
    let n = items_of(&p[1], 2)[0];
    edits.push(Edit {
        rel: "to_heap".into(),
        block: 1,
        at: item_at(&p[1], n) + 4,
        bytes: tid_bytes(0, 1),
    });
    // A neighbor TID past the end of the index.
    let p = pages(&mut c, "past_end");
    let n = items_of(&p[1], 2)[1];
    edits.push(Edit {
        rel: "past_end".into(),
        block: 1,
        at: item_at(&p[1], n) + 4,
        bytes: tid_bytes(p.len() as u32 + 1000, 1),
    });
    // A neighbor list one TID short.
    let p = pages(&mut c, "truncated");
    let trunc_n = items_of(&p[2], 2)[0];
    let at = item_at(&p[2], trunc_n);
    let count = u16::from_le_bytes([p[2][at + 2], p[2][at + 3]]);
    edits.push(Edit {
        rel: "truncated".into(),
        block: 2,
        at: at + 2,
        bytes: (count - 1).to_le_bytes().to_vec(),
    });
    // The entry point marked deleted.
    let p = pages(&mut c, "entry");
    let meta = hnsw_meta_raw(&p[0]);
    let eb = meta.entry_block;
    edits.push(Edit {
        rel: "entry".into(),
        block: eb,
        at: item_at(&p[eb as usize], meta.entry_offset) + 2,
        bytes: vec![1],
    });
    // An element of one row that loses its heap TID: the row is no longer
    // indexed (the element becomes a zombie, sound as a graph).
    let p = pages(&mut c, "missing_row");
    let (blk, el, row) = (1..p.len())
        .flat_map(|b| items_of(&p[b], 1).into_iter().map(move |o| (b, o)))
        .find_map(|(b, o)| {
            let at = item_at(&p[b], o);
            let t = &p[b][at..];
            let tids = (0..10)
                .filter(|i| u16::from_le_bytes([t[8 + 6 * i], t[9 + 6 * i]]) != 0)
                .count();
            let is_entry = b as u32 == hnsw_meta_raw(&p[0]).entry_block
                && o == hnsw_meta_raw(&p[0]).entry_offset;
            (tids == 1 && t[2] == 0 && !is_entry).then(|| {
                let block = ((u16::from_le_bytes([t[4], t[5]]) as u32) << 16)
                    | u16::from_le_bytes([t[6], t[7]]) as u32;
                (b, o, (block, u16::from_le_bytes([t[8], t[9]])))
            })
        })
        .expect("an element with one heap TID");
    edits.push(Edit {
        rel: "missing_row".into(),
        block: blk as u32,
        at: item_at(&p[blk], el) + 4,
        bytes: vec![0; 6],
    });
    // A page of garbage behind its header (line pointers, items, special
    // space): PostgreSQL reads it (the header is sane), the verifier judges it.
    let garbage = |from: usize| {
        (from..BLCKSZ)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>()
    };
    let p = pages(&mut c, "garbage");
    let last = p.len() as u32 - 1;
    edits.push(Edit {
        rel: "garbage".into(),
        block: last,
        at: 24,
        bytes: garbage(24),
    });
    // A whole page of garbage, header too: PostgreSQL's own read check
    // refuses it before any access method sees it.
    let p = pages(&mut c, "garbage_header");
    edits.push(Edit {
        rel: "garbage_header".into(),
        block: p.len() as u32 - 1,
        at: 0,
        bytes: garbage(0),
    });
    // The IVFFlat list's last page chained back to its first.
    let p = pages(&mut c, "looped");
    let lists = ivfflat_census(&p, false);
    assert_eq!(lists.len(), 1);
    assert!(lists[0].pages >= 3, "{lists:?}");
    let mut b = lists[0].start_page;
    while next_block(&p[b as usize]) != u32::MAX {
        b = next_block(&p[b as usize]);
    }
    let special = u16::from_le_bytes([p[b as usize][16], p[b as usize][17]]) as usize;
    edits.push(Edit {
        rel: "looped".into(),
        block: b,
        at: special,
        bytes: lists[0].start_page.to_le_bytes().to_vec(),
    });

    write_to_disk(&mut c, &edits);
    let mut c = wait_for_server(&db.name);
    exec(&mut c, "SET ignore_checksum_failure = on");

    assert_eq!(violations(&mut c, "sound", true), vec![]);
    let one = |v: Vec<(String, Option<i64>, Option<i32>)>, kind: &str| {
        v.into_iter()
            .find(|x| x.0 == kind)
            .unwrap_or_else(|| panic!("no {kind} violation"))
    };
    let v = violations(&mut c, "to_heap", false);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(one(v, "neighbor_not_element").1, Some(1));
    let v = violations(&mut c, "past_end", false);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(one(v, "neighbor_past_end").1, Some(1));
    let v = violations(&mut c, "truncated", false);
    assert_eq!(v.len(), 1, "{v:?}");
    let x = one(v, "neighbor_count");
    assert_eq!((x.1, x.2), (Some(2), Some(trunc_n as i32)));
    let v = violations(&mut c, "entry", false);
    assert_eq!(one(v, "entry_deleted").1, Some(0));
    // Structurally sound; only the table check finds the row missing, at
    // the row's own place.
    assert_eq!(violations(&mut c, "missing_row", false), vec![]);
    let v = violations(&mut c, "missing_row", true);
    assert_eq!(
        v,
        vec![(
            "heap_row_not_indexed".into(),
            Some(row.0 as i64),
            Some(row.1 as i32)
        )]
    );
    let v = violations(&mut c, "garbage", false);
    assert_eq!(one(v, "bad_page").1, Some(last as i64));
    let e = c
        .query(
            "SELECT * FROM ruvector_dag_verify_index('garbage_header')",
            &[],
        )
        .unwrap_err();
    assert_eq!(
        e.code().map(|s| s.code()),
        Some("XX001"),
        "{}",
        err_text(&e)
    );
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1, "the backend is alive");
    let v = violations(&mut c, "looped", true);
    assert_eq!(one(v, "chain_cycle").1, Some(b as i64));
    // The inspection refuses the damaged index with an error, never a crash.
    let e = c
        .query("SELECT ruvector_dag_index_health('looped')", &[])
        .unwrap_err();
    assert_eq!(
        e.code().map(|s| s.code()),
        Some("XX002"),
        "{}",
        err_text(&e)
    );
    assert_eq!(query_i64(&mut c, "SELECT 1"), 1);
}

#[test]
fn sound_indexes_report_nothing() {
    let db = TestDb::new("vf_sound");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(16), note text);
             ALTER TABLE t SET (autovacuum_enabled = false);
             {};
             CREATE INDEX t_h ON t USING hnsw (embedding vector_cosine_ops);
             CREATE INDEX t_i ON t USING ivfflat (embedding vector_l2_ops) WITH (lists = 20);
             CREATE INDEX t_p ON t USING hnsw (embedding vector_l2_ops) WHERE id % 2 = 0;
             CREATE INDEX t_e ON t USING hnsw ((embedding::halfvec(16)) halfvec_l2_ops);
             INSERT INTO t (embedding) SELECT array_fill(0, ARRAY[16])::vector;  -- not indexed for cosine
             INSERT INTO t (embedding) VALUES (NULL);",
            clustered_rows("t", 4_000, 16, 1, 40, 0.1)
        ),
    );
    let all = ["t_h", "t_i", "t_p", "t_e"];
    for i in all {
        assert_eq!(violations(&mut c, i, true), vec![], "fresh {i}");
    }
    // Churn: HOT and non-HOT updates, deletes, then vacuum.
    exec(
        &mut c,
        "UPDATE t SET note = 'hot' WHERE id % 5 = 0;
         UPDATE t SET embedding = embedding WHERE id % 7 = 0;
         DELETE FROM t WHERE id % 3 = 0;",
    );
    for i in all {
        assert_eq!(violations(&mut c, i, true), vec![], "churned {i}");
    }
    exec(&mut c, "VACUUM t");
    for i in all {
        assert_eq!(violations(&mut c, i, true), vec![], "vacuumed {i}");
    }
    // Rebuilt by a repair.
    let id = request(&mut c, "t_h", "rebuild");
    assert_eq!(status(&wait(&mut c, id)), "done");
    assert_eq!(violations(&mut c, "t_h", true), vec![], "repaired");
    // Bad input.
    let e = c
        .query("SELECT * FROM ruvector_dag_verify_index('t_pkey')", &[])
        .unwrap_err();
    assert_eq!(
        e.code().map(|s| s.code()),
        Some("42809"),
        "{}",
        err_text(&e)
    );
}

#[test]
fn the_worker_finds_a_corrupt_index_and_rebuilds_it() {
    let db = TestDb::new("vf_worker");
    let mut c = db.connect();
    exec(
        &mut c,
        &format!(
            "CREATE EXTENSION pageinspect;
             CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8)); {};
             CREATE INDEX c_idx ON t USING hnsw (embedding vector_l2_ops) WITH (m = 4);",
            clustered_rows("t", 3_000, 8, 1, 20, 0.1)
        ),
    );
    // A neighbor list one TID short (the page's checksum is not redone:
    // the server reads past it while this test runs).
    let p = raw_pages(&mut c, "c_idx");
    let n = items_of(&p[2], 2)[0];
    let at = item_at(&p[2], n);
    let count = u16::from_le_bytes([p[2][at + 2], p[2][at + 3]]);
    write_to_disk(
        &mut c,
        &[Edit {
            rel: "c_idx".into(),
            block: 2,
            at: at + 2,
            bytes: (count - 1).to_le_bytes().to_vec(),
        }],
    );
    let _s = SystemSettings::set(&[
        ("ignore_checksum_failure", "on"),
        ("ruvector.dag_healing_interval_ms", "2000"),
        ("ruvector.dag_healing_verify_interval_s", "1"),
        ("ruvector.dag_healing_rollback_enabled", "off"),
    ]);
    let mut c = wait_for_server(&db.name);
    let issue = |c: &mut Client, status: &str| -> Option<(String, Option<String>, String)> {
        c.query(
            "SELECT severity, cause, details::text FROM ruvector_healing.issues
              WHERE relname = 'c_idx' AND kind = 'corruption' AND status = $1",
            &[&status],
        )
        .unwrap()
        .first()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
    };
    let mut found = None;
    wait_until("a corruption issue of c_idx", 120, || {
        found = issue(&mut c, "open").or_else(|| issue(&mut c, "resolved"));
        found.is_some()
    });
    let (severity, cause, details) = found.unwrap();
    assert_eq!(severity, "critical");
    assert_eq!(cause.as_deref(), Some("corruption"), "{details}");
    assert!(details.contains("neighbor_count"), "{details}");
    // Rebuilt by the worker, the new index verified before the swap.
    let mut done = None;
    wait_until("the worker to rebuild c_idx", 300, || {
        done = c
            .query(
                "SELECT (after->'verification'->>'violations')::bigint, plan->>'cause'
                   FROM ruvector_healing.repairs WHERE relname = 'c_idx' AND status = 'done'",
                &[],
            )
            .unwrap()
            .first()
            .map(|r| (r.get::<_, Option<i64>>(0), r.get::<_, Option<String>>(1)));
        done.is_some()
    });
    assert_eq!(done.unwrap(), (Some(0), Some("corruption".to_string())));
    assert_eq!(violations(&mut c, "c_idx", true), vec![]);
    wait_until("the corruption issue to be resolved", 120, || {
        issue(&mut c, "open").is_none()
    });
    let stats = json_of(
        &mut c,
        "(SELECT to_jsonb(s) FROM ruvector_dag_stat_indexes s WHERE indexrelname = 'c_idx')",
    );
    assert!(stats["verified_at"].is_string(), "{stats:#}");
}
