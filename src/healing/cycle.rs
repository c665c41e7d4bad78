//! One healing cycle in one database (the specification's
//! `run_check_cycle`), run by a worker the launcher starts:
//!
//! 1. observe every monitored pgvector index (health report; recall probe
//!    when due), keeping the figures in `ruvector_healing.observations`;
//! 2. detect: the index rules, and anomalies against the index's own past
//!    observations (see `anomaly`);
//! 3. record the issues (deduplicated), resolve those no longer present,
//!    and `NOTIFY ruvector_healing` of new ones;
//! 4. request repairs of the most urgent issue per table through the repair
//!    engine, when allowed (enabled, automatic repair on, inside the
//!    maintenance window, the index's policy, not on a standby);
//! 5. recover interrupted repairs, retire backups, purge old history;
//! 6. update the counters in shared memory.

use std::ffi::CString;
use std::time::Instant;

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Map, Value};

use super::anomaly::{self, Bad};
use super::diagnosis;
use super::policy::policy;
use super::state::{self, now_ms, SlotState};
use super::window;
use crate::config;
use crate::detect::record::{inspect_table, leaves, record};
use crate::inspect::relation::Am;
use crate::repair::exec::{in_transaction, Deadline, StepError};

fn tx<R>(f: impl FnOnce() -> R) -> Result<R, StepError> {
    in_transaction(Deadline(None), f)
}

fn step(db: u32, text: &str) {
    state::with_slot(db, |s| state::set_step(s, text));
    let c = CString::new(text).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c.as_ptr()) };
}

unsafe extern "C-unwind" fn leave_slot(_: core::ffi::c_int, arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    state::with_slot(db, |s| {
        if s.pid == unsafe { pg_sys::MyProcPid } {
            s.pid = 0;
            if s.state == SlotState::Running as u8 {
                s.state = SlotState::Idle as u8;
            }
        }
    });
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn ruvector_cycle_main(arg: pg_sys::Datum) {
    let db =
        unsafe { i64::from_polymorphic_datum(arg, false, pg_sys::INT8OID) }.unwrap_or(0) as u32;
    unsafe {
        pg_sys::pqsignal_be(
            pg_sys::SIGTERM as i32,
            Some(crate::repair::step::on_sigterm),
        );
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    pgrx::bgworkers::BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(db)),
        None,
    );
    crate::repair::step::set_session("search_path", "pg_catalog, pg_temp");
    crate::repair::step::set_session("application_name", "ruvector_healing cycle");
    let started = Instant::now();
    let cpu0 = state::cpu_ms();
    state::with_slot(db, |s| {
        s.pid = unsafe { pg_sys::MyProcPid };
        s.state = SlotState::Running as u8;
        s.last_start = now_ms();
    });
    unsafe { pg_sys::before_shmem_exit(Some(leave_slot), pg_sys::Datum::from(db as usize)) };
    let release = tx(crate::release::state).unwrap_or(crate::release::Installed::Absent);
    let mut was_parked = false;
    state::with_slot(db, |s| was_parked = s.needs_update);
    let parked = match &release {
        crate::release::Installed::Absent => Some(SlotState::NoExtension),
        crate::release::Installed::Current => None,
        _ => Some(SlotState::NeedsUpdate),
    };
    // One log line when a database starts or stops needing an update,
    // not one per cycle.
    let needs_update = parked == Some(SlotState::NeedsUpdate);
    if needs_update != was_parked {
        match crate::release::mismatch_text(&release) {
            Some((msg, hint)) => pgrx::log!(
                "ruvector_healing: skipping database {}: {msg}; {hint}",
                current_db_name()
            ),
            None => pgrx::log!(
                "ruvector_healing: database {} was updated to {}; healing cycles resume",
                current_db_name(),
                crate::release::LIBRARY_VERSION
            ),
        }
    }
    let outcome = if parked.is_none() {
        Some(run(db))
    } else {
        None
    };
    let cpu = state::cpu_ms().saturating_sub(cpu0);
    state::with_slot(db, |s| {
        s.state = parked.unwrap_or(SlotState::Idle) as u8;
        s.needs_update = needs_update;
        s.pid = 0;
        s.last_end = now_ms();
        s.last_duration_ms = started.elapsed().as_millis() as u64;
        s.last_cpu_ms = cpu;
        s.total_cpu_ms += cpu;
        s.cycles += 1;
        if let Some(o) = &outcome {
            s.indexes = o.indexes;
            s.open_issues = o.open_issues;
            s.standby = o.standby;
        }
        state::set_step(
            s,
            match parked {
                None => "idle",
                Some(SlotState::NoExtension) => "extension not installed",
                _ => "skipped: the extension needs ALTER EXTENSION ruvector_healing UPDATE",
            },
        );
    });
    if let Some(o) = outcome {
        let mut st = state::STATE.exclusive();
        st.checks_performed += o.indexes as u64;
        st.issues_detected += o.new_issues as u64;
        st.cycles += 1;
        st.last_check_time = now_ms();
    }
}

