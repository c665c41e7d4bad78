//! The `ruvector.dag_healing_*` settings (the specification's
//! `HealingConfig`), registered at library load, and a snapshot of them.
//!
//! Settings that change what the server does on its own (repairs, history,
//! detection thresholds) are superuser-only (`PGC_SUSET`); the worker's
//! schedule is server-wide (`PGC_SIGHUP`); the recall target is a user's own
//! default for tuning (`PGC_USERSET`).

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use serde::Serialize;

pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
pub static THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.3);
pub static ANOMALY_SENSITIVITY: GucSetting<f64> = GucSetting::<f64>::new(0.7);
pub static MAX_CONCURRENT_REPAIRS: GucSetting<i32> = GucSetting::<i32>::new(3);
pub static REPAIR_TIMEOUT_S: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static ROLLBACK_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static TARGET_RECALL: GucSetting<f64> = GucSetting::<f64>::new(0.95);
pub static MIN_RECALL: GucSetting<f64> = GucSetting::<f64>::new(0.0);
pub static COOLDOWN_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
pub static BACKUP_RETENTION_MIN: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static AUTO_REPAIR: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAINTENANCE_WINDOW: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);
pub static RECALL_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static RECALL_SAMPLE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static VERIFY_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static ADAPTIVE_SEARCH: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static TEST_PAUSE_AT: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);
/// `ruvector.dag_healing_allow_option_changes` (see `diagnose::options::Allowance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, pgrx::PostgresGucEnum)]
pub enum AllowOptionChanges {
    #[name = c"none"]
    None,
    #[name = c"up_to_defaults"]
    UpToDefaults,
    #[name = c"any"]
    Any,
}

pub static ALLOW_OPTION_CHANGES: GucSetting<AllowOptionChanges> =
    GucSetting::<AllowOptionChanges>::new(AllowOptionChanges::UpToDefaults);
pub static TUNING_SCOPE: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"database"));

