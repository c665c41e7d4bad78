//! The rebuild strategy: shadow build, validation, swap, keep or retire the
//! old index; and its rollback.

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::catalog::{self, IndexFacts};
use super::counters::{self, Outcome};
use super::exec::{in_transaction, top_level, Deadline, StepError};
use super::journal::{self, RepairRow};
use super::plan::{self, Status};
use super::settings::RepairSettings;
use super::worker::*;
use crate::inspect::relation::Am;

/// The search setting to measure each index at: the requester's value, and
/// for an IVFFlat index whose `lists` changed, the probes that scan as many
/// entries per query.
pub(crate) fn search_values(
    am: Am,
    s: &RepairSettings,
    lists: Option<(i32, i32)>,
    scan_cost: (f64, f64),
) -> (Option<String>, Option<String>) {
    match am {
        Am::Hnsw => {
            let v = s.ef_search.map(|v| v.to_string());
            (v.clone(), v)
        }
        Am::IvfFlat => {
            let p = s.probes.unwrap_or(1);
            let new = match lists {
                Some((old, new)) => {
                    plan::equivalent_probes(p, (old, scan_cost.0), (new, scan_cost.1))
                }
                None => p,
            };
            (Some(p.to_string()), Some(new.to_string()))
        }
    }
}

pub(crate) fn rebuild(
    row: &RepairRow,
    s: &RepairSettings,
    f: &IndexFacts,
    deadline: Deadline,
) -> Result<(), Failure> {
    let id = row.id;
    let am = f.access_method().unwrap_or(Am::Hnsw);
    let shadow = plan::shadow_name(&f.relname, id);
    let backup = plan::backup_name(&f.relname, id);
    activity("measuring the index before the rebuild");
    // 1. Plan: definition from the catalog, lists from the row count.
    let (sql, lists) = flatten(in_transaction(deadline, || {
        if let Some(why) = f.unsafe_to_rebuild() {
            return Err(StepError::new(why));
        }
        let (def, planned) = rebuilt_definition(f, am);
        let lists = planned.map(|(old, new, _)| (old, new));
        let sql = def.create_concurrently(&shadow).map_err(StepError::new)?;
        let (before, issues) = health(f.oid);
        journal::merge(id, "before", json!({"health": before, "issues": issues}));
        journal::merge(
            id,
            "plan",
            json!({"shadow_name": shadow, "backup_name": backup, "schema": f.schema,
                   "statement": sql, "lists": lists.map(|(o, n)| json!({"old": o, "new": n})),
                   "comment": f.comment, "statistics_targets": f.stat_targets}),
        );
        if !journal::advance(
            id,
            Status::Planned,
            Status::Building,
            json!({"statement": sql}),
        ) {
            return Err(StepError {
                code: PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                message: "cancelled before the build".into(),
            });
        }
        Ok((sql, lists))
    }))
    .map_err(failure("planning the rebuild", false))?;

    pause(id, s, "before_build");
    // 2. Build the shadow beside the original.
    activity(&format!("building {shadow} (CREATE INDEX CONCURRENTLY)"));
    top_level(deadline, &sql).map_err(failure("building the new index", true))?;

    pause(id, s, "after_build");
    // 3. Validate it against the original.
    let _ = tx(|| journal::advance(id, Status::Building, Status::Validating, json!({})));
    pause(id, s, "during_validation");
    activity(&format!("validating {shadow}"));
    let verdict = flatten(in_transaction(deadline, || {
        let Some((new_oid, valid)) = catalog::index_named(&f.schema, &shadow, f.table_oid) else {
            return Err(StepError::new("the new index is missing after its build"));
        };
        journal::merge(id, "plan", json!({"shadow_oid": new_oid.to_u32()}));
        let (after, new_issues) = health(new_oid);
        let before = Spi::get_one_with_args::<JsonB>(
            "SELECT before FROM ruvector_healing.repairs WHERE repair_id = $1",
            &[id.into()],
        )
        .ok()
        .flatten()
        .map(|j| j.0)
        .unwrap_or_default();
        let old_issues = issue_names(&before["issues"]);
        let cost = |h: &Value| h["scan_cost_factor"].as_f64().unwrap_or(1.0);
        let (old_value, new_value) =
            search_values(am, s, lists, (cost(&before["health"]), cost(&after)));
        let paired = crate::api::recall::paired_recall(
            f.oid,
            new_oid,
            old_value,
            new_value,
            VALIDATION_SAMPLE,
            VALIDATION_K,
        );
        let tolerance = plan::recall_tolerance(paired.as_ref().map_or(0.0, |p| p.diff_se));
        let verdict = plan::validate(
            valid,
            &old_issues,
            &new_issues,
            paired.as_ref().map(|p| p.old),
            paired.as_ref().map(|p| p.new),
            tolerance,
            s.min_recall,
        );
        journal::merge(
            id,
            "after",
            json!({"health": after, "issues": new_issues, "recall": paired, "recall_tolerance": tolerance, "validation": verdict}),
        );
        if let Some(p) = &paired {
            journal::merge(
                id,
                "before",
                json!({"recall": {"value": p.old, "k": p.k, "queries": p.queries,
                "setting": p.setting, "setting_value": p.old_value}}),
            );
        }
        if verdict.passed {
            copy_attributes(f, &shadow);
        }
        Ok(verdict)
    }))
    .map_err(failure("validating the new index", true))?;
    if !verdict.passed {
        return Err(Failure {
            during: "validating the new index",
            error: StepError::new(format!("validation failed: {}", verdict.reasons.join("; "))),
            drop_shadow: true,
        });
    }

    // 4. Swap names in one short transaction, retried on lock timeouts.
    let keep = s.rollback_enabled;
    let _ = tx(|| {
        journal::advance(
            id,
            Status::Validating,
            Status::Swapping,
            json!({"keep_backup": keep}),
        )
    });
    activity(&format!("swapping {shadow} in"));
    let mut attempt = 0;
    loop {
        let r = in_transaction(deadline, || swap(row, f, &shadow, &backup, keep, s));
        match r {
            Ok(()) => break,
            Err(e) if e.lock_unavailable() && attempt < SWAP_ATTEMPTS => {
                let _ = tx(|| {
                    journal::step(
                        id,
                        "swap_retry",
                        json!({"attempt": attempt + 1, "error": e.message}),
                    )
                });
                nap(500 << attempt);
                attempt += 1;
            }
            Err(e) => return Err(failure("swapping the indexes", true)(e)),
        }
    }
    pause(id, s, "after_swap");
    // 5. Keep the old index for rollback, or retire it now.
    finish_swapped(id, f, &backup, keep);
    Ok(())
}