#[derive(Debug, Default)]
struct Outcome {
    indexes: u32,
    new_issues: u32,
    open_issues: u32,
    standby: bool,
}

/// A monitored index: `(oid, schema, name, table oid, am)`.
type Monitored = (pg_sys::Oid, String, String, pg_sys::Oid, String);

fn monitored() -> Vec<Monitored> {
    Spi::connect(|c| {
        c.select(
            "SELECT c.oid, n.nspname::text, c.relname::text, i.indrelid, am.amname::text
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_am am ON am.oid = c.relam
              WHERE am.amname IN ('hnsw', 'ivfflat') AND c.relkind = 'i'
                AND c.relpersistence <> 't'
              ORDER BY i.indrelid, c.oid",
            None,
            &[],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some((
                    r.get::<pg_sys::Oid>(1).ok()??,
                    r.get::<String>(2).ok()??,
                    r.get::<String>(3).ok()??,
                    r.get::<pg_sys::Oid>(4).ok()??,
                    r.get::<String>(5).ok()??,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
    })
}

/// The metrics kept per observation, and which direction is bad.
fn watched(am: &str) -> &'static [(&'static str, Bad)] {
    match am {
        "hnsw" => &[
            ("fragmentation", Bad::High),
            ("unreachable_ratio", Bad::High),
            ("connectivity_score", Bad::Low),
        ],
        _ => &[
            ("cluster_balance", Bad::High),
            ("centroid_drift", Bad::High),
            ("scan_cost_factor", Bad::High),
        ],
    }
}

fn notify(payload: Value) {
    let _ = Spi::run_with_args(
        "SELECT pg_notify('ruvector_healing', $1)",
        &[payload.to_string().into()],
    );
}

fn history(schema: &str, index: &str, metric: &str) -> Vec<f64> {
    let sql = match metric {
        "recall" | "probe_ms" => format!(
            "SELECT {metric} FROM ruvector_healing.observations
              WHERE schema_name = $1 AND index_name = $2 AND {metric} IS NOT NULL
              ORDER BY observed_at DESC LIMIT 200"
        ),
        _ => "SELECT (metrics->>$3)::float8 FROM ruvector_healing.observations
               WHERE schema_name = $1 AND index_name = $2 AND metrics ? $3
               ORDER BY observed_at DESC LIMIT 200"
            .to_string(),
    };
    let mut v: Vec<f64> = Spi::connect(|c| {
        let args: Vec<pgrx::datum::DatumWithOid> = if matches!(metric, "recall" | "probe_ms") {
            vec![schema.into(), index.into()]
        } else {
            vec![schema.into(), index.into(), metric.into()]
        };
        c.select(&sql, None, &args)
            .map(|rows| {
                rows.filter_map(|r| r.get::<f64>(1).ok().flatten())
                    .collect()
            })
            .unwrap_or_default()
    });
    v.reverse();
    v
}

/// Whether the recall probe of an index is due.
fn recall_due(schema: &str, index: &str) -> bool {
    let every = config::RECALL_INTERVAL_S.get();
    if every <= 0 {
        return false;
    }
    crate::sql::get_one::<bool>(
        "SELECT NOT EXISTS (SELECT 1 FROM ruvector_healing.observations
                             WHERE schema_name = $1 AND index_name = $2 AND recall IS NOT NULL
                               AND observed_at > now() - make_interval(secs => $3))",
        &[schema.into(), index.into(), (every as f64).into()],
    )
    .ok()
    .flatten()
    .unwrap_or(true)
}

