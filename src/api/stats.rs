//! Observability: `ruvector_dag_metrics()` (the Prometheus text format, from
//! the view `ruvector_dag_stat_indexes` and the shared-memory counters),
//! `ruvector_dag_stat_reset()`, and the functions behind the views
//! (`ruvector_healing.next_cycle_at()`, `ruvector_healing.repair_progress()`).

use std::cell::RefCell;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, Spi};
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use crate::prometheus::{render, Family, Labels};

/// A Unix time in milliseconds as a timestamp (PostgreSQL counts
/// microseconds from 2000-01-01).
fn timestamp_from_ms(unix_ms: i64) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(unix_ms * 1000 - 946_684_800_000_000).ok()
}

/// Resets the extension's cumulative counters (repairs by outcome, checks,
/// cycles, issues detected) as `pg_stat_statements_reset()` does; history
/// tables are never touched.
#[pg_extern(volatile)]
fn ruvector_dag_stat_reset() -> JsonB {
    crate::release::require_current();
    if crate::healing::state::snapshot().is_none() {
        crate::inspect::relation::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the counters live in shared memory: ruvector_healing is not in shared_preload_libraries",
            "add shared_preload_libraries = 'ruvector_healing' to postgresql.conf and restart the server",
        );
    }
    crate::repair::counters::reset();
    let at = crate::healing::state::reset_counters();
    JsonB(
        json!({"reset": true, "stats_reset": timestamp_from_ms(at).map(|t| t.to_string()),
                 "kept": "history, issues, observations and policies are tables, never reset"}),
    )
}

/// The number columns of the statistics view the metrics read, in the
/// order `VIEW_QUERY` selects them (after five text columns).
const NUMS: [&str; 27] = [
    "size_bytes",
    "idx_scan",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "unreachable_ratio",
    "fragmentation",
    "list_balance",
    "centroid_drift",
    "list_size_p50",
    "list_size_p90",
    "list_size_p99",
    "list_size_max",
    "recall",
    "recall_ci_low",
    "recall_target",
    "recall_setting_value",
    "recall_at",
    "inspected_at",
    "health_score",
    "open_issues_critical",
    "open_issues_high",
    "open_issues_medium",
    "open_issues_low",
    "last_repair_at",
    "last_repair_failed",
    "circuit_breaker_open",
];

/// Typed columns (no JSON on the way: a scrape every 15 s should cost
/// little); times as seconds since the epoch, as the format wants them.
const VIEW_QUERY: &str = "SELECT schemaname, relname, indexrelname, am, recall_setting,
        size_bytes::float8, idx_scan::float8, rows_inserted::float8, rows_updated::float8,
        rows_deleted::float8, unreachable_ratio, fragmentation, list_balance, centroid_drift,
        list_size_p50, list_size_p90, list_size_p99, list_size_max, recall, recall_ci_low,
        recall_target, recall_setting_value::float8, extract(epoch FROM recall_at)::float8,
        extract(epoch FROM inspected_at)::float8, health_score::float8,
        open_issues_critical::float8, open_issues_high::float8, open_issues_medium::float8,
        open_issues_low::float8, extract(epoch FROM last_repair_at)::float8,
        (coalesce(last_repair_status, '') IN ('failed', 'rollback_failed'))::int::float8,
        circuit_breaker_open::int::float8
   FROM ruvector_dag_stat_indexes ORDER BY schemaname, indexrelname";

/// One row of the statistics view, as the metrics need it.
struct ViewRow {
    /// schema, table, index, am, recall setting.
    text: [String; 5],
    nums: [Option<f64>; NUMS.len()],
}

impl ViewRow {
    fn num(&self, column: &str) -> Option<f64> {
        let i = NUMS.iter().position(|c| *c == column)?;
        self.nums[i]
    }
}