/// Recall measured by validation: 100 sampled rows, recall@10.
pub const VALIDATION_SAMPLE: i32 = 100;
pub const VALIDATION_K: i32 = 10;
/// Lock attempts for the swap (each under a 2 s lock_timeout, with growing
/// pauses: about 16 s in all).
pub(crate) const SWAP_ATTEMPTS: u32 = 5;

/// The definition a rebuild creates: the original's, with IVFFlat `lists`
/// recomputed from the row count unless a policy pins it; and
/// `(old lists, new lists, rows)` when recomputed.
pub(crate) fn rebuilt_definition(
    f: &IndexFacts,
    am: Am,
) -> (plan::Definition, Option<(i32, i32, i64)>) {
    let mut def = f.definition.clone();
    if am != Am::IvfFlat || crate::healing::policy::policy(f.oid).pin_lists {
        return (def, None);
    }
    let rows = catalog::row_count(&f.table);
    let new = plan::ivfflat_lists(rows);
    // pgvector's default when the index was built without the option.
    let old = def
        .option("lists")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    if new != old {
        def.set_option("lists", &new.to_string());
    }
    (def, Some((old, new, rows)))
}

/// Comment and statistics targets of the original, onto the shadow.
pub(crate) fn copy_attributes(f: &IndexFacts, shadow: &str) {
    let target = format!("{}.{}", q(&f.schema), q(shadow));
    if let Some(c) = &f.comment {
        let sql = Spi::get_one_with_args::<String>(
            "SELECT format('COMMENT ON INDEX %s IS %L', $1::text, $2::text)",
            &[target.clone().into(), c.clone().into()],
        )
        .ok()
        .flatten();
        if let Some(sql) = sql {
            let _ = Spi::run(&sql);
        }
    }
    for (col, value) in &f.stat_targets {
        let _ = Spi::run(&format!(
            "ALTER INDEX {target} ALTER COLUMN {col} SET STATISTICS {value}"
        ));
    }
}

