//! What a repair reads from the catalog about an index: its definition in
//! quoted pieces, the facts that make it unsafe to rebuild, and its size
//! and tablespace. Read by the requesting function (to refuse early) and
//! again by the worker (which trusts only the catalog, never the journal's
//! text).

use pgrx::pg_sys;
use pgrx::spi::Spi;
use serde::Serialize;

use super::plan::Definition;
use crate::inspect::relation::Am;

#[derive(Debug, Clone, Serialize)]
pub struct IndexFacts {
    #[serde(skip)]
    pub oid: pg_sys::Oid,
    #[serde(skip)]
    pub table_oid: pg_sys::Oid,
    pub schema: String,
    pub relname: String,
    /// `schema.index` as `regclass` prints it.
    pub qualified: String,
    pub table: String,
    pub am: String,
    pub valid: bool,
    pub temporary: bool,
    pub partitioned: bool,
    pub partition_of_index: bool,
    pub backs_constraint: bool,
    pub has_include: bool,
    pub bytes: i64,
    pub tablespace_oid: u32,
    pub comment: Option<String>,
    /// `(column number, statistics target)` of expression columns.
    pub stat_targets: Vec<(i32, i32)>,
    pub definition: Definition,
}

impl IndexFacts {
    pub fn access_method(&self) -> Option<Am> {
        match self.am.as_str() {
            "hnsw" => Some(Am::Hnsw),
            "ivfflat" => Some(Am::IvfFlat),
            _ => None,
        }
    }

    /// Why the index cannot be rebuilt by a shadow build and swap, if so.
    pub fn unsafe_to_rebuild(&self) -> Option<String> {
        let n = &self.qualified;
        if self.partitioned {
            Some(format!(
                "\"{n}\" is a partitioned index: repair the index of each partition"
            ))
        } else if self.partition_of_index {
            Some(format!("\"{n}\" is attached to a partitioned index, and a new index cannot take its place there; use REINDEX INDEX CONCURRENTLY"))
        } else if self.backs_constraint {
            Some(format!(
                "\"{n}\" backs a constraint: it cannot be replaced by renaming"
            ))
        } else if self.temporary {
            Some(format!(
                "\"{n}\" belongs to a temporary table, which a background worker cannot see"
            ))
        } else if !self.valid {
            Some(format!("\"{n}\" is not valid: a CREATE INDEX CONCURRENTLY is running or failed; drop it or REINDEX INDEX CONCURRENTLY"))
        } else if self.has_include {
            Some(format!(
                "\"{n}\" has INCLUDE columns, which pgvector indexes do not take"
            ))
        } else {
            None
        }
    }
}

