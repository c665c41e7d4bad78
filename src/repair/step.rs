//! What every step of a repair worker uses: transactions, the activity
//! shown in `pg_stat_activity`, naps, session settings, loading and
//! finishing a journal row, failures, test pauses, the health of an index
//! with the issue kinds the rules find. The strategies (`rebuild`,
//! `vacuum`, `tune`), `guards` and `recovery` build on these; `worker`
//! dispatches to them.

use std::ffi::CString;

use pgrx::pg_sys;
use serde_json::{json, Value};

use super::counters::{self, Outcome};
use super::exec::{in_transaction_uncancellable, StepError};
use super::journal::{self, RepairRow};
use super::plan::Status;
use super::settings::RepairSettings;

pub(crate) unsafe extern "C-unwind" fn on_sigterm(_: core::ffi::c_int) {
    // As PostgreSQL's die(): acted on at the next CHECK_FOR_INTERRUPTS,
    // which ends the worker with FATAL; the journal lets the next run
    // finish or roll back what it was doing.
    pg_sys::InterruptPending = 1;
    pg_sys::ProcDiePending = 1;
    pg_sys::SetLatch(pg_sys::MyLatch);
}

/// Runs `f` in a transaction with no deadline that a cancel does not
/// interrupt (journal writes, look-ups, cleanup): the next step that does
/// work acts on the cancel.
pub(crate) fn tx<R>(f: impl FnOnce() -> R) -> Result<R, StepError> {
    in_transaction_uncancellable(f)
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
/// or stop the server, or to let it go on by journaling a step
/// `resume_for_test`) at the step named by
/// `ruvector.dag_healing_test_pause_at` when the repair was requested.
pub(crate) fn pause(id: i64, s: &RepairSettings, point: &str) {
    pause_at(id, s.pause_at.as_deref(), point)
}

/// The same for steps that run without the settings at hand (rollback,
/// retirement): the pause point recorded with the repair's request.
pub(crate) fn pause_row(row: &RepairRow, point: &str) {
    pause_at(row.id, row.plan["settings"]["pause_at"].as_str(), point)
}

fn pause_at(id: i64, at: Option<&str>, point: &str) {
    if at != Some(point) {
        return;
    }
    let _ = tx(|| journal::step(id, "paused_for_test", json!({"at": point})));
    activity(&format!("paused for a test at {point}"));
    for _ in 0..1200 {
        // A cancel or shutdown ends the pause; the next step acts on it.
        if unsafe { pg_sys::InterruptPending } != 0 {
            break;
        }
        let resumed = tx(|| {
            crate::sql::get_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM ruvector_healing.repair_steps
                                 WHERE repair_id = $1 AND step = 'resume_for_test')",
                &[id.into()],
            )
        });
        if matches!(resumed, Ok(Ok(Some(true)))) {
            break;
        }
        nap(100);
    }
}

pub(crate) fn health(oid: pg_sys::Oid) -> (Value, Vec<String>) {
    let t = crate::inspect::relation::resolve(Some(oid));
    let h = crate::inspect::report::health_value(&t);
    let mut found = Vec::new();
    crate::detect::record::issues_of(
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

/// `now()` of the current transaction, as JSON text.
pub(crate) fn now_json() -> Value {
    crate::sql::get_one::<String>("SELECT now()::text", &[])
        .ok()
        .flatten()
        .map(Value::from)
        .unwrap_or(Value::Null)
}