thread_local! {
    /// `VIEW_QUERY` planned once per backend: a scraper connects once and
    /// calls every 15 s (PostgreSQL replans it when the view changes).
    static VIEW_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

fn view_rows() -> Vec<ViewRow> {
    Spi::connect(|c| {
        VIEW_PLAN.with(|plan| {
            let mut plan = plan.borrow_mut();
            if plan.is_none() {
                *plan = c.prepare(VIEW_QUERY, &[]).ok().map(|p| p.keep());
            }
            match plan.as_ref() {
                Some(p) => c.select(p, None, &[]),
                None => c.select(VIEW_QUERY, None, &[]),
            }
            .map(|rows| {
                rows.map(|r| {
                    let text = std::array::from_fn(|i| {
                        r.get::<String>(i + 1).ok().flatten().unwrap_or_default()
                    });
                    let nums = std::array::from_fn(|i| r.get::<f64>(i + 6).ok().flatten());
                    ViewRow { text, nums }
                })
                .collect()
            })
            .unwrap_or_default()
        })
    })
}

fn current_database() -> String {
    crate::sql::get_one::<String>("SELECT current_database()::text", &[])
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The Prometheus text exposition of this database's pgvector indexes
/// (those the caller may see) and of the cluster-wide counters (labelled
/// `scope="cluster"`: scrape them from one database only).
#[pg_extern(stable)]
fn ruvector_dag_metrics() -> String {
    crate::release::require_current();
    let db = current_database();
    let mut f = Families::default();
    for r in view_rows() {
        let [schema, table, index, am, setting] = &r.text;
        let base = Labels::new(&[
            ("database", &db),
            ("schema", schema),
            ("table", table),
            ("index", index),
            ("am", am),
        ]);
        let with = |k: &str, v: &str| base.with(k, v);
        for (fam, column) in [
            (&mut f.size, "size_bytes"),
            (&mut f.scans, "idx_scan"),
            (&mut f.unreachable, "unreachable_ratio"),
            (&mut f.fragmentation, "fragmentation"),
            (&mut f.balance, "list_balance"),
            (&mut f.drift, "centroid_drift"),
            (&mut f.recall, "recall"),
            (&mut f.recall_low, "recall_ci_low"),
            (&mut f.target, "recall_target"),
            (&mut f.health, "health_score"),
            (&mut f.recall_at, "recall_at"),
            (&mut f.inspected_at, "inspected_at"),
            (&mut f.repair_at, "last_repair_at"),
            (&mut f.repair_failed, "last_repair_failed"),
            (&mut f.breaker, "circuit_breaker_open"),
        ] {
            if let Some(v) = r.num(column) {
                fam.push(base.clone(), v);
            }
        }
        if let Some(v) = r.num("recall_setting_value") {
            f.setting.push(with("setting", setting), v);
        }
        for (op, column) in [
            ("insert", "rows_inserted"),
            ("update", "rows_updated"),
            ("delete", "rows_deleted"),
        ] {
            if let Some(v) = r.num(column) {
                f.writes.push(with("op", op), v);
            }
        }
        for (p, column) in [
            ("50", "list_size_p50"),
            ("90", "list_size_p90"),
            ("99", "list_size_p99"),
            ("100", "list_size_max"),
        ] {
            if let Some(v) = r.num(column) {
                f.list_size.push(with("percentile", p), v);
            }
        }
        for sev in ["critical", "high", "medium", "low"] {
            let v = r.num(&format!("open_issues_{sev}")).unwrap_or(0.0);
            f.issues.push(with("severity", sev), v);
        }
    }
    // This database's cycles (shared memory).
    if let Some(st) = crate::healing::state::snapshot() {
        let me = unsafe { pg_sys::MyDatabaseId }.to_u32();
        if let Some(s) = st.slots.iter().find(|s| s.dboid == me) {
            let l = Labels::new(&[("database", &db)]);
            f.cycles.push(l.clone(), s.cycles as f64);
            f.cycle_seconds
                .push(l.clone(), s.last_duration_ms as f64 / 1000.0);
            if s.last_end > 0 {
                f.cycle_end.push(l.clone(), s.last_end as f64 / 1000.0);
            }
            f.cycle_cpu.push(l.clone(), s.total_cpu_ms as f64 / 1000.0);
            if s.next_due > 0 {
                f.cycle_due.push(l, s.next_due as f64 / 1000.0);
            }
        }
        // The whole cluster's counters.
        let cl = || Labels::new(&[("scope", "cluster")]);
        f.checks.push(cl(), st.checks_performed as f64);
        f.detected.push(cl(), st.issues_detected as f64);
        f.wakeups.push(cl(), st.launcher_ticks as f64);
        let alive = st.launcher_pid > 0 && unsafe { libc::kill(st.launcher_pid, 0) } == 0;
        f.launcher_up.push(cl(), if alive { 1.0 } else { 0.0 });
        if st.stats_reset > 0 {
            f.reset.push(cl(), st.stats_reset as f64 / 1000.0);
        }
        if let Some(c) = crate::repair::counters::snapshot() {
            for (outcome, n) in [
                ("initiated", c.initiated),
                ("successful", c.successful),
                ("failed", c.failed),
                ("rolled_back", c.rolled_back),
                ("cancelled", c.cancelled),
                ("refused", c.refused),
            ] {
                f.repairs.push(cl().with("outcome", outcome), n as f64);
            }
            f.repair_seconds.push(cl(), c.total_ms as f64 / 1000.0);
        }
        f.running
            .push(cl(), crate::repair::registry::running() as f64);
    }
    render(&f.all())
}

/// Every family the metrics function exposes; names follow Prometheus'
/// naming guide (base units, `_total` for counters, `_ratio` for shares).
struct Families {
    size: Family,
    scans: Family,
    writes: Family,
    unreachable: Family,
    fragmentation: Family,
    balance: Family,
    drift: Family,
    list_size: Family,
    recall: Family,
    recall_low: Family,
    target: Family,
    setting: Family,
    recall_at: Family,
    inspected_at: Family,
    health: Family,
    issues: Family,
    repair_at: Family,
    repair_failed: Family,
    breaker: Family,
    cycles: Family,
    cycle_seconds: Family,
    cycle_end: Family,
    cycle_cpu: Family,
    cycle_due: Family,
    checks: Family,
    detected: Family,
    wakeups: Family,
    launcher_up: Family,
    reset: Family,
    repairs: Family,
    repair_seconds: Family,
    running: Family,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            size: Family::new("ruvector_index_size_bytes", "gauge", "Size of the index on disk."),
            scans: Family::new("ruvector_index_scans_total", "counter", "Index scans started on the index (pg_stat_all_indexes.idx_scan)."),
            writes: Family::new("ruvector_index_table_rows_written_total", "counter", "Rows of the index's table inserted, updated or deleted since the count started (see writes_since in ruvector_dag_stat_indexes)."),
            unreachable: Family::new("ruvector_index_unreachable_ratio", "gauge", "HNSW: live elements no search can reach, as a share of live elements (last inspection)."),
            fragmentation: Family::new("ruvector_index_fragmentation_ratio", "gauge", "HNSW: element slots without a live element, as a share of all slots (last inspection)."),
            balance: Family::new("ruvector_index_list_balance_ratio", "gauge", "IVFFlat: coefficient of variation of the list sizes (last inspection)."),
            drift: Family::new("ruvector_index_centroid_drift_ratio", "gauge", "IVFFlat: shift of the lists' means from their centers, relative to their spread (last inspection)."),
            list_size: Family::new("ruvector_index_list_size_rows", "gauge", "IVFFlat: list size at a percentile of the lists (100 = the largest list)."),
            recall: Family::new("ruvector_index_recall_ratio", "gauge", "Recall@10 at the production search setting, last measured."),
            recall_low: Family::new("ruvector_index_recall_lower_bound_ratio", "gauge", "Lower end of the 95 % interval of the last recall measurement."),
            target: Family::new(
                "ruvector_index_recall_target_ratio",
                "gauge",
                "The recall the index should reach (ruvector.dag_healing_target_recall).",
            ),
            setting: Family::new("ruvector_index_recall_search_value", "gauge", "The search setting value the last recall was measured at."),
            recall_at: Family::new("ruvector_index_recall_measured_timestamp_seconds", "gauge", "When recall was last measured."),
            inspected_at: Family::new("ruvector_index_inspected_timestamp_seconds", "gauge", "When the index was last inspected."),
            health: Family::new("ruvector_index_health_score", "gauge", "Health score 0..100: recall against the target (70 %), structure (30 %)."),
            issues: Family::new("ruvector_index_open_issues", "gauge", "Open issues of the index, by severity."),
            repair_at: Family::new("ruvector_index_last_repair_timestamp_seconds", "gauge", "When the index's last repair finished (or was requested, while it runs)."),
            repair_failed: Family::new("ruvector_index_last_repair_failed", "gauge", "1 when the index's last repair failed (or its rollback did)."),
            breaker: Family::new("ruvector_index_circuit_breaker_open", "gauge", "1 while repairs of the index are paused after consecutive failures."),
            cycles: Family::new("ruvector_cycle_runs_total", "counter", "Healing cycles of this database since the server started (or the last reset)."),
            cycle_seconds: Family::new("ruvector_cycle_duration_seconds", "gauge", "Wall time of this database's last healing cycle."),
            cycle_end: Family::new("ruvector_cycle_last_end_timestamp_seconds", "gauge", "When this database's last healing cycle ended."),
            cycle_cpu: Family::new("ruvector_cycle_cpu_seconds_total", "counter", "CPU time of this database's healing cycles."),
            cycle_due: Family::new("ruvector_cycle_next_due_timestamp_seconds", "gauge", "When this database's next healing cycle is due."),
            checks: Family::new("ruvector_checks_total", "counter", "Index inspections by healing cycles, whole cluster: scrape from one database."),
            detected: Family::new("ruvector_issues_detected_total", "counter", "New issues found by healing cycles, whole cluster: scrape from one database."),
            wakeups: Family::new("ruvector_launcher_wakeups_total", "counter", "Wake-ups of the healing launcher, whole cluster: scrape from one database."),
            launcher_up: Family::new("ruvector_launcher_up", "gauge", "1 while the healing launcher runs, whole cluster."),
            reset: Family::new("ruvector_stats_reset_timestamp_seconds", "gauge", "When ruvector_dag_stat_reset() last reset the counters."),
            repairs: Family::new("ruvector_repairs_total", "counter", "Repairs by outcome, whole cluster: scrape from one database."),
            repair_seconds: Family::new("ruvector_repair_duration_seconds_total", "counter", "Time spent in successful repairs, whole cluster."),
            running: Family::new("ruvector_repairs_running", "gauge", "Repairs holding a table's slot now, whole cluster."),
        }
    }
}

