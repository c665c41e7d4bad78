//! Policies (`ruvector_healing.index_policies`) for the database, a schema,
//! a table or an index; the most specific one that matches applies.

use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::Value;

use crate::detect::index_health::Thresholds;
use crate::diagnose::options::Allowance;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub excluded: bool,
    /// `auto`, `none`, or a strategy name.
    pub strategy: String,
    pub pin_lists: bool,
    pub thresholds: Value,
    /// `None`: `ruvector.dag_healing_allow_option_changes`.
    pub allow_option_changes: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            excluded: false,
            strategy: "auto".into(),
            pin_lists: false,
            thresholds: Value::Object(Default::default()),
            allow_option_changes: None,
        }
    }
}

impl Policy {
    /// The detection thresholds with this policy's overrides.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds::default().with_overrides(&self.thresholds)
    }

    /// How far the worker may change this index's build options.
    pub fn allowance(&self) -> Allowance {
        let s = self
            .allow_option_changes
            .clone()
            .unwrap_or_else(crate::config::allow_option_changes);
        Allowance::parse(&s).unwrap_or(Allowance::UpToDefaults)
    }
}

/// The policy of an index: its own row, else its table's, its schema's,
/// the database's, else the defaults.
pub fn policy(index: pg_sys::Oid) -> Policy {
    Spi::connect(|c| {
        let rows = c
            .select(
                "WITH i AS (SELECT n.nspname::text AS sch, c.relname::text AS idx, t.relname::text AS tbl
                              FROM pg_class c
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                              JOIN pg_index x ON x.indexrelid = c.oid
                              JOIN pg_class t ON t.oid = x.indrelid
                             WHERE c.oid = $1)
                 SELECT p.excluded, p.strategy, p.pin_lists, p.thresholds, p.allow_option_changes
                   FROM ruvector_healing.index_policies p, i
                  WHERE (p.scope = 'index' AND p.schema_name = i.sch AND p.object_name = i.idx)
                     OR (p.scope = 'table' AND p.schema_name = i.sch AND p.object_name = i.tbl)
                     OR (p.scope = 'schema' AND p.schema_name = i.sch)
                     OR p.scope = 'database'
                  ORDER BY array_position(ARRAY['index', 'table', 'schema', 'database'], p.scope)
                  LIMIT 1",
                None,
                &[index.into()],
            )
            .ok()?;
        let r = rows.into_iter().next()?;
        Some(Policy {
            excluded: r.get::<bool>(1).ok()??,
            strategy: r.get::<String>(2).ok()??,
            pin_lists: r.get::<bool>(3).ok()??,
            thresholds: r.get::<JsonB>(4).ok()??.0,
            allow_option_changes: r.get::<String>(5).ok()?,
        })
    })
    .unwrap_or_default()
}
