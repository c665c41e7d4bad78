//! The request path of a repair: what `ruvector_dag_repair_index`,
//! `ruvector_dag_repair`, `ruvector_dag_cancel_repair`,
//! `ruvector_dag_rollback`, `ruvector_dag_recover_repairs` and the
//! background cycle do in the caller's transaction. They check who asks
//! (`ruvector_healer` and PostgreSQL's right to maintain the table) and
//! what is asked, write the journal and start a worker; the work happens
//! in the worker, outside the caller's transaction (`CREATE INDEX
//! CONCURRENTLY` cannot run in a function).

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::catalog::{self, IndexFacts};
use super::plan::{self, Strategy};
use super::settings::{parse_scope, RepairSettings, Scope};
use super::worker::{launch, Mode};
use super::{counters, journal};
use crate::inspect::relation::{raise, resolve, Am};

/// Refuses unless the role asking may maintain the table: PostgreSQL's
/// `MAINTAIN` privilege (what `REINDEX` checks since PostgreSQL 17) or
/// ownership; superusers may. Membership in `ruvector_healer` is checked
/// by the functions' `EXECUTE` grant; both are needed.
pub fn require_maintain(table: pg_sys::Oid, name: &str) {
    let may = crate::sql::get_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1::oid, $2::oid, 'MAINTAIN')",
        &[unsafe { pg_sys::GetOuterUserId() }.into(), table.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !may {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            &format!("permission denied to repair the indexes of table {name}"),
            &format!(
                "repairs need membership in ruvector_healer and the right to maintain the table: GRANT MAINTAIN ON {name} TO {}",
                requester()
            ),
        );
    }
}

pub fn require_preload() {
    if !counters::available() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "repairs need ruvector_healing in shared_preload_libraries",
            "add shared_preload_libraries = 'ruvector_healing' to postgresql.conf and restart the server",
        );
    }
}

pub fn invalid(msg: &str, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, msg, hint)
}

