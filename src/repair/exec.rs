//! How a repair worker runs SQL. Two shapes:
//!
//! - [`in_transaction`]: a closure in its own transaction (SPI, direct
//!   scans), committed on success, aborted and turned into `Err` on any
//!   ERROR;
//! - [`top_level`]: one statement run the way `psql` would run it, outside
//!   any function or transaction block, so that `CREATE INDEX
//!   CONCURRENTLY`, `DROP INDEX CONCURRENTLY` and `VACUUM` are allowed
//!   (they refuse to run inside a function or SPI). Like pg_cron's
//!   background-worker mode: parse, analyze, plan, and run a portal with
//!   `isTopLevel = true` between `StartTransactionCommand` and
//!   `CommitTransactionCommand`.
//!
//! A deadline arms PostgreSQL's statement timeout for the call, which a
//! background worker does not arm by itself.

use std::ffi::CString;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

/// `TimeoutId::STATEMENT_TIMEOUT` in `utils/timeout.h` (not in pgrx's
/// bindings).
const STATEMENT_TIMEOUT: i32 = 3;

extern "C-unwind" {
    fn enable_timeout_after(id: i32, delay_ms: i32);
    fn disable_timeout(id: i32, keep_indicator: bool);
}

/// An error caught in a worker step: SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct StepError {
    pub code: pgrx::PgSqlErrorCode,
    pub message: String,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> StepError {
        StepError {
            code: pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            message: message.into(),
        }
    }

    /// A statement timeout or a cancel request (`pg_cancel_backend`).
    pub fn cancelled(&self) -> bool {
        self.code == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED
    }

    pub fn lock_unavailable(&self) -> bool {
        self.code == pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn caught(e: CaughtError) -> StepError {
    let report = match &e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    StepError {
        code: report.sql_error_code(),
        message: report.message().to_string(),
    }
}

/// When a repair must be over: arms the statement timeout for what is left.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Option<Instant>);

impl Deadline {
    fn arm(&self) -> Result<(), StepError> {
        if let Some(at) = self.0 {
            let left = at.saturating_duration_since(Instant::now()).as_millis();
            if left == 0 {
                return Err(StepError {
                    code: pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                    message: "canceling statement due to statement timeout".into(),
                });
            }
            unsafe { enable_timeout_after(STATEMENT_TIMEOUT, left.min(i32::MAX as u128) as i32) };
        }
        Ok(())
    }

    fn disarm(&self) {
        if self.0.is_some() {
            unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
        }
    }
}

fn catching<R>(f: impl FnOnce() -> R) -> Result<R, StepError> {
    let mut f = Some(f);
    PgTryBuilder::new(AssertUnwindSafe(|| Ok((f.take().expect("runs once"))())))
        .catch_others(|e| Err(caught(e)))
        .execute()
}

fn abort() {
    unsafe {
        pg_sys::AbortCurrentTransaction();
        // A cancel that arrived while aborting must not hit the next step.
        pg_sys::QueryCancelPending = 0;
    }
}

/// Runs `f` in a transaction of its own with an active snapshot.
pub fn in_transaction<R>(deadline: Deadline, f: impl FnOnce() -> R) -> Result<R, StepError> {
    deadline.arm()?;
    let r = catching(|| unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let r = f();
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        r
    });
    deadline.disarm();
    if r.is_err() {
        abort();
    }
    r
}

/// Runs `f` in a transaction of its own that a cancel request does not
/// interrupt: the worker's bookkeeping (journal rows, catalog look-ups).
/// A cancel that arrives meanwhile stays pending, and the next step that
/// does work acts on it, so it is neither lost nor half-applied.
pub fn in_transaction_uncancellable<R>(f: impl FnOnce() -> R) -> Result<R, StepError> {
    unsafe { pg_sys::QueryCancelHoldoffCount += 1 };
    let r = in_transaction(Deadline(None), f);
    unsafe { pg_sys::QueryCancelHoldoffCount = pg_sys::QueryCancelHoldoffCount.saturating_sub(1) };
    r
}

/// Runs one SQL statement at top level (see the module comment).
pub fn top_level(deadline: Deadline, sql: &str) -> Result<(), StepError> {
    let c_sql = CString::new(sql).map_err(|_| StepError::new("statement contains a NUL byte"))?;
    // Parse trees, plans and the portal live in a context of their own
    // under TopMemoryContext: statements such as CREATE INDEX CONCURRENTLY
    // commit and start transactions internally, which frees everything
    // allocated in transaction memory while the portal still runs.
    let cx = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"ruvector_healing statement".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as _,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as _,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as _,
        )
    };
    deadline.arm()?;
    let r = catching(|| unsafe { run_top_level(&c_sql, cx) });
    deadline.disarm();
    if r.is_err() {
        abort();
    }
    unsafe { pg_sys::MemoryContextDelete(cx) };
    r
}

unsafe fn run_top_level(sql: &CString, cx: pg_sys::MemoryContext) {
    pg_sys::SetCurrentStatementStartTimestamp();
    pg_sys::StartTransactionCommand();
    let outer = pg_sys::CurrentMemoryContext;
    pg_sys::CurrentMemoryContext = cx;
    pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, sql.as_ptr());
    let trees = pg_sys::pg_parse_query(sql.as_ptr());
    let parsed: Vec<*mut pg_sys::RawStmt> = if trees.is_null() {
        Vec::new()
    } else {
        (0..(*trees).length as usize)
            .map(|i| (*(*trees).elements.add(i)).ptr_value as *mut pg_sys::RawStmt)
            .collect()
    };
    assert!(parsed.len() == 1, "top_level runs exactly one statement");
    let raw = parsed[0];
    let tag = pg_sys::CreateCommandTag((*raw).stmt);
    let snapshot = pg_sys::analyze_requires_snapshot(raw);
    if snapshot {
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
        raw,
        sql.as_ptr(),
        std::ptr::null(),
        0,
        std::ptr::null_mut(),
    );
    let plans = pg_sys::pg_plan_queries(queries, sql.as_ptr(), 0, std::ptr::null_mut());
    if snapshot {
        pg_sys::PopActiveSnapshot();
    }
    pgrx::check_for_interrupts!();
    let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
    (*portal).visible = false;
    pg_sys::PortalDefineQuery(
        portal,
        std::ptr::null(),
        sql.as_ptr(),
        tag,
        plans,
        std::ptr::null_mut(),
    );
    pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
    let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
    pg_sys::CurrentMemoryContext = outer;
    let mut qc = pg_sys::QueryCompletion::default();
    pg_sys::PortalRun(portal, i64::MAX as _, true, receiver, receiver, &mut qc);
    if let Some(destroy) = (*receiver).rDestroy {
        destroy(receiver);
    }
    pg_sys::PortalDrop(portal, false);
    pg_sys::CommitTransactionCommand();
    pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
}
