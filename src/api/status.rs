//! `ruvector_dag_healing_status()`: configuration, versions and the
//! pgvector indexes this session can see. Every figure is read from the
//! catalog or the settings; nothing is estimated.

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::config::HealingConfig;

fn visible_indexes() -> Vec<Value> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid::regclass::text, i.indrelid::regclass::text, am.amname::text,
                        opc.opcname::text, pg_relation_size(c.oid), i.indisvalid,
                        c.relkind = 'I'
                   FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid
                   JOIN pg_am am ON am.oid = c.relam
                   JOIN pg_opclass opc ON opc.oid = i.indclass[0]
                  WHERE am.amname IN ('hnsw', 'ivfflat')
                    AND has_any_column_privilege(i.indrelid, 'SELECT')
                  ORDER BY 1",
                None,
                &[],
            )
            .map(|rows| {
                rows.map(|r| {
                    json!({
                        "index": r.get::<String>(1).ok().flatten(),
                        "table": r.get::<String>(2).ok().flatten(),
                        "am": r.get::<String>(3).ok().flatten(),
                        "opclass": r.get::<String>(4).ok().flatten(),
                        "bytes": r.get::<i64>(5).ok().flatten(),
                        "valid": r.get::<bool>(6).ok().flatten(),
                        "partitioned": r.get::<bool>(7).ok().flatten(),
                    })
                })
                .collect()
            })
            .unwrap_or_default()
    })
}

fn version_of(ext: &str) -> Option<String> {
    crate::sql::get_one::<String>(
        "SELECT extversion::text FROM pg_extension WHERE extname = $1",
        &[ext.into()],
    )
    .ok()
    .flatten()
}

/// Repair counters from shared memory (since the server started).
fn repair_counters() -> Value {
    match crate::repair::counters::snapshot() {
        Some(c) => {
            let mut v = crate::repair::counters::to_json(&c);
            v["active_repairs"] = json!(crate::repair::registry::running());
            v["since"] = json!("server start (the history tables keep the long-term record)");
            v
        }
        None => json!({"available": false,
                       "reason": "ruvector_healing is not in shared_preload_libraries"}),
    }
}

fn timestamp(unix_s: &Value) -> Value {
    match unix_s.as_f64() {
        Some(t) => crate::sql::get_one::<String>("SELECT to_timestamp($1)::text", &[t.into()])
            .ok()
            .flatten()
            .map(Value::from)
            .unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// The launcher, each database's cycle worker and the specification's
/// `HealingMetrics`, read from shared memory.
fn healing() -> Value {
    use crate::healing::state;
    let Some(st) = state::snapshot() else {
        return json!({"available": false,
                      "reason": "ruvector_healing is not in shared_preload_libraries: no background worker"});
    };
    let databases: Vec<Value> = st
        .slots
        .iter()
        .filter(|s| s.dboid != 0)
        .map(|s| {
            let mut v = state::slot_json(s);
            v["database"] = crate::sql::get_one::<String>(
                "SELECT datname::text FROM pg_database WHERE oid = $1",
                &[pgrx::pg_sys::Oid::from(s.dboid).into()],
            )
            .ok()
            .flatten()
            .map(Value::from)
            .unwrap_or(Value::Null);
            for k in ["last_cycle_start", "last_cycle_end", "next_cycle"] {
                v[k] = timestamp(&v[k]);
            }
            v
        })
        .collect();
    let alive = st.launcher_pid > 0 && unsafe { libc::kill(st.launcher_pid, 0) } == 0;
    let mut metrics = json!({
        "checks_performed": st.checks_performed,
        "issues_detected": st.issues_detected,
        "cycles": st.cycles,
        "stats_reset": timestamp(&if st.stats_reset > 0 {
            json!(st.stats_reset as f64 / 1000.0)
        } else {
            Value::Null
        }),
        "last_check_time": timestamp(&if st.last_check_time > 0 {
            json!(st.last_check_time as f64 / 1000.0)
        } else {
            Value::Null
        }),
    });
    if let (Value::Object(m), Value::Object(r)) = (&mut metrics, repair_counters()) {
        m.extend(r);
    }
    json!({
        "launcher": {
            "pid": if alive { json!(st.launcher_pid) } else { Value::Null },
            "running": alive,
            "started_at": timestamp(&json!(st.launcher_started as f64 / 1000.0)),
            "wakeups": st.launcher_ticks,
            "cpu_ms": st.launcher_cpu_ms,
        },
        "worker_cap": crate::healing::launcher::worker_cap(),
        "databases": databases,
        "metrics": metrics,
    })
}

/// Repairs of this database that are not finished (those the caller may
/// see), with their worker from the registry.
fn active_repairs() -> Value {
    let rows = crate::sql::get_one::<JsonB>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'repair_id', r.repair_id, 'index', r.index_name, 'strategy', r.strategy,
                    'status', r.status, 'requested_at', r.requested_at, 'started_at', r.started_at)
                  ORDER BY r.repair_id), '[]')
           FROM ruvector_healing.repairs r
          WHERE ruvector_healing.repair_active(r.status)",
        &[],
    )
    .ok()
    .flatten()
    .map(|j| j.0)
    .unwrap_or(json!([]));
    let mut rows = rows.as_array().cloned().unwrap_or_default();
    for r in rows.iter_mut() {
        let pid = r["repair_id"]
            .as_i64()
            .and_then(crate::repair::journal::worker_pid);
        r["worker_pid"] = json!(pid);
        r["worker_alive"] = json!(pid.is_some());
    }
    Value::Array(rows)
}