/// `ruvector.dag_healing_maintenance_window` as text ('' = always).
pub fn maintenance_window() -> String {
    MAINTENANCE_WINDOW
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `ruvector.dag_healing_allow_option_changes` as text.
pub fn allow_option_changes() -> String {
    match ALLOW_OPTION_CHANGES.get() {
        AllowOptionChanges::None => "none",
        AllowOptionChanges::UpToDefaults => "up_to_defaults",
        AllowOptionChanges::Any => "any",
    }
    .to_string()
}

/// `ruvector.dag_healing_tuning_scope` as text.
pub fn tuning_scope() -> String {
    TUNING_SCOPE
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Registers every setting (called from `_PG_init`) and reserves the
/// `ruvector` prefix. Names, defaults and ranges are listed in the README.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"ruvector.dag_healing_enabled",
        c"Enables self-healing: new health cycles and repairs.",
        c"Off stops new cycles and repairs at once; inspection functions keep working.",
        &ENABLED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_interval_ms",
        c"Time between two healing cycles of a database.",
        c"The background worker inspects every monitored index once per interval.",
        &INTERVAL_MS,
        1_000,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_healing_threshold",
        c"Relative performance degradation that counts as an issue (0.3 = 30 %).",
        c"Compared with the index's own baseline from past cycles.",
        &THRESHOLD,
        0.01,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_healing_anomaly_sensitivity",
        c"Anomaly detection sensitivity from 0 (least) to 1 (most sensitive).",
        c"Scales the z-score needed to call an observation anomalous.",
        &ANOMALY_SENSITIVITY,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_max_concurrent_repairs",
        c"Maximum number of repairs running at once in the server.",
        c"",
        &MAX_CONCURRENT_REPAIRS,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_repair_timeout_s",
        c"A repair running longer than this is cancelled and rolled back.",
        c"",
        &REPAIR_TIMEOUT_S,
        10,
        604_800,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"ruvector.dag_healing_rollback_enabled",
        c"Keep a backup of what a repair replaces, and roll back repairs that do not validate.",
        c"",
        &ROLLBACK_ENABLED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_history_retention_days",
        c"Days of repair history and resolved issues kept before purging.",
        c"",
        &HISTORY_RETENTION_DAYS,
        1,
        3650,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_healing_target_recall",
        c"Recall@k that search-setting tuning aims for.",
        c"",
        &TARGET_RECALL,
        0.5,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_healing_min_recall",
        c"A rebuilt index whose measured recall@10 is below this fails validation (0 = no floor).",
        c"Validation also fails when the new index's recall is below the old index's by more than 0.02.",
        &MIN_RECALL,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_cooldown_s",
        c"Minimum time between two successful repairs of the same index.",
        c"",
        &COOLDOWN_S,
        0,
        2_592_000,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_max_attempts",
        c"Repairs tried per issue, and consecutive failures that pause an index's repairs for a day.",
        c"",
        &MAX_ATTEMPTS,
        1,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_backup_retention_min",
        c"How long the index a rebuild replaced is kept (invalid, still maintained) for rollback.",
        c"Only with ruvector.dag_healing_rollback_enabled; then dropped concurrently.",
        &BACKUP_RETENTION_MIN,
        1,
        10_080,
        GucContext::Suset,
        GucFlags::UNIT_MIN,
    );
    GucRegistry::define_string_guc(
        c"ruvector.dag_healing_tuning_scope",
        c"Where the tune_search repair applies a tuned setting: off, database or role:<name>.",
        c"database: ALTER DATABASE ... SET; role:<name>: ALTER ROLE <name> IN DATABASE ... SET.",
        &TUNING_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"ruvector.dag_healing_allow_option_changes",
        c"How far repairs may change build options by themselves: none, up_to_defaults or any.",
        c"up_to_defaults: m up to 16 and ef_construction up to 64 (pgvector's defaults); beyond, the diagnosis recommends and waits for a request.",
        &ALLOW_OPTION_CHANGES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ruvector.dag_healing_auto_repair",
        c"Lets the background cycle request repairs of the issues it finds.",
        c"Off: the cycle still inspects, detects and records issues.",
        &AUTO_REPAIR,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ruvector.dag_healing_maintenance_window",
        c"When automatic repairs may start, e.g. 'Sat 01:00-05:00'; empty = always.",
        c"Comma-separated day (Mon..Sun, Mon-Fri, daily) and time ranges in the server's time zone.",
        &MAINTENANCE_WINDOW,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_recall_interval_s",
        c"How often the background cycle measures each index's recall (0 = never).",
        c"A recall probe costs an exact pass over the table; health checks run every interval.",
        &RECALL_INTERVAL_S,
        0,
        2_592_000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"ruvector.dag_adaptive_search",
        c"Run each query that scans a pgvector index with that index's own search setting (ruvector_dag_set_search_setting).",
        c"A setting the session chose itself (SET, SET LOCAL, a function's SET clause, connection options) wins.",
        &ADAPTIVE_SEARCH,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_verify_interval_s",
        c"How often the background cycle verifies each index's invariants and that every visible row is indexed (0 = never).",
        c"A verification reads the index twice and scans the table once, under AccessShareLock.",
        &VERIFY_INTERVAL_S,
        0,
        2_592_000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_healing_recall_sample_size",
        c"Sampled queries per recall probe of the background cycle.",
        c"",
        &RECALL_SAMPLE_SIZE,
        10,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ruvector.dag_healing_test_pause_at",
        c"For crash tests only: a repair requested with this set pauses at the named step.",
        c"Steps: before_build, after_build, during_validation, after_swap. Leave empty.",
        &TEST_PAUSE_AT,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    // Typos such as `ruvector.dag_healing_enable` fail instead of creating
    // a placeholder that silently does nothing.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"ruvector".as_ptr()) };
}

/// The effective settings of this session.
#[derive(Debug, Clone, Serialize)]
pub struct HealingConfig {
    pub enabled: bool,
    pub interval_ms: i32,
    pub threshold: f64,
    pub anomaly_sensitivity: f64,
    pub max_concurrent_repairs: i32,
    pub repair_timeout_s: i32,
    pub rollback_enabled: bool,
    pub history_retention_days: i32,
    pub target_recall: f64,
    pub min_recall: f64,
    pub cooldown_s: i32,
    pub max_attempts: i32,
    pub backup_retention_min: i32,
    pub tuning_scope: String,
    pub allow_option_changes: String,
    pub auto_repair: bool,
    pub maintenance_window: String,
    pub recall_interval_s: i32,
    pub verify_interval_s: i32,
    pub recall_sample_size: i32,
    pub adaptive_search: bool,
}

impl HealingConfig {
    pub fn current() -> HealingConfig {
        HealingConfig {
            enabled: ENABLED.get(),
            interval_ms: INTERVAL_MS.get(),
            threshold: THRESHOLD.get(),
            anomaly_sensitivity: ANOMALY_SENSITIVITY.get(),
            max_concurrent_repairs: MAX_CONCURRENT_REPAIRS.get(),
            repair_timeout_s: REPAIR_TIMEOUT_S.get(),
            rollback_enabled: ROLLBACK_ENABLED.get(),
            history_retention_days: HISTORY_RETENTION_DAYS.get(),
            target_recall: TARGET_RECALL.get(),
            min_recall: MIN_RECALL.get(),
            cooldown_s: COOLDOWN_S.get(),
            max_attempts: MAX_ATTEMPTS.get(),
            backup_retention_min: BACKUP_RETENTION_MIN.get(),
            tuning_scope: tuning_scope(),
            allow_option_changes: allow_option_changes(),
            auto_repair: AUTO_REPAIR.get(),
            maintenance_window: maintenance_window(),
            recall_interval_s: RECALL_INTERVAL_S.get(),
            verify_interval_s: VERIFY_INTERVAL_S.get(),
            recall_sample_size: RECALL_SAMPLE_SIZE.get(),
            adaptive_search: ADAPTIVE_SEARCH.get(),
        }
    }
}
