//! Per-index search settings, applied while a query runs.
//!
//! pgvector has one `hnsw.ef_search` and one `ivfflat.probes` per session,
//! for every index. An index's own value (`ruvector_dag_set_search_setting`,
//! kept in its index policy) is applied by executor hooks
//! ([`hooks`]) from `ExecutorStart` to the end of each executor call when
//! `ruvector.dag_adaptive_search` is on, and the caller's value restored
//! after it. This module is the pure part: which values a plan gets.

pub mod hooks;
pub mod stored;

/// The setting each access method reads, and pgvector's range for it.
pub fn setting_of(am: &str) -> Option<(&'static str, i32, i32)> {
    match am {
        "hnsw" => Some(("hnsw.ef_search", 1, 1000)),
        "ivfflat" => Some(("ivfflat.probes", 1, 32_768)),
        _ => None,
    }
}

/// The values to apply for a plan scanning indexes with these settings:
/// one per setting, the largest when two scanned indexes differ (more
/// effort never changes what is asked, only how hard it is searched).
pub fn choose<'a>(scanned: impl IntoIterator<Item = (&'a str, i32)>) -> Vec<(&'a str, i32)> {
    let mut out: Vec<(&str, i32)> = Vec::new();
    for (name, value) in scanned {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = (*v).max(value),
            None => out.push((name, value)),
        }
    }
    out.sort();
    out
}

/// Whether a setting's value came from the session itself (`SET`, `SET
/// LOCAL`, a function's `SET` clause, the connection's options): then it
/// wins over the index's. Database, role and server defaults do not: they
/// are what per-index values refine. `source` is PostgreSQL's `GucSource`.
pub fn explicit(source: u32, client: u32) -> bool {
    source >= client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_value_of_each_setting() {
        assert_eq!(
            choose([
                ("hnsw.ef_search", 40),
                ("ivfflat.probes", 3),
                ("hnsw.ef_search", 100),
                ("hnsw.ef_search", 60),
            ]),
            vec![("hnsw.ef_search", 100), ("ivfflat.probes", 3)]
        );
        assert!(choose([]).is_empty());
    }

    #[test]
    fn settings_and_ranges() {
        assert_eq!(setting_of("hnsw"), Some(("hnsw.ef_search", 1, 1000)));
        assert_eq!(setting_of("ivfflat"), Some(("ivfflat.probes", 1, 32_768)));
        assert_eq!(setting_of("btree"), None);
    }

    #[test]
    fn session_sources_win() {
        use pgrx::pg_sys::GucSource::*;
        assert!(explicit(PGC_S_SESSION, PGC_S_CLIENT));
        assert!(explicit(PGC_S_CLIENT, PGC_S_CLIENT));
        assert!(!explicit(PGC_S_DATABASE, PGC_S_CLIENT));
        assert!(!explicit(PGC_S_DATABASE_USER, PGC_S_CLIENT));
        assert!(!explicit(PGC_S_FILE, PGC_S_CLIENT));
        assert!(!explicit(PGC_S_DEFAULT, PGC_S_CLIENT));
    }
}
