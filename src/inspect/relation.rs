//! Resolves a regclass into a pgvector index we may read, with a clear
//! ERROR and hint for everything else, and opens it for reading.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::spi::Spi;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

use super::vectors::{Metric, VectorType};

/// pgvector access methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Am {
    Hnsw,
    IvfFlat,
}

impl Am {
    pub fn name(&self) -> &'static str {
        match self {
            Am::Hnsw => "hnsw",
            Am::IvfFlat => "ivfflat",
        }
    }
}

/// A validated pgvector index.
#[derive(Debug, Clone)]
pub struct IndexTarget {
    pub oid: pg_sys::Oid,
    pub name: String,
    pub table_oid: pg_sys::Oid,
    pub table: String,
    pub am: Am,
    pub opclass: String,
    pub vector_type: Option<VectorType>,
    pub type_name: String,
    pub metric: Option<Metric>,
    /// A partitioned index (no storage of its own) and its leaf indexes.
    pub partitioned: bool,
    pub partitions: Vec<pg_sys::Oid>,
}

/// Raises an ERROR with SQLSTATE `code`, `msg` and (when not empty) a HINT
/// that says what to do instead.
#[track_caller]
pub fn raise(code: PgSqlErrorCode, msg: &str, hint: &str) -> ! {
    let mut report = ErrorReport::new(code, msg.to_string(), "ruvector_healing");
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

struct CatalogRow {
    relkind: String,
    persistence: String,
    am: Option<String>,
    valid: Option<bool>,
    table_oid: Option<pg_sys::Oid>,
    name: String,
    table: Option<String>,
    opclass: Option<String>,
    type_name: Option<String>,
    may_read: Option<bool>,
    own_temp: bool,
}

fn catalog_row(oid: pg_sys::Oid) -> Option<CatalogRow> {
    Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT c.relkind::text, c.relpersistence::text, am.amname::text,
                        i.indisvalid, i.indrelid,
                        c.oid::regclass::text, i.indrelid::regclass::text,
                        opc.opcname::text, ty.typname::text,
                        CASE WHEN i.indrelid IS NULL THEN NULL ELSE
                          has_table_privilege(i.indrelid, 'SELECT') OR coalesce(
                            (SELECT bool_and(has_column_privilege(i.indrelid, k, 'SELECT'))
                               FROM unnest(i.indkey::int2[]) AS k WHERE k > 0), false) END,
                        c.relnamespace = pg_my_temp_schema()
                   FROM pg_class c
              LEFT JOIN pg_am am ON am.oid = c.relam
              LEFT JOIN pg_index i ON i.indexrelid = c.oid
              LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[0]
              LEFT JOIN pg_type ty ON ty.oid = opc.opcintype
                  WHERE c.oid = $1",
                None,
                &[oid.into()],
            )
            .ok()?;
        let row = rows.first();
        if row.is_empty() {
            return None;
        }
        Some(CatalogRow {
            relkind: row.get::<String>(1).ok()??,
            persistence: row.get::<String>(2).ok()??,
            am: row.get::<String>(3).ok()?,
            valid: row.get::<bool>(4).ok()?,
            table_oid: row.get::<pg_sys::Oid>(5).ok()?,
            name: row.get::<String>(6).ok()??,
            table: row.get::<String>(7).ok()?,
            opclass: row.get::<String>(8).ok()?,
            type_name: row.get::<String>(9).ok()?,
            may_read: row.get::<bool>(10).ok()?,
            own_temp: row.get::<bool>(11).ok()?.unwrap_or(false),
        })
    })
}

/// Validates `oid` as a readable pgvector index. Errors (never returns) on
/// anything else.
pub fn resolve(oid: Option<pg_sys::Oid>) -> IndexTarget {
    let Some(oid) = oid else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "index must not be NULL",
            "pass a pgvector index, for example 'items_embedding_idx'::regclass",
        );
    };
    let Some(row) = catalog_row(oid) else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            &format!("relation with OID {} does not exist", oid.to_u32()),
            "the index may have been dropped; list pgvector indexes with ruvector_dag_healing_status()",
        );
    };
    if row.relkind != "i" && row.relkind != "I" {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            &format!("\"{}\" is not an index", row.name),
            "pass a pgvector hnsw or ivfflat index; ruvector_dag_health_check(table) inspects every pgvector index of a table",
        );
    }
    let am = match row.am.as_deref() {
        Some("hnsw") => Am::Hnsw,
        Some("ivfflat") => Am::IvfFlat,
        other => raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            &format!(
                "index \"{}\" uses access method {}, not pgvector's hnsw or ivfflat",
                row.name,
                other.unwrap_or("(none)")
            ),
            "only pgvector hnsw and ivfflat indexes can be inspected",
        ),
    };
    if row.may_read != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            &format!(
                "permission denied to inspect index \"{}\"",
                row.name
            ),
            &format!(
                "inspecting an index reads the vectors it holds: it needs SELECT on table {} (or on its indexed columns)",
                row.table.as_deref().unwrap_or("?")
            ),
        );
    }
    if row.persistence == "t" && !row.own_temp {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!(
                "index \"{}\" belongs to another session's temporary table",
                row.name
            ),
            "temporary indexes can only be inspected by the session that owns them",
        );
    }
    if row.valid != Some(true) && row.relkind == "i" {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("index \"{}\" is not valid", row.name),
            "it is still being built by CREATE INDEX CONCURRENTLY, or such a build failed; wait for it or drop it",
        );
    }
    let type_name = row.type_name.unwrap_or_default();
    let opclass = row.opclass.unwrap_or_default();
    let partitions = if row.relkind == "I" {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT relid FROM pg_partition_tree($1) WHERE isleaf ORDER BY level, relid",
                    None,
                    &[oid.into()],
                )
                .map(|t| {
                    t.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    } else {
        Vec::new()
    };
    IndexTarget {
        oid,
        name: row.name,
        table_oid: row.table_oid.unwrap_or(pg_sys::InvalidOid),
        table: row.table.unwrap_or_default(),
        am,
        vector_type: VectorType::from_type_name(&type_name),
        metric: Metric::from_opclass(&opclass),
        opclass,
        type_name,
        partitioned: row.relkind == "I",
        partitions,
    }
}

/// The table and index, opened with `AccessShareLock` (the lock any scan
/// takes: it blocks neither inserts nor vacuum). Locks are held to the end
/// of the transaction, as for a query.
pub struct OpenIndex {
    pub rel: pg_sys::Relation,
    pub table: pg_sys::Relation,
}

impl OpenIndex {
    pub fn open(t: &IndexTarget) -> OpenIndex {
        unsafe {
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let table = pg_sys::relation_open(t.table_oid, lock);
            let rel = pg_sys::index_open(t.oid, lock);
            OpenIndex { rel, table }
        }
    }

    pub fn size_bytes(&self) -> u64 {
        let blocks = unsafe {
            pg_sys::RelationGetNumberOfBlocksInFork(self.rel, pg_sys::ForkNumber::MAIN_FORKNUM)
        };
        blocks as u64 * pg_sys::BLCKSZ as u64
    }

    pub fn close(self) {
        unsafe {
            pg_sys::index_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::relation_close(self.table, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}