/// The role that is asking (not the definer this function runs as).
pub fn requester() -> String {
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
        if name.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Open issues of an index (kind, priority), most urgent first, found by
/// the last health check; else found now.
fn issues_of(index: pg_sys::Oid) -> Vec<(crate::diagnose::IssueKind, u32, Option<i64>)> {
    let recorded: Vec<(crate::diagnose::IssueKind, u32, Option<i64>)> = Spi::connect(|c| {
        c.select(
            "SELECT kind, priority, issue_id FROM ruvector_healing.issues
              WHERE index_oid = $1 AND status = 'open' ORDER BY priority DESC",
            None,
            &[index.into()],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some((
                    crate::diagnose::IssueKind::parse(&r.get::<String>(1).ok()??)
                        .filter(|k| *k != crate::diagnose::IssueKind::InvalidIndex)?,
                    r.get::<i32>(2).ok()?? as u32,
                    r.get::<i64>(3).ok()?,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
    });
    if !recorded.is_empty() {
        return recorded;
    }
    let t = resolve(Some(index));
    let h = crate::inspect::report::health_value(&t);
    let mut found = Vec::new();
    crate::detect::record::issues_of(
        &h,
        t.am,
        &crate::detect::index_health::Thresholds::default(),
        &mut found,
    );
    found
        .into_iter()
        .map(|(_, i)| (i.kind, i.priority, None))
        .collect()
}

/// The strategy for `issue` (when given) or for the index's most urgent
/// open issue.
fn choose_auto(f: &IndexFacts, am: Am, issue: Option<i64>) -> (Strategy, Option<i64>, Value) {
    let issues = issues_of(f.oid);
    let picked = match issue {
        Some(id) => issues.iter().find(|(_, _, i)| *i == Some(id)).copied(),
        None => issues.first().copied(),
    };
    let Some((kind, _, issue_id)) = picked else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("index \"{}\" has no detected issue: nothing to repair", f.qualified),
            "strategy => 'auto' repairs a detected issue; pass strategy => 'rebuild' (or 'vacuum', 'tune_search') to repair anyway",
        );
    };
    let (dead, live) = catalog::tuple_stats(f.table_oid);
    let facts = plan::Facts {
        dead_tuples: dead,
        live_rows: live,
    };
    let s = plan::choose(kind, am, facts);
    (
        s,
        issue_id,
        json!({"issue": kind.name(), "dead_tuples": dead, "live_rows": live,
               "rule": format!("{} of an {} index → {}", kind.name(), am.name(), s.name())}),
    )
}

/// Average duration of this index's past successful repairs by the same
/// strategy (`None` without history: no figure is invented).
fn estimated_ms(f: &IndexFacts, s: Strategy) -> Option<f64> {
    crate::sql::get_one::<f64>(
        "SELECT avg(extract(epoch FROM finished_at - started_at) * 1000)::float8 FROM (
            SELECT finished_at, started_at FROM ruvector_healing.repairs
             WHERE table_oid = $1 AND relname = $2 AND strategy = $3 AND status = 'done'
               AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT 5) r",
        &[
            f.table_oid.into(),
            f.relname.clone().into(),
            s.name().into(),
        ],
    )
    .ok()
    .flatten()
}

/// What the repair will do. Only a dry run counts the table's rows for
/// IVFFlat `lists` (the worker counts again when it plans the build).
fn preview(f: &IndexFacts, s: Strategy, am: Am, dry_run: bool) -> Value {
    match s {
        Strategy::Rebuild => {
            let (def, lists) = if dry_run {
                let (def, planned) = crate::repair::rebuild::rebuilt_definition(f, am);
                let lists = planned.map_or(
                    Value::Null,
                    |(old, new, rows)| json!({"old": old, "new": new, "rows": rows}),
                );
                (def, lists)
            } else {
                (f.definition.clone(), json!("counted by the worker"))
            };
            let mem = crate::sql::get_one::<i64>(
                "SELECT setting::int8 * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'",
                &[],
            )
            .ok()
            .flatten();
            json!({
                "statement": def.create_concurrently("<new index>").ok(),
                "lists": lists,
                "index_bytes": f.bytes,
                "disk_needed_bytes": plan::disk_needed(f.bytes.max(0) as u64),
                "disk_free_bytes": catalog::free_bytes(f.tablespace_oid),
                "build_memory": {
                    "estimate_bytes": f.bytes,
                    "maintenance_work_mem_bytes": mem,
                    "fits": mem.map(|m| m >= f.bytes),
                    "note": "estimated as the index's size; a graph larger than maintenance_work_mem is built on disk, slower but not failed"
                },
            })
        }
        Strategy::Vacuum => json!({"statement": format!("VACUUM (INDEX_CLEANUP ON) {}", f.table)}),
        Strategy::TuneSearch => json!({"scope": crate::config::tuning_scope()}),
    }
}

/// Plans, journals and starts a repair; `by` names the requester when it
/// is not the current role (the background cycle).
pub(crate) fn request(
    index: Option<pg_sys::Oid>,
    strategy: Option<&str>,
    dry_run: bool,
    issue: Option<i64>,
    by: Option<&str>,
) -> i64 {
    require_preload();
    // Issues are found by OID below: after a restore they must name this
    // database's indexes first.
    crate::release::adopt_restored();
    let t = resolve(index);
    let Some(f) = catalog::facts(t.oid) else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "the index disappeared while being planned",
            "",
        )
    };
    if by.is_none() {
        require_maintain(f.table_oid, &f.table);
    }
    let am = t.am;
    let named = strategy.unwrap_or("auto");
    let chosen = Strategy::parse(named).unwrap_or_else(|e| {
        invalid(
            &e,
            "pass strategy => 'auto' to let the detected issue choose",
        )
    });
    let (strategy, issue_id, reason) = match (chosen, issue) {
        (Some(s), _) => (s, issue, json!({"requested": s.name()})),
        (None, _) => {
            let (s, found, why) = choose_auto(&f, am, issue);
            (s, issue.or(found), why)
        }
    };
    if let Err(e) = strategy.can_repair(am) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &e,
            "use strategy => 'rebuild'",
        );
    }
    if let Some(why) = f
        .unsafe_to_rebuild()
        .filter(|_| strategy == Strategy::Rebuild)
    {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("cannot rebuild: {why}"),
            "",
        );
    }
    if t.partitioned {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("\"{}\" is a partitioned index", t.name),
            "repair the index of each partition",
        );
    }
    // A rebuild is validated, and tuning chooses, by measured recall:
    // refused before any build where recall cannot be measured.
    if strategy != Strategy::Vacuum && t.vector_type.filter(|v| v.decodable()).is_none() {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!(
                "cannot {} \"{}\": its values are of type {}, whose recall cannot be measured to validate the result",
                strategy.name(),
                t.name,
                t.type_name
            ),
            "rebuilds and tuning are validated by recall, measured for vector and halfvec indexes; REINDEX INDEX CONCURRENTLY rebuilds it without validation",
        );
    }
    let settings = RepairSettings::capture();
    if strategy == Strategy::TuneSearch {
        match parse_scope(&settings.tuning_scope) {
            Ok(Scope::Off) => raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "ruvector.dag_healing_tuning_scope is off: tuned settings are not applied",
                "SET ruvector.dag_healing_tuning_scope = 'database' (or 'role:<name>'); ruvector_dag_tune_search() only measures",
            ),
            Err(e) => invalid(&e, ""),
            _ => {}
        }
    }
    if !dry_run {
        if let Some((other, status)) = journal::active_on_table(f.table_oid, 0) {
            raise(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                &format!("repair {other} of table {} is {status}: one repair per table at a time", f.table),
                &format!("wait for it with CALL ruvector_dag_wait_repair({other}), or cancel it with ruvector_dag_cancel_repair({other})"),
            );
        }
    }
    let plan = json!({
        "settings": settings,
        "choice": reason,
        "estimated_duration_ms": estimated_ms(&f, strategy),
        "preview": preview(&f, strategy, am, dry_run),
        "reversible": strategy.reversible(),
    });
    let status = if dry_run { "dry_run" } else { "planned" };
    let (id, xid) = Spi::get_two_with_args::<i64, String>(
        "INSERT INTO ruvector_healing.repairs
                (index_oid, index_name, schema_name, relname, table_oid, table_name, strategy,
                 issue_id, dry_run, status, requested_by, requester_xid, plan, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, pg_current_xact_id(), $12,
                 CASE WHEN $9 THEN now() END)
         RETURNING repair_id, requester_xid::text",
        &[
            f.oid.into(),
            f.qualified.clone().into(),
            f.schema.clone().into(),
            f.relname.clone().into(),
            f.table_oid.into(),
            f.table.clone().into(),
            strategy.name().into(),
            issue_id.into(),
            dry_run.into(),
            status.into(),
            by.map(String::from).unwrap_or_else(requester).into(),
            JsonB(plan).into(),
        ],
    )
    .ok()
    .and_then(|(a, b)| Some((a?, b?)))
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not record the repair",
            "the table ruvector_healing.repairs is missing or altered; reinstall the extension",
        )
    });
    if dry_run {
        return id;
    }
    let refuse = |why: String| {
        let _ = Spi::run_with_args(
            "UPDATE ruvector_healing.repairs SET status = 'refused', error = $2, finished_at = now()
              WHERE repair_id = $1",
            &[id.into(), why.clone().into()],
        );
        journal::step(id, "refused", json!({"error": why}));
        counters::record(counters::Outcome::Refused);
        pgrx::warning!("repair {id} refused: {why}");
    };
    if !settings.enabled {
        refuse("ruvector.dag_healing_enabled is off".into());
        return id;
    }
    if unsafe { pg_sys::RecoveryInProgress() } {
        refuse("the server is a standby (in recovery): repairs run on the primary".into());
        return id;
    }
    if let Err(e) = launch(Mode::Repair, id, xid.parse().unwrap_or(0)) {
        refuse(e);
    }
    id
}