/// The swap transaction: renames, the old index kept invalid (still
/// maintained by every write, unused by queries) when a backup is wanted,
/// and the journal, all committed together.
pub(crate) fn swap(
    row: &RepairRow,
    f: &IndexFacts,
    shadow: &str,
    backup: &str,
    keep: bool,
    s: &RepairSettings,
) {
    let schema = q(&f.schema);
    Spi::run("SET LOCAL lock_timeout = '2s'").expect("lock_timeout");
    Spi::run(&format!(
        "LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
        f.table
    ))
    .expect("lock");
    Spi::run(&format!(
        "ALTER INDEX {schema}.{} RENAME TO {}",
        q(&f.relname),
        q(backup)
    ))
    .expect("rename");
    Spi::run(&format!(
        "ALTER INDEX {schema}.{} RENAME TO {}",
        q(shadow),
        q(&f.relname)
    ))
    .expect("rename");
    set_valid(f.oid, false, f.table_oid);
    journal::advance(
        row.id,
        Status::Swapping,
        Status::Swapped,
        json!({"backup": backup}),
    );
    journal::merge(
        row.id,
        "backup",
        json!({"index": backup, "oid": f.oid.to_u32(), "kept": keep,
               "keep_minutes": if keep { json!(s.backup_retention_min) } else { Value::Null }}),
    );
}

/// Marks an index valid or not (as REINDEX CONCURRENTLY's swap does) and
/// makes every session replan the table.
pub(crate) fn set_valid(index: pg_sys::Oid, valid: bool, table: pg_sys::Oid) {
    Spi::run_with_args(
        "UPDATE pg_catalog.pg_index SET indisvalid = $2 WHERE indexrelid = $1",
        &[index.into(), valid.into()],
    )
    .expect("pg_index");
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table) };
}

/// After the swap: keep the backup (done), or drop it concurrently.
pub(crate) fn finish_swapped(id: i64, f: &IndexFacts, backup: &str, keep: bool) {
    if !keep {
        let _ = tx(|| journal::advance(id, Status::Swapped, Status::Retiring, json!({})));
        activity(&format!("dropping {backup} (DROP INDEX CONCURRENTLY)"));
        let sql = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
            q(&f.schema),
            q(backup)
        );
        if top_level(no_deadline(), &sql).is_err() {
            return; // stays 'retiring': the next run finishes the drop
        }
        let _ = tx(|| journal::merge(id, "backup", json!({"kept": false, "dropped_at": now()})));
    }
    let _ = tx(|| {
        // The issues found on the replaced index are about an index that
        // no longer serves queries.
        let _ = Spi::run_with_args(
            "UPDATE ruvector_healing.issues SET status = 'resolved', resolved_at = now()
              WHERE index_oid = $1 AND status = 'open'",
            &[f.oid.into()],
        );
        journal::finish(id, Status::Done, None)
    });
}

pub(crate) fn now() -> Value {
    Spi::get_one::<String>("SELECT now()::text")
        .ok()
        .flatten()
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// Drops the shadow of a repair if it exists and is not the original.
/// Returns whether nothing of ours is left.
pub(crate) fn drop_shadow(row: &RepairRow, schema: &str) -> bool {
    let shadow = plan::shadow_name(&row.relname, row.id);
    let found = tx(|| catalog::index_named(schema, &shadow, row.table_oid))
        .ok()
        .flatten();
    match found {
        Some((oid, _)) if oid != row.index_oid => {
            activity(&format!("dropping {shadow} (DROP INDEX CONCURRENTLY)"));
            let sql = format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                q(schema),
                q(&shadow)
            );
            top_level(no_deadline(), &sql).is_ok()
        }
        _ => true,
    }
}