/// Whether the index is due for a verification
/// (`ruvector.dag_healing_verify_interval_s`; never when 0).
fn verify_due(schema: &str, index: &str) -> bool {
    let every = config::VERIFY_INTERVAL_S.get();
    if every <= 0 {
        return false;
    }
    crate::sql::get_one::<bool>(
        "SELECT NOT EXISTS (SELECT 1 FROM ruvector_healing.index_stats
                             WHERE schema_name = $1 AND relname = $2
                               AND verified_at > now() - make_interval(secs => $3))",
        &[schema.into(), index.into(), (every as f64).into()],
    )
    .ok()
    .flatten()
    .unwrap_or(true)
}

/// The low-recall issue of a production-recall measurement, if the rule
/// fires (the interval's upper bound under the target).
fn low_recall_issue(o: &crate::diagnose::cause::Outcome) -> Option<(String, u32, Value)> {
    use crate::diagnose::{priority, IssueKind, Severity};
    let target = config::TARGET_RECALL.get();
    if !diagnosis::low_recall(o, target) {
        return None;
    }
    let shortfall = target - o.recall.recall;
    let severity = if shortfall > 0.25 {
        Severity::Critical
    } else if shortfall > 0.1 {
        Severity::High
    } else {
        Severity::Medium
    };
    Some((
        severity.name().to_string(),
        priority(IssueKind::LowRecall, severity, shortfall),
        json!({"recall": o.recall.recall, "recall_ci95": [o.ci.0, o.ci.1], "queries": o.recall.queries,
               "setting": o.setting, "value": o.value, "target_recall": target,
               "rule": "the 95 % interval of recall@10 at the production setting is below ruvector.dag_healing_target_recall"}),
    ))
}

/// One monitored index in a cycle: its report, policy and what the probe
/// measured.
struct Seen {
    oid: pg_sys::Oid,
    name: String,
    report: Value,
    policy: crate::healing::policy::Policy,
    outcome: Option<crate::diagnose::cause::Outcome>,
    probed: bool,
    verified: bool,
}

