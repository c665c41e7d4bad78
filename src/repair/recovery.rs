//! Recovery of repairs whose worker is gone, and retirement of kept
//! backups and leftovers.

use pgrx::pg_sys;
use pgrx::spi::Spi;
use serde_json::json;

use super::catalog::{self};
use super::ddl::{self, Dropped};
use super::exec::StepError;
use super::journal;
use super::plan::{self, Recovery, Status};
use super::rebuild::{drop_pending, drop_shadow, finish_swapped};
use super::registry;
use super::step::*;

// ------------------------------------------------------------------ recovery

/// Finishes or rolls back every repair of this database whose worker is
/// gone: only indexes the journal names as created by that repair are
/// dropped.
pub fn recover_orphans(except: i64) {
    let orphans = tx(|| journal::orphans(except)).unwrap_or_default();
    for id in orphans {
        // Own the repair while recovering it, so nobody else does.
        if registry::enter(id).is_err() {
            continue;
        }
        activity(&format!("recovering repair {id}"));
        recover_one(id);
        registry::leave(id);
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
                finish_swapped(id, &f, false);
            }
        }
        Some(Recovery::RollbackNotApplied) => {
            let _ = tx(|| {
                journal::finish(
                    id,
                    Status::RollbackFailed,
                    Some(&note("the rollback had not swapped the indexes back; the repair stands and its backup is kept")),
                )
            });
        }
    }
}

/// Drops backups kept longer than their retention, and indexes a rollback
/// left to drop; journals what became of each (dropped, or already gone).
pub fn retire_backups() {
    type Due = (i64, pg_sys::Oid, String, bool);
    let due: Vec<Due> = tx(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT repair_id, table_oid, relname, backup ? 'drop_pending'
                   FROM ruvector_healing.repairs
                  WHERE (status IN ('done', 'rollback_failed') AND strategy = 'rebuild'
                         AND coalesce((backup->>'kept')::bool, false)
                         AND finished_at + make_interval(mins => (backup->>'keep_minutes')::int) < now())
                     OR backup ? 'drop_pending'
                  ORDER BY repair_id",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some((
                        r.get::<i64>(1).ok()??,
                        r.get::<pg_sys::Oid>(2).ok()??,
                        r.get::<String>(3).ok()??,
                        r.get::<bool>(4).ok()??,
                    ))
                })
                .collect()
            })
        })
    })
    .and_then(|r| r.map_err(|e| StepError::new(e.to_string())))
    .unwrap_or_else(|e| {
        pgrx::log!("ruvector_healing: cannot list the backups to retire: {e}");
        Vec::new()
    });
    for (id, table, relname, pending) in due {
        let Some(row) = tx(|| journal::load(id)).ok().flatten() else {
            continue;
        };
        if pending {
            let oid = row.backup["drop_pending"]["oid"].as_u64().unwrap_or(0) as u32;
            drop_pending(id, pg_sys::Oid::from(oid), table, &relname);
            continue;
        }
        let oid = pg_sys::Oid::from(row.backup["oid"].as_u64().unwrap_or(0) as u32);
        activity(&format!(
            "dropping the index repair {id} kept for rollback (DROP INDEX CONCURRENTLY)"
        ));
        let dropped = match ddl::drop(oid, table, &relname, id, || {
            pause_row(&row, "during_retire")
        }) {
            Dropped::Dropped => true,
            Dropped::Gone => false,
            Dropped::Failed(e) => {
                let _ = tx(|| journal::step(id, "drop_failed", json!({"error": e})));
                continue;
            }
        };
        let _ = tx(|| {
            let what = if dropped {
                json!({"kept": false, "dropped_at": now_json()})
            } else {
                json!({"kept": false, "gone_at": now_json(), "note": "not found when its keep time ended"})
            };
            journal::merge(id, "backup", what)
        });
    }
    let _ = tx(|| journal::purge(crate::config::HISTORY_RETENTION_DAYS.get()));
}
