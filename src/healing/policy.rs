//! Per-index policies (`ruvector_healing.index_policies`): the index's own
//! row, else its schema's `'*'` row, else the defaults.

use pgrx::spi::Spi;
use pgrx::JsonB;
use serde_json::Value;

use crate::detect::index_health::Thresholds;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub excluded: bool,
    /// `auto`, `none`, or a strategy name.
    pub strategy: String,
    pub pin_lists: bool,
    pub thresholds: Value,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            excluded: false,
            strategy: "auto".into(),
            pin_lists: false,
            thresholds: Value::Object(Default::default()),
        }
    }
}

impl Policy {
    /// The detection thresholds with this policy's overrides.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds::default().with_overrides(&self.thresholds)
    }
}

pub fn policy(schema: &str, index: &str) -> Policy {
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT excluded, strategy, pin_lists, thresholds
                   FROM ruvector_healing.index_policies
                  WHERE schema_name = $1 AND index_name IN ($2, '*')
                  ORDER BY index_name = '*' LIMIT 1",
                None,
                &[schema.into(), index.into()],
            )
            .ok()?;
        let r = rows.into_iter().next()?;
        Some(Policy {
            excluded: r.get::<bool>(1).ok()??,
            strategy: r.get::<String>(2).ok()??,
            pin_lists: r.get::<bool>(3).ok()??,
            thresholds: r.get::<JsonB>(4).ok()??.0,
        })
    })
    .unwrap_or_default()
}
