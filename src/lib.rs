//! ruvector_healing: keeps pgvector's HNSW and IVFFlat indexes healthy.
//!
//! Layout: `inspect` reads index pages, `detect` turns metrics into issues,
//! `diagnose` scores them, `api` holds the thin SQL functions, `config` the
//! `ruvector.dag_healing_*` settings.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;

pub mod adaptive;
pub mod api;
pub mod config;
pub mod detect;
pub mod diagnose;
pub mod healing;
pub mod inspect;
pub mod owner;
pub mod prometheus;
pub mod recall;
pub mod release;
pub mod repair;
pub mod sql;
pub mod upgrade;
pub mod verify;

::pgrx::pg_module_magic!();

/// Whether the library was loaded through `shared_preload_libraries`.
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    config::init();
    adaptive::hooks::install();
    let preload = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preload, Ordering::Relaxed);
    if preload {
        use healing::state::STATE;
        use repair::counters::COUNTERS;
        use repair::registry::REGISTRY;
        pgrx::pg_shmem_init!(COUNTERS);
        pgrx::pg_shmem_init!(REGISTRY);
        pgrx::pg_shmem_init!(STATE);
        healing::launcher::register();
    }
}

pgrx::extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

// In-database tests run only under `cargo pgrx test` (feature pg_test), so
// that `cargo test --lib` runs the pure-logic tests without a server.
#[cfg(feature = "pg_test")]
#[pg_schema]
mod tests {
    // #[pg_schema] needs an inline module; the tests live in their own file.
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // A day between healing cycles: the tests call the functions themselves.
        vec![
            "shared_preload_libraries = 'ruvector_healing'",
            "ruvector.dag_healing_interval_ms = 86400000",
        ]
    }
}
