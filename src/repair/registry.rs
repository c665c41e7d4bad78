//! Who owns a repair while it runs: shared memory under the extension's
//! own lock, one entry per repair a worker is working on (its own, or one
//! it recovers), with that worker's pid and, once the guards passed, the
//! table whose repair slot it holds. Only the extension's own processes
//! write here, so no role can take, hold or fake an entry — advisory
//! locks, which any role can take, were the mark before 0.2.0. A cancel
//! signals only a pid read from here, written by the worker itself.
//!
//! Entries leave with their process (`before_shmem_exit`). A crash restart
//! resets shared memory, so every repair the journal shows as unfinished
//! is then an orphan that recovery finishes or rolls back.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;

/// Repairs worked on at once in the whole server (running repairs,
/// rollbacks and recoveries): more than `max_concurrent_repairs` allows.
pub const SLOTS: usize = 128;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// 0: a free slot.
    pub repair_id: i64,
    pub database: u32,
    /// The table whose repair slot this entry holds; 0 before the guards.
    pub table: u32,
    pub pid: i32,
}

#[derive(Debug, Clone, Copy)]
pub struct Registry {
    pub entries: [Entry; SLOTS],
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            entries: [Entry::default(); SLOTS],
        }
    }
}

unsafe impl PGRXSharedMemory for Registry {}

pub static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"ruvector_healing_registry") };

/// Why an entry or a table slot could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another process works on this repair.
    Owned(Entry),
    /// Another repair holds the table.
    TableBusy(Entry),
    /// `max` repairs hold tables already.
    TooMany(usize),
    /// Every slot is taken.
    Full,
}

impl Registry {
    fn find(&self, database: u32, id: i64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.repair_id == id && e.database == database)
    }

    /// Frees the entries of processes that are gone (`alive` says which
    /// are not); normally an exiting process frees its own.
    pub fn sweep(&mut self, alive: impl Fn(i32) -> bool) {
        for e in self.entries.iter_mut() {
            if e.repair_id != 0 && !alive(e.pid) {
                *e = Entry::default();
            }
        }
    }

    /// Takes repair `id` of `database` for process `pid`.
    pub fn enter(&mut self, database: u32, id: i64, pid: i32) -> Result<(), Refusal> {
        if let Some(i) = self.find(database, id) {
            let e = self.entries[i];
            return if e.pid == pid {
                Ok(())
            } else {
                Err(Refusal::Owned(e))
            };
        }
        let free = self
            .entries
            .iter()
            .position(|e| e.repair_id == 0)
            .ok_or(Refusal::Full)?;
        self.entries[free] = Entry {
            repair_id: id,
            database,
            table: 0,
            pid,
        };
        Ok(())
    }

    /// Gives the entry of repair `id` (held by `pid`) the repair slot of
    /// `table`: one repair per table, at most `max` at once.
    pub fn claim_table(
        &mut self,
        database: u32,
        id: i64,
        table: u32,
        pid: i32,
        max: usize,
    ) -> Result<(), Refusal> {
        let me = self
            .find(database, id)
            .filter(|i| self.entries[*i].pid == pid);
        let Some(me) = me else {
            return Err(Refusal::Full);
        };
        if let Some(other) = self.entries.iter().find(|e| {
            e.repair_id != id && e.database == database && e.table == table && e.table != 0
        }) {
            return Err(Refusal::TableBusy(*other));
        }
        let holding = self
            .entries
            .iter()
            .filter(|e| e.table != 0 && e.repair_id != id)
            .count();
        if holding >= max {
            return Err(Refusal::TooMany(max));
        }
        self.entries[me].table = table;
        Ok(())
    }

    pub fn leave(&mut self, database: u32, id: i64, pid: i32) {
        if let Some(i) = self.find(database, id) {
            if self.entries[i].pid == pid {
                self.entries[i] = Entry::default();
            }
        }
    }

    pub fn leave_all(&mut self, pid: i32) {
        for e in self.entries.iter_mut().filter(|e| e.pid == pid) {
            *e = Entry::default();
        }
    }

    pub fn holder(&self, database: u32, id: i64) -> Option<Entry> {
        self.find(database, id).map(|i| self.entries[i])
    }

    pub fn table_holder(&self, database: u32, table: u32) -> Option<Entry> {
        self.entries
            .iter()
            .find(|e| e.repair_id != 0 && e.database == database && e.table == table)
            .copied()
    }

    /// Repairs holding a table slot (running, past their guards).
    pub fn running(&self) -> usize {
        self.entries.iter().filter(|e| e.table != 0).count()
    }
}

// ------------------------------------------------------------------ in the server

fn available() -> bool {
    crate::PRELOADED.load(Ordering::Relaxed)
}

