//! The rebuild strategy: shadow build, validation, swap, keep or retire the
//! old index; and its rollback.

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::catalog::{self, IndexFacts};
use super::counters::{self, Outcome};
use super::ddl::{self, Dropped};
use super::exec::{in_transaction, Deadline, StepError};
use super::journal::{self, RepairRow};
use super::plan::{self, Status};
use super::settings::RepairSettings;
use super::step::*;
use crate::diagnose::options::BuildOptions;
use crate::diagnose::IssueKind;
use crate::inspect::relation::Am;

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
    // At most one kept backup per index: each is maintained by every
    // write, so an earlier repair's backup goes before this one builds.
    retire_earlier_backups(f, id);
    activity("measuring the index before the rebuild");
    // 1. Plan: definition from the catalog, lists from the row count.
    let (sql, lists) = flatten(in_transaction(deadline, || {
        if let Some(why) = f.unsafe_to_rebuild() {
            return Err(StepError::new(why));
        }
        let options: Option<BuildOptions> =
            serde_json::from_value(row.plan["options"].clone()).ok();
        let (def, planned) = rebuilt_definition(f, am, options.as_ref());
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
    // 2. Build the shadow beside the original; from here on the journal
    // names it by OID.
    activity(&format!("building {shadow} (CREATE INDEX CONCURRENTLY)"));
    let new_oid = ddl::create(deadline, &sql, &f.schema, &shadow, f.table_oid)
        .map_err(failure("building the new index", true))?;
    let _ = tx(|| journal::merge(id, "plan", json!({"shadow_oid": new_oid.to_u32()})));

    pause(id, s, "after_build");
    // 3. Validate it against the original.
    let _ = tx(|| journal::advance(id, Status::Building, Status::Validating, json!({})));
    pause(id, s, "during_validation");
    activity(&format!("validating {shadow}"));
    let verdict = flatten(in_transaction(deadline, || {
        let Some(valid) = ddl::current(new_oid).map(|i| i.valid) else {
            return Err(StepError::new("the new index is missing after its build"));
        };
        let (after, new_issues) = health(new_oid);
        let before = crate::sql::get_one::<JsonB>(
            "SELECT before FROM ruvector_healing.repairs WHERE repair_id = $1",
            &[id.into()],
        )
        .ok()
        .flatten()
        .map(|j| j.0)
        .unwrap_or_default();
        let old_issues = issue_names(&before["issues"]);
        // Both indexes at the production setting: what the database's
        // sessions will run the new index at.
        let (_, value) = crate::healing::diagnosis::production_setting(f.oid, am);
        let paired = crate::recall::measure::paired_recall(
            f.oid,
            new_oid,
            Some(value.to_string()),
            Some(value.to_string()),
            VALIDATION_SAMPLE,
            VALIDATION_K,
        );
        let tolerance = plan::recall_tolerance(paired.as_ref().map_or(0.0, |p| p.diff_se));
        let mut verdict = plan::validate(
            valid,
            &old_issues,
            &new_issues,
            paired.as_ref().map(|p| p.old),
            paired.as_ref().map(|p| p.new),
            tolerance,
            s.min_recall,
        );
        // The issue the repair was for must be gone or clearly reduced.
        if let Some(kind) = row.plan["issue_kind"].as_str().and_then(IssueKind::parse) {
            let t = crate::healing::policy::policy(f.oid).thresholds();
            if let Some(why) = plan::not_fixed(
                kind,
                &before["health"],
                &after,
                &t,
                paired.as_ref().map(|p| p.old),
                paired.as_ref().map(|p| p.new),
                s.target_recall,
                tolerance,
            ) {
                verdict.passed = false;
                verdict.reasons.push(format!("did not fix {}: {why}", kind.name()));
            }
        }
        // The new index's invariants, and every visible row in it.
        let verified = crate::verify::server::verify_index(
            &crate::inspect::relation::resolve(Some(new_oid)),
            true,
        );
        if verified.violation_count > 0 {
            verdict.passed = false;
            let first = &verified.violations[0];
            verdict.reasons.push(format!(
                "the new index does not verify: {} violation(s), the first {} at block {:?} offset {:?}: {}",
                verified.violation_count, first.kind, first.block, first.offset, first.detail
            ));
        }
        // New lists: the probes production would need for the old recall.
        let probes_for_same_recall = match (lists, &paired) {
            (Some((old, new)), Some(p)) if old != new && am == Am::IvfFlat => {
                crate::recall::measure::tune_index(new_oid, p.old, VALIDATION_K, VALIDATION_SAMPLE, "the repair validation")
                    .map(|t| json!({"value": t.tuned.best, "for_recall": p.old}))
            }
            _ => None,
        };
        journal::merge(
            id,
            "after",
            json!({"health": after, "issues": new_issues, "recall": paired, "recall_tolerance": tolerance,
                   "validation": verdict, "probes_for_same_recall": probes_for_same_recall,
                   "verification": {"violations": verified.violation_count,
                                    "first": &verified.violations[..verified.violations.len().min(5)],
                                    "heap_rows_checked": verified.heap_rows_checked,
                                    "misplaced_share": verified.misplaced_share}}),
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
        let r = flatten(in_transaction(deadline, || {
            swap(row, f, new_oid, &backup, keep, s).map_err(StepError::new)
        }));
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
    if am == Am::IvfFlat {
        let _ = tx(|| keep_probes(id, f, s));
    }
    pause(id, s, "after_swap");
    // 5. Keep the old index for rollback, or retire it now.
    finish_swapped(id, f, keep);
    Ok(())
}

/// After new `lists`: the probes that reach the old recall become the
/// index's own value, where queries use such values (tuning scope
/// `index`, adaptive search on); the previous value is kept for a
/// rollback.
fn keep_probes(id: i64, f: &IndexFacts, s: &RepairSettings) {
    use super::settings::{parse_scope, Scope};
    if parse_scope(&s.tuning_scope) != Ok(Scope::Index) || !crate::config::ADAPTIVE_SEARCH.get() {
        return;
    }
    let value = crate::sql::get_one::<i64>(
        "SELECT (after->'probes_for_same_recall'->>'value')::int8 FROM ruvector_healing.repairs
          WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten();
    if let Some(v) = value {
        let previous = crate::adaptive::stored::value_of(&f.schema, &f.relname);
        crate::adaptive::stored::store(&f.schema, &f.relname, Some(v as i32));
        journal::merge(
            id,
            "backup",
            json!({"search_value": {"set": v, "previous": previous}}),
        );
        journal::merge(id, "after", json!({"search_value": v}));
    }
}

/// Recall measured by validation: 100 sampled rows, recall@10.
pub const VALIDATION_SAMPLE: i32 = 100;
pub const VALIDATION_K: i32 = 10;
/// Lock attempts for the swap (each under a 2 s lock_timeout, with growing
/// pauses: about 16 s in all).
pub(crate) const SWAP_ATTEMPTS: u32 = 5;

/// The definition a rebuild creates: the original's, with the build
/// `options` the diagnosis (or a person) chose; IVFFlat `lists` otherwise
/// recomputed from the row count unless a policy pins it. Returns
/// `(old lists, new lists, rows)` when `lists` was decided here.
pub(crate) fn rebuilt_definition(
    f: &IndexFacts,
    am: Am,
    options: Option<&BuildOptions>,
) -> (plan::Definition, Option<(i32, i32, i64)>) {
    let mut def = f.definition.clone();
    if let Some(o) = options {
        for (k, v) in o.storage() {
            def.set_option(k, &v);
        }
    }
    let old = def
        .option("lists")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    if am != Am::IvfFlat || options.is_some_and(|o| o.lists.is_some()) {
        let chosen = options.and_then(|o| o.lists).map(|l| {
            let from = f
                .definition
                .option("lists")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            (from, l as i32, -1)
        });
        return (def, chosen);
    }
    if crate::healing::policy::policy(f.oid).pin_lists {
        return (def, None);
    }
    let rows = catalog::row_count(&f.table);
    let new = plan::ivfflat_lists(rows);
    // pgvector's default when the index was built without the option.
    if new != old {
        def.set_option("lists", &new.to_string());
    }
    (def, Some((old, new, rows)))
}

/// Drops the backups earlier repairs of this index (by name) still keep,
/// and journals it on each.
fn retire_earlier_backups(f: &IndexFacts, id: i64) {
    let kept: Vec<(i64, pg_sys::Oid)> = tx(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT repair_id, (backup->>'oid')::int8 FROM ruvector_healing.repairs
                  WHERE table_oid = $1 AND relname = $2 AND repair_id <> $3 AND strategy = 'rebuild'
                    AND coalesce((backup->>'kept')::bool, false)",
                None,
                &[f.table_oid.into(), f.relname.clone().into(), id.into()],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some((
                        r.get::<i64>(1).ok()??,
                        pg_sys::Oid::from(r.get::<i64>(2).ok()?? as u32),
                    ))
                })
                .collect()
            })
            .unwrap_or_default()
        })
    })
    .unwrap_or_default();
    for (earlier, oid) in kept {
        activity(&format!(
            "dropping the backup repair {earlier} kept (DROP INDEX CONCURRENTLY)"
        ));
        let what = match ddl::drop(oid, f.table_oid, &f.relname, earlier, || {}) {
            Dropped::Dropped => "dropped_at",
            Dropped::Gone => "gone_at",
            Dropped::Failed(e) => {
                let _ = tx(|| journal::step(earlier, "drop_failed", json!({"error": e})));
                continue;
            }
        };
        let _ = tx(|| {
            journal::merge(
                earlier,
                "backup",
                json!({"kept": false, what: now_json(), "note": format!("replaced by the backup of repair {id}: one kept backup per index")}),
            )
        });
    }
}

