//! The vacuum strategy for HNSW graphs with deleted elements.

use pgrx::prelude::*;
use serde_json::json;

use super::catalog::IndexFacts;
use super::exec::{in_transaction, top_level, Deadline, StepError};
use super::journal::{self, RepairRow};
use super::plan::Status;
use super::step::*;

// ------------------------------------------------------------------ vacuum

pub(crate) fn vacuum(row: &RepairRow, f: &IndexFacts, deadline: Deadline) -> Result<(), Failure> {
    let id = row.id;
    flatten(in_transaction(deadline, || {
        let (before, issues) = health(f.oid);
        journal::merge(id, "before", json!({"health": before, "issues": issues}));
        let sql = format!("VACUUM (INDEX_CLEANUP ON) {}", f.table);
        journal::merge(id, "plan", json!({"statement": sql}));
        if journal::advance(
            id,
            Status::Planned,
            Status::Building,
            json!({"statement": sql}),
        ) {
            Ok(())
        } else {
            Err(StepError {
                code: PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                message: "cancelled".into(),
            })
        }
    }))
    .map_err(failure("planning the vacuum", false))?;
    activity(&format!("VACUUM {}", f.table));
    top_level(deadline, &format!("VACUUM (INDEX_CLEANUP ON) {}", f.table))
        .map_err(failure("vacuuming the table", false))?;
    flatten(in_transaction(deadline, || {
        journal::advance(id, Status::Building, Status::Validating, json!({}));
        let (after, issues) = health(f.oid);
        // Dead rows: the share a vacuum leaves (the statistics the vacuum
        // itself just reported).
        let (dead, live) = super::catalog::tuple_stats(f.table_oid);
        let share = dead as f64 / (dead + live).max(1) as f64;
        let t = crate::healing::policy::policy(f.oid).thresholds();
        journal::merge(
            id,
            "after",
            json!({"health": after, "issues": issues, "heap_dead_tuples": dead, "dead_share": share}),
        );
        journal::merge(
            id,
            "backup",
            json!({"kept": false, "note": "a vacuum has nothing to roll back"}),
        );
        if row.plan["issue_kind"] == "dead_tuples" && share > t.max_dead_share {
            return Err(StepError::new(format!(
                "did not fix dead_tuples: {:.1} % of the rows are still dead after the vacuum (threshold {:.1} %)",
                100.0 * share,
                100.0 * t.max_dead_share
            )));
        }
        journal::finish(id, Status::Done, None);
        Ok(())
    }))
    .map_err(failure("measuring after the vacuum", false))
}
