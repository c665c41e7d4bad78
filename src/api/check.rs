//! `ruvector_dag_health_check(table)`: inspects every pgvector index of a
//! table, applies the detection rules and records the issues
//! (`detect::record`).

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::json;

use super::args::{oid_of, Regclass};
use crate::detect::index_health::Thresholds;
use crate::detect::record::{inspect_table, leaves, record};
use crate::inspect::relation::raise;

fn check_table(table: pg_sys::Oid) -> (String, char) {
    let row = crate::sql::get_two::<String, String>(
        "SELECT c.oid::regclass::text, c.relkind::text FROM pg_class c WHERE c.oid = $1",
        &[table.into()],
    );
    match row {
        Ok((Some(name), Some(kind))) => (name, kind.chars().next().unwrap_or('?')),
        _ => raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            &format!("relation with OID {} does not exist", table.to_u32()),
            "pass a table, for example 'items'::regclass",
        ),
    }
}

#[pg_extern(volatile)]
fn ruvector_dag_health_check(tbl: Option<Regclass>) -> JsonB {
    crate::release::require_current();
    let Some(table) = oid_of(tbl) else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "table must not be NULL",
            "pass a table, for example 'items'::regclass",
        );
    };
    let (table_name, kind) = check_table(table);
    if !matches!(kind, 'r' | 'p' | 'm') {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            &format!("\"{table_name}\" is not a table or materialized view"),
            "pass the table that holds the vectors; ruvector_dag_index_health(index) inspects one index",
        );
    }
    let thresholds = Thresholds::default();
    let (reports, found) = inspect_table(table, |_| Some(thresholds.clone()));
    let mut flat = Vec::new();
    reports.iter().for_each(|r| leaves(r, &mut flat));
    let mut issues = Vec::new();
    let mut kept: Vec<i64> = Vec::new();
    for (index, i) in &found {
        let id = record(
            index,
            table,
            i.kind.name(),
            i.severity.name(),
            i.priority,
            &i.details,
        );
        kept.push(id);
        // Each issue with its cause and the repair that addresses it.
        let report = flat
            .iter()
            .find(|r| r["index"].as_str() == Some(index.as_str()));
        let oid = crate::sql::get_one::<pgrx::pg_sys::Oid>(
            "SELECT $1::regclass::oid",
            &[index.as_str().into()],
        )
        .ok()
        .flatten();
        let diagnosis = match (report, oid) {
            (Some(report), Some(oid)) => {
                let p = crate::healing::policy::policy(oid);
                crate::healing::diagnosis::ensure(
                    id,
                    oid,
                    i.kind,
                    report,
                    &thresholds,
                    p.allowance(),
                    p.pin_lists,
                    None,
                )
            }
            _ => serde_json::Value::Null,
        };
        issues.push(json!({
            "issue_id": id, "index": index, "kind": i.kind.name(),
            "severity": i.severity.name(), "priority": i.priority, "details": i.details,
            "cause": diagnosis["cause"], "repair": diagnosis["remedy"], "reason": diagnosis["reason"],
        }));
    }
    let resolved = Spi::get_one_with_args::<i64>(
        "SELECT ruvector_healing.resolve_issues($1, $2, false)",
        &[table.into(), kept.clone().into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    issues.sort_by_key(|i| std::cmp::Reverse(i["priority"].as_u64().unwrap_or(0)));
    JsonB(json!({
        "table": table_name,
        "indexes": reports,
        "issues": issues,
        "resolved_issues": resolved,
        "thresholds": thresholds,
    }))
}
