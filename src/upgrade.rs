//! C symbols that earlier releases' install scripts name and this library
//! no longer serves with their old signature. `CREATE FUNCTION ... LANGUAGE
//! c` looks each symbol up when an earlier release's script runs (for
//! `CREATE EXTENSION ruvector_healing VERSION '0.1.0'` and the start of the
//! upgrade chain), so every one must stay exported; calling one before
//! `ALTER EXTENSION ruvector_healing UPDATE` gets an error that says so
//! instead of arguments read with the wrong layout (as VectorChord's
//! `src/upgrade.rs` does).

use pgrx::pg_sys;

use crate::inspect::relation::raise;

/// Exports `$symbol` (and its `pg_finfo_` record, version-1 calling
/// convention) as a function that refuses with the update hint.
macro_rules! replaced {
    ($symbol:ident, $finfo:ident, $what:literal) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[pgrx::pg_guard]
        pub extern "C-unwind" fn $symbol(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            stale($what)
        }
    };
}

fn stale(what: &str) -> ! {
    raise(
        pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        &format!(
            "{what} of an earlier ruvector_healing release is installed in this database, but the loaded library is {}",
            crate::release::LIBRARY_VERSION
        ),
        &format!("run {} in this database", crate::release::UPDATE_COMMAND),
    )
}

// 0.1.0: ruvector_dag_repair_index(regclass, text, bool); 0.2.0 adds
// `options jsonb`.
replaced!(
    ruvector_dag_repair_index_wrapper,
    pg_finfo_ruvector_dag_repair_index_wrapper,
    "ruvector_dag_repair_index(regclass, text, bool)"
);