/// Comment and statistics targets of the original, onto the shadow.
pub(crate) fn copy_attributes(f: &IndexFacts, shadow: &str) {
    let target = format!("{}.{}", q(&f.schema), q(shadow));
    if let Some(c) = &f.comment {
        let sql = crate::sql::get_one::<String>(
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

/// The swap transaction: renames by OID, the old index kept invalid
/// (still maintained by every write, unused by queries) when a backup is
/// wanted, and the journal, all committed together. `Err`: the indexes are
/// no longer the ones the repair planned with; nothing was changed.
pub(crate) fn swap(
    row: &RepairRow,
    f: &IndexFacts,
    new_oid: pg_sys::Oid,
    backup: &str,
    keep: bool,
    s: &RepairSettings,
) -> Result<(), String> {
    Spi::run("SET LOCAL lock_timeout = '2s'").expect("lock_timeout");
    Spi::run(&format!(
        "LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
        f.table
    ))
    .expect("lock");
    let shadow = plan::shadow_name(&f.relname, row.id);
    ddl::rename(f.oid, f.table_oid, &f.relname, backup)?;
    ddl::rename(new_oid, f.table_oid, &shadow, &f.relname)?;
    ddl::set_valid(f.oid, false, f.table_oid);
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
    // The statistics view counts the table's writes from this build.
    Spi::run_with_args(
        "SELECT ruvector_healing.count_writes_from($1, 'build')",
        &[new_oid.into()],
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// After the swap: keep the backup (done), or drop it concurrently.
pub(crate) fn finish_swapped(id: i64, f: &IndexFacts, keep: bool) {
    if !keep {
        let _ = tx(|| journal::advance(id, Status::Swapped, Status::Retiring, json!({})));
        activity(&format!("dropping the replaced index of {}", f.qualified));
        match ddl::drop(f.oid, f.table_oid, &f.relname, id, || {}) {
            Dropped::Dropped => {
                let _ = tx(|| {
                    journal::merge(
                        id,
                        "backup",
                        json!({"kept": false, "dropped_at": now_json()}),
                    )
                });
            }
            Dropped::Gone => {
                let _ = tx(|| {
                    journal::merge(
                        id,
                        "backup",
                        json!({"kept": false, "gone_at": now_json(), "note": "not found when it was to be dropped"}),
                    )
                });
            }
            // Stays 'retiring': the next run finishes the drop.
            Dropped::Failed(e) => {
                let _ = tx(|| journal::step(id, "drop_failed", json!({"error": e})));
                return;
            }
        }
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

/// Drops the shadow of a repair if it exists: the OID the journal
/// recorded, else (a crash before it was recorded) the index of the table
/// with the shadow's name, never the original. Returns whether nothing of
/// ours is left.
pub(crate) fn drop_shadow(row: &RepairRow, schema: &str) -> bool {
    let shadow = plan::shadow_name(&row.relname, row.id);
    let recorded = row.plan["shadow_oid"]
        .as_u64()
        .map(|o| pg_sys::Oid::from(o as u32));
    let oid = match recorded {
        Some(o) => Some(o),
        None => tx(|| ddl::named(schema, &shadow, row.table_oid))
            .ok()
            .flatten(),
    };
    match oid.filter(|o| *o != row.index_oid) {
        Some(oid) => {
            activity(&format!("dropping {shadow} (DROP INDEX CONCURRENTLY)"));
            !matches!(
                ddl::drop(oid, row.table_oid, &shadow, row.id, || {}),
                Dropped::Failed(_)
            )
        }
        None => true,
    }
}

/// Undoes a rebuild whose backup is kept: the backup gets the name and
/// validity back, the rebuilt index is renamed aside and dropped. Every
/// outcome is journaled: `rolled_back`, or `rollback_failed` with the
/// reason (the repair then stands, its backup still kept).
pub(crate) fn rollback_rebuild(row: &RepairRow) {
    let id = row.id;
    let backup_oid = pg_sys::Oid::from(row.backup["oid"].as_u64().unwrap_or(0) as u32);
    let new_oid = pg_sys::Oid::from(row.plan["shadow_oid"].as_u64().unwrap_or(0) as u32);
    let backup = row.backup["index"].as_str().unwrap_or("").to_string();
    let retired = ddl::drop_name(&row.relname, id);
    activity(&format!("rolling back repair {id}"));
    pause_row(row, "during_rollback");
    let mut attempt = 0;
    let swapped = loop {
        let r = tx(|| -> Result<(), String> {
            Spi::run("SET LOCAL lock_timeout = '2s'").expect("lock_timeout");
            let table = crate::sql::get_one::<String>(
                "SELECT $1::oid::regclass::text",
                &[row.table_oid.into()],
            )
            .ok()
            .flatten()
            .ok_or("the table no longer exists")?;
            Spi::run(&format!(
                "LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE"
            ))
            .expect("lock");
            ddl::rename(new_oid, row.table_oid, &row.relname, &retired)?;
            ddl::rename(backup_oid, row.table_oid, &backup, &row.relname)?;
            ddl::set_valid(new_oid, false, row.table_oid);
            ddl::set_valid(backup_oid, true, row.table_oid);
            // The probes stored for the new lists go with them.
            if let Some(sv) = row.backup.get("search_value") {
                let schema = crate::sql::get_one::<String>(
                    "SELECT schema_name FROM ruvector_healing.repairs WHERE repair_id = $1",
                    &[id.into()],
                )
                .ok()
                .flatten()
                .unwrap_or_default();
                crate::adaptive::stored::store(
                    &schema,
                    &row.relname,
                    sv["previous"].as_i64().map(|v| v as i32),
                );
            }
            journal::merge(
                id,
                "backup",
                json!({"kept": false, "restored": true, "rolled_back_at": now_json(),
                "drop_pending": {"index": retired, "oid": new_oid.to_u32()}}),
            );
            journal::finish(id, Status::RolledBack, None);
            Ok(())
        });
        match r {
            Ok(Ok(())) => break true,
            Ok(Err(why)) => {
                rollback_failed(id, &why);
                break false;
            }
            Err(e) if e.lock_unavailable() && attempt < SWAP_ATTEMPTS => {
                nap(500 << attempt);
                attempt += 1;
            }
            Err(e) => {
                rollback_failed(id, &e.message);
                break false;
            }
        }
    };
    if swapped {
        counters::record(Outcome::RolledBack);
        drop_pending(id, new_oid, row.table_oid, &row.relname);
    }
}

/// A rollback that did not happen: the repair stands.
fn rollback_failed(id: i64, why: &str) {
    let msg = format!("rollback not done: {why}; the rebuilt index stays in place");
    let _ = tx(|| {
        journal::finish(id, Status::RollbackFailed, Some(&msg));
    });
}

/// Drops an index a rollback retired; journals what became of it.
pub(crate) fn drop_pending(id: i64, oid: pg_sys::Oid, table: pg_sys::Oid, base: &str) {
    activity(&format!(
        "dropping the index repair {id} replaced (DROP INDEX CONCURRENTLY)"
    ));
    let outcome = match ddl::drop(oid, table, base, id, || {}) {
        Dropped::Dropped => "dropped",
        Dropped::Gone => "gone",
        Dropped::Failed(e) => {
            let _ = tx(|| journal::step(id, "drop_failed", json!({"error": e})));
            return;
        }
    };
    let _ = tx(|| {
        Spi::run_with_args(
            "UPDATE ruvector_healing.repairs
                SET backup = (backup - 'drop_pending')
                             || jsonb_build_object($2, backup->'drop_pending', $2 || '_at', now())
              WHERE repair_id = $1",
            &[id.into(), outcome.into()],
        )
    });
}