/// `needs_update`: `null` when the installed objects match the library,
/// else what is wrong and the command that fixes it.
fn needs_update(state: &crate::release::Installed) -> Value {
    match crate::release::mismatch_text(state) {
        Some((msg, hint)) => json!({
            "installed": version_of("ruvector_healing"),
            "library": crate::release::LIBRARY_VERSION,
            "message": msg,
            "hint": hint,
            "command": matches!(state, crate::release::Installed::NeedsUpdate(_))
                .then_some(crate::release::UPDATE_COMMAND),
        }),
        None => Value::Null,
    }
}

/// Works in a database that still needs `ALTER EXTENSION ... UPDATE` (the
/// one function that does): it then reports versions, settings and the
/// workers, and reads none of the extension's tables, whose layout may
/// differ from what this library expects.
#[pg_extern(volatile, parallel_safe)]
fn ruvector_dag_healing_status() -> JsonB {
    let release = crate::release::state();
    let mut status = json!({
        "extension_version": version_of("ruvector_healing"),
        "library_version": crate::release::LIBRARY_VERSION,
        "needs_update": needs_update(&release),
        "pgvector_version": version_of("vector"),
        "server_version": crate::sql::get_one::<String>("SELECT current_setting('server_version')", &[]).ok().flatten(),
        "preloaded": crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed),
        "config": HealingConfig::current(),
        "repairs": repair_counters(),
        "healing": healing(),
    });
    if !status["needs_update"].is_null() {
        return JsonB(status);
    }
    let indexes = visible_indexes();
    let open_issues = crate::sql::get_one::<JsonB>(
        "SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM
           (SELECT severity, count(*) AS n FROM ruvector_healing.issues
             WHERE status = 'open' GROUP BY severity) s",
        &[],
    )
    .ok()
    .flatten()
    .map(|j| j.0)
    .unwrap_or(json!({}));
    status["index_count"] = json!(indexes.len());
    status["indexes"] = json!(indexes);
    status["open_issues_by_severity"] = open_issues;
    status["active_repairs"] = active_repairs();
    JsonB(status)
}

/// Asks the launcher to run this database's healing cycle at its next
/// wake-up (within 5 s) instead of waiting for the interval.
#[pg_extern(volatile)]
fn ruvector_dag_run_cycle() -> JsonB {
    crate::release::require_current();
    use crate::healing::state;
    if state::snapshot().is_none() {
        crate::inspect::relation::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the background worker needs ruvector_healing in shared_preload_libraries",
            "add shared_preload_libraries = 'ruvector_healing' to postgresql.conf and restart the server",
        );
    }
    if !crate::config::ENABLED.get() {
        crate::inspect::relation::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "ruvector.dag_healing_enabled is off: the launcher starts no cycle",
            "turn it on (ALTER SYSTEM SET ruvector.dag_healing_enabled = on; SELECT pg_reload_conf())",
        );
    }
    let db = unsafe { pgrx::pg_sys::MyDatabaseId }.to_u32();
    let mut running = false;
    state::with_slot(db, |s| {
        running = s.pid != 0;
        s.run_now = true;
    });
    JsonB(json!({
        "database_oid": db,
        "requested": true,
        "running_now": running,
        "note": "the launcher starts the cycle at its next wake-up (at most 5 s); see ruvector_dag_healing_status()->'healing'",
    }))
}
