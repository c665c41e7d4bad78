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
    in_transaction(deadline, || {
        journal::advance(id, Status::Building, Status::Validating, json!({}));
        let (after, issues) = health(f.oid);
        journal::merge(id, "after", json!({"health": after, "issues": issues}));
        journal::merge(
            id,
            "backup",
            json!({"kept": false, "note": "a vacuum has nothing to roll back"}),
        );
        journal::finish(id, Status::Done, None);
    })
    .map_err(failure("measuring after the vacuum", false))
}
