//! Inspection functions: `ruvector_dag_index_health`, the per-level and
//! per-list detail, and the list of unreachable HNSW elements.

use pgrx::itemptr::item_pointer_set_all;
use pgrx::prelude::*;
use pgrx::{pg_sys, JsonB};

use super::args::{oid_of, Regclass};
use crate::inspect::hnsw;
use crate::inspect::metrics;
use crate::inspect::relation::{raise, resolve, Am, IndexTarget};
use crate::inspect::report::{health_value, hnsw_scan, ivf_scan, walk_error, with_pages};

#[pg_extern(volatile, parallel_safe)]
fn ruvector_dag_index_health(index: Option<Regclass>) -> JsonB {
    crate::release::require_current();
    JsonB(health_value(&resolve(oid_of(index))))
}

fn require(t: &IndexTarget, am: Am, function: &str) {
    if t.partitioned {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("\"{}\" is a partitioned index", t.name),
            &format!("call {function} on the index of one partition; ruvector_dag_index_health() covers every partition"),
        );
    }
    if t.am != am {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            &format!(
                "\"{}\" is an {} index, not {}",
                t.name,
                t.am.name(),
                am.name()
            ),
            &format!("{function} reads {} indexes only", am.name()),
        );
    }
}

#[allow(clippy::type_complexity)] // the SQL result columns
#[pg_extern(volatile, parallel_safe)]
fn ruvector_dag_hnsw_levels(
    index: Option<Regclass>,
) -> TableIterator<
    'static,
    (
        name!(level, i32),
        name!(live_elements, i64),
        name!(live_in_layer, i64),
        name!(expected_elements, f64),
        name!(expected_in_layer, f64),
        name!(mean_out_degree, Option<f64>),
        name!(max_out_degree, i32),
    ),
> {
    crate::release::require_current();
    let t = resolve(oid_of(index));
    require(&t, Am::Hnsw, "ruvector_dag_hnsw_levels");
    let (s, _) = hnsw_scan(&t);
    TableIterator::new(metrics::hnsw_levels(&s).into_iter().map(|r| {
        (
            r.level,
            r.live_elements,
            r.live_in_layer,
            r.expected,
            r.expected_in_layer,
            r.mean_out_degree,
            r.max_degree,
        )
    }))
}

#[pg_extern(volatile, parallel_safe)]
fn ruvector_dag_ivfflat_lists(
    index: Option<Regclass>,
) -> TableIterator<
    'static,
    (
        name!(list, i32),
        name!(tuples, i64),
        name!(pages, i64),
        name!(mean_distance_to_center, Option<f64>),
        name!(start_page, i64),
    ),
> {
    crate::release::require_current();
    let t = resolve(oid_of(index));
    require(&t, Am::IvfFlat, "ruvector_dag_ivfflat_lists");
    let (s, _) = ivf_scan(&t);
    TableIterator::new(s.lists.into_iter().map(|l| {
        (
            l.list as i32,
            l.tuples as i64,
            l.pages as i64,
            l.mean_distance().map(metrics::r6),
            l.start_page as i64,
        )
    }))
}

fn tid(t: crate::inspect::layout::Tid) -> pg_sys::ItemPointerData {
    let mut ip = pg_sys::ItemPointerData::default();
    item_pointer_set_all(&mut ip, t.block, t.offset);
    ip
}

/// Live HNSW elements that no scan can reach, with the heap rows they hold.
#[pg_extern(volatile, parallel_safe)]
fn ruvector_dag_hnsw_unreachable(
    index: Option<Regclass>,
    max_rows: default!(i32, 1000),
) -> TableIterator<
    'static,
    (
        name!(element_tid, pg_sys::ItemPointerData),
        name!(level, i32),
        name!(heap_tid, pg_sys::ItemPointerData),
    ),
> {
    crate::release::require_current();
    if !(1..=10_000_000).contains(&max_rows) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!("max_rows must be between 1 and 10000000, got {max_rows}"),
            "max_rows caps the rows returned; ruvector_dag_index_health() reports the full unreachable count",
        );
    }
    let t = resolve(oid_of(index));
    require(&t, Am::Hnsw, "ruvector_dag_hnsw_unreachable");
    let (r, _) = with_pages(&t, |src| hnsw::unreachable_elements(src, max_rows as usize));
    let list = r.unwrap_or_else(|e| walk_error(&t, e));
    TableIterator::new(list.into_iter().flat_map(|u| {
        let element = tid(u.element);
        let level = u.level as i32;
        u.heap_tids
            .into_iter()
            .map(move |h| (element, level, tid(h)))
    }))
}
