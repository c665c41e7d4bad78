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
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::Spi;
use serde_json::{json, Value};

use super::catalog::{self};
use super::counters::{self, Outcome};
use super::exec::{in_transaction, Deadline, StepError};
use super::guards::guards;
use super::journal::{self, RepairRow, REPAIR_KEY};
use super::plan::{Status, Strategy};
use super::rebuild::{drop_shadow, rebuild, rollback_rebuild};
use super::recovery::{recover_orphans, retire_backups};
use super::settings::RepairSettings;
use super::tune::{apply_override, tune};
use super::vacuum::vacuum;

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

pub(crate) unsafe extern "C-unwind" fn on_sigterm(_: core::ffi::c_int) {
    // As PostgreSQL's die(): acted on at the next CHECK_FOR_INTERRUPTS,
    // which ends the worker with FATAL; the journal lets the next run
    // finish or roll back what it was doing.
    pg_sys::InterruptPending = 1;
    pg_sys::ProcDiePending = 1;
    pg_sys::SetLatch(pg_sys::MyLatch);
}

pub(crate) unsafe extern "C-unwind" fn release_slot(_: core::ffi::c_int, _: pg_sys::Datum) {
    counters::release();
}

pub(crate) fn no_deadline() -> Deadline {
    Deadline(None)
}

/// Runs `f` in a transaction with no deadline (journal writes, cleanup).
pub(crate) fn tx<R>(f: impl FnOnce() -> R) -> Result<R, StepError> {
    in_transaction(no_deadline(), f)
}

pub(crate) fn activity(text: &str) {
    let c = CString::new(text).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c.as_ptr()) };
}

/// Sleeps on the latch without acting on interrupts (the next step does).
pub(crate) fn nap(ms: i64) {
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

pub(crate) fn set_session(name: &str, value: &str) {
    crate::recall::scan::set_option(
        name,
        value,
        pg_sys::GucContext::PGC_SUSET,
        pg_sys::GucAction::GUC_ACTION_SET,
    );
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
    let _ = tx(crate::release::adopt_restored);
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
pub(crate) fn wait_for_requester(xid: u64) -> bool {
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

pub(crate) fn load(id: i64) -> Option<(RepairRow, RepairSettings)> {
    let row = tx(|| journal::load(id)).ok().flatten()?;
    let settings: RepairSettings = serde_json::from_value(row.plan["settings"].clone()).ok()?;
    Some((row, settings))
}

pub(crate) fn finish(id: i64, status: Status, error: Option<&str>) {
    let _ = tx(|| journal::finish(id, status, error));
    counters::record(match status {
        Status::Failed => Outcome::Failed,
        Status::RolledBack => Outcome::RolledBack,
        Status::Cancelled => Outcome::Cancelled,
        Status::Refused => Outcome::Refused,
        _ => return,
    });
}

// ------------------------------------------------------------------ repair

pub(crate) fn repair(id: i64) {
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
            // The timer may fire a moment before the deadline it was armed for.
            let timed_out = f.error.message.contains("statement timeout")
                || deadline
                    .0
                    .is_some_and(|d| Instant::now() + Duration::from_millis(100) >= d);
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
pub(crate) struct Failure {
    pub during: &'static str,
    pub error: StepError,
    pub drop_shadow: bool,
}

pub(crate) fn failure(during: &'static str, drop_shadow: bool) -> impl Fn(StepError) -> Failure {
    move |error| Failure {
        during,
        error,
        drop_shadow,
    }
}

pub(crate) fn flatten<T>(r: Result<Result<T, StepError>, StepError>) -> Result<T, StepError> {
    r.and_then(|x| x)
}

/// Crash tests: waits (up to two minutes, for the test to kill the worker
/// or stop the server) at the step named by
/// `ruvector.dag_healing_test_pause_at` when the repair was requested.
pub(crate) fn pause(id: i64, s: &RepairSettings, point: &str) {
    if s.pause_at.as_deref() != Some(point) {
        return;
    }
    let _ = tx(|| journal::step(id, "paused_for_test", json!({"at": point})));
    activity(&format!("paused for a test at {point}"));
    for _ in 0..1200 {
        // A cancel or shutdown ends the pause; the next step acts on it.
        if unsafe { pg_sys::InterruptPending } != 0 {
            break;
        }
        nap(100);
    }
}

// ------------------------------------------------------------------ rollback

pub(crate) fn rollback(id: i64) {
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

pub(crate) fn health(oid: pg_sys::Oid) -> (Value, Vec<String>) {
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

pub(crate) fn issue_names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) use super::plan::quote_ident as q;
