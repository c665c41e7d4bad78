//! The settings a repair runs under, captured from the requesting session
//! when it is requested (so `SET ruvector.dag_healing_rollback_enabled =
//! off` before a request applies to that repair) and stored in the
//! journal's plan. Only numbers, booleans and a validated scope: nothing
//! here becomes SQL text unquoted.

use serde::{Deserialize, Serialize};

use crate::config;
use crate::recall::scan::setting;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepairSettings {
    pub enabled: bool,
    pub rollback_enabled: bool,
    pub timeout_s: i32,
    pub min_recall: f64,
    pub cooldown_s: i32,
    pub max_attempts: i32,
    pub backup_retention_min: i32,
    pub history_retention_days: i32,
    pub target_recall: f64,
    pub tuning_scope: String,
    /// The requester's `hnsw.ef_search` / `ivfflat.probes`: validation
    /// compares old and new indexes at these.
    pub ef_search: Option<i32>,
    pub probes: Option<i32>,
    /// Build settings the worker adopts, so a requester can give a
    /// rebuild more memory or parallel workers as for their own builds.
    pub maintenance_work_mem: Option<String>,
    pub max_parallel_maintenance_workers: Option<String>,
    /// Crash tests: the step to pause at (`ruvector.dag_healing_test_pause_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_at: Option<String>,
}

impl RepairSettings {
    pub fn capture() -> RepairSettings {
        let int = |n: &str| setting(n).and_then(|v| v.parse::<i32>().ok());
        RepairSettings {
            enabled: config::ENABLED.get(),
            rollback_enabled: config::ROLLBACK_ENABLED.get(),
            timeout_s: config::REPAIR_TIMEOUT_S.get(),
            min_recall: config::MIN_RECALL.get(),
            cooldown_s: config::COOLDOWN_S.get(),
            max_attempts: config::MAX_ATTEMPTS.get(),
            backup_retention_min: config::BACKUP_RETENTION_MIN.get(),
            history_retention_days: config::HISTORY_RETENTION_DAYS.get(),
            target_recall: config::TARGET_RECALL.get(),
            tuning_scope: config::tuning_scope(),
            ef_search: int("hnsw.ef_search"),
            probes: int("ivfflat.probes"),
            maintenance_work_mem: setting("maintenance_work_mem"),
            max_parallel_maintenance_workers: setting("max_parallel_maintenance_workers"),
            pause_at: config::TEST_PAUSE_AT
                .get()
                .map(|c| c.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty()),
        }
    }
}

/// Where a tuned search setting is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Off,
    Database,
    Role(String),
}

pub fn parse_scope(s: &str) -> Result<Scope, String> {
    match s.trim() {
        "off" | "" => Ok(Scope::Off),
        "database" => Ok(Scope::Database),
        other => match other.strip_prefix("role:") {
            Some(r) if !r.trim().is_empty() => Ok(Scope::Role(r.trim().to_string())),
            _ => Err(format!(
                "ruvector.dag_healing_tuning_scope must be 'off', 'database' or 'role:<name>', got '{other}'"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(parse_scope("off"), Ok(Scope::Off));
        assert_eq!(parse_scope("database"), Ok(Scope::Database));
        assert_eq!(parse_scope("role: app"), Ok(Scope::Role("app".into())));
        assert!(parse_scope("role:").is_err());
        assert!(parse_scope("cluster").is_err());
    }
}