/// Inspects, observes, records and diagnoses the issues of one table's
/// indexes.
fn check_table(table: pg_sys::Oid, indexes: &[Monitored], standby: bool, out: &mut Outcome) {
    let sensitivity = config::ANOMALY_SENSITIVITY.get();
    let threshold = config::THRESHOLD.get();
    let policies: Vec<_> = indexes.iter().map(|(o, ..)| (*o, policy(*o))).collect();
    let (reports, found) = inspect_table(table, |oid| {
        match policies.iter().find(|(o, _)| *o == oid) {
            Some((_, p)) if p.excluded => None,
            Some((_, p)) => Some(p.thresholds()),
            None => Some(crate::detect::index_health::Thresholds::default()),
        }
    });
    let mut found: Vec<(String, String, String, u32, Value)> = found
        .into_iter()
        .map(|(idx, i)| {
            (
                idx,
                i.kind.name().to_string(),
                i.severity.name().to_string(),
                i.priority,
                i.details,
            )
        })
        .collect();
    let mut flat = Vec::new();
    reports.iter().for_each(|r| leaves(r, &mut flat));
    let mut seen: Vec<Seen> = Vec::new();
    for (oid, schema, name, _, am) in indexes {
        let qualified = format!("{}.{}", quote(schema), quote(name));
        let Some(report) = flat.iter().find(|r| {
            r["index"].as_str().is_some_and(|i| {
                i == qualified || i == name.as_str() || i == format!("{schema}.{name}")
            })
        }) else {
            continue; // excluded, invalid, or a kept backup
        };
        if report.get("valid") == Some(&Value::Bool(false)) {
            continue;
        }
        out.indexes += 1;
        let index_name = report["index"].as_str().unwrap_or(name).to_string();
        let mut metrics = Map::new();
        for (m, _) in watched(am) {
            if let Some(v) = report.get(*m).and_then(Value::as_f64) {
                metrics.insert((*m).to_string(), json!(v));
            }
        }
        // Shown by the statistics view, not judged for anomalies.
        for k in [
            "list_size_p50",
            "list_size_p90",
            "list_size_p99",
            "list_size_max",
        ] {
            if let Some(v) = report.get(k).filter(|v| v.is_number()) {
                metrics.insert(k.to_string(), v.clone());
            }
        }
        let mut current: Vec<(&str, f64, Bad)> = watched(am)
            .iter()
            .filter_map(|(m, b)| metrics.get(*m).and_then(Value::as_f64).map(|v| (*m, v, *b)))
            .collect();
        let am_kind = if am == "hnsw" { Am::Hnsw } else { Am::IvfFlat };
        let due = recall_due(schema, name);
        let probed = if due {
            step(
                unsafe { pg_sys::MyDatabaseId }.to_u32(),
                &format!("recall probe of {qualified}"),
            );
            diagnosis::probe(*oid, am_kind, config::RECALL_SAMPLE_SIZE.get())
        } else {
            None
        };
        // Verification, on its own schedule (off by default).
        let verified = verify_due(schema, name).then(|| {
            step(
                unsafe { pg_sys::MyDatabaseId }.to_u32(),
                &format!("verifying {qualified}"),
            );
            crate::verify::server::verify_index(
                &crate::inspect::relation::resolve(Some(*oid)),
                true,
            )
        });
        if let Some(v) = verified.as_ref().filter(|v| v.violation_count > 0) {
            use crate::diagnose::{priority, IssueKind, Severity};
            found.push((
                index_name.clone(),
                "corruption".into(),
                "critical".into(),
                priority(IssueKind::Corruption, Severity::Critical, 0.5),
                json!({"violations": v.violation_count,
                       "first": &v.violations[..v.violations.len().min(20)],
                       "heap_rows_checked": v.heap_rows_checked,
                       "rule": "ruvector_dag_verify_index(index, heapallindexed => true) found broken invariants"}),
            ));
        }
        if let Some((o, ms)) = &probed {
            current.push(("recall", o.recall.recall, Bad::Low));
            current.push(("probe_ms", *ms, Bad::High));
            metrics.insert(
                "recall_setting".into(),
                json!({"name": o.setting, "value": o.value}),
            );
            metrics.insert("recall_ci95".into(), json!([o.ci.0, o.ci.1]));
            if let Some((severity, priority, details)) = low_recall_issue(o) {
                found.push((
                    index_name.clone(),
                    "low_recall".into(),
                    severity,
                    priority,
                    details,
                ));
            }
        }
        for (metric, value, bad) in current {
            let past = history(schema, name, metric);
            if let Some(a) = anomaly::detect(&past, value, bad, sensitivity, threshold) {
                let priority = crate::diagnose::priority(
                    crate::diagnose::IssueKind::Fragmentation,
                    a.severity,
                    0.5,
                );
                found.push((
                    index_name.clone(),
                    format!("anomaly_{metric}"),
                    a.severity.name().to_string(),
                    priority,
                    json!({"metric": metric, "anomaly": a}),
                ));
            }
        }
        if !standby {
            // The write count of the statistics view starts here for an
            // index the extension did not build.
            let _ = Spi::run_with_args(
                "SELECT ruvector_healing.keep_write_count($1)",
                &[(*oid).into()],
            );
            let _ = Spi::run_with_args(
                "SELECT ruvector_healing.observe($1, $2, $3, $4, $5, $6, $7)",
                &[
                    (*oid).into(),
                    schema.clone().into(),
                    name.clone().into(),
                    table.into(),
                    JsonB(Value::Object(metrics)).into(),
                    probed.as_ref().map(|p| p.0.recall.recall).into(),
                    probed.as_ref().map(|p| p.1).into(),
                ],
            );
            // After observe(), which makes the index's row the first time.
            if let Some(v) = &verified {
                let _ = Spi::run_with_args(
                    "UPDATE ruvector_healing.index_stats SET verified_at = now(), verify_violations = $3
                      WHERE schema_name = $1 AND relname = $2",
                    &[schema.clone().into(), name.clone().into(), (v.violation_count as i64).into()],
                );
            }
        }
        seen.push(Seen {
            oid: *oid,
            name: index_name,
            report: report.clone(),
            policy: policies
                .iter()
                .find(|(o, _)| o == oid)
                .map(|(_, p)| p.clone())
                .unwrap_or_default(),
            outcome: probed.map(|p| p.0),
            probed: due,
            verified: verified.is_some(),
        });
    }
    if standby {
        // Read-only: count what was found, record nothing.
        out.open_issues += found.len() as u32;
        return;
    }
    let mut kept = Vec::new();
    for (index, kind, severity, priority, details) in &found {
        let id = record(index, table, kind, severity, *priority, details);
        kept.push(id);
        let first = crate::sql::get_one::<i32>(
            "SELECT times_seen FROM ruvector_healing.issues WHERE issue_id = $1",
            &[id.into()],
        )
        .ok()
        .flatten()
            == Some(1);
        if first {
            out.new_issues += 1;
            // Ids and codes only: any role can listen on the channel; a
            // client reads the row by id, which shows it only to roles that
            // may read the table.
            notify(json!({"event": "issue", "issue_id": id, "kind": kind,
                          "severity": severity, "priority": priority}));
        }
        // Diagnose (reusing a fresh diagnosis): the cause decides the repair.
        let Some(s) = seen.iter().find(|s| &s.name == index) else {
            continue;
        };
        let Some(k) = crate::diagnose::IssueKind::parse(kind) else {
            continue; // anomalies: evidence, not a cause
        };
        step(
            unsafe { pg_sys::MyDatabaseId }.to_u32(),
            &format!("diagnosing {kind} of {index}"),
        );
        let d = diagnosis::ensure(
            id,
            s.oid,
            k,
            &s.report,
            &s.policy.thresholds(),
            s.policy.allowance(),
            s.policy.pin_lists,
            s.outcome.clone(),
        );
        if let (true, Some(cause)) = (first, d["cause"].as_str()) {
            notify(json!({"event": "diagnosis", "issue_id": id, "cause": cause,
                          "repair": d["remedy"]["strategy"], "needs_person": d["needs_person"]}));
        }
    }
    // A low-recall issue stays open until a probe measures again, a
    // corruption until a verification runs again.
    for s in &seen {
        for (kind, measured) in [("low_recall", s.probed), ("corruption", s.verified)] {
            if measured {
                continue;
            }
            if let Ok(Some(id)) = crate::sql::get_one::<i64>(
                "SELECT issue_id FROM ruvector_healing.issues
                  WHERE index_oid = $1 AND kind = $2 AND status = 'open'",
                &[s.oid.into(), kind.into()],
            ) {
                kept.push(id);
            }
        }
    }
    out.open_issues += kept.len() as u32;
    let _ = Spi::run_with_args(
        "SELECT ruvector_healing.resolve_issues($1, $2, true)",
        &[table.into(), kept.into()],
    );
}

