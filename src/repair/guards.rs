//! Guards checked by a repair worker before it starts: each one that
//! stops a repair leaves a `refused` row with the reason.

use pgrx::pg_sys;
use pgrx::spi::Spi;

use super::catalog::{self, IndexFacts};
use super::journal::RepairRow;
use super::plan::{self, Status, Strategy};
use super::registry::{self, Refusal};
use super::settings::RepairSettings;
use super::step::*;

// ------------------------------------------------------------------ guards

/// Checks the guards that depend on the moment the repair starts. `Err`
/// is the refusal reason. On success the repair holds its table's slot in
/// the registry (which also caps the repairs running at once).
pub(crate) fn guards(
    row: &RepairRow,
    s: &RepairSettings,
    facts: &IndexFacts,
) -> Result<(), String> {
    if !s.enabled || !crate::config::ENABLED.get() {
        return Err("ruvector.dag_healing_enabled is off".into());
    }
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err("the server is a standby (in recovery): repairs run on the primary".into());
    }
    // One repair per table, at most max_concurrent_repairs at once: the
    // table's slot in the registry, released when this worker exits.
    let max = crate::config::MAX_CONCURRENT_REPAIRS.get().max(1) as usize;
    match registry::claim_table(row.id, row.table_oid, max) {
        Ok(()) => {}
        Err(Refusal::TableBusy(e)) => {
            return Err(format!(
                "repair {} of table {} is running",
                e.repair_id, facts.table
            ))
        }
        Err(Refusal::TooMany(n)) => {
            return Err(format!(
                "{n} repairs are running (ruvector.dag_healing_max_concurrent_repairs)"
            ))
        }
        Err(_) => return Err("the repair registry has no free entry".into()),
    }
    let history = tx(|| recent(row)).map_err(|e| e.message)?;
    if let Some(age) = history.last_success_age_s {
        if age < s.cooldown_s as f64 {
            return Err(format!(
                "cooldown: index {} was repaired {:.0} s ago (ruvector.dag_healing_cooldown_s = {})",
                facts.qualified, age, s.cooldown_s
            ));
        }
    }
    if plan::breaker_open(&history.outcomes, s.max_attempts as usize, 86_400.0) {
        return Err(format!(
            "circuit breaker: the last {} repairs of {} failed; repairs of this index pause for a day after the last failure",
            s.max_attempts, facts.qualified
        ));
    }
    if history.issue_attempts >= s.max_attempts as i64 {
        return Err(format!(
            "issue {} already had {} repair attempts (ruvector.dag_healing_max_attempts)",
            row.issue_id.unwrap_or(0),
            history.issue_attempts
        ));
    }
    if row.strategy == Strategy::Rebuild {
        // The size the new options need (raising m grows every element).
        let needed = plan::disk_needed(estimated_bytes(row, facts));
        match catalog::free_bytes(facts.tablespace_oid) {
            Some(free) if free < needed => {
                return Err(format!(
                    "not enough free disk on the index's tablespace: {free} bytes free, {needed} needed (twice the new index)"
                ))
            }
            None => return Err("cannot read the free space of the index's tablespace".into()),
            _ => {}
        }
    }
    Ok(())
}

pub(crate) struct Recent {
    last_success_age_s: Option<f64>,
    /// Finished repairs of the index, newest first, with their age.
    outcomes: Vec<(Status, f64)>,
    issue_attempts: i64,
}

pub(crate) fn recent(row: &RepairRow) -> Recent {
    let outcomes: Vec<(Status, f64)> = Spi::connect(|c| {
        c.select(
            "SELECT status, extract(epoch FROM now() - finished_at)::float8
               FROM ruvector_healing.repairs
              WHERE table_oid = $1 AND relname = $2 AND repair_id <> $3
                AND status IN ('done', 'failed', 'rolled_back') AND NOT dry_run
              ORDER BY finished_at DESC LIMIT 20",
            None,
            &[
                row.table_oid.into(),
                row.relname.clone().into(),
                row.id.into(),
            ],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some((
                    Status::parse(&r.get::<String>(1).ok()??)?,
                    r.get::<f64>(2).ok()??,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
    });
    let issue_attempts = match row.issue_id {
        Some(issue) => crate::sql::get_one::<i64>(
            "SELECT count(*) FROM ruvector_healing.repairs
              WHERE issue_id = $1 AND repair_id <> $2 AND status IN ('done','failed','rolled_back')",
            &[issue.into(), row.id.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(0),
        None => 0,
    };
    Recent {
        last_success_age_s: outcomes
            .iter()
            .find(|(s, _)| *s == Status::Done)
            .map(|(_, a)| *a),
        outcomes,
        issue_attempts,
    }
}

/// The size the rebuilt index is expected to need: the request's estimate
/// for its options, else the index's size.
pub(crate) fn estimated_bytes(row: &RepairRow, facts: &IndexFacts) -> u64 {
    row.plan["preview"]["estimated_bytes"]
        .as_u64()
        .unwrap_or(facts.bytes.max(0) as u64)
}