/// `(status, strategy, table)` of a repair, or the error that it does not
/// exist.
fn repair_row(id: i64) -> (String, String, pg_sys::Oid, String) {
    let row = Spi::connect(|c| {
        let r = c
            .select(
                "SELECT status, strategy, table_oid, table_name FROM ruvector_healing.repairs
                  WHERE repair_id = $1",
                None,
                &[id.into()],
            )
            .ok()?
            .into_iter()
            .next()?;
        Some((
            r.get::<String>(1).ok()??,
            r.get::<String>(2).ok()??,
            r.get::<pg_sys::Oid>(3).ok()??,
            r.get::<String>(4).ok()??,
        ))
    });
    row.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            &format!("repair {id} does not exist"),
            "list repairs with ruvector_dag_repair_history(table)",
        )
    })
}

/// Cancels a repair that has not swapped yet. Before its worker started it
/// is marked cancelled; while building, validating or swapping its worker
/// (as the registry names it) is signalled and rolls the step back.
pub fn cancel(id: i64) -> Value {
    let (status, _, table, table_name) = repair_row(id);
    require_maintain(table, &table_name);
    let cancelled_now = Spi::get_one_with_args::<i64>(
        "UPDATE ruvector_healing.repairs SET status = 'cancelled', finished_at = now(),
                error = 'cancelled by ' || $2 || ' before it started'
          WHERE repair_id = $1 AND status = 'planned' RETURNING repair_id",
        &[id.into(), requester().into()],
    )
    .ok()
    .flatten()
    .is_some();
    if cancelled_now {
        journal::step(id, "cancelled", json!({"by": requester()}));
        counters::record(counters::Outcome::Cancelled);
        return json!({"repair_id": id, "status": "cancelled", "action": "cancelled before it started"});
    }
    match status.as_str() {
        "building" | "validating" | "swapping" => {}
        "swapped" | "retiring" | "rolling_back" => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} is {status}: past the swap, it can no longer be cancelled"),
            &format!("let it finish, then undo it with ruvector_dag_rollback({id})"),
        ),
        s => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} has already finished ({s})"),
            "",
        ),
    }
    // Only a pid the worker wrote itself into the registry is signalled.
    let Some(pid) = journal::worker_pid(id) else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} was interrupted: its worker is gone"),
            "ruvector_dag_recover_repairs() rolls it back",
        );
    };
    journal::step(
        id,
        "cancel_requested",
        json!({"by": requester(), "pid": pid}),
    );
    // The worker's own cancel handler turns this into a clean rollback of
    // the step (as pg_cancel_backend would, without needing its rights).
    unsafe { libc::kill(pid, libc::SIGINT) };
    json!({"repair_id": id, "status": status, "action": "cancel signalled; the worker drops what it built",
           "worker_pid": pid})
}

