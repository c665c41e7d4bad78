//! The repair worker: a dynamic background worker started for one repair
//! (or a rollback, or a recovery run), connected to the index's database.
//!
//! Life of a worker: take the repair in the registry (its ownership mark,
//! in shared memory), wait for the requesting transaction to commit,
//! resolve restored history, recover repairs whose workers are gone,
//! retire expired backups, purge old history, then run the repair's
//! strategy, writing the journal before every step.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::Spi;
use serde_json::json;

use super::catalog::{self};
use super::counters::{self, Outcome};
use super::exec::Deadline;
use super::guards::guards;
use super::journal;
use super::plan::{self, Status, Strategy};
use super::rebuild::{drop_shadow, rebuild, rollback_rebuild};
use super::recovery::{recover_orphans, retire_backups};
use super::registry;
use super::settings::{memory_kb, Limits};
use super::step::*;
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
        if registry::enter(id).is_err() {
            return; // another worker already owns this repair
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
            crate::sql::get_one::<String>(
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
    // What the requester's session passed, within the documented bounds
    // (this worker's own values are the server's).
    let s = s.clamped(&Limits {
        maintenance_work_mem_kb: crate::recall::scan::setting("maintenance_work_mem")
            .as_deref()
            .and_then(memory_kb)
            .unwrap_or(65_536),
        max_parallel_maintenance_workers: crate::recall::scan::setting(
            "max_parallel_maintenance_workers",
        )
        .and_then(|v| v.parse().ok())
        .unwrap_or(2),
    });
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
    // A rebuild gets the time its build needs (see plan::repair_timeout_s).
    let timeout_s = match row.strategy {
        Strategy::Rebuild => {
            let bytes = super::guards::estimated_bytes(&row, &facts);
            plan::repair_timeout_s(
                s.timeout_s,
                bytes,
                tx(|| journal::build_rates(Some(bytes as f64)))
                    .ok()
                    .and_then(plan::median_rate),
            )
        }
        _ => s.timeout_s,
    };
    let _ = tx(|| {
        journal::merge(
            id,
            "plan",
            json!({"applied_settings": s, "timeout_s": timeout_s}),
        )
    });
    let _ = tx(|| journal::started(id));
    counters::record(Outcome::Initiated);
    let started = Instant::now();
    let deadline = Deadline(Some(started + Duration::from_secs(timeout_s.max(1) as u64)));
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
                        "timed out after {timeout_s} s (ruvector.dag_healing_repair_timeout_s, or the time the index's size calls for) while {}",
                        f.during
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
                if b["scope"] == "index" {
                    crate::adaptive::stored::store(
                        b["schema"].as_str().unwrap_or(""),
                        b["index"].as_str().unwrap_or(""),
                        b["previous"].as_str().and_then(|v| v.parse().ok()),
                    );
                } else {
                    apply_override(setting, b["previous"].as_str(), b["role"].as_str());
                }
                journal::merge(
                    id,
                    "backup",
                    json!({"kept": false, "restored": b["previous"], "rolled_back_at": now_json()}),
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