fn alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn me() -> (u32, i32) {
    unsafe { (pg_sys::MyDatabaseId.to_u32(), pg_sys::MyProcPid) }
}

static EXIT_HOOKED: AtomicBool = AtomicBool::new(false);

unsafe extern "C-unwind" fn on_exit(_: core::ffi::c_int, _: pg_sys::Datum) {
    REGISTRY.exclusive().leave_all(pg_sys::MyProcPid);
}

/// This process's entries leave with it, also on FATAL and on SIGTERM.
fn hook_exit() {
    if !EXIT_HOOKED.swap(true, Ordering::Relaxed) {
        unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
    }
}

/// Takes repair `id` of this database for this process.
pub fn enter(id: i64) -> Result<(), Refusal> {
    if !available() {
        return Err(Refusal::Full);
    }
    hook_exit();
    let (db, pid) = me();
    let mut r = REGISTRY.exclusive();
    r.sweep(alive);
    r.enter(db, id, pid)
}

/// Takes `table`'s repair slot for repair `id` (entered before).
pub fn claim_table(id: i64, table: pg_sys::Oid, max: usize) -> Result<(), Refusal> {
    let (db, pid) = me();
    let mut r = REGISTRY.exclusive();
    r.sweep(alive);
    r.claim_table(db, id, table.to_u32(), pid, max)
}

pub fn leave(id: i64) {
    if available() {
        let (db, pid) = me();
        REGISTRY.exclusive().leave(db, id, pid);
    }
}

/// The live process working on repair `id` of this database.
pub fn holder(id: i64) -> Option<Entry> {
    if !available() {
        return None;
    }
    let db = me().0;
    REGISTRY.share().holder(db, id).filter(|e| alive(e.pid))
}

/// The repair of this database holding `table`'s slot, if its worker lives.
pub fn table_holder(table: pg_sys::Oid) -> Option<Entry> {
    if !available() {
        return None;
    }
    let db = me().0;
    REGISTRY
        .share()
        .table_holder(db, table.to_u32())
        .filter(|e| alive(e.pid))
}

/// Repairs holding a table slot in the whole server.
pub fn running() -> usize {
    if available() {
        REGISTRY.share().running()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_per_repair_and_one_repair_per_table() {
        let mut r = Registry::default();
        r.enter(1, 10, 100).unwrap();
        // The same process again is fine; another one is refused.
        assert_eq!(r.enter(1, 10, 100), Ok(()));
        assert!(matches!(r.enter(1, 10, 200), Err(Refusal::Owned(e)) if e.pid == 100));
        // The same id in another database is another repair.
        r.enter(2, 10, 300).unwrap();
        r.claim_table(1, 10, 5000, 100, 3).unwrap();
        r.enter(1, 11, 200).unwrap();
        assert!(matches!(
            r.claim_table(1, 11, 5000, 200, 3),
            Err(Refusal::TableBusy(e)) if e.repair_id == 10
        ));
        // The same table OID in another database is another table.
        r.claim_table(2, 10, 5000, 300, 3).unwrap();
        // Only the owner can claim for an entry.
        assert_eq!(r.claim_table(1, 11, 6000, 999, 3), Err(Refusal::Full));
        assert_eq!(r.running(), 2);
        assert_eq!(r.table_holder(1, 5000).map(|e| e.repair_id), Some(10));
        r.leave(1, 10, 999); // not the owner: nothing happens
        assert!(r.holder(1, 10).is_some());
        r.leave(1, 10, 100);
        assert!(r.holder(1, 10).is_none());
        r.claim_table(1, 11, 5000, 200, 3).unwrap();
    }

    #[test]
    fn the_cap_counts_running_repairs() {
        let mut r = Registry::default();
        for id in 1..=3 {
            r.enter(1, id, id as i32).unwrap();
            r.claim_table(1, id, id as u32 * 10, id as i32, 3).unwrap();
        }
        r.enter(1, 4, 4).unwrap();
        assert_eq!(r.claim_table(1, 4, 40, 4, 3), Err(Refusal::TooMany(3)));
        r.leave_all(2);
        r.claim_table(1, 4, 40, 4, 3).unwrap();
    }

    #[test]
    fn dead_processes_are_swept_and_slots_run_out() {
        let mut r = Registry::default();
        for id in 0..SLOTS as i64 {
            r.enter(1, id + 1, 7).unwrap();
        }
        assert_eq!(r.enter(1, 999, 8), Err(Refusal::Full));
        r.sweep(|pid| pid != 7);
        r.enter(1, 999, 8).unwrap();
        assert_eq!(r.holder(1, 999).map(|e| e.pid), Some(8));
    }
}