pub(crate) fn rollback_rebuild(row: &RepairRow) {
    let id = row.id;
    let schema = row.plan["schema"].as_str().unwrap_or("public").to_string();
    let backup_oid = pg_sys::Oid::from(row.backup["oid"].as_u64().unwrap_or(0) as u32);
    let new_oid = pg_sys::Oid::from(row.plan["shadow_oid"].as_u64().unwrap_or(0) as u32);
    let backup = row.backup["index"].as_str().unwrap_or("").to_string();
    let retired = plan::derived_name(&row.relname, &format!("_rvbad{id}"));
    activity(&format!("rolling back repair {id}"));
    let mut attempt = 0;
    let swapped = loop {
        let r = tx(|| {
            let now_new = catalog::index_named(&schema, &row.relname, row.table_oid);
            let now_backup = catalog::index_named(&schema, &backup, row.table_oid);
            match (now_new, now_backup) {
                (Some((n, _)), Some((b, _))) if n == new_oid && b == backup_oid => {}
                _ => return Err(
                    "the indexes are no longer the ones the repair left (renamed or dropped since)"
                        .to_string(),
                ),
            }
            Spi::run("SET LOCAL lock_timeout = '2s'").expect("lock_timeout");
            let table = Spi::get_one_with_args::<String>(
                "SELECT $1::oid::regclass::text",
                &[row.table_oid.into()],
            )
            .ok()
            .flatten()
            .expect("table");
            Spi::run(&format!(
                "LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE"
            ))
            .expect("lock");
            let s = q(&schema);
            Spi::run(&format!(
                "ALTER INDEX {s}.{} RENAME TO {}",
                q(&row.relname),
                q(&retired)
            ))
            .expect("rename");
            Spi::run(&format!(
                "ALTER INDEX {s}.{} RENAME TO {}",
                q(&backup),
                q(&row.relname)
            ))
            .expect("rename");
            set_valid(new_oid, false, row.table_oid);
            set_valid(backup_oid, true, row.table_oid);
            journal::merge(
                id,
                "backup",
                json!({"kept": false, "restored": true, "rolled_back_at": now(),
                "drop_pending": {"index": retired, "oid": new_oid.to_u32()}}),
            );
            journal::finish(id, Status::RolledBack, None);
            Ok(())
        });
        match r {
            Ok(Ok(())) => break true,
            Ok(Err(why)) => {
                let _ = tx(|| {
                    journal::finish(id, Status::Done, None);
                    journal::step(id, "rollback_refused", json!({"error": why}));
                });
                break false;
            }
            Err(e) if e.lock_unavailable() && attempt < SWAP_ATTEMPTS => {
                nap(500 << attempt);
                attempt += 1;
            }
            Err(e) => {
                let _ = tx(|| {
                    journal::finish(id, Status::Done, None);
                    journal::step(id, "rollback_failed", json!({"error": e.message}));
                });
                break false;
            }
        }
    };
    if swapped {
        counters::record(Outcome::RolledBack);
        drop_pending(id, &schema, &retired, new_oid, row.table_oid);
    }
}

/// Drops an index a rollback retired, if it is still the one recorded.
pub(crate) fn drop_pending(
    id: i64,
    schema: &str,
    name: &str,
    oid: pg_sys::Oid,
    table: pg_sys::Oid,
) {
    let found = tx(|| catalog::index_named(schema, name, table))
        .ok()
        .flatten();
    if found.is_some_and(|(o, _)| o == oid) {
        activity(&format!("dropping {name} (DROP INDEX CONCURRENTLY)"));
        let sql = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
            q(schema),
            q(name)
        );
        if top_level(no_deadline(), &sql).is_err() {
            return;
        }
    }
    let _ = tx(|| {
        Spi::run_with_args(
            "UPDATE ruvector_healing.repairs SET backup = (backup - 'drop_pending') || jsonb_build_object('dropped', backup->'drop_pending')
              WHERE repair_id = $1",
            &[id.into()],
        )
    });
}
