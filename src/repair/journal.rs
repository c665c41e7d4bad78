//! The journal: `ruvector_healing.repairs` (one row per repair, its
//! current state) and `ruvector_healing.repair_steps` (one row per step,
//! written and committed before the step runs). Callers run these inside
//! a transaction.

use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::plan::{Status, Strategy};
use super::registry;

/// What a worker reads of a repair. Names and definitions are not taken
/// from here: the worker reads them from the catalog by OID.
#[derive(Debug, Clone)]
pub struct RepairRow {
    pub id: i64,
    pub index_oid: pg_sys::Oid,
    pub table_oid: pg_sys::Oid,
    pub relname: String,
    pub strategy: Strategy,
    pub status: Status,
    pub issue_id: Option<i64>,
    pub plan: Value,
    pub backup: Value,
    pub requester_xid: Option<String>,
}

pub fn load(id: i64) -> Option<RepairRow> {
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT repair_id, index_oid, table_oid, relname, strategy, status, issue_id,
                        plan, coalesce(backup, '{}'::jsonb), requester_xid::text
                   FROM ruvector_healing.repairs WHERE repair_id = $1",
                None,
                &[id.into()],
            )
            .ok()?;
        let r = rows.into_iter().next()?;
        Some(RepairRow {
            id: r.get::<i64>(1).ok()??,
            index_oid: r.get::<pg_sys::Oid>(2).ok()??,
            table_oid: r.get::<pg_sys::Oid>(3).ok()??,
            relname: r.get::<String>(4).ok()??,
            strategy: Strategy::parse(&r.get::<String>(5).ok()??).ok()??,
            status: Status::parse(&r.get::<String>(6).ok()??)?,
            issue_id: r.get::<i64>(7).ok()?,
            plan: r.get::<JsonB>(8).ok()??.0,
            backup: r.get::<JsonB>(9).ok()??.0,
            requester_xid: r.get::<String>(10).ok()?,
        })
    })
}

/// Moves a repair to `to` if it is still in `from` (a cancel may have
/// moved it meanwhile) and journals the step. Returns whether it moved.
pub fn advance(id: i64, from: Status, to: Status, detail: Value) -> bool {
    let moved = Spi::get_one_with_args::<i64>(
        "UPDATE ruvector_healing.repairs SET status = $3 WHERE repair_id = $1 AND status = $2
         RETURNING repair_id",
        &[id.into(), from.name().into(), to.name().into()],
    )
    .ok()
    .flatten()
    .is_some();
    if moved {
        step(id, to.name(), detail);
    }
    moved
}

/// Appends a step to the journal.
pub fn step(id: i64, name: &str, detail: Value) {
    let _ = Spi::run_with_args(
        "INSERT INTO ruvector_healing.repair_steps (repair_id, step, detail) VALUES ($1, $2, $3)",
        &[id.into(), name.into(), JsonB(detail).into()],
    );
}

/// Merges `value` into one of the row's jsonb columns (`plan`, `before`,
/// `after`, `backup`).
pub fn merge(id: i64, column: &str, value: Value) {
    assert!(matches!(column, "plan" | "before" | "after" | "backup"));
    let sql = format!(
        "UPDATE ruvector_healing.repairs SET {column} = coalesce({column}, '{{}}'::jsonb) || $2
          WHERE repair_id = $1"
    );
    let _ = Spi::run_with_args(&sql, &[id.into(), JsonB(value).into()]);
}

/// Final state, error text and finish time.
pub fn finish(id: i64, status: Status, error: Option<&str>) {
    let _ = Spi::run_with_args(
        "UPDATE ruvector_healing.repairs
            SET status = $2, error = coalesce($3, error), finished_at = coalesce(finished_at, now())
          WHERE repair_id = $1",
        &[id.into(), status.name().into(), error.into()],
    );
    step(id, status.name(), json!({ "error": error }));
    // Clients may LISTEN ruvector_healing to alert on outcomes. Any role
    // can listen on a channel, so the payload names nothing: ids and
    // states; a client reads the row by id (which shows it only to roles
    // that may read the table).
    let _ = Spi::run_with_args(
        "SELECT pg_notify('ruvector_healing', jsonb_build_object(
                    'event', 'repair', 'repair_id', repair_id, 'strategy', strategy,
                    'status', status, 'issue_id', issue_id)::text)
           FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    );
}

pub fn started(id: i64) {
    let _ = Spi::run_with_args(
        "UPDATE ruvector_healing.repairs
            SET started_at = now(), worker_pid = pg_backend_pid() WHERE repair_id = $1",
        &[id.into()],
    );
}

/// Active repairs of this database whose worker is gone (no process
/// holds them in the registry), oldest first. A repair requested less
/// than a minute ago may not have its worker yet.
pub fn orphans(except: i64) -> Vec<i64> {
    let active: Vec<i64> = Spi::connect(|c| {
        c.select(
            "SELECT r.repair_id FROM ruvector_healing.repairs r
              WHERE ruvector_healing.repair_active(r.status) AND r.repair_id <> $1
                AND (r.status <> 'planned' OR r.requested_at < now() - interval '60 s')
              ORDER BY r.repair_id",
            None,
            &[except.into()],
        )
        .map(|rows| {
            rows.filter_map(|r| r.get::<i64>(1).ok().flatten())
                .collect()
        })
        .unwrap_or_default()
    });
    active
        .into_iter()
        .filter(|id| registry::holder(*id).is_none())
        .collect()
}

