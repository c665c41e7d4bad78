//! The repair requests: `ruvector_dag_repair_index`, `ruvector_dag_repair`,
//! `ruvector_dag_cancel_repair`, `ruvector_dag_rollback` and
//! `ruvector_dag_recover_repairs`: arguments checked here, the request
//! path in `repair::request`.
//!
//! They are `SECURITY DEFINER` (owned by the extension's installer) and
//! granted only to `ruvector_healer`; the request path also requires the
//! right to maintain the table. Members need no write access to the
//! journal, so nobody can put text of their own into what the worker
//! reads.

use pgrx::prelude::*;
use pgrx::{pg_sys, JsonB};

use super::args::{oid_of, Regclass};
use crate::diagnose::options::BuildOptions;
use crate::inspect::relation::raise;
use crate::repair::plan;
use crate::repair::request::{self, invalid, request};

/// `ruvector_dag_repair_index`. Named `repair_index` in Rust so that its C
/// symbol differs from 0.1.0's three-argument one (kept as a stub in
/// `crate::upgrade`).
#[pg_extern(name = "ruvector_dag_repair_index", volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn repair_index(
    index: Option<Regclass>,
    strategy: default!(Option<&str>, "'auto'"),
    dry_run: default!(Option<bool>, false),
    options: default!(Option<JsonB>, "NULL"),
) -> i64 {
    crate::release::require_current();
    let Some(dry_run) = dry_run else {
        invalid("dry_run must not be NULL", "pass true or false");
    };
    if strategy.is_none() {
        invalid(
            "strategy must not be NULL",
            &format!("strategies are {}", plan::STRATEGY_NAMES.join(", ")),
        );
    }
    let options = options.map(|o| {
        serde_json::from_value::<BuildOptions>(o.0.clone()).unwrap_or_else(|e| {
            invalid(
                &format!("options must be a JSON object of m, ef_construction or lists: {e}"),
                "for example options => '{\"m\": 16, \"ef_construction\": 64}' (HNSW) or '{\"lists\": 200}' (IVFFlat)",
            )
        })
    });
    request(oid_of(index), strategy, dry_run, None, None, options)
}

#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn ruvector_dag_repair(tbl: Option<Regclass>, issue_id: Option<i64>) -> i64 {
    crate::release::require_current();
    let (Some(table), Some(issue)) = (oid_of(tbl), issue_id) else {
        invalid(
            "table and issue_id must not be NULL",
            "pass an issue of ruvector_dag_detected_issues(table)",
        );
    };
    let row = crate::sql::get_three::<pg_sys::Oid, pg_sys::Oid, String>(
        "SELECT index_oid, table_oid, status FROM ruvector_healing.issues WHERE issue_id = $1",
        &[issue.into()],
    );
    let (index, owner, status) = match row {
        Ok((Some(i), Some(t), Some(s))) => (i, t, s),
        _ => raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            &format!("issue {issue} does not exist"),
            "list issues with ruvector_dag_detected_issues(table) after ruvector_dag_health_check(table)",
        ),
    };
    if owner != table {
        invalid(
            &format!("issue {issue} is not an issue of this table"),
            "pass the table the issue was found on",
        );
    }
    if status != "open" {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("issue {issue} is {status}: nothing to repair"),
            "run ruvector_dag_health_check(table) to find current issues",
        );
    }
    let kind = crate::sql::get_one::<String>(
        "SELECT kind FROM ruvector_healing.issues WHERE issue_id = $1",
        &[issue.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    if kind.starts_with("anomaly_") {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("issue {issue} is an anomaly ({kind}): no strategy follows from it alone"),
            "look at its details, then choose: ruvector_dag_repair_index(index, 'rebuild' | 'vacuum' | 'tune_search')",
        );
    }
    if kind == "invalid_index" {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("issue {issue} is an invalid index, which is not repaired automatically"),
            "an invalid index is a failed or running CREATE INDEX CONCURRENTLY: drop it, or REINDEX INDEX CONCURRENTLY it",
        );
    }
    request(Some(index), Some("auto"), false, Some(issue), None, None)
}

#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn ruvector_dag_cancel_repair(repair_id: Option<i64>) -> JsonB {
    crate::release::require_current();
    let Some(id) = repair_id else {
        invalid("repair_id must not be NULL", "");
    };
    JsonB(request::cancel(id))
}

#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn ruvector_dag_rollback(repair_id: Option<i64>) -> JsonB {
    crate::release::require_current();
    let Some(id) = repair_id else {
        invalid("repair_id must not be NULL", "");
    };
    JsonB(request::rollback(id))
}

#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn ruvector_dag_recover_repairs() -> JsonB {
    crate::release::require_current();
    JsonB(request::recover())
}

/// Whether the caller is inside an explicit transaction block (used by
/// the `ruvector_dag_wait_repair` procedure to refuse to wait there).
#[pg_extern(volatile)]
fn ruvector_dag_in_transaction_block() -> bool {
    unsafe { pg_sys::IsTransactionBlock() }
}
