//! The executor hooks that apply per-index search settings.
//!
//! `ExecutorStart`, `ExecutorRun` and `ExecutorFinish` are chained (the
//! previous hook, else the standard function, is called inside ours). For
//! a plan that scans a pgvector index with a value of its own, each call
//! runs under a GUC nest level holding that value — as PostgreSQL runs a
//! function with a `SET` clause — and the nest level is popped when the
//! call returns, so the caller's value is back between calls (a cursor's
//! fetches each get it again). On an error the (sub)transaction's abort
//! pops it, as it does for functions. pgvector reads `ivfflat.probes` when
//! the scan begins (`ExecutorStart`) and `hnsw.ef_search` when it first
//! fetches (`ExecutorRun`): both calls are covered. The hooks never trap
//! an ERROR: it passes through them unchanged (CONTEXT and all).
//!
//! Skipped: with `ruvector.dag_adaptive_search` off; inside a call we
//! adjusted already (a function's queries keep the outer query's value);
//! in parallel workers (the leader's values travel with the query); for a
//! setting the session chose itself (`SET`, `SET LOCAL`, a function's `SET`
//! clause, the connection's options: its source is `PGC_S_CLIENT` or
//! later); in a database where the extension is not current.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CString};
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Index OID → (setting, value).
type Values = HashMap<u32, (&'static str, i32)>;

/// How long a backend keeps the per-index values before reading them
/// again: a change reaches other sessions within this time.
const CACHE_TTL: Duration = Duration::from_secs(1);

static mut PREV_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_FINISH: pg_sys::ExecutorFinish_hook_type = None;

// The standard executor functions, called directly: pgrx's bindings trap
// an ERROR and raise it again, which would drop its CONTEXT, position and
// other fields from every error passing through a query. Between `enter`
// and `leave` the hooks hold no value with a destructor, so an ERROR
// passes through their frames as through C's.
extern "C-unwind" {
    #[link_name = "standard_ExecutorStart"]
    fn standard_start(qd: *mut pg_sys::QueryDesc, eflags: c_int);
    #[link_name = "standard_ExecutorRun"]
    fn standard_run(qd: *mut pg_sys::QueryDesc, direction: pg_sys::ScanDirection::Type, count: u64);
    #[link_name = "standard_ExecutorFinish"]
    fn standard_finish(qd: *mut pg_sys::QueryDesc);
}

thread_local! {
    /// Executor calls running under values we applied.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// `DEPTH` when each open subtransaction began: an ERROR that ends one
    /// ends the calls begun inside it.
    static SAVED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// True while the cache is being read (its own query passes the hooks).
    static LOADING: Cell<bool> = const { Cell::new(false) };
    static CACHE: RefCell<Option<(Instant, Values)>> = const { RefCell::new(None) };
}

/// Installs the hooks (at library load, in every backend that loads it).
pub fn install() {
    unsafe {
        PREV_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
        PREV_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// The next `read` sees values changed by this session at once.
pub fn forget() {
    CACHE.with(|c| *c.borrow_mut() = None);
}

unsafe extern "C-unwind" fn executor_start(qd: *mut pg_sys::QueryDesc, eflags: c_int) {
    let nest = enter(qd);
    match PREV_START {
        Some(prev) => prev(qd, eflags),
        None => standard_start(qd, eflags),
    }
    leave(nest);
}

unsafe extern "C-unwind" fn executor_run(
    qd: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    let nest = enter(qd);
    match PREV_RUN {
        Some(prev) => prev(qd, direction, count),
        None => standard_run(qd, direction, count),
    }
    leave(nest);
}

unsafe extern "C-unwind" fn executor_finish(qd: *mut pg_sys::QueryDesc) {
    let nest = enter(qd);
    match PREV_FINISH {
        Some(prev) => prev(qd),
        None => standard_finish(qd),
    }
    leave(nest);
}

/// Applies the plan's values under a new GUC nest level; returns it (0:
/// nothing applied).
#[pg_guard]
unsafe extern "C-unwind" fn enter(qd: *mut pg_sys::QueryDesc) -> c_int {
    let values = wanted(qd);
    if values.is_empty() {
        return 0;
    }
    let nest = pg_sys::NewGUCNestLevel();
    for (name, value) in &values {
        let name = CString::new(*name).expect("setting name");
        let value = CString::new(value.to_string()).expect("setting value");
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    nest
}

/// Restores the caller's values after a call `enter` adjusted.
#[pg_guard]
unsafe extern "C-unwind" fn leave(nest: c_int) {
    if nest > 0 {
        pg_sys::AtEOXact_GUC(true, nest);
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// An ERROR skips `leave`: the (sub)transaction's abort pops the nest
/// level, and these callbacks put the depth back.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT
    ) {
        DEPTH.with(|d| d.set(0));
        SAVED.with(|s| s.borrow_mut().clear());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_START_SUB => SAVED.with(|s| s.borrow_mut().push(DEPTH.with(Cell::get))),
        SUBXACT_EVENT_COMMIT_SUB => {
            SAVED.with(|s| s.borrow_mut().pop());
        }
        SUBXACT_EVENT_ABORT_SUB => {
            if let Some(d) = SAVED.with(|s| s.borrow_mut().pop()) {
                DEPTH.with(|x| x.set(d));
            }
        }
        _ => {}
    }
}

/// The values this query's plan should run with (see the module's rules).
unsafe fn wanted(qd: *mut pg_sys::QueryDesc) -> Vec<(&'static str, i32)> {
    if !crate::config::ADAPTIVE_SEARCH.get()
        || DEPTH.with(Cell::get) > 0
        || LOADING.with(Cell::get)
        || pg_sys::ParallelWorkerNumber >= 0
        || pg_sys::IsInParallelMode()
        || qd.is_null()
        || (*qd).plannedstmt.is_null()
    {
        return Vec::new();
    }
    let mut scanned = Vec::new();
    scanned_indexes((*(*qd).plannedstmt).planTree, &mut scanned);
    let subplans = (*(*qd).plannedstmt).subplans;
    if !subplans.is_null() {
        for i in 0..(*subplans).length {
            scanned_indexes(
                pg_sys::list_nth(subplans, i) as *mut pg_sys::Plan,
                &mut scanned,
            );
        }
    }
    if scanned.is_empty() {
        return Vec::new();
    }
    let known = read();
    let chosen = super::choose(scanned.iter().filter_map(|oid| known.get(oid).copied()));
    chosen
        .into_iter()
        .filter(|(name, _)| !session_chose(name))
        .collect()
}

/// Whether the session set `name` itself.
unsafe fn session_chose(name: &str) -> bool {
    let c = CString::new(name).expect("setting name");
    let mut gen = pg_sys::find_option(c.as_ptr(), false, true, pg_sys::PGERROR as i32);
    if gen.is_null() {
        // pgvector defines its settings when its library loads, which the
        // scan would do a moment later: load it now, so that the value is
        // set on pgvector's own setting rather than on a placeholder.
        let lib = c"$libdir/vector";
        pg_sys::load_file(lib.as_ptr(), false);
        gen = pg_sys::find_option(c.as_ptr(), false, true, pg_sys::PGERROR as i32);
        if gen.is_null() {
            return true;
        }
    }
    super::explicit((*gen).source, pg_sys::GucSource::PGC_S_CLIENT)
}

/// Adds the indexes a plan tree scans to `out`.
unsafe fn scanned_indexes(plan: *mut pg_sys::Plan, out: &mut Vec<u32>) {
    if plan.is_null() {
        return;
    }
    let list = |l: *mut pg_sys::List, out: &mut Vec<u32>| {
        if !l.is_null() {
            for i in 0..(*l).length {
                scanned_indexes(pg_sys::list_nth(l, i) as *mut pg_sys::Plan, out);
            }
        }
    };
    match (*plan).type_ {
        pg_sys::NodeTag::T_IndexScan => {
            out.push((*(plan as *mut pg_sys::IndexScan)).indexid.to_u32())
        }
        pg_sys::NodeTag::T_IndexOnlyScan => {
            out.push((*(plan as *mut pg_sys::IndexOnlyScan)).indexid.to_u32())
        }
        pg_sys::NodeTag::T_Append => list((*(plan as *mut pg_sys::Append)).appendplans, out),
        pg_sys::NodeTag::T_MergeAppend => {
            list((*(plan as *mut pg_sys::MergeAppend)).mergeplans, out)
        }
        pg_sys::NodeTag::T_BitmapAnd => list((*(plan as *mut pg_sys::BitmapAnd)).bitmapplans, out),
        pg_sys::NodeTag::T_BitmapOr => list((*(plan as *mut pg_sys::BitmapOr)).bitmapplans, out),
        pg_sys::NodeTag::T_SubqueryScan => {
            scanned_indexes((*(plan as *mut pg_sys::SubqueryScan)).subplan, out)
        }
        pg_sys::NodeTag::T_CustomScan => {
            list((*(plan as *mut pg_sys::CustomScan)).custom_plans, out)
        }
        _ => {}
    }
    scanned_indexes((*plan).lefttree, out);
    scanned_indexes((*plan).righttree, out);
}

/// The per-index values of this database (index OID → setting, value),
/// read again after [`CACHE_TTL`]. Empty where the extension is absent or
/// not current, and for indexes of tables the role may not read (row
/// security on the policies: such a query could not scan them).
fn read() -> Values {
    let fresh = CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, m)| m.clone())
    });
    if let Some(m) = fresh {
        return m;
    }
    // In a subtransaction: an error here is logged, never the query's.
    LOADING.with(|l| l.set(true));
    let map = crate::sql::subtransaction(load).unwrap_or_else(|e| {
        pgrx::warning!("ruvector_healing: per-index search settings not read: {e}");
        HashMap::new()
    });
    LOADING.with(|l| l.set(false));
    CACHE.with(|c| *c.borrow_mut() = Some((Instant::now(), map.clone())));
    map
}

fn load() -> Values {
    let mut map = HashMap::new();
    let ext = unsafe { pg_sys::get_extension_oid(c"ruvector_healing".as_ptr(), true) };
    if ext == pg_sys::InvalidOid || crate::release::state() != crate::release::Installed::Current {
        return map;
    }
    let rows: Vec<(u32, String, i32)> = Spi::connect(|c| {
        c.select(
            "SELECT i.oid::int8, a.amname::text, p.search_value
               FROM ruvector_healing.index_policies p
               JOIN pg_catalog.pg_namespace n ON n.nspname::text = p.schema_name
               JOIN pg_catalog.pg_class i ON i.relnamespace = n.oid AND i.relname::text = p.object_name
               JOIN pg_catalog.pg_am a ON a.oid = i.relam
              WHERE p.scope = 'index' AND p.search_value IS NOT NULL",
            None,
            &[],
        )
        .map(|t| {
            t.filter_map(|r| {
                Some((
                    r.get::<i64>(1).ok()?? as u32,
                    r.get::<String>(2).ok()??,
                    r.get::<i32>(3).ok()??,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
    });
    for (oid, am, value) in rows {
        if let Some((name, ..)) = super::setting_of(&am) {
            map.insert(oid, (name, value));
        }
    }
    map
}