impl Families {
    fn all(self) -> Vec<Family> {
        vec![
            self.size,
            self.scans,
            self.writes,
            self.unreachable,
            self.fragmentation,
            self.balance,
            self.drift,
            self.list_size,
            self.recall,
            self.recall_low,
            self.target,
            self.setting,
            self.recall_at,
            self.inspected_at,
            self.health,
            self.issues,
            self.repair_at,
            self.repair_failed,
            self.breaker,
            self.cycles,
            self.cycle_seconds,
            self.cycle_end,
            self.cycle_cpu,
            self.cycle_due,
            self.checks,
            self.detected,
            self.wakeups,
            self.launcher_up,
            self.reset,
            self.repairs,
            self.repair_seconds,
            self.running,
        ]
    }
}

/// Functions in the extension's own schema: what the views call.
#[pg_schema]
mod ruvector_healing {
    use super::*;

    /// When this database's next healing cycle is due (shared memory); NULL
    /// without the background worker.
    #[pg_extern(stable, parallel_safe)]
    fn next_cycle_at() -> Option<TimestampWithTimeZone> {
        let due = crate::healing::state::next_due(unsafe { pg_sys::MyDatabaseId }.to_u32())?;
        timestamp_from_ms(due)
    }

    /// The health score of the statistics view (`detect::score`): recall
    /// against the target first, the structure second; NULL without any
    /// figure.
    #[pg_extern(immutable, parallel_safe)]
    fn health_score(
        recall: Option<f64>,
        target: Option<f64>,
        unreachable_ratio: Option<f64>,
        fragmentation: Option<f64>,
        connectivity_score: Option<f64>,
        cluster_balance: Option<f64>,
        centroid_drift: Option<f64>,
    ) -> Option<i32> {
        use crate::detect::score::{health_score, Structure};
        let s = Structure {
            unreachable_ratio,
            fragmentation,
            connectivity_score,
            cluster_balance,
            centroid_drift,
        };
        health_score(recall, target.unwrap_or(0.95), &s)
    }

