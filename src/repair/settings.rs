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
    #[cfg(test)]
    pub fn capture_for_tests() -> RepairSettings {
        RepairSettings {
            enabled: true,
            rollback_enabled: true,
            timeout_s: 300,
            min_recall: 0.0,
            cooldown_s: 3600,
            max_attempts: 3,
            backup_retention_min: 60,
            history_retention_days: 30,
            target_recall: 0.95,
            tuning_scope: "database".into(),
            ef_search: Some(40),
            probes: Some(1),
            maintenance_work_mem: None,
            max_parallel_maintenance_workers: None,
            pause_at: None,
        }
    }

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

/// Bounds on what a requesting session passes to the worker, which runs as
/// the bootstrap superuser: the server's own values, read in the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub maintenance_work_mem_kb: i64,
    pub max_parallel_maintenance_workers: i32,
}

/// A requester may give a build more memory than the server's
/// `maintenance_work_mem`, up to this (1 GB), never more.
pub const MAX_REQUESTED_MEMORY_KB: i64 = 1024 * 1024;

/// A memory setting as `current_setting` prints it ("64MB", "1GB",
/// "65536kB", "1TB", bare kB), in kB.
pub fn memory_kb(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let k = match unit.trim() {
        "" | "kB" => 1,
        "MB" => 1024,
        "GB" => 1024 * 1024,
        "TB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(k)
}

impl RepairSettings {
    /// These settings within the bounds the README documents:
    /// `maintenance_work_mem` between 1 MB and the larger of the server's
    /// value and 1 GB; `max_parallel_maintenance_workers` between 0 and the
    /// server's value; `hnsw.ef_search` 1..1000 and `ivfflat.probes`
    /// 1..32768 (pgvector's ranges). Recall targets and timeouts are
    /// settings the server bounds itself.
    pub fn clamped(mut self, server: &Limits) -> RepairSettings {
        let mem_cap = server.maintenance_work_mem_kb.max(MAX_REQUESTED_MEMORY_KB);
        self.maintenance_work_mem = self
            .maintenance_work_mem
            .as_deref()
            .and_then(memory_kb)
            .map(|kb| format!("{}kB", kb.clamp(1024, mem_cap)));
        self.max_parallel_maintenance_workers = self
            .max_parallel_maintenance_workers
            .as_deref()
            .and_then(|v| v.trim().parse::<i32>().ok())
            .map(|n| {
                n.clamp(0, server.max_parallel_maintenance_workers.max(0))
                    .to_string()
            });
        self.ef_search = self.ef_search.map(|v| v.clamp(1, 1000));
        self.probes = self.probes.map(|v| v.clamp(1, 32_768));
        self.min_recall = self.min_recall.clamp(0.0, 1.0);
        self.target_recall = self.target_recall.clamp(0.0, 1.0);
        self
    }
}

/// Where a tuned search setting is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Off,
    Database,
    Role(String),
    /// The index's own value (`ruvector.dag_adaptive_search`).
    Index,
}

pub fn parse_scope(s: &str) -> Result<Scope, String> {
    match s.trim() {
        "off" | "" => Ok(Scope::Off),
        "database" => Ok(Scope::Database),
        "index" => Ok(Scope::Index),
        other => match other.strip_prefix("role:") {
            Some(r) if !r.trim().is_empty() => Ok(Scope::Role(r.trim().to_string())),
            _ => Err(format!(
                "ruvector.dag_healing_tuning_scope must be 'off', 'database', 'role:<name>' or 'index', got '{other}'"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_build_settings_are_clamped() {
        assert_eq!(memory_kb("64MB"), Some(65_536));
        assert_eq!(memory_kb("1GB"), Some(1_048_576));
        assert_eq!(memory_kb("65536kB"), Some(65_536));
        assert_eq!(memory_kb("2TB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(memory_kb("12"), Some(12));
        assert_eq!(memory_kb("lots"), None);
        let server = Limits {
            maintenance_work_mem_kb: 65_536,
            max_parallel_maintenance_workers: 2,
        };
        let mut s = RepairSettings::capture_for_tests();
        s.maintenance_work_mem = Some("2TB".into());
        s.max_parallel_maintenance_workers = Some("64".into());
        s.ef_search = Some(5000);
        s.probes = Some(0);
        let c = s.clone().clamped(&server);
        assert_eq!(c.maintenance_work_mem.as_deref(), Some("1048576kB"));
        assert_eq!(c.max_parallel_maintenance_workers.as_deref(), Some("2"));
        assert_eq!((c.ef_search, c.probes), (Some(1000), Some(1)));
        // A server configured above 1 GB keeps its own value as the cap.
        let big = Limits {
            maintenance_work_mem_kb: 4 * 1_048_576,
            ..server.clone()
        };
        assert_eq!(
            s.clone().clamped(&big).maintenance_work_mem.as_deref(),
            Some("4194304kB")
        );
        s.maintenance_work_mem = Some("128kB".into());
        s.max_parallel_maintenance_workers = Some("-3".into());
        let c = s.clamped(&server);
        assert_eq!(c.maintenance_work_mem.as_deref(), Some("1024kB"));
        assert_eq!(c.max_parallel_maintenance_workers.as_deref(), Some("0"));
    }

    #[test]
    fn scopes() {
        assert_eq!(parse_scope("off"), Ok(Scope::Off));
        assert_eq!(parse_scope("database"), Ok(Scope::Database));
        assert_eq!(parse_scope("index"), Ok(Scope::Index));
        assert_eq!(parse_scope("role: app"), Ok(Scope::Role("app".into())));
        assert!(parse_scope("role:").is_err());
        assert!(parse_scope("cluster").is_err());
    }
}