fn quote(s: &str) -> String {
    crate::sql::get_one::<String>("SELECT quote_ident($1)", &[s.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| s.to_string())
}

fn current_db_name() -> String {
    tx(current_db).unwrap_or_default()
}

fn current_db() -> String {
    crate::sql::get_one::<String>("SELECT current_database()::text", &[])
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Whether automatic repairs may start now, and why not.
fn repairs_allowed(standby: bool) -> Result<(), String> {
    if standby {
        return Err("standby".into());
    }
    if !config::ENABLED.get() {
        return Err("ruvector.dag_healing_enabled is off".into());
    }
    if !config::AUTO_REPAIR.get() {
        return Err("ruvector.dag_healing_auto_repair is off".into());
    }
    let ranges = window::parse(&config::maintenance_window()).map_err(|e| {
        pgrx::warning!("ruvector_healing: {e}; no automatic repair starts until it is fixed");
        e
    })?;
    let (dow, minute) = crate::sql::get_two::<i32, i32>(
        "SELECT (extract(isodow FROM now())::int - 1), (extract(hour FROM now()) * 60 + extract(minute FROM now()))::int",
    &[],
    )
    .ok()
    .and_then(|(a, b)| Some((a?, b?)))
    .unwrap_or((0, 0));
    if window::inside(&ranges, dow as u8, minute as u32) {
        Ok(())
    } else {
        Err("outside ruvector.dag_healing_maintenance_window".into())
    }
}

/// Open, repairable issues worth a request: the most urgent per table,
/// skipping indexes with a repair in flight, repaired or refused within the
/// cooldown, and issues that used up their attempts (the repair worker
/// would refuse them: this keeps the history free of a refusal per cycle).
/// A repair a crash rolled back is retried at the next cycle.
fn candidates() -> Vec<(pg_sys::Oid, i64, String, String, String)> {
    Spi::connect(|c| {
        c.select(
            "SELECT DISTINCT ON (i.table_oid) i.index_oid, i.issue_id, n.nspname::text, cl.relname::text,
                    i.diagnosis->'remedy'->>'strategy'
               FROM ruvector_healing.issues i
               JOIN pg_class cl ON cl.oid = i.index_oid
               JOIN pg_namespace n ON n.oid = cl.relnamespace
               JOIN pg_index x ON x.indexrelid = i.index_oid AND x.indisvalid
              WHERE i.status = 'open' AND i.kind NOT LIKE 'anomaly\\_%' AND i.kind <> 'invalid_index'
                -- only what the diagnosis calls for, and not left to a person
                AND i.diagnosis->'remedy'->>'strategy' IN ('vacuum', 'rebuild', 'setting')
                AND NOT coalesce((i.diagnosis->>'needs_person')::bool, false)
                AND NOT EXISTS (
                      SELECT 1 FROM ruvector_healing.repairs r
                       WHERE r.table_oid = i.table_oid AND r.relname = cl.relname AND NOT r.dry_run
                         AND (ruvector_healing.repair_active(r.status)
                              OR (r.status IN ('done', 'refused')
                                  AND r.finished_at > now() - make_interval(secs => $1))))
                AND (SELECT count(*) FROM ruvector_healing.repairs r
                      WHERE r.issue_id = i.issue_id AND r.status IN ('done','failed','rolled_back')) < $2
              ORDER BY i.table_oid, i.priority DESC, i.issue_id",
            None,
            &[
                (config::COOLDOWN_S.get() as f64).into(),
                (config::MAX_ATTEMPTS.get() as i64).into(),
            ],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some((
                    r.get::<pg_sys::Oid>(1).ok()??,
                    r.get::<i64>(2).ok()??,
                    r.get::<String>(3).ok()??,
                    r.get::<String>(4).ok()??,
                    r.get::<String>(5).ok()??,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
    })
}

/// What the policy lets the cycle request for a diagnosed remedy: `auto`
/// follows the diagnosis; a strategy name allows only that strategy; a
/// search-setting cause changes database settings only where the policy
/// says `tune_search` (the worker never changes them by itself).
pub fn allowed(policy_strategy: &str, remedy: &str) -> Option<&'static str> {
    match (policy_strategy, remedy) {
        ("auto", "vacuum") | ("vacuum", "vacuum") => Some("auto"),
        ("auto", "rebuild") | ("rebuild", "rebuild") => Some("auto"),
        ("tune_search", "setting") => Some("tune_search"),
        _ => None,
    }
}

fn request_repairs(db: u32) {
    let list = tx(candidates).unwrap_or_default();
    for (index, issue, schema, name, remedy) in list {
        let p = tx(|| policy(index)).unwrap_or_default();
        let Some(strategy) = allowed(&p.strategy, &remedy).filter(|_| !p.excluded) else {
            continue;
        };
        step(db, &format!("requesting a repair of {schema}.{name}"));
        let r = tx(|| {
            crate::repair::request::request(
                Some(index),
                Some(strategy),
                false,
                Some(issue),
                Some("background cycle"),
                None,
            )
        });
        match r {
            Ok(id) => pgrx::log!(
                "ruvector_healing: repair {id} of {schema}.{name} requested for issue {issue}"
            ),
            Err(e) => {
                let _ = tx(|| notify(json!({"event": "repair_not_requested", "issue_id": issue})));
                pgrx::log!(
                    "ruvector_healing: no repair of {schema}.{name} for issue {issue}: {}",
                    e.message
                );
            }
        }
    }
}

fn run(db: u32) -> Outcome {
    let standby = unsafe { pg_sys::RecoveryInProgress() };
    let mut out = Outcome {
        standby,
        ..Default::default()
    };
    if !standby {
        let _ = tx(crate::release::adopt_restored);
        step(db, "recovering interrupted repairs");
        crate::repair::recovery::recover_orphans(0);
    }
    let all = tx(monitored).unwrap_or_default();
    let mut tables: Vec<pg_sys::Oid> = all.iter().map(|m| m.3).collect();
    tables.dedup();
    for table in tables {
        let mine: Vec<Monitored> = all.iter().filter(|m| m.3 == table).cloned().collect();
        step(
            db,
            &format!("checking the indexes of table {}", table.to_u32()),
        );
        if let Err(e) = tx(|| check_table(table, &mine, standby, &mut out)) {
            pgrx::log!(
                "ruvector_healing: cycle check of table {} failed: {}",
                table.to_u32(),
                e.message
            );
        }
    }
    match tx(|| repairs_allowed(standby)) {
        Ok(Ok(())) => request_repairs(db),
        Ok(Err(why)) => pgrx::debug1!("ruvector_healing: no automatic repairs: {why}"),
        Err(e) => pgrx::log!("ruvector_healing: {}", e.message),
    }
    if !standby {
        step(db, "retiring backups and purging history");
        crate::repair::recovery::retire_backups();
        let days = config::HISTORY_RETENTION_DAYS.get();
        let _ = tx(|| {
            let _ = Spi::run_with_args(
                "DELETE FROM ruvector_healing.observations
                  WHERE observed_at < now() - make_interval(days => $1)",
                &[days.into()],
            );
            // The last figures of indexes that no longer exist by that name.
            let _ = Spi::run(
                "DELETE FROM ruvector_healing.index_stats s
                  WHERE (SELECT r.index_oid FROM ruvector_healing.index_by_name(s.schema_name, s.relname) r) IS NULL",
            );
            Spi::run_with_args(
                "DELETE FROM ruvector_healing.issues
                  WHERE status = 'resolved' AND resolved_at < now() - make_interval(days => $1)",
                &[days.into()],
            )
        });
    }
    out
}
