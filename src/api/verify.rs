//! `ruvector_dag_verify_index`: the invariants of a pgvector index, as
//! amcheck's `bt_index_check` verifies a B-tree (see `crate::verify`).

use pgrx::prelude::*;

use super::args::{oid_of, Regclass};
use crate::inspect::relation::{resolve, Am};
use crate::verify::{server::verify_index, Violation, MAX_REPORTED};

/// One row per violation (none for a sound index); a partitioned index is
/// verified leaf by leaf. A NOTICE says what was checked.
#[allow(clippy::type_complexity)] // the SQL result columns
#[pg_extern(volatile, parallel_safe)]
fn ruvector_dag_verify_index(
    index: Option<Regclass>,
    heapallindexed: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(index_name, String),
        name!(kind, String),
        name!(block, Option<i64>),
        name!(offset, Option<i32>),
        name!(detail, String),
    ),
> {
    crate::release::require_current();
    let t = resolve(oid_of(index));
    let leaves = if t.partitioned {
        t.partitions.iter().map(|o| resolve(Some(*o))).collect()
    } else {
        vec![t]
    };
    let mut rows = Vec::new();
    for leaf in leaves {
        let v = verify_index(&leaf, heapallindexed);
        let more = v.violation_count.saturating_sub(v.violations.len() as u64);
        let shape = match leaf.am {
            Am::Hnsw => format!(
                "{} elements, {} neighbor lists, {} edges",
                v.items, v.lists, v.edges
            ),
            Am::IvfFlat => format!(
                "{} lists, {} entries{}",
                v.lists,
                v.items,
                v.misplaced_share
                    .map(|m| format!(
                        " ({:.1} % of {} sampled entries outside their nearest center's list)",
                        100.0 * m,
                        v.misplaced_sampled
                    ))
                    .unwrap_or_default()
            ),
        };
        pgrx::notice!(
            "verified {} index \"{}\": {} pages, {shape}{}: {} violation(s){}",
            leaf.am.name(),
            leaf.name,
            v.pages,
            v.heap_rows_checked
                .map(|n| format!(", {n} visible table rows"))
                .unwrap_or_default(),
            v.violation_count,
            if more > 0 {
                format!(" (the first {MAX_REPORTED} are listed)")
            } else {
                String::new()
            }
        );
        rows.extend(v.violations.into_iter().map(|x: Violation| {
            (
                leaf.name.clone(),
                x.kind.to_string(),
                x.block.map(i64::from),
                x.offset.map(i32::from),
                x.detail,
            )
        }));
    }
    TableIterator::new(rows)
}
