//! The journal: `ruvector_healing.repairs` (one row per repair, its
//! current state) and `ruvector_healing.repair_steps` (one row per step,
//! written and committed before the step runs). Callers run these inside
//! a transaction.

use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::plan::{Status, Strategy};

/// Advisory-lock key spaces (first key of `pg_advisory_lock(int4, int4)`):
/// a repair's worker holds `(REPAIR_KEY, repair_id)` for its whole life, so
/// a free lock means the worker is gone; `(TABLE_KEY, table_oid)` keeps one
/// repair per table.
pub const REPAIR_KEY: i32 = 0x5256_0001;
pub const TABLE_KEY: i32 = 0x5256_0002;

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
    // Clients may LISTEN ruvector_healing to alert on outcomes.
    let _ = Spi::run_with_args(
        "SELECT pg_notify('ruvector_healing', jsonb_build_object(
                    'event', 'repair', 'database', current_database(), 'repair_id', repair_id,
                    'index', index_name, 'strategy', strategy, 'status', status,
                    'issue_id', issue_id, 'error', error)::text)
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

/// Active repairs of this database whose worker is gone (their
/// advisory lock is free), oldest first.
pub fn orphans(except: i64) -> Vec<i64> {
    Spi::connect(|c| {
        c.select(
            "SELECT r.repair_id FROM ruvector_healing.repairs r
              WHERE ruvector_healing.repair_active(r.status)
                AND r.repair_id <> $1
                -- a worker takes its lock within moments of the request
                AND (r.status <> 'planned' OR r.requested_at < now() - interval '60 s')
                AND NOT EXISTS (SELECT 1 FROM pg_locks l
                                 WHERE l.locktype = 'advisory' AND l.database = (
                                         SELECT oid FROM pg_database WHERE datname = current_database())
                                   AND l.classid = $2::int4::oid AND l.objid = r.repair_id::oid
                                   AND l.objsubid = 2 AND l.granted)
              ORDER BY r.repair_id",
            None,
            &[except.into(), REPAIR_KEY.into()],
        )
        .map(|rows| rows.filter_map(|r| r.get::<i64>(1).ok().flatten()).collect())
        .unwrap_or_default()
    })
}

/// The pid of the live worker of a repair, if any.
pub fn worker_pid(id: i64) -> Option<i32> {
    Spi::get_one_with_args::<i32>(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory'
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = $2::int4::oid AND objid = $1::oid AND objsubid = 2 AND granted",
        &[id.into(), REPAIR_KEY.into()],
    )
    .ok()
    .flatten()
}

/// A live repair of the table other than `except`, if any.
pub fn active_on_table(table: pg_sys::Oid, except: i64) -> Option<(i64, String)> {
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT repair_id, status = 'planned' AND requested_at > now() - interval '60 s'
                   FROM ruvector_healing.repairs
                  WHERE table_oid = $1 AND repair_id <> $2
                    AND ruvector_healing.repair_active(status)
                  ORDER BY repair_id",
                None,
                &[table.into(), except.into()],
            )
            .ok()?;
        rows.filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<bool>(2).ok()??)))
            .find(|(id, starting)| *starting || worker_pid(*id).is_some())
            .map(|(id, _)| (id, status_of(id)))
    })
}

fn status_of(id: i64) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT status FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Deletes finished repairs older than the retention (steps cascade).
pub fn purge(retention_days: i32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM ruvector_healing.repairs
                     WHERE finished_at < now() - make_interval(days => $1)
                       AND status IN ('done','failed','rolled_back','cancelled','refused','dry_run')
                       AND NOT coalesce((backup->>'kept')::bool, false)
                    RETURNING 1)
         SELECT count(*) FROM d",
        &[retention_days.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0)
}