    /// Running repairs with the build progress of their worker. `SECURITY
    /// DEFINER`: `pg_stat_progress_create_index` hides another role's backend
    /// from unprivileged callers, so it is read with the extension's rights and
    /// the trust rule (the caller may read the table) is applied here.
    #[allow(clippy::type_complexity)] // pgrx wants the row type spelled out
    #[pg_extern(security_definer, volatile)]
    #[search_path(pg_catalog, pg_temp)]
    fn repair_progress() -> TableIterator<
        'static,
        (
            name!(repair_id, i64),
            name!(index, String),
            name!(table_name, String),
            name!(strategy, String),
            name!(phase, String),
            name!(worker_pid, Option<i32>),
            name!(build_phase, Option<String>),
            name!(blocks_done, Option<i64>),
            name!(blocks_total, Option<i64>),
            name!(tuples_done, Option<i64>),
            name!(tuples_total, Option<i64>),
            name!(percent, Option<f64>),
            name!(eta_s, Option<f64>),
            name!(started_at, Option<TimestampWithTimeZone>),
        ),
    > {
        let caller = unsafe { pg_sys::GetOuterUserId() };

        let out: Vec<_> = running(caller)
            .into_iter()
            .map(|r| {
                let pid = crate::repair::journal::worker_pid(r.id);
                let p = pid.and_then(build_progress).unwrap_or(Value::Null);
                let int = |k: &str| p[k].as_i64();
                let (bd, bt, td, tt) = (
                    int("blocks_done"),
                    int("blocks_total"),
                    int("tuples_done"),
                    int("tuples_total"),
                );
                let percent = crate::repair::plan::progress_percent(bd, bt, td, tt);
                // At the build rate of past rebuilds of comparable size.
                let eta = match (r.index_bytes, r.building_s) {
                    (Some(b), Some(e)) if r.phase == "building" => {
                        let rate = crate::repair::plan::median_rate(
                            crate::repair::journal::build_rates(Some(b)),
                        )
                        .unwrap_or(crate::repair::plan::DEFAULT_BUILD_BYTES_PER_S);
                        Some((b / rate - e).max(0.0))
                    }
                    _ => None,
                };
                let build_phase = p["phase"].as_str().map(str::to_string);
                (
                    r.id,
                    r.index,
                    r.table,
                    r.strategy,
                    r.phase,
                    pid,
                    build_phase,
                    bd,
                    bt,
                    td,
                    tt,
                    percent,
                    eta,
                    r.started,
                )
            })
            .collect();
        TableIterator::new(out)
    }

