//! `ruvector_dag_set_search_setting`: an index's own search setting.

use pgrx::prelude::*;
use pgrx::JsonB;

use super::args::{oid_of, Regclass};

/// Sets (or with NULL removes) the `hnsw.ef_search` / `ivfflat.probes`
/// that queries scanning `index` run with while
/// `ruvector.dag_adaptive_search` is on. Needs what an index policy needs
/// (`ruvector_healer` and `MAINTAIN` on the table). Other sessions see the
/// change within a second, this one at once.
#[pg_extern(volatile)]
fn ruvector_dag_set_search_setting(index: Option<Regclass>, value: Option<i32>) -> JsonB {
    crate::release::require_current();
    let r = Spi::get_one_with_args::<JsonB>(
        "SELECT ruvector_healing.set_search_value($1, $2)",
        &[oid_of(index).into(), value.into()],
    )
    .unwrap_or_else(|e| pgrx::error!("{e}"))
    .expect("set_search_value returns a row");
    crate::adaptive::hooks::forget();
    r
}