/// The pid of the live worker of a repair, from the registry (written by
/// that worker itself).
pub fn worker_pid(id: i64) -> Option<i32> {
    registry::holder(id).map(|e| e.pid)
}

/// A live repair of the table other than `except`, if any: one holding the
/// table's slot, or one requested within the last minute whose worker has
/// not started yet.
pub fn active_on_table(table: pg_sys::Oid, except: i64) -> Option<(i64, String)> {
    if let Some(e) = registry::table_holder(table).filter(|e| e.repair_id != except) {
        return Some((e.repair_id, status_of(e.repair_id)));
    }
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT repair_id FROM ruvector_healing.repairs
                  WHERE table_oid = $1 AND repair_id <> $2 AND NOT dry_run
                    AND ruvector_healing.repair_active(status)
                  ORDER BY repair_id",
                None,
                &[table.into(), except.into()],
            )
            .ok()?;
        rows.filter_map(|r| r.get::<i64>(1).ok().flatten())
            .find(|id| {
                registry::holder(*id).is_some()
                    || status_of(*id) == "planned" && requested_recently(*id)
            })
            .map(|id| (id, status_of(id)))
    })
}

fn requested_recently(id: i64) -> bool {
    crate::sql::get_one::<bool>(
        "SELECT requested_at > now() - interval '60 s' FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

fn status_of(id: i64) -> String {
    crate::sql::get_one::<String>(
        "SELECT status FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Deletes finished repairs older than the retention (steps cascade),
/// except those that still name an index the extension owns: a kept
/// backup, or an index waiting to be dropped.
pub fn purge(retention_days: i32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM ruvector_healing.repairs
                     WHERE finished_at < now() - make_interval(days => $1)
                       AND NOT ruvector_healing.repair_active(status)
                       AND NOT coalesce((backup->>'kept')::bool, false)
                       AND NOT coalesce(backup ? 'drop_pending', false)
                    RETURNING 1)
         SELECT count(*) FROM d",
        &[retention_days.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0)
}

/// Build rates (bytes of the replaced index per second of its build) of
/// the last five rebuilds of this database that got as far as validation;
/// with `near`, of indexes within a factor of four of that size (build
/// rates fall as indexes outgrow memory), else of any size.
pub fn build_rates(near: Option<f64>) -> Vec<f64> {
    let comparable = rates_query(near);
    if near.is_some() && !comparable.is_empty() {
        return comparable;
    }
    rates_query(None)
}

fn rates_query(near: Option<f64>) -> Vec<f64> {
    Spi::connect(|c| {
        c.select(
            "SELECT (r.plan->'preview'->>'index_bytes')::float8
                    / extract(epoch FROM v.at - b.at)::float8
               FROM ruvector_healing.repairs r
               JOIN ruvector_healing.repair_steps b ON b.repair_id = r.repair_id AND b.step = 'building'
               JOIN ruvector_healing.repair_steps v ON v.repair_id = r.repair_id AND v.step = 'validating'
              WHERE r.strategy = 'rebuild' AND v.at > b.at
                AND (r.plan->'preview'->>'index_bytes')::float8 > 0
                AND ($1::float8 IS NULL
                     OR (r.plan->'preview'->>'index_bytes')::float8 BETWEEN $1 / 4 AND $1 * 4)
              ORDER BY r.repair_id DESC LIMIT 5",
            None,
            &[near.into()],
        )
        .map(|rows| rows.filter_map(|r| r.get::<f64>(1).ok().flatten()).collect())
        .unwrap_or_default()
    })
}

/// Earlier repairs of the index named `schema.relname` (across rebuilds and
/// new OIDs) made for a diagnosed cause, newest first: what futility
/// checks against. A repair interrupted by a crash (`rolled_back` by
/// recovery) says nothing about whether it would have worked.
pub fn attempts(schema: &str, relname: &str) -> Vec<crate::diagnose::futility::Attempt> {
    Spi::connect(|c| {
        c.select(
            "SELECT repair_id, plan->>'cause', strategy, coalesce(plan->'options', '{}'),
                    coalesce((plan->>'rows')::int8, 0), status = 'done'
               FROM ruvector_healing.repairs
              WHERE schema_name = $1 AND relname = $2 AND NOT dry_run
                AND plan ? 'cause' AND status IN ('done', 'failed')
              ORDER BY repair_id DESC LIMIT 50",
            None,
            &[schema.into(), relname.into()],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some(crate::diagnose::futility::Attempt {
                    repair_id: r.get::<i64>(1).ok()??,
                    cause: r.get::<String>(2).ok()??,
                    strategy: r.get::<String>(3).ok()??,
                    options: serde_json::from_value(r.get::<JsonB>(4).ok()??.0).unwrap_or_default(),
                    rows: r.get::<i64>(5).ok()??,
                    fixed: r.get::<bool>(6).ok()??,
                })
            })
            .collect()
        })
        .unwrap_or_default()
    })
}