    /// A running repair the caller may see.
    struct Running {
        id: i64,
        index: String,
        table: String,
        strategy: String,
        phase: String,
        index_bytes: Option<f64>,
        building_s: Option<f64>,
        started: Option<TimestampWithTimeZone>,
    }

    fn running(caller: pg_sys::Oid) -> Vec<Running> {
        Spi::connect(|c| {
            c.select(
                "SELECT r.repair_id, r.index_name, r.table_name, r.strategy, r.status,
                        (r.plan->'preview'->>'index_bytes')::float8,
                        extract(epoch FROM now() - coalesce(
                            (SELECT max(s.at) FROM ruvector_healing.repair_steps s
                              WHERE s.repair_id = r.repair_id AND s.step = 'building'), r.started_at))::float8,
                        r.started_at
                   FROM ruvector_healing.repairs r
                  WHERE ruvector_healing.repair_active(r.status) AND NOT r.dry_run
                    AND (has_any_column_privilege($1::oid, r.table_oid, 'SELECT')
                         OR pg_has_role($1::oid, 'pg_read_all_stats', 'USAGE'))
                  ORDER BY r.repair_id",
                None,
                &[caller.into()],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some(Running {
                        id: r.get::<i64>(1).ok()??,
                        index: r.get::<String>(2).ok()??,
                        table: r.get::<String>(3).ok()??,
                        strategy: r.get::<String>(4).ok()??,
                        phase: r.get::<String>(5).ok()??,
                        index_bytes: r.get::<f64>(6).ok()?,
                        building_s: r.get::<f64>(7).ok()?,
                        started: r.get::<TimestampWithTimeZone>(8).ok()?,
                    })
                })
                .collect()
            })
            .unwrap_or_default()
        })
    }

    /// The `pg_stat_progress_create_index` row of a backend, as JSON.
    fn build_progress(pid: i32) -> Option<Value> {
        crate::sql::get_one::<JsonB>(
            "SELECT to_jsonb(p) FROM pg_stat_progress_create_index p WHERE pid = $1",
            &[pid.into()],
        )
        .ok()
        .flatten()
        .map(|j| j.0)
    }
}
