//! The launcher: a background worker registered at preload, connected to
//! no database (it reads only the shared catalog `pg_database`, as the
//! autovacuum launcher does). Every `ruvector.dag_healing_interval_ms` it
//! starts one cycle worker per database that is due, at most one per
//! database at a time and at most a quarter of `max_worker_processes` at
//! once. It sleeps on its latch, re-reads the configuration on SIGHUP and
//! exits on SIGTERM; the postmaster restarts it 5 s after a crash.

use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use pgrx::{pg_sys, IntoDatum};

use super::state::{self, now_ms, SlotState, STATE};
use crate::config;

pub fn register() {
    BackgroundWorkerBuilder::new("ruvector_healing launcher")
        .set_type("ruvector_healing launcher")
        .set_library("ruvector_healing")
        .set_function("ruvector_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Cycle workers allowed at once: a quarter of `max_worker_processes`
/// (at least one), leaving the rest to parallel queries, repairs and other
/// extensions.
pub fn worker_cap() -> usize {
    (unsafe { pg_sys::max_worker_processes } as usize / 4).max(1)
}

/// Databases that accept connections (not templates, not half-dropped),
/// read straight from the shared catalog.
fn databases() -> Vec<u32> {
    BackgroundWorker::transaction(|| unsafe {
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut out = Vec::new();
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            let db = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tup);
            // datconnlimit -2 marks a database whose DROP was interrupted.
            if db.datallowconn && !db.datistemplate && db.datconnlimit != -2 {
                out.push(db.oid.to_u32());
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        out
    })
}

fn alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// One pass: forget dropped databases, start the cycles that are due.
fn tick() {
    let now = now_ms();
    if !config::ENABLED.get() {
        return;
    }
    let dbs = databases();
    let interval = config::INTERVAL_MS.get() as i64;
    let cap = worker_cap();
    let mut due = Vec::new();
    {
        let mut st = STATE.exclusive();
        for s in st.slots.iter_mut() {
            if s.dboid != 0 && !dbs.contains(&s.dboid) && !alive(s.pid) {
                *s = Default::default();
            }
            if s.pid != 0 && !alive(s.pid) {
                s.pid = 0;
                s.state = SlotState::Idle as u8;
            }
            // A worker that never reported (its database vanished while it
            // connected) is given up after a minute.
            if s.state == SlotState::Starting as u8 && s.pid == 0 && now - s.last_start > 60_000 {
                s.state = SlotState::Idle as u8;
            }
        }
        let mut running = st
            .slots
            .iter()
            .filter(|s| s.pid != 0 || s.state == SlotState::Starting as u8)
            .count();
        let since = st.launcher_started;
        for db in &dbs {
            let Some(i) = state::slot_index(&mut st, *db) else {
                continue;
            };
            let s = &mut st.slots[i];
            // Due one interval after the last cycle started (or after the
            // launcher started): a changed interval applies at once.
            s.next_due = if s.last_start > 0 {
                s.last_start
            } else {
                since
            } + interval;
            let busy = s.pid != 0 || s.state == SlotState::Starting as u8;
            if busy || (now < s.next_due && !s.run_now) || running >= cap {
                continue;
            }
            s.run_now = false;
            s.state = SlotState::Starting as u8;
            s.last_start = now;
            s.next_due = now + interval;
            running += 1;
            due.push(*db);
        }
    }
    for db in due {
        let started = BackgroundWorkerBuilder::new(&format!("ruvector_healing cycle {db}"))
            .set_type("ruvector_healing cycle")
            .set_library("ruvector_healing")
            .set_function("ruvector_cycle_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(None)
            .set_argument((db as i64).into_datum())
            .load_dynamic();
        if started.is_err() {
            // No worker slot: try again at the next tick.
            state::with_slot(db, |s| {
                s.state = SlotState::Idle as u8;
                s.last_start = 0;
            });
        }
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn ruvector_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    unsafe { pg_sys::pgstat_report_appname(c"ruvector_healing launcher".as_ptr()) };
    {
        let mut st = STATE.exclusive();
        st.launcher_pid = unsafe { pg_sys::MyProcPid };
        st.launcher_started = now_ms();
    }
    // Wake up often enough to notice a shortened interval or a finished
    // cycle; each wake-up costs a scan of pg_database.
    let tick_ms = || (config::INTERVAL_MS.get() as u64 / 4).clamp(250, 5_000);
    tick();
    while BackgroundWorker::wait_latch(Some(Duration::from_millis(tick_ms()))) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        tick();
        let mut st = STATE.exclusive();
        st.launcher_ticks += 1;
        st.launcher_cpu_ms = state::cpu_ms();
    }
    STATE.exclusive().launcher_pid = 0;
}
