//! The repair worker: a dynamic background worker started for one repair
//! (or a rollback, or a recovery run), connected to the index's database.
//!
//! Life of a worker: take the repair's advisory lock (its liveness mark),
//! wait for the requesting transaction to commit, recover repairs whose
//! workers are gone, retire expired backups, purge old history, then run
//! the repair's strategy, writing the journal before every step.

use std::ffi::CString;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::catalog::{self, IndexFacts};
use super::counters::{self, Outcome};
use super::exec::{in_transaction, top_level, Deadline, StepError};
use super::journal::{self, RepairRow, REPAIR_KEY, TABLE_KEY};
use super::plan::{self, Recovery, Status, Strategy};
use super::settings::{parse_scope, RepairSettings, Scope};
use crate::inspect::relation::Am;

/// What a worker is started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Repair,
    Rollback,
    Recover,
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Repair => "repair",
            Mode::Rollback => "rollback",
            Mode::Recover => "recover",
        }
    }
}

/// Starts a worker in this database. `xid`: the requesting transaction
/// (the worker waits for it to commit, and exits if it aborts).
pub fn launch(mode: Mode, id: i64, xid: u64) -> Result<(), String> {
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    BackgroundWorkerBuilder::new(&format!("ruvector_healing {} {id}", mode.name()))
        .set_type("ruvector_healing repair")
        .set_library("ruvector_healing")
        .set_function("ruvector_repair_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_argument(id.into_datum())
        .set_extra(&format!("{} {db} {xid}", mode.name()))
        .load_dynamic()
        .map(|_| ())
        .map_err(|_| {
            "no background worker slot is free (max_worker_processes); try again later".to_string()
        })
}

unsafe extern "C-unwind" fn on_sigterm(_: core::ffi::c_int) {
    // As PostgreSQL's die(): acted on at the next CHECK_FOR_INTERRUPTS,
    // which ends the worker with FATAL; the journal lets the next run
    // finish or roll back what it was doing.
    pg_sys::InterruptPending = 1;
    pg_sys::ProcDiePending = 1;
    pg_sys::SetLatch(pg_sys::MyLatch);
}

unsafe extern "C-unwind" fn release_slot(_: core::ffi::c_int, _: pg_sys::Datum) {
    counters::release();
}

fn no_deadline() -> Deadline {
    Deadline(None)
}

/// Runs `f` in a transaction with no deadline (journal writes, cleanup).
fn tx<R>(f: impl FnOnce() -> R) -> Result<R, StepError> {
    in_transaction(no_deadline(), f)
}

fn activity(text: &str) {
    let c = CString::new(text).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c.as_ptr()) };
}

/// Sleeps on the latch without acting on interrupts (the next step does).
fn nap(ms: i64) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
}