/// The index's facts, `None` if no such index exists.
pub fn facts(oid: pg_sys::Oid) -> Option<IndexFacts> {
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT n.nspname::text, c.relname::text, c.oid::regclass::text,
                        i.indrelid, quote_ident(tn.nspname) || '.' || quote_ident(t.relname),
                        am.amname::text, i.indisvalid, c.relpersistence = 't',
                        c.relkind = 'I',
                        EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid),
                        EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid),
                        i.indnatts <> i.indnkeyatts,
                        pg_relation_size(c.oid), c.reltablespace::int8,
                        obj_description(c.oid, 'pg_class'),
                        ARRAY(SELECT pg_get_indexdef(c.oid, k, false) || ' '
                                     || quote_ident(ocn.nspname) || '.' || quote_ident(oc.opcname)
                                FROM generate_series(1, i.indnkeyatts::int) k
                                JOIN pg_opclass oc ON oc.oid = i.indclass[k - 1]
                                JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace
                               ORDER BY k),
                        coalesce(c.reloptions, '{}'::text[]),
                        CASE WHEN c.reltablespace = 0 THEN NULL
                             ELSE (SELECT quote_ident(spcname) FROM pg_tablespace
                                    WHERE oid = c.reltablespace) END,
                        pg_get_expr(i.indpred, i.indrelid),
                        ARRAY(SELECT a.attnum::int4 FROM pg_attribute a
                               WHERE a.attrelid = c.oid AND a.attstattarget IS NOT NULL
                                 AND a.attstattarget >= 0 ORDER BY a.attnum),
                        ARRAY(SELECT a.attstattarget::int4 FROM pg_attribute a
                               WHERE a.attrelid = c.oid AND a.attstattarget IS NOT NULL
                                 AND a.attstattarget >= 0 ORDER BY a.attnum),
                        quote_ident(am.amname)
                   FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_class t ON t.oid = i.indrelid
                   JOIN pg_namespace tn ON tn.oid = t.relnamespace
                   JOIN pg_am am ON am.oid = c.relam
                  WHERE i.indexrelid = $1",
                None,
                &[oid.into()],
            )
            .ok()?;
        let r = rows.into_iter().next()?;
        let options: Vec<String> = r.get::<Vec<String>>(17).ok()??;
        let options = options
            .iter()
            .filter_map(|o| {
                o.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let attnums: Vec<i32> = r.get::<Vec<i32>>(20).ok()??;
        let targets: Vec<i32> = r.get::<Vec<i32>>(21).ok()??;
        let table: String = r.get::<String>(5).ok()??;
        Some(IndexFacts {
            oid,
            schema: r.get::<String>(1).ok()??,
            relname: r.get::<String>(2).ok()??,
            qualified: r.get::<String>(3).ok()??,
            table_oid: r.get::<pg_sys::Oid>(4).ok()??,
            table: table.clone(),
            am: r.get::<String>(6).ok()??,
            valid: r.get::<bool>(7).ok()??,
            temporary: r.get::<bool>(8).ok()??,
            partitioned: r.get::<bool>(9).ok()??,
            partition_of_index: r.get::<bool>(10).ok()??,
            backs_constraint: r.get::<bool>(11).ok()??,
            has_include: r.get::<bool>(12).ok()??,
            bytes: r.get::<i64>(13).ok()??,
            tablespace_oid: r.get::<i64>(14).ok()?? as u32,
            comment: r.get::<String>(15).ok()?,
            stat_targets: attnums.into_iter().zip(targets).collect(),
            definition: Definition {
                table,
                am: r.get::<String>(22).ok()??,
                columns: r.get::<Vec<String>>(16).ok()??,
                options,
                tablespace: r.get::<String>(18).ok()?,
                predicate: r.get::<String>(19).ok()?,
            },
        })
    })
}

/// The index on `table` named `name` in `schema`, if any: `(oid, valid)`.
pub fn index_named(schema: &str, name: &str, table: pg_sys::Oid) -> Option<(pg_sys::Oid, bool)> {
    crate::sql::get_two::<pg_sys::Oid, bool>(
        "SELECT c.oid, i.indisvalid FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_index i ON i.indexrelid = c.oid
          WHERE n.nspname = $1 AND c.relname = $2 AND i.indrelid = $3",
        &[schema.into(), name.into(), table.into()],
    )
    .ok()
    .and_then(|(o, v)| Some((o?, v?)))
}

/// Free bytes on the filesystem of a tablespace (0 = the database's
/// default), as `statvfs` reports them to an unprivileged user.
pub fn free_bytes(tablespace: u32) -> Option<u64> {
    let dir = unsafe {
        let data = std::ffi::CStr::from_ptr(pg_sys::DataDir)
            .to_string_lossy()
            .into_owned();
        if tablespace == 0 {
            format!("{data}/base")
        } else {
            format!("{data}/pg_tblspc/{tablespace}")
        }
    };
    let c = std::ffi::CString::new(dir).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Rows of a table (exact count, what IVFFlat's `lists` is sized from).
pub fn row_count(table: &str) -> i64 {
    crate::sql::get_one::<i64>(&format!("SELECT count(*) FROM {table}"), &[])
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Dead and live tuples from the statistics system.
pub fn tuple_stats(table: pg_sys::Oid) -> (i64, i64) {
    crate::sql::get_two::<i64, i64>(
        "SELECT n_dead_tup, n_live_tup FROM pg_stat_all_tables WHERE relid = $1",
        &[table.into()],
    )
    .ok()
    .map(|(d, l)| (d.unwrap_or(0), l.unwrap_or(0)))
    .unwrap_or((0, 0))
}

/// The extension's schema, quoted (the worker's search_path is pg_catalog).
pub fn ext_schema() -> String {
    crate::sql::get_one::<String>(
        "SELECT quote_ident(n.nspname) FROM pg_extension e
           JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'ruvector_healing'",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "public".into())
}