/// Asks a worker to undo a finished repair whose backup is kept (or the
/// tuned setting). Reports what was asked; the row says what happened
/// (`rolled_back`, or `rollback_failed` with the reason).
pub fn rollback(id: i64) -> Value {
    require_preload();
    let (status, strategy, table, table_name) = repair_row(id);
    require_maintain(table, &table_name);
    if status != "done" && status != "rollback_failed" {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} is {status}: only a finished (done) repair can be rolled back"),
            "a repair that failed or was cancelled already left the original in place",
        );
    }
    if strategy == "vacuum" {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("repair {id} was a vacuum, which cannot be undone"),
            "",
        );
    }
    let backup = crate::sql::get_one::<JsonB>(
        "SELECT coalesce(backup, '{}') FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .map(|j| j.0)
    .unwrap_or_default();
    if !backup["kept"].as_bool().unwrap_or(false) {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} kept no backup (it was dropped, or ruvector.dag_healing_rollback_enabled was off)"),
            "a kept index is dropped after ruvector.dag_healing_backup_retention_min",
        );
    }
    if let Some((other, st)) = journal::active_on_table(table, id) {
        raise(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            &format!("repair {other} of the same table is {st}"),
            &format!("wait for it with CALL ruvector_dag_wait_repair({other})"),
        );
    }
    let from = plan::Status::parse(&status).unwrap_or(plan::Status::Done);
    journal::advance(
        id,
        from,
        plan::Status::RollingBack,
        json!({"by": requester()}),
    );
    let xid = Spi::get_one::<String>("SELECT pg_current_xact_id()::text")
        .ok()
        .flatten()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    if let Err(e) = launch(Mode::Rollback, id, xid) {
        raise(PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, &e, "");
    }
    let restores = match strategy.as_str() {
        "tune_search" => json!({"setting": backup["setting"], "value": backup["previous"]}),
        _ => json!({"index": backup["index"], "as": index_name_of(id)}),
    };
    json!({"repair_id": id, "status": "rolling_back", "restores": restores,
           "action": "a worker restores the previous index or setting; wait with CALL ruvector_dag_wait_repair(repair_id): the row ends rolled_back, or rollback_failed with the reason"})
}

fn index_name_of(id: i64) -> Value {
    crate::sql::get_one::<String>(
        "SELECT index_name FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .map(Value::from)
    .unwrap_or(Value::Null)
}

/// Starts a worker that finishes or rolls back interrupted repairs and
/// retires expired backups; reports what it found.
pub fn recover() -> Value {
    require_preload();
    let interrupted = journal::orphans(0);
    let due = crate::sql::get_one::<i64>(
        "SELECT count(*) FROM ruvector_healing.repairs
          WHERE backup ? 'drop_pending'
             OR (coalesce((backup->>'kept')::bool, false) AND strategy = 'rebuild'
                 AND status IN ('done', 'rollback_failed')
                 AND finished_at + make_interval(mins => (backup->>'keep_minutes')::int) < now())",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    let started = if interrupted.is_empty() && due == 0 {
        false
    } else {
        let xid = Spi::get_one::<String>("SELECT pg_current_xact_id()::text")
            .ok()
            .flatten()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        launch(Mode::Recover, 0, xid).unwrap_or_else(|e| {
            raise(PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, &e, "")
        });
        true
    };
    json!({"interrupted_repairs": interrupted, "backups_to_retire": due, "worker_started": started})
}
