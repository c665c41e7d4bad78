//! The tune_search strategy: measure, apply a tuned search setting at the
//! allowed scope, remember the previous value; and its rollback.

use pgrx::spi::Spi;
use pgrx::JsonB;
use serde_json::json;

use super::catalog::IndexFacts;
use super::exec::{in_transaction, Deadline, StepError};
use super::journal::{self, RepairRow};
use super::plan::Status;
use super::settings::{parse_scope, RepairSettings, Scope};
use super::step::*;

// ------------------------------------------------------------------ tune

pub(crate) fn tune(
    row: &RepairRow,
    s: &RepairSettings,
    f: &IndexFacts,
    deadline: Deadline,
) -> Result<(), Failure> {
    let id = row.id;
    let fail = |m: String| Failure {
        during: "tuning the search setting",
        error: StepError::new(m),
        drop_shadow: false,
    };
    let scope = parse_scope(&s.tuning_scope).map_err(fail)?;
    let role = match &scope {
        Scope::Off => return Err(fail("ruvector.dag_healing_tuning_scope is off".into())),
        Scope::Database | Scope::Index => None,
        Scope::Role(r) => Some(r.clone()),
    };
    let _ = tx(|| {
        journal::advance(
            id,
            Status::Planned,
            Status::Building,
            json!({"scope": s.tuning_scope}),
        )
    });
    activity(&format!("tuning the search setting of {}", f.qualified));
    let report = flatten(in_transaction(deadline, || {
        let sql = format!(
            "SELECT {}.ruvector_dag_tune_search($1::oid::regclass, $2, 10, 100)",
            super::catalog::ext_schema()
        );
        Spi::get_one_with_args::<JsonB>(&sql, &[f.oid.into(), s.target_recall.into()])
            .ok()
            .flatten()
            .map(|j| j.0)
            .ok_or_else(|| StepError::new("tuning returned nothing"))
    }))
    .map_err(failure("tuning the search setting", false))?;
    // For a low-recall issue, above the value production runs at: one at
    // or under it was found short by the measurement that opened the issue.
    // (A request without one may lower the value: the smallest that reaches
    // the target.)
    let low_recall = row.plan["issue_kind"].as_str() == Some("low_recall");
    let am = f
        .access_method()
        .unwrap_or(crate::inspect::relation::Am::Hnsw);
    // (The worker is between transactions here.)
    let current = tx(|| crate::healing::diagnosis::production_setting(f.oid, am).1)
        .map_err(failure("reading the production setting", false))?;
    let curve: Vec<(u32, f64)> = report["curve"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["value"].as_u64()? as u32, p["recall"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let best = report["recommended_value"].as_u64().map(|v| v as u32);
    let recommended = if low_recall {
        crate::diagnose::cause::recommended(&curve, best, current, s.target_recall)
    } else {
        best.map(|b| b as i32)
    };
    let Some(value) = recommended.map(|v| v as u64) else {
        let _ = tx(|| journal::merge(id, "after", json!({"tuning": report})));
        return Err(fail(format!(
            "no value reaches recall {}: {}",
            s.target_recall,
            report["advice"].as_str().unwrap_or("")
        )));
    };
    let setting = report["setting"]
        .as_str()
        .unwrap_or("hnsw.ef_search")
        .to_string();
    in_transaction(deadline, || {
        journal::advance(id, Status::Building, Status::Swapping, json!({}));
        let previous = if scope == Scope::Index {
            // The index's own value, applied by the executor hooks.
            let previous =
                crate::adaptive::stored::value_of(&f.schema, &f.relname).map(|v| v.to_string());
            crate::adaptive::stored::store(&f.schema, &f.relname, Some(value as i32));
            previous
        } else {
            let previous = current_override(&setting, role.as_deref());
            apply_override(&setting, Some(&value.to_string()), role.as_deref());
            previous
        };
        journal::merge(
            id,
            "backup",
            json!({"setting": setting, "scope": s.tuning_scope,
            "role": role, "previous": previous, "kept": true,
            "schema": f.schema, "index": f.relname}),
        );
        journal::merge(id, "after", json!({"tuning": report, "applied": value}));
        journal::finish(id, Status::Done, None);
    })
    .map_err(failure("applying the tuned setting", false))
}

/// The value of `setting` stored for this database (and role), if any.
pub(crate) fn current_override(setting: &str, role: Option<&str>) -> Option<String> {
    crate::sql::get_one::<String>(
        "SELECT split_part(c, '=', 2) FROM pg_db_role_setting s, unnest(s.setconfig) c
          WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND s.setrole = coalesce((SELECT oid FROM pg_roles WHERE rolname = $2), 0)
            AND split_part(c, '=', 1) = $1",
        &[setting.into(), role.into()],
    )
    .ok()
    .flatten()
}

/// `ALTER DATABASE|ROLE ... SET setting = value` (or `RESET` for None).
pub(crate) fn apply_override(setting: &str, value: Option<&str>, role: Option<&str>) {
    let db = crate::sql::get_one::<String>("SELECT quote_ident(current_database())", &[])
        .ok()
        .flatten()
        .expect("database name");
    let target = match role {
        Some(r) => format!("ROLE {} IN DATABASE {db}", q(r)),
        None => format!("DATABASE {db}"),
    };
    // `setting` is one of the two names recall tuning returns.
    assert!(setting == "hnsw.ef_search" || setting == "ivfflat.probes");
    let sql = match value {
        Some(v) => {
            let v: i64 = v.parse().expect("numeric setting");
            format!("ALTER {target} SET {setting} = {v}")
        }
        None => format!("ALTER {target} RESET {setting}"),
    };
    Spi::run(&sql).expect("apply setting");
}
