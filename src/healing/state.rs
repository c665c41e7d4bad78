//! The healing workers' state in shared memory: the launcher, one slot per
//! database it has seen, and the cycle counters of the specification's
//! `HealingMetrics`. Reset when the server (re)starts; the tables keep the
//! long-term record.

use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::lwlock::PgLwLock;
use pgrx::shmem::PGRXSharedMemory;
use serde_json::{json, Value};

/// Databases tracked at once (more are cycled, but only this many show
/// in the status at a time: a slot is reused when its database is gone).
pub const MAX_DATABASES: usize = 64;
const STEP_LEN: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    Idle = 0,
    Starting = 1,
    Running = 2,
    NoExtension = 3,
    /// The database's objects are older than the library: skipped until
    /// `ALTER EXTENSION ruvector_healing UPDATE`.
    NeedsUpdate = 4,
}

impl SlotState {
    fn name(v: u8) -> &'static str {
        match v {
            1 => "starting",
            2 => "running",
            3 => "no_extension",
            4 => "needs_update",
            _ => "idle",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DbSlot {
    /// 0: free.
    pub dboid: u32,
    /// The running cycle worker, 0 when none.
    pub pid: i32,
    pub state: u8,
    pub step: [u8; STEP_LEN],
    /// Unix milliseconds; 0 = never.
    pub last_start: i64,
    pub last_end: i64,
    pub last_duration_ms: u64,
    pub last_cpu_ms: u64,
    pub total_cpu_ms: u64,
    pub next_due: i64,
    pub cycles: u64,
    pub indexes: u32,
    pub open_issues: u32,
    pub standby: bool,
    /// `ruvector_dag_run_cycle()` asked for a cycle before it is due.
    pub run_now: bool,
    /// The last cycle found the extension's objects older than the library.
    pub needs_update: bool,
}

impl Default for DbSlot {
    fn default() -> Self {
        DbSlot {
            dboid: 0,
            pid: 0,
            state: 0,
            step: [0; STEP_LEN],
            last_start: 0,
            last_end: 0,
            last_duration_ms: 0,
            last_cpu_ms: 0,
            total_cpu_ms: 0,
            next_due: 0,
            cycles: 0,
            indexes: 0,
            open_issues: 0,
            standby: false,
            run_now: false,
            needs_update: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HealingState {
    pub launcher_pid: i32,
    pub launcher_started: i64,
    pub launcher_ticks: u64,
    pub launcher_cpu_ms: u64,
    pub checks_performed: u64,
    pub issues_detected: u64,
    pub cycles: u64,
    pub last_check_time: i64,
    /// When `ruvector_dag_stat_reset()` last zeroed the counters (0: never).
    pub stats_reset: i64,
    pub slots: [DbSlot; MAX_DATABASES],
}

impl Default for HealingState {
    fn default() -> Self {
        HealingState {
            launcher_pid: 0,
            launcher_started: 0,
            launcher_ticks: 0,
            launcher_cpu_ms: 0,
            checks_performed: 0,
            issues_detected: 0,
            cycles: 0,
            last_check_time: 0,
            stats_reset: 0,
            slots: [DbSlot::default(); MAX_DATABASES],
        }
    }
}

unsafe impl PGRXSharedMemory for HealingState {}

pub static STATE: PgLwLock<HealingState> = unsafe { PgLwLock::new(c"ruvector_healing_workers") };

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// CPU time (user + system) of this process so far, in milliseconds.
pub fn cpu_ms() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

pub fn set_step(s: &mut DbSlot, text: &str) {
    let b = text.as_bytes();
    let mut n = b.len().min(STEP_LEN - 1);
    while n > 0 && !text.is_char_boundary(n) {
        n -= 1;
    }
    s.step = [0; STEP_LEN];
    s.step[..n].copy_from_slice(&b[..n]);
}

fn step_of(s: &DbSlot) -> String {
    let end = s.step.iter().position(|b| *b == 0).unwrap_or(STEP_LEN);
    String::from_utf8_lossy(&s.step[..end]).into_owned()
}

/// Index of the slot of `dboid`, claiming a free one if needed.
pub fn slot_index(st: &mut HealingState, dboid: u32) -> Option<usize> {
    if let Some(i) = st.slots.iter().position(|s| s.dboid == dboid) {
        return Some(i);
    }
    let i = st.slots.iter().position(|s| s.dboid == 0)?;
    st.slots[i] = DbSlot {
        dboid,
        ..DbSlot::default()
    };
    Some(i)
}

/// Updates this database's slot.
pub fn with_slot(dboid: u32, f: impl FnOnce(&mut DbSlot)) {
    if !crate::repair::counters::available() {
        return;
    }
    let mut st = STATE.exclusive();
    if let Some(i) = slot_index(&mut st, dboid) {
        f(&mut st.slots[i]);
    }
}

fn time(ms: i64) -> Value {
    if ms <= 0 {
        Value::Null
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// The launcher, the cycle counters and every database slot, as JSON
/// (times in Unix seconds; the caller turns them into timestamps).
pub fn snapshot() -> Option<HealingState> {
    crate::repair::counters::available().then(|| *STATE.share())
}

/// Zeroes the cumulative counters (checks, issues found, cycles, wake-ups,
/// CPU time); states, times and due dates stay. Returns the reset time.
pub fn reset_counters() -> i64 {
    let now = now_ms();
    let mut st = STATE.exclusive();
    st.checks_performed = 0;
    st.issues_detected = 0;
    st.cycles = 0;
    st.launcher_ticks = 0;
    st.launcher_cpu_ms = 0;
    st.stats_reset = now;
    for s in st.slots.iter_mut() {
        s.cycles = 0;
        s.total_cpu_ms = 0;
    }
    now
}

/// When the cycle of database `dboid` is next due (Unix ms), read in place:
/// the statistics view asks once per query.
pub fn next_due(dboid: u32) -> Option<i64> {
    if !crate::repair::counters::available() {
        return None;
    }
    let st = STATE.share();
    let due = st.slots.iter().find(|s| s.dboid == dboid)?.next_due;
    (due > 0).then_some(due)
}

pub fn slot_json(s: &DbSlot) -> Value {
    json!({
        "database_oid": s.dboid,
        "pid": if s.pid > 0 { json!(s.pid) } else { Value::Null },
        "state": SlotState::name(s.state),
        "step": step_of(s),
        "last_cycle_start": time(s.last_start),
        "last_cycle_end": time(s.last_end),
        "last_cycle_ms": s.last_duration_ms,
        "last_cycle_cpu_ms": s.last_cpu_ms,
        "total_cpu_ms": s.total_cpu_ms,
        "next_cycle": time(s.next_due),
        "cycles": s.cycles,
        "indexes": s.indexes,
        "open_issues": s.open_issues,
        "standby": s.standby,
        "needs_update": s.needs_update,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_claimed_and_reused() {
        let mut st = HealingState::default();
        let a = slot_index(&mut st, 10).unwrap();
        assert_eq!(slot_index(&mut st, 10), Some(a));
        let b = slot_index(&mut st, 11).unwrap();
        assert_ne!(a, b);
        st.slots[a].dboid = 0;
        assert_eq!(slot_index(&mut st, 12), Some(a));
        for d in 100..(100 + MAX_DATABASES as u32) {
            slot_index(&mut st, d);
        }
        assert_eq!(slot_index(&mut st, 9999), None);
    }

    #[test]
    fn steps_are_cut_on_char_boundaries() {
        let mut s = DbSlot::default();
        set_step(&mut s, &"é".repeat(80));
        assert!(step_of(&s).chars().all(|c| c == 'é'));
        set_step(&mut s, "checking items_idx");
        assert_eq!(step_of(&s), "checking items_idx");
    }
}