fn set_session(name: &str, value: &str) {
    let n = CString::new(name).expect("name");
    let v = CString::new(value).expect("value");
    unsafe {
        pg_sys::set_config_option(
            n.as_ptr(),
            v.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn ruvector_repair_worker_main(arg: pg_sys::Datum) {
    let id = unsafe { i64::from_polymorphic_datum(arg, false, pg_sys::INT8OID) }.unwrap_or(0);
    let extra: Vec<String> = BackgroundWorker::get_extra()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mode = match extra.first().map(String::as_str) {
        Some("rollback") => Mode::Rollback,
        Some("recover") => Mode::Recover,
        _ => Mode::Repair,
    };
    let db = extra
        .get(1)
        .and_then(|d| d.parse::<u32>().ok())
        .unwrap_or(0);
    let xid = extra
        .get(2)
        .and_then(|x| x.parse::<u64>().ok())
        .unwrap_or(0);
    unsafe {
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(on_sigterm));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    // Nothing the worker runs resolves names through a user's schema.
    set_session("search_path", "pg_catalog, pg_temp");
    set_session(
        "application_name",
        &format!("ruvector_healing {} {id}", mode.name()),
    );
    set_session("lock_timeout", "0");
    activity("starting");

    if id > 0 {
        if tx(|| {
            Spi::run_with_args(
                "SELECT pg_advisory_lock($1, $2::int4)",
                &[REPAIR_KEY.into(), (id as i32).into()],
            )
        })
        .is_err()
        {
            return;
        }
        if !wait_for_requester(xid) {
            return;
        }
    }
    recover_orphans(id);
    retire_backups();
    match mode {
        Mode::Recover => {}
        Mode::Repair => repair(id),
        Mode::Rollback => rollback(id),
    }
    activity("done");
}

/// Waits until the requesting transaction commits (true) or aborts.
fn wait_for_requester(xid: u64) -> bool {
    if xid == 0 {
        return true;
    }
    activity("waiting for the requesting transaction to commit");
    loop {
        let status = tx(|| {
            Spi::get_one_with_args::<String>(
                "SELECT pg_xact_status($1::text::xid8)",
                &[xid.to_string().into()],
            )
            .ok()
            .flatten()
        });
        match status {
            Ok(Some(s)) if s == "in progress" => nap(50),
            Ok(Some(s)) if s == "aborted" => return false,
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
}

fn load(id: i64) -> Option<(RepairRow, RepairSettings)> {
    let row = tx(|| journal::load(id)).ok().flatten()?;
    let settings: RepairSettings = serde_json::from_value(row.plan["settings"].clone()).ok()?;
    Some((row, settings))
}

fn finish(id: i64, status: Status, error: Option<&str>) {
    let _ = tx(|| journal::finish(id, status, error));
    counters::record(match status {
        Status::Failed => Outcome::Failed,
        Status::RolledBack => Outcome::RolledBack,
        Status::Cancelled => Outcome::Cancelled,
        Status::Refused => Outcome::Refused,
        _ => return,
    });
}

// ------------------------------------------------------------------ guards

/// Checks the guards that depend on the moment the repair starts. `Err`
/// is the refusal reason. On success the repair holds its table's lock and
/// a concurrency slot.
fn guards(row: &RepairRow, s: &RepairSettings, facts: &IndexFacts) -> Result<(), String> {
    if !s.enabled || !crate::config::ENABLED.get() {
        return Err("ruvector.dag_healing_enabled is off".into());
    }
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err("the server is a standby (in recovery): repairs run on the primary".into());
    }
    let locked = tx(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT pg_try_advisory_lock($1, $2::int4)",
            &[TABLE_KEY.into(), (row.table_oid.to_u32() as i32).into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
    .unwrap_or(false);
    if !locked {
        return Err(format!(
            "another repair of table {} is running",
            facts.table
        ));
    }
    let history = tx(|| recent(row)).map_err(|e| e.message)?;
    if let Some(age) = history.last_success_age_s {
        if age < s.cooldown_s as f64 {
            return Err(format!(
                "cooldown: index {} was repaired {:.0} s ago (ruvector.dag_healing_cooldown_s = {})",
                facts.qualified, age, s.cooldown_s
            ));
        }
    }
    if plan::breaker_open(&history.outcomes, s.max_attempts as usize, 86_400.0) {
        return Err(format!(
            "circuit breaker: the last {} repairs of {} failed; repairs of this index pause for a day after the last failure",
            s.max_attempts, facts.qualified
        ));
    }
    if history.issue_attempts >= s.max_attempts as i64 {
        return Err(format!(
            "issue {} already had {} repair attempts (ruvector.dag_healing_max_attempts)",
            row.issue_id.unwrap_or(0),
            history.issue_attempts
        ));
    }
    if row.strategy == Strategy::Rebuild {
        let needed = plan::disk_needed(facts.bytes.max(0) as u64);
        match catalog::free_bytes(facts.tablespace_oid) {
            Some(free) if free < needed => {
                return Err(format!(
                    "not enough free disk on the index's tablespace: {free} bytes free, {needed} needed (twice the index)"
                ))
            }
            None => return Err("cannot read the free space of the index's tablespace".into()),
            _ => {}
        }
    }
    if !counters::try_acquire(crate::config::MAX_CONCURRENT_REPAIRS.get()) {
        return Err(format!(
            "{} repairs are running (ruvector.dag_healing_max_concurrent_repairs)",
            crate::config::MAX_CONCURRENT_REPAIRS.get()
        ));
    }
    unsafe { pg_sys::before_shmem_exit(Some(release_slot), pg_sys::Datum::from(0)) };
    Ok(())
}

struct Recent {
    last_success_age_s: Option<f64>,
    /// Finished repairs of the index, newest first, with their age.
    outcomes: Vec<(Status, f64)>,
    issue_attempts: i64,
}

fn recent(row: &RepairRow) -> Recent {
    let outcomes: Vec<(Status, f64)> = Spi::connect(|c| {
        c.select(
            "SELECT status, extract(epoch FROM now() - finished_at)::float8
               FROM ruvector_healing.repairs
              WHERE table_oid = $1 AND relname = $2 AND repair_id <> $3
                AND status IN ('done', 'failed', 'rolled_back') AND NOT dry_run
              ORDER BY finished_at DESC LIMIT 20",
            None,
            &[
                row.table_oid.into(),
                row.relname.clone().into(),
                row.id.into(),
            ],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some((
                    Status::parse(&r.get::<String>(1).ok()??)?,
                    r.get::<f64>(2).ok()??,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
    });
    let issue_attempts = match row.issue_id {
        Some(issue) => Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM ruvector_healing.repairs
              WHERE issue_id = $1 AND repair_id <> $2 AND status IN ('done','failed','rolled_back')",
            &[issue.into(), row.id.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(0),
        None => 0,
    };
    Recent {
        last_success_age_s: outcomes
            .iter()
            .find(|(s, _)| *s == Status::Done)
            .map(|(_, a)| *a),
        outcomes,
        issue_attempts,
    }
}

// ------------------------------------------------------------------ repair

fn repair(id: i64) {
    let Some((row, s)) = load(id) else { return };
    if row.status != Status::Planned {
        return; // cancelled before the worker got here
    }
    let facts = match tx(|| catalog::facts(row.index_oid)) {
        Ok(Some(f)) => f,
        _ => return finish(id, Status::Failed, Some("the index no longer exists")),
    };
    if let Err(why) = guards(&row, &s, &facts) {
        return finish(id, Status::Refused, Some(&why));
    }
    for (name, value) in [
        ("maintenance_work_mem", &s.maintenance_work_mem),
        (
            "max_parallel_maintenance_workers",
            &s.max_parallel_maintenance_workers,
        ),
    ] {
        if let Some(v) = value {
            set_session(name, v);
        }
    }
    let _ = tx(|| journal::started(id));
    counters::record(Outcome::Initiated);
    let started = Instant::now();
    let deadline = Deadline(Some(
        started + Duration::from_secs(s.timeout_s.max(1) as u64),
    ));
    let result = match row.strategy {
        Strategy::Rebuild => rebuild(&row, &s, &facts, deadline),
        Strategy::Vacuum => vacuum(&row, &facts, deadline),
        Strategy::TuneSearch => tune(&row, &s, &facts, deadline),
    };
    match result {
        Ok(()) => {
            let ms = started.elapsed().as_millis() as u64;
            counters::record(Outcome::Succeeded { ms });
        }
        Err(f) => {
            let timed_out = deadline.0.is_some_and(|d| Instant::now() >= d);
            let (status, msg) = if f.error.cancelled() && timed_out {
                (
                    Status::Failed,
                    format!(
                        "timed out after {} s (ruvector.dag_healing_repair_timeout_s) while {}",
                        s.timeout_s, f.during
                    ),
                )
            } else if f.error.cancelled() {
                (Status::Cancelled, format!("cancelled while {}", f.during))
            } else {
                (Status::Failed, format!("{} failed: {}", f.during, f.error))
            };
            // Record the reason before cleaning up: if cleanup is
            // interrupted, the next run finds it in the row.
            let _ = tx(|| {
                Spi::run_with_args(
                    "UPDATE ruvector_healing.repairs SET error = $2 WHERE repair_id = $1",
                    &[id.into(), msg.clone().into()],
                )
            });
            if f.drop_shadow && !drop_shadow(&row, &facts.schema) {
                return; // left active: the next run drops it
            }
            finish(id, status, Some(&msg));
        }
    }
}

/// A failed step: what was being done, the error, and whether a shadow
/// index may exist.
struct Failure {
    during: &'static str,
    error: StepError,
    drop_shadow: bool,
}

fn failure(during: &'static str, drop_shadow: bool) -> impl Fn(StepError) -> Failure {
    move |error| Failure {
        during,
        error,
        drop_shadow,
    }
}

fn flatten<T>(r: Result<Result<T, StepError>, StepError>) -> Result<T, StepError> {
    r.and_then(|x| x)
}

fn health(oid: pg_sys::Oid) -> (Value, Vec<String>) {
    let t = crate::inspect::relation::resolve(Some(oid));
    let h = crate::api::health::health_value(&t);
    let mut found = Vec::new();
    crate::api::check::issues_of(
        &h,
        t.am,
        &crate::detect::index_health::Thresholds::default(),
        &mut found,
    );
    let kinds = found
        .iter()
        .map(|(_, i)| i.kind.name().to_string())
        .collect();
    (h, kinds)
}

fn issue_names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The search setting to measure each index at: the requester's value, and
/// for an IVFFlat index whose `lists` changed, the probes that scan the
/// same share of lists.
fn search_values(
    am: Am,
    s: &RepairSettings,
    lists: Option<(i32, i32)>,
) -> (Option<String>, Option<String>) {
    match am {
        Am::Hnsw => {
            let v = s.ef_search.map(|v| v.to_string());
            (v.clone(), v)
        }
        Am::IvfFlat => {
            let p = s.probes.unwrap_or(1);
            let new = match lists {
                Some((old, new)) => plan::equivalent_probes(p, old, new),
                None => p,
            };
            (Some(p.to_string()), Some(new.to_string()))
        }
    }
}

fn rebuild(
    row: &RepairRow,
    s: &RepairSettings,
    f: &IndexFacts,
    deadline: Deadline,
) -> Result<(), Failure> {
    let id = row.id;
    let am = f.access_method().unwrap_or(Am::Hnsw);
    let shadow = plan::shadow_name(&f.relname, id);
    let backup = plan::backup_name(&f.relname, id);
    activity("measuring the index before the rebuild");
    // 1. Plan: definition from the catalog, lists from the row count.
    let (sql, lists) = flatten(in_transaction(deadline, || {
        if let Some(why) = f.unsafe_to_rebuild() {
            return Err(StepError::new(why));
        }
        let mut def = f.definition.clone();
        let mut lists = None;
        if am == Am::IvfFlat && !pinned_lists(f) {
            let rows = catalog::row_count(&f.table);
            let new = plan::ivfflat_lists(rows);
            let old = def
                .option("lists")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            if new != old {
                def.set_option("lists", &new.to_string());
            }
            lists = Some((old, new));
        }
        let sql = def.create_concurrently(&shadow).map_err(StepError::new)?;
        let (before, issues) = health(f.oid);
        journal::merge(id, "before", json!({"health": before, "issues": issues}));
        journal::merge(
            id,
            "plan",
            json!({"shadow_name": shadow, "backup_name": backup, "schema": f.schema,
                   "statement": sql, "lists": lists.map(|(o, n)| json!({"old": o, "new": n})),
                   "comment": f.comment, "statistics_targets": f.stat_targets}),
        );
        if !journal::advance(
            id,
            Status::Planned,
            Status::Building,
            json!({"statement": sql}),
        ) {
            return Err(StepError {
                code: PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                message: "cancelled before the build".into(),
            });
        }
        Ok((sql, lists))
    }))
    .map_err(failure("planning the rebuild", false))?;

    // 2. Build the shadow beside the original.
    activity(&format!("building {shadow} (CREATE INDEX CONCURRENTLY)"));
    top_level(deadline, &sql).map_err(failure("building the new index", true))?;

    // 3. Validate it against the original.
    activity(&format!("validating {shadow}"));
    let verdict = flatten(in_transaction(deadline, || {
        journal::advance(id, Status::Building, Status::Validating, json!({}));
        let Some((new_oid, valid)) = catalog::index_named(&f.schema, &shadow, f.table_oid) else {
            return Err(StepError::new("the new index is missing after its build"));
        };
        journal::merge(id, "plan", json!({"shadow_oid": new_oid.to_u32()}));
        let (after, new_issues) = health(new_oid);
        let old_issues = Spi::get_one_with_args::<JsonB>(
            "SELECT before->'issues' FROM ruvector_healing.repairs WHERE repair_id = $1",
            &[id.into()],
        )
        .ok()
        .flatten()
        .map(|j| issue_names(&j.0))
        .unwrap_or_default();
        let (old_value, new_value) = search_values(am, s, lists);
        let paired = crate::api::recall::paired_recall(
            f.oid,
            new_oid,
            old_value,
            new_value,
            VALIDATION_SAMPLE,
            VALIDATION_K,
        );
        let verdict = plan::validate(
            valid,
            &old_issues,
            &new_issues,
            paired.as_ref().map(|p| p.old),
            paired.as_ref().map(|p| p.new),
            s.min_recall,
        );
        journal::merge(
            id,
            "after",
            json!({"health": after, "issues": new_issues, "recall": paired, "validation": verdict}),
        );
        if let Some(p) = &paired {
            journal::merge(
                id,
                "before",
                json!({"recall": {"value": p.old, "k": p.k, "queries": p.queries,
                "setting": p.setting, "setting_value": p.old_value}}),
            );
        }
        if verdict.passed {
            copy_attributes(f, &shadow);
        }
        Ok(verdict)
    }))
    .map_err(failure("validating the new index", true))?;
    if !verdict.passed {
        return Err(Failure {
            during: "validating the new index",
            error: StepError::new(format!("validation failed: {}", verdict.reasons.join("; "))),
            drop_shadow: true,
        });
    }

    // 4. Swap names in one short transaction, retried on lock timeouts.
    let keep = s.rollback_enabled;
    let _ = tx(|| {
        journal::advance(
            id,
            Status::Validating,
            Status::Swapping,
            json!({"keep_backup": keep}),
        )
    });
    activity(&format!("swapping {shadow} in"));
    let mut attempt = 0;
    loop {
        let r = in_transaction(deadline, || swap(row, f, &shadow, &backup, keep, s));
        match r {
            Ok(()) => break,
            Err(e) if e.lock_unavailable() && attempt < SWAP_ATTEMPTS => {
                let _ = tx(|| {
                    journal::step(
                        id,
                        "swap_retry",
                        json!({"attempt": attempt + 1, "error": e.message}),
                    )
                });
                nap(500 << attempt);
                attempt += 1;
            }
            Err(e) => return Err(failure("swapping the indexes", true)(e)),
        }
    }
    // 5. Keep the old index for rollback, or retire it now.
    finish_swapped(id, f, &backup, keep);
    Ok(())
}

/// Recall measured by validation: 100 sampled rows, recall@10.
pub const VALIDATION_SAMPLE: i32 = 100;
pub const VALIDATION_K: i32 = 10;
/// Lock attempts for the swap (each under a 2 s lock_timeout, with growing
/// pauses: about 16 s in all).
const SWAP_ATTEMPTS: u32 = 5;

fn pinned_lists(f: &IndexFacts) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pin_lists FROM ruvector_healing.index_policies
          WHERE schema_name = $1 AND index_name = $2",
        &[f.schema.clone().into(), f.relname.clone().into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Comment and statistics targets of the original, onto the shadow.
fn copy_attributes(f: &IndexFacts, shadow: &str) {
    let target = format!("{}.{}", q(&f.schema), q(shadow));
    if let Some(c) = &f.comment {
        let sql = Spi::get_one_with_args::<String>(
            "SELECT format('COMMENT ON INDEX %s IS %L', $1::text, $2::text)",
            &[target.clone().into(), c.clone().into()],
        )
        .ok()
        .flatten();
        if let Some(sql) = sql {
            let _ = Spi::run(&sql);
        }
    }
    for (col, value) in &f.stat_targets {
        let _ = Spi::run(&format!(
            "ALTER INDEX {target} ALTER COLUMN {col} SET STATISTICS {value}"
        ));
    }
}

/// The swap transaction: renames, the old index kept invalid (still
/// maintained by every write, unused by queries) when a backup is wanted,
/// and the journal, all committed together.
fn swap(
    row: &RepairRow,
    f: &IndexFacts,
    shadow: &str,
    backup: &str,
    keep: bool,
    s: &RepairSettings,
) {
    let schema = q(&f.schema);
    Spi::run("SET LOCAL lock_timeout = '2s'").expect("lock_timeout");
    Spi::run(&format!(
        "LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
        f.table
    ))
    .expect("lock");
    Spi::run(&format!(
        "ALTER INDEX {schema}.{} RENAME TO {}",
        q(&f.relname),
        q(backup)
    ))
    .expect("rename");
    Spi::run(&format!(
        "ALTER INDEX {schema}.{} RENAME TO {}",
        q(shadow),
        q(&f.relname)
    ))
    .expect("rename");
    set_valid(f.oid, false, f.table_oid);
    journal::advance(
        row.id,
        Status::Swapping,
        Status::Swapped,
        json!({"backup": backup}),
    );
    journal::merge(
        row.id,
        "backup",
        json!({"index": backup, "oid": f.oid.to_u32(), "kept": keep,
               "keep_minutes": if keep { json!(s.backup_retention_min) } else { Value::Null }}),
    );
}

/// Marks an index valid or not (as REINDEX CONCURRENTLY's swap does) and
/// makes every session replan the table.
fn set_valid(index: pg_sys::Oid, valid: bool, table: pg_sys::Oid) {
    Spi::run_with_args(
        "UPDATE pg_catalog.pg_index SET indisvalid = $2 WHERE indexrelid = $1",
        &[index.into(), valid.into()],
    )
    .expect("pg_index");
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table) };
}

/// After the swap: keep the backup (done), or drop it concurrently.
fn finish_swapped(id: i64, f: &IndexFacts, backup: &str, keep: bool) {
    if !keep {
        let _ = tx(|| journal::advance(id, Status::Swapped, Status::Retiring, json!({})));
        activity(&format!("dropping {backup} (DROP INDEX CONCURRENTLY)"));
        let sql = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
            q(&f.schema),
            q(backup)
        );
        if top_level(no_deadline(), &sql).is_err() {
            return; // stays 'retiring': the next run finishes the drop
        }
        let _ = tx(|| journal::merge(id, "backup", json!({"kept": false, "dropped_at": now()})));
    }
    let _ = tx(|| journal::finish(id, Status::Done, None));
}

fn now() -> Value {
    Spi::get_one::<String>("SELECT now()::text")
        .ok()
        .flatten()
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// Drops the shadow of a repair if it exists and is not the original.
/// Returns whether nothing of ours is left.
fn drop_shadow(row: &RepairRow, schema: &str) -> bool {
    let shadow = plan::shadow_name(&row.relname, row.id);
    let found = tx(|| catalog::index_named(schema, &shadow, row.table_oid))
        .ok()
        .flatten();
    match found {
        Some((oid, _)) if oid != row.index_oid => {
            activity(&format!("dropping {shadow} (DROP INDEX CONCURRENTLY)"));
            let sql = format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                q(schema),
                q(&shadow)
            );
            top_level(no_deadline(), &sql).is_ok()
        }
        _ => true,
    }
}

// ------------------------------------------------------------------ vacuum

fn vacuum(row: &RepairRow, f: &IndexFacts, deadline: Deadline) -> Result<(), Failure> {
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

// ------------------------------------------------------------------ tune

fn ext_schema() -> String {
    Spi::get_one::<String>(
        "SELECT quote_ident(n.nspname) FROM pg_extension e
           JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'ruvector_healing'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "public".into())
}

fn tune(
    row: &RepairRow,
    s: &RepairSettings,
    f: &IndexFacts,
    deadline: Deadline,
) -> Result<(), Failure> {
    let id = row.id;
    let fail = |m: String| Failure {
        during: "tuning the search setting",
        error: StepError::new(m),
        drop_shadow: false,
    };
    let scope = parse_scope(&s.tuning_scope).map_err(fail)?;
    let role = match &scope {
        Scope::Off => return Err(fail("ruvector.dag_healing_tuning_scope is off".into())),
        Scope::Database => None,
        Scope::Role(r) => Some(r.clone()),
    };
    let _ = tx(|| {
        journal::advance(
            id,
            Status::Planned,
            Status::Building,
            json!({"scope": s.tuning_scope}),
        )
    });
    activity(&format!("tuning the search setting of {}", f.qualified));
    let report = flatten(in_transaction(deadline, || {
        let sql = format!(
            "SELECT {}.ruvector_dag_tune_search($1::oid::regclass, $2, 10, 100)",
            ext_schema()
        );
        Spi::get_one_with_args::<JsonB>(&sql, &[f.oid.into(), s.target_recall.into()])
            .ok()
            .flatten()
            .map(|j| j.0)
            .ok_or_else(|| StepError::new("tuning returned nothing"))
    }))
    .map_err(failure("tuning the search setting", false))?;
    let Some(value) = report["recommended_value"].as_u64() else {
        let _ = tx(|| journal::merge(id, "after", json!({"tuning": report})));
        return Err(fail(format!(
            "no value reaches recall {}: {}",
            s.target_recall,
            report["advice"].as_str().unwrap_or("")
        )));
    };
    let setting = report["setting"]
        .as_str()
        .unwrap_or("hnsw.ef_search")
        .to_string();
    in_transaction(deadline, || {
        journal::advance(id, Status::Building, Status::Swapping, json!({}));
        let previous = current_override(&setting, role.as_deref());
        apply_override(&setting, Some(&value.to_string()), role.as_deref());
        journal::merge(
            id,
            "backup",
            json!({"setting": setting, "scope": s.tuning_scope,
            "role": role, "previous": previous, "kept": true}),
        );
        journal::merge(id, "after", json!({"tuning": report, "applied": value}));
        journal::finish(id, Status::Done, None);
    })
    .map_err(failure("applying the tuned setting", false))
}

/// The value of `setting` stored for this database (and role), if any.
fn current_override(setting: &str, role: Option<&str>) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT split_part(c, '=', 2) FROM pg_db_role_setting s, unnest(s.setconfig) c
          WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND s.setrole = coalesce((SELECT oid FROM pg_roles WHERE rolname = $2), 0)
            AND split_part(c, '=', 1) = $1",
        &[setting.into(), role.into()],
    )
    .ok()
    .flatten()
}

/// `ALTER DATABASE|ROLE ... SET setting = value` (or `RESET` for None).
fn apply_override(setting: &str, value: Option<&str>, role: Option<&str>) {
    let db = Spi::get_one::<String>("SELECT quote_ident(current_database())")
        .ok()
        .flatten()
        .expect("database name");
    let target = match role {
        Some(r) => format!("ROLE {} IN DATABASE {db}", q(r)),
        None => format!("DATABASE {db}"),
    };
    // `setting` is one of the two names recall tuning returns.
    assert!(setting == "hnsw.ef_search" || setting == "ivfflat.probes");
    let sql = match value {
        Some(v) => {
            let v: i64 = v.parse().expect("numeric setting");
            format!("ALTER {target} SET {setting} = {v}")
        }
        None => format!("ALTER {target} RESET {setting}"),
    };
    Spi::run(&sql).expect("apply setting");
}

// ------------------------------------------------------------------ rollback

fn rollback(id: i64) {
    let Some((row, _)) = load(id) else { return };
    if row.status != Status::RollingBack {
        return;
    }
    match row.strategy {
        Strategy::TuneSearch => {
            let b = row.backup.clone();
            let r = tx(|| {
                let setting = b["setting"].as_str().unwrap_or("");
                apply_override(setting, b["previous"].as_str(), b["role"].as_str());
                journal::merge(
                    id,
                    "backup",
                    json!({"kept": false, "restored": b["previous"], "rolled_back_at": now()}),
                );
                journal::finish(id, Status::RolledBack, None);
            });
            if r.is_ok() {
                counters::record(Outcome::RolledBack);
            }
        }
        _ => rollback_rebuild(&row),
    }
}

fn rollback_rebuild(row: &RepairRow) {
    let id = row.id;
    let schema = row.plan["schema"].as_str().unwrap_or("public").to_string();
    let backup_oid = pg_sys::Oid::from(row.backup["oid"].as_u64().unwrap_or(0) as u32);
    let new_oid = pg_sys::Oid::from(row.plan["shadow_oid"].as_u64().unwrap_or(0) as u32);
    let backup = row.backup["index"].as_str().unwrap_or("").to_string();
    let retired = plan::derived_name(&row.relname, &format!("_rvbad{id}"));
    activity(&format!("rolling back repair {id}"));
    let mut attempt = 0;
    let swapped = loop {
        let r = tx(|| {
            let now_new = catalog::index_named(&schema, &row.relname, row.table_oid);
            let now_backup = catalog::index_named(&schema, &backup, row.table_oid);
            match (now_new, now_backup) {
                (Some((n, _)), Some((b, _))) if n == new_oid && b == backup_oid => {}
                _ => return Err(
                    "the indexes are no longer the ones the repair left (renamed or dropped since)"
                        .to_string(),
                ),
            }
            Spi::run("SET LOCAL lock_timeout = '2s'").expect("lock_timeout");
            let table = Spi::get_one_with_args::<String>(
                "SELECT $1::oid::regclass::text",
                &[row.table_oid.into()],
            )
            .ok()
            .flatten()
            .expect("table");
            Spi::run(&format!(
                "LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE"
            ))
            .expect("lock");
            let s = q(&schema);
            Spi::run(&format!(
                "ALTER INDEX {s}.{} RENAME TO {}",
                q(&row.relname),
                q(&retired)
            ))
            .expect("rename");
            Spi::run(&format!(
                "ALTER INDEX {s}.{} RENAME TO {}",
                q(&backup),
                q(&row.relname)
            ))
            .expect("rename");
            set_valid(new_oid, false, row.table_oid);
            set_valid(backup_oid, true, row.table_oid);
            journal::merge(
                id,
                "backup",
                json!({"kept": false, "restored": true, "rolled_back_at": now(),
                "drop_pending": {"index": retired, "oid": new_oid.to_u32()}}),
            );
            journal::finish(id, Status::RolledBack, None);
            Ok(())
        });
        match r {
            Ok(Ok(())) => break true,
            Ok(Err(why)) => {
                let _ = tx(|| {
                    journal::finish(id, Status::Done, None);
                    journal::step(id, "rollback_refused", json!({"error": why}));
                });
                break false;
            }
            Err(e) if e.lock_unavailable() && attempt < SWAP_ATTEMPTS => {
                nap(500 << attempt);
                attempt += 1;
            }
            Err(e) => {
                let _ = tx(|| {
                    journal::finish(id, Status::Done, None);
                    journal::step(id, "rollback_failed", json!({"error": e.message}));
                });
                break false;
            }
        }
    };
    if swapped {
        counters::record(Outcome::RolledBack);
        drop_pending(id, &schema, &retired, new_oid, row.table_oid);
    }
}

/// Drops an index a rollback retired, if it is still the one recorded.
fn drop_pending(id: i64, schema: &str, name: &str, oid: pg_sys::Oid, table: pg_sys::Oid) {
    let found = tx(|| catalog::index_named(schema, name, table))
        .ok()
        .flatten();
    if found.is_some_and(|(o, _)| o == oid) {
        activity(&format!("dropping {name} (DROP INDEX CONCURRENTLY)"));
        let sql = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
            q(schema),
            q(name)
        );
        if top_level(no_deadline(), &sql).is_err() {
            return;
        }
    }
    let _ = tx(|| {
        Spi::run_with_args(
            "UPDATE ruvector_healing.repairs SET backup = (backup - 'drop_pending') || jsonb_build_object('dropped', backup->'drop_pending')
              WHERE repair_id = $1",
            &[id.into()],
        )
    });
}

// ------------------------------------------------------------------ recovery

/// Finishes or rolls back every repair of this database whose worker is
/// gone: only indexes the journal names as created by that repair are
/// dropped.
pub fn recover_orphans(except: i64) {
    let orphans = tx(|| journal::orphans(except)).unwrap_or_default();
    for id in orphans {
        // Own the repair while recovering it, so nobody else does.
        let mine = tx(|| {
            Spi::get_one_with_args::<bool>(
                "SELECT pg_try_advisory_lock($1, $2::int4)",
                &[REPAIR_KEY.into(), (id as i32).into()],
            )
            .ok()
            .flatten()
            .unwrap_or(false)
        })
        .unwrap_or(false);
        if !mine {
            continue;
        }
        activity(&format!("recovering repair {id}"));
        recover_one(id);
        let _ = tx(|| {
            Spi::run_with_args(
                "SELECT pg_advisory_unlock($1, $2::int4)",
                &[REPAIR_KEY.into(), (id as i32).into()],
            )
        });
    }
}

fn recover_one(id: i64) {
    let Some(row) = tx(|| journal::load(id)).ok().flatten() else {
        return;
    };
    let schema = row.plan["schema"].as_str().unwrap_or("").to_string();
    let note = |what: &str| {
        format!(
            "interrupted while {} (the worker or the server stopped); {what}",
            row.status.name()
        )
    };
    let _ = tx(|| journal::step(id, "recovery", json!({"found": row.status.name()})));
    match plan::recovery(row.status) {
        None => {}
        Some(Recovery::NothingToUndo) => {
            finish(id, Status::Failed, Some(&note("nothing had been built")));
        }
        Some(Recovery::DropShadow) => {
            if schema.is_empty() || drop_shadow(&row, &schema) {
                finish(
                    id,
                    Status::RolledBack,
                    Some(&note("the new index was dropped and the original kept")),
                );
            }
        }
        Some(Recovery::Finish) => {
            let keep = row.backup["kept"].as_bool().unwrap_or(false);
            let backup = row.backup["index"].as_str().unwrap_or("").to_string();
            let Some(f) = tx(|| catalog::facts(row.index_oid)).ok().flatten() else {
                return finish(
                    id,
                    Status::Done,
                    Some(&note("the replaced index is already gone")),
                );
            };
            if keep {
                let _ = tx(|| journal::finish(id, Status::Done, None));
            } else {
                if row.status == Status::Retiring {
                    let _ = tx(|| {
                        journal::advance(
                            id,
                            Status::Retiring,
                            Status::Swapped,
                            json!({"recovery": true}),
                        )
                    });
                }
                finish_swapped(id, &f, &backup, false);
            }
        }
        Some(Recovery::RollbackNotApplied) => {
            let _ = tx(|| {
                journal::finish(id, Status::Done, None);
                journal::step(
                    id,
                    "rollback_interrupted",
                    json!({"note": "the rollback had not swapped; the repair stands"}),
                );
            });
        }
    }
}

/// Drops backups kept longer than their retention and indexes a rollback
/// left to drop.
pub fn retire_backups() {
    let due: Vec<(i64, String, String, u32, pg_sys::Oid)> = tx(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT repair_id, plan->>'schema', coalesce(backup->>'index', backup->'drop_pending'->>'index'),
                        coalesce(backup->>'oid', backup->'drop_pending'->>'oid')::int8, table_oid
                   FROM ruvector_healing.repairs
                  WHERE status IN ('done', 'rolled_back')
                    AND ((backup->>'kept')::bool AND strategy = 'rebuild'
                          AND finished_at + make_interval(mins => (backup->>'keep_minutes')::int) < now())
                     OR backup ? 'drop_pending'",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some((
                        r.get::<i64>(1).ok()??,
                        r.get::<String>(2).ok()??,
                        r.get::<String>(3).ok()??,
                        r.get::<i64>(4).ok()?? as u32,
                        r.get::<pg_sys::Oid>(5).ok()??,
                    ))
                })
                .collect()
            })
            .unwrap_or_default()
        })
    })
    .unwrap_or_default();
    for (id, schema, name, oid, table) in due {
        let found = tx(|| catalog::index_named(&schema, &name, table))
            .ok()
            .flatten();
        if found.is_some_and(|(o, _)| o == pg_sys::Oid::from(oid)) {
            activity(&format!(
                "dropping {name}, kept for rollback (DROP INDEX CONCURRENTLY)"
            ));
            let sql = format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                q(&schema),
                q(&name)
            );
            if top_level(no_deadline(), &sql).is_err() {
                continue;
            }
        }
        let _ = tx(|| {
            Spi::run_with_args(
                "UPDATE ruvector_healing.repairs
                    SET backup = (backup - 'drop_pending') || jsonb_build_object('kept', false, 'dropped_at', now())
                  WHERE repair_id = $1",
                &[id.into()],
            )
        });
    }
    let _ = tx(|| journal::purge(crate::config::HISTORY_RETENTION_DAYS.get()));
}
