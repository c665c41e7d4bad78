//! Index expressions and predicates run with the table owner's rights.
//!
//! Measuring recall and verifying `heapallindexed` evaluate the index's
//! expression and partial-index predicate for every row. Whoever calls
//! them (the worker runs as a superuser) must not lend their rights to a
//! function the table's owner wrote: as `REINDEX` and `amcheck` do, the
//! evaluation runs as the owner, as a security-restricted operation, with
//! a safe `search_path`. An error inside aborts the (sub)transaction, which
//! restores the user and the settings itself.

use pgrx::pg_sys;

/// Runs `f` as the owner of `table`.
///
/// # Safety
/// `table` must be an open relation.
pub unsafe fn as_table_owner<R>(table: pg_sys::Relation, f: impl FnOnce() -> R) -> R {
    let mut user = pg_sys::InvalidOid;
    let mut context = 0;
    pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
    pg_sys::SetUserIdAndSecContext(
        (*(*table).rd_rel).relowner,
        context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
    );
    let nest = pg_sys::NewGUCNestLevel();
    pg_sys::RestrictSearchPath();
    let r = f();
    pg_sys::AtEOXact_GUC(false, nest);
    pg_sys::SetUserIdAndSecContext(user, context);
    r
}
