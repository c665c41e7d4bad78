//! The extension's DDL on indexes, in one place. Every act names the index
//! by the OID the repair built or recorded, never by a name alone:
//!
//! - [`create`]: `CREATE INDEX CONCURRENTLY` at top level, then the new
//!   index's OID, looked up on its table by the name just given;
//! - [`rename`]: by OID (`RenameRelationInternal`), under the index's lock,
//!   after checking that the OID is still an index of the expected table
//!   with the expected name (someone may have renamed it, and given its
//!   name to another index);
//! - [`set_valid`]: `pg_index.indisvalid` by OID, as `REINDEX
//!   CONCURRENTLY`'s swap does;
//! - [`drop`]: `DROP INDEX CONCURRENTLY` cannot run in a transaction, so it
//!   cannot check an OID and drop in one step. The index is first renamed,
//!   by OID under its lock, to a name of the extension's own
//!   (`<name>_rvdrop<repair>`), committed, then dropped by that name, and
//!   the OID is checked to be gone. Only someone who renames another index
//!   to that very name in between could misdirect it.

use pgrx::pg_sys;
use pgrx::spi::Spi;

use super::exec::{in_transaction, top_level, Deadline, StepError};
use super::plan::{self, quote_ident as q};

/// An index as the catalog shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNow {
    pub schema: String,
    pub name: String,
    pub table: pg_sys::Oid,
    pub valid: bool,
}

/// The index with this OID, if it exists (inside a transaction).
pub fn current(oid: pg_sys::Oid) -> Option<IndexNow> {
    if oid == pg_sys::Oid::INVALID {
        return None;
    }
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT n.nspname::text, c.relname::text, i.indrelid, i.indisvalid
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE i.indexrelid = $1",
                None,
                &[oid.into()],
            )
            .ok()?;
        let r = rows.into_iter().next()?;
        Some(IndexNow {
            schema: r.get::<String>(1).ok()??,
            name: r.get::<String>(2).ok()??,
            table: r.get::<pg_sys::Oid>(3).ok()??,
            valid: r.get::<bool>(4).ok()??,
        })
    })
}

/// The index of `table` named `name` in `schema` (inside a transaction).
pub fn named(schema: &str, name: &str, table: pg_sys::Oid) -> Option<pg_sys::Oid> {
    super::catalog::index_named(schema, name, table).map(|(oid, _)| oid)
}

/// Builds an index with `statement` (a `CREATE INDEX CONCURRENTLY` of
/// `name` in `schema` on `table`) and returns its OID.
pub fn create(
    deadline: Deadline,
    statement: &str,
    schema: &str,
    name: &str,
    table: pg_sys::Oid,
) -> Result<pg_sys::Oid, StepError> {
    top_level(deadline, statement)?;
    in_transaction(deadline, || named(schema, name, table))?
        .ok_or_else(|| StepError::new(format!("the new index {name} is missing after its build")))
}

/// Takes the index's lock (bounded by the transaction's `lock_timeout`) and
/// checks that it is still an index of `table` named `expected`.
fn lock_and_check(
    oid: pg_sys::Oid,
    table: pg_sys::Oid,
    expected: &str,
) -> Result<IndexNow, String> {
    let before = current(oid).ok_or_else(|| format!("index {} no longer exists", oid.to_u32()))?;
    unsafe { pg_sys::LockRelationOid(oid, pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE) };
    // Read again under the lock: a rename may have committed meanwhile.
    let now = current(oid).ok_or_else(|| format!("index {} was dropped", before.name))?;
    if now.table != table {
        return Err(format!(
            "index {} is no longer an index of the repaired table",
            now.name
        ));
    }
    if now.name != expected {
        return Err(format!(
            "index \"{expected}\" was renamed to \"{}\" while the repair ran; nothing was changed",
            now.name
        ));
    }
    Ok(now)
}

/// Renames index `oid` of `table`, now named `expected`, to `to`: by OID,
/// inside the caller's transaction.
pub fn rename(
    oid: pg_sys::Oid,
    table: pg_sys::Oid,
    expected: &str,
    to: &str,
) -> Result<(), String> {
    lock_and_check(oid, table, expected)?;
    let c = std::ffi::CString::new(to).map_err(|_| "a name with a NUL byte".to_string())?;
    unsafe {
        pg_sys::RenameRelationInternal(oid, c.as_ptr(), false, true);
        pg_sys::CommandCounterIncrement();
    }
    Ok(())
}

/// Marks an index valid or not and makes every session replan the table
/// (inside the caller's transaction).
pub fn set_valid(index: pg_sys::Oid, valid: bool, table: pg_sys::Oid) {
    Spi::run_with_args(
        "UPDATE pg_catalog.pg_index SET indisvalid = $2 WHERE indexrelid = $1",
        &[index.into(), valid.into()],
    )
    .expect("pg_index");
    unsafe {
        pg_sys::CacheInvalidateRelcacheByRelid(table);
        pg_sys::CommandCounterIncrement();
    }
}

/// What [`drop`] did.
#[derive(Debug, Clone)]
pub enum Dropped {
    /// The index is gone: this call dropped it.
    Dropped,
    /// There was no such index of the table any more (dropped by someone
    /// else, or by an earlier run that stopped before recording it).
    Gone,
    /// Still there; the error says why (the next run tries again).
    Failed(String),
}

/// The name an index gets before it is dropped.
pub fn drop_name(name: &str, repair_id: i64) -> String {
    plan::derived_name(name, &format!("_rvdrop{repair_id}"))
}

/// Drops index `oid` of `table` concurrently (see the module comment);
/// `base` names it in the drop name; `between` runs after the rename has
/// committed and before the drop (a test pause point).
pub fn drop(
    oid: pg_sys::Oid,
    table: pg_sys::Oid,
    base: &str,
    repair_id: i64,
    between: impl FnOnce(),
) -> Dropped {
    let target = drop_name(base, repair_id);
    let renamed = in_transaction(Deadline(None), || -> Result<Option<String>, String> {
        Spi::run("SET LOCAL lock_timeout = '5s'").map_err(|e| e.to_string())?;
        let Some(now) = current(oid).filter(|i| i.table == table) else {
            return Ok(None);
        };
        if now.name != target {
            rename(oid, table, &now.name, &target)?;
        }
        Ok(Some(now.schema))
    });
    let schema = match renamed {
        Ok(Ok(Some(schema))) => schema,
        Ok(Ok(None)) => return Dropped::Gone,
        Ok(Err(why)) => return Dropped::Failed(why),
        Err(e) => return Dropped::Failed(e.message),
    };
    between();
    let sql = format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
        q(&schema),
        q(&target)
    );
    if let Err(e) = top_level(Deadline(None), &sql) {
        return Dropped::Failed(e.message);
    }
    match in_transaction(Deadline(None), || current(oid)) {
        Ok(None) => Dropped::Dropped,
        Ok(Some(i)) => Dropped::Failed(format!("index {} is still there after the drop", i.name)),
        Err(e) => Dropped::Failed(e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_names_stay_within_63_bytes() {
        assert_eq!(drop_name("items_idx", 12), "items_idx_rvdrop12");
        assert!(drop_name(&"x".repeat(80), 123_456).len() <= plan::MAX_NAME);
    }
}
