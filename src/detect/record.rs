//! The Postgres side of detection: every pgvector index of a table
//! inspected, the rules of `index_health` applied to each report, and the
//! issues recorded (one open issue per index and kind). Used by
//! `ruvector_dag_health_check`, the background cycle and the repair
//! engine.

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::index_health::{hnsw_issues, ivfflat_issues, IndexIssue, Thresholds};
use crate::diagnose::{IssueKind, Severity};
use crate::inspect::relation::{raise, resolve, Am};
use crate::inspect::report::health_value;

/// pgvector indexes of a table: `(oid, valid)`, partitions' indexes
/// reached through the partitioned parent index.
pub(crate) fn vector_indexes(table: pg_sys::Oid) -> Vec<(pg_sys::Oid, bool, String)> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT i.indexrelid, i.indisvalid, i.indexrelid::regclass::text
                   FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid
                   JOIN pg_am am ON am.oid = c.relam
                  WHERE i.indrelid = $1 AND am.amname IN ('hnsw', 'ivfflat')
                  ORDER BY 3",
                None,
                &[table.into()],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some((
                        r.get::<pg_sys::Oid>(1).ok()??,
                        r.get::<bool>(2).ok()??,
                        r.get::<String>(3).ok()??,
                    ))
                })
                .collect()
            })
            .unwrap_or_default()
    })
}

/// What a repair is doing with an index, if anything: the backup it keeps
/// for rollback, or the new index it is building (both invalid on
/// purpose, neither a failed build).
fn repair_role(index: pg_sys::Oid) -> Option<String> {
    crate::sql::get_one::<String>(
        "SELECT CASE WHEN r.status IN ('done', 'rollback_failed') THEN 'kept_for_rollback' ELSE 'being_built' END
           FROM ruvector_healing.repairs r
           JOIN pg_class c ON c.oid = $1
          WHERE (r.status IN ('done', 'rollback_failed') AND (r.backup->>'kept')::bool
                 AND (r.backup->>'oid')::int8 = $1::oid::int8)
             OR (ruvector_healing.repair_active(r.status)
                 AND r.table_oid = (SELECT indrelid FROM pg_index WHERE indexrelid = $1)
                 AND c.relname IN (r.plan->>'shadow_name', r.plan->>'backup_name'))
             OR (r.backup->'drop_pending'->>'oid')::int8 = $1::oid::int8
          LIMIT 1",
        &[index.into()],
    )
    .ok()
    .flatten()
}

/// Dead and live rows of a table from the statistics system (`None` for a
/// partitioned parent, whose partitions report their own).
fn heap_tuples(table: pg_sys::Oid) -> Option<(i64, i64)> {
    crate::sql::get_two::<i64, i64>(
        "SELECT n_dead_tup, n_live_tup FROM pg_stat_all_tables WHERE relid = $1",
        &[table.into()],
    )
    .ok()
    .and_then(|(d, l)| Some((d?, l?)))
}

/// Leaf issues of one index's health report (recursing into partitions).
pub(crate) fn issues_of(
    health: &Value,
    am: Am,
    t: &Thresholds,
    out: &mut Vec<(String, IndexIssue)>,
) {
    if let Some(parts) = health.get("partitions").and_then(Value::as_array) {
        for p in parts {
            issues_of(p, am, t, out);
        }
        return;
    }
    let Some(m) = health.as_object() else { return };
    let name = m
        .get("index")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut found = match am {
        Am::Hnsw => hnsw_issues(m, t),
        Am::IvfFlat => ivfflat_issues(m, t),
    };
    found.extend(crate::detect::index_health::dead_tuple_issue(m, t));
    out.extend(found.into_iter().map(|i| (name.clone(), i)));
}

/// Every pgvector index of a table inspected (an index for which
/// `thresholds` gives `None` is skipped: excluded by a policy), with the
/// issues the detection rules find: `(reports, [(index name, issue)])`.
pub(crate) fn inspect_table(
    table: pg_sys::Oid,
    thresholds: impl Fn(pg_sys::Oid) -> Option<Thresholds>,
) -> (Vec<Value>, Vec<(String, IndexIssue)>) {
    let mut reports = Vec::new();
    let mut found: Vec<(String, IndexIssue)> = Vec::new();
    for (oid, valid, name) in vector_indexes(table) {
        let Some(thresholds) = thresholds(oid) else {
            continue;
        };
        if let Some(role) = (!valid).then(|| repair_role(oid)).flatten() {
            reports.push(json!({"index": name, "valid": false, "repair": role}));
            continue;
        }
        if !valid {
            // A failed CREATE INDEX CONCURRENTLY leaves an index that every
            // write still maintains but no query uses.
            found.push((
                name.clone(),
                IndexIssue {
                    kind: IssueKind::InvalidIndex,
                    severity: Severity::High,
                    priority: crate::diagnose::priority(IssueKind::InvalidIndex, Severity::High, 0.0),
                    details: json!({"indisvalid": false,
                        "hint": "a CREATE INDEX CONCURRENTLY failed or is running; an invalid index slows writes and serves no query"}),
                },
            ));
            reports.push(json!({"index": name, "valid": false}));
            continue;
        }
        let t = resolve(Some(oid));
        let mut h = health_value(&t);
        if let (Some(m), Some((dead, live))) = (h.as_object_mut(), heap_tuples(t.table_oid)) {
            m.insert("heap_dead_tuples".into(), json!(dead));
            m.insert("heap_live_tuples".into(), json!(live));
        }
        issues_of(&h, t.am, &thresholds, &mut found);
        reports.push(h);
    }
    (reports, found)
}

/// Upserts an open issue per (index, kind); returns its id.
pub(crate) fn record(
    index_name: &str,
    table: pg_sys::Oid,
    kind: &str,
    severity: &str,
    priority: u32,
    details: &Value,
) -> i64 {
    let id = Spi::get_one_with_args::<i64>(
        "SELECT ruvector_healing.record_issue($1::regclass, $2, $3, $4, $5, $6)",
        &[
            index_name.into(),
            table.into(),
            kind.into(),
            severity.into(),
            (priority as i32).into(),
            JsonB(details.clone()).into(),
        ],
    );
    match id {
        Ok(Some(id)) => id,
        _ => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not record a detected issue",
            "the table ruvector_healing.issues is missing or altered; reinstall the extension (DROP EXTENSION ruvector_healing; CREATE EXTENSION ruvector_healing)",
        ),
    }
}

/// Health reports of leaf indexes (a partitioned index reports partitions).
pub fn leaves(report: &Value, out: &mut Vec<Value>) {
    match report.get("partitions").and_then(Value::as_array) {
        Some(parts) => parts.iter().for_each(|p| leaves(p, out)),
        None => out.push(report.clone()),
    }
}
