//! No futile repetition: what was tried for an index (by name, across
//! rebuilds and new OIDs) and a cause, and whether trying a repair again
//! could change anything.

use serde::Serialize;

use super::options::BuildOptions;

/// The table must have grown or shrunk by this share since an attempt
/// before the same repair counts as new evidence.
pub const EVIDENCE_CHANGE: f64 = 0.2;

/// One earlier repair of the index for a cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub repair_id: i64,
    pub cause: String,
    pub strategy: String,
    pub options: BuildOptions,
    /// Table rows when it was tried.
    pub rows: i64,
    /// Whether it fixed what it was for (`done` after validation).
    pub fixed: bool,
}

/// The earlier attempt that makes this one futile: the same cause,
/// strategy and options, it did not fix the issue, and the table is within
/// `EVIDENCE_CHANGE` of its size then.
pub fn futile<'a>(
    history: &'a [Attempt],
    cause: &str,
    strategy: &str,
    options: &BuildOptions,
    rows: i64,
) -> Option<&'a Attempt> {
    history.iter().find(|a| {
        !a.fixed
            && a.cause == cause
            && a.strategy == strategy
            && a.options == *options
            && ((rows - a.rows).abs() as f64) < EVIDENCE_CHANGE * (a.rows.max(1) as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: i64, opts: BuildOptions, rows: i64, fixed: bool) -> Attempt {
        Attempt {
            repair_id: id,
            cause: "build_options".into(),
            strategy: "rebuild".into(),
            options: opts,
            rows,
            fixed,
        }
    }

    #[test]
    fn the_same_failed_repair_is_not_run_again() {
        let m8 = BuildOptions::hnsw(8, 32);
        let m16 = BuildOptions::hnsw(16, 64);
        let h = vec![a(7, m8, 20_000, false)];
        assert_eq!(
            futile(&h, "build_options", "rebuild", &m8, 20_500).map(|x| x.repair_id),
            Some(7)
        );
        // Other options, another cause, a grown table, or a fix: not futile.
        assert!(futile(&h, "build_options", "rebuild", &m16, 20_000).is_none());
        assert!(futile(&h, "churn", "rebuild", &m8, 20_000).is_none());
        assert!(futile(&h, "build_options", "rebuild", &m8, 25_000).is_none());
        let fixed = vec![a(8, m8, 20_000, true)];
        assert!(futile(&fixed, "build_options", "rebuild", &m8, 20_000).is_none());
    }
}
