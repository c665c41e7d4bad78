//! Recovery of repairs whose worker is gone, and retirement of kept
//! backups and leftovers.

use pgrx::pg_sys;
use pgrx::spi::Spi;
use serde_json::json;

use super::catalog::{self};
use super::exec::top_level;
use super::journal::{self, REPAIR_KEY};
use super::plan::{self, Recovery, Status};
use super::rebuild::{drop_shadow, finish_swapped};
use super::worker::*;

// ------------------------------------------------------------------ recovery

/// Finishes or rolls back every repair of this database whose worker is
/// gone: only indexes the journal names as created by that repair are
/// dropped.
pub fn recover_orphans(except: i64) {
    let orphans = tx(|| journal::orphans(except)).unwrap_or_default();
    for id in orphans {
        // Own the repair while recovering it, so nobody else does.
        let mine = tx(|| {
            Spi::get_one_with_args::<bool>(
                "SELECT pg_try_advisory_lock($1, $2::int4)",
                &[REPAIR_KEY.into(), (id as i32).into()],
            )
            .ok()
            .flatten()
            .unwrap_or(false)
        })
        .unwrap_or(false);
        if !mine {
            continue;
        }
        activity(&format!("recovering repair {id}"));
        recover_one(id);
        let _ = tx(|| {
            Spi::run_with_args(
                "SELECT pg_advisory_unlock($1, $2::int4)",
                &[REPAIR_KEY.into(), (id as i32).into()],
            )
        });
    }
}

pub(crate) fn recover_one(id: i64) {
    let Some(row) = tx(|| journal::load(id)).ok().flatten() else {
        return;
    };
    let schema = row.plan["schema"].as_str().unwrap_or("").to_string();
    let note = |what: &str| {
        format!(
            "interrupted while {} (the worker or the server stopped); {what}",
            row.status.name()
        )
    };
    let _ = tx(|| journal::step(id, "recovery", json!({"found": row.status.name()})));
    match plan::recovery(row.status) {
        None => {}
        Some(Recovery::NothingToUndo) => {
            finish(id, Status::Failed, Some(&note("nothing had been built")));
        }
        // A shadow that could not be dropped now is left for the next run.
        Some(Recovery::DropShadow) if schema.is_empty() || drop_shadow(&row, &schema) => {
            finish(
                id,
                Status::RolledBack,
                Some(&note("the new index was dropped and the original kept")),
            );
        }
        Some(Recovery::DropShadow) => {}
        Some(Recovery::Finish) => {
            let _ = tx(|| {
                journal::merge(
                    id,
                    "after",
                    json!({"recovery": note("the swap had committed; the next run finished the repair")}),
                )
            });
            let keep = row.backup["kept"].as_bool().unwrap_or(false);
            let backup = row.backup["index"].as_str().unwrap_or("").to_string();
            let Some(f) = tx(|| catalog::facts(row.index_oid)).ok().flatten() else {
                return finish(
                    id,
                    Status::Done,
                    Some(&note("the replaced index is already gone")),
                );
            };
            if keep {
                let _ = tx(|| journal::finish(id, Status::Done, None));
            } else {
                if row.status == Status::Retiring {
                    let _ = tx(|| {
                        journal::advance(
                            id,
                            Status::Retiring,
                            Status::Swapped,
                            json!({"recovery": true}),
                        )
                    });
                }
                finish_swapped(id, &f, &backup, false);
            }
        }
        Some(Recovery::RollbackNotApplied) => {
            let _ = tx(|| {
                journal::finish(id, Status::Done, None);
                journal::step(
                    id,
                    "rollback_interrupted",
                    json!({"note": "the rollback had not swapped; the repair stands"}),
                );
            });
        }
    }
}

/// Drops backups kept longer than their retention and indexes a rollback
/// left to drop.
pub fn retire_backups() {
    let due: Vec<(i64, String, String, u32, pg_sys::Oid)> = tx(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT repair_id, plan->>'schema', coalesce(backup->>'index', backup->'drop_pending'->>'index'),
                        coalesce(backup->>'oid', backup->'drop_pending'->>'oid')::int8, table_oid
                   FROM ruvector_healing.repairs
                  WHERE status IN ('done', 'rolled_back')
                    AND ((backup->>'kept')::bool AND strategy = 'rebuild'
                          AND finished_at + make_interval(mins => (backup->>'keep_minutes')::int) < now())
                     OR backup ? 'drop_pending'",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some((
                        r.get::<i64>(1).ok()??,
                        r.get::<String>(2).ok()??,
                        r.get::<String>(3).ok()??,
                        r.get::<i64>(4).ok()?? as u32,
                        r.get::<pg_sys::Oid>(5).ok()??,
                    ))
                })
                .collect()
            })
            .unwrap_or_default()
        })
    })
    .unwrap_or_default();
    for (id, schema, name, oid, table) in due {
        let found = tx(|| catalog::index_named(&schema, &name, table))
            .ok()
            .flatten();
        if found.is_some_and(|(o, _)| o == pg_sys::Oid::from(oid)) {
            activity(&format!(
                "dropping {name}, kept for rollback (DROP INDEX CONCURRENTLY)"
            ));
            let sql = format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                q(&schema),
                q(&name)
            );
            if top_level(no_deadline(), &sql).is_err() {
                continue;
            }
        }
        let _ = tx(|| {
            Spi::run_with_args(
                "UPDATE ruvector_healing.repairs
                    SET backup = (backup - 'drop_pending') || jsonb_build_object('kept', false, 'dropped_at', now())
                  WHERE repair_id = $1",
                &[id.into()],
            )
        });
    }
    let _ = tx(|| journal::purge(crate::config::HISTORY_RETENTION_DAYS.get()));
}
