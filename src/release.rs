//! Releases: the version of this library against the version of the SQL
//! objects installed in the current database. A database whose objects
//! are older than the library (the library was replaced, `ALTER
//! EXTENSION ... UPDATE` not yet run) must not run new code against an old
//! schema: the SQL functions refuse with a hint, and the background cycle
//! skips the database and reports it as `needs_update`.

use pgrx::prelude::*;
use pgrx::spi::Spi;

use crate::inspect::relation::raise;

/// The version this library was built as (`Cargo.toml`); the control
/// file's `default_version` is the same.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The command a database whose objects are older than the library needs.
pub const UPDATE_COMMAND: &str = "ALTER EXTENSION ruvector_healing UPDATE";

/// How the installed objects compare with the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Not installed in this database.
    Absent,
    /// The objects match the library.
    Current,
    /// Older objects: `ALTER EXTENSION ruvector_healing UPDATE` brings
    /// them to the library's version.
    NeedsUpdate(String),
    /// Objects newer than the library (an older library was installed
    /// after an update): install the library that matches.
    LibraryTooOld(String),
}

/// Dotted numeric versions compared part by part ("0.10.0" > "0.9.1");
/// a part that is not a number compares as text.
pub fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<String> { s.split('.').map(str::to_string).collect() };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = (
            pa.get(i).map_or("0", String::as_str),
            pb.get(i).map_or("0", String::as_str),
        );
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

pub fn classify(installed: Option<&str>, library: &str) -> Installed {
    match installed {
        None => Installed::Absent,
        Some(v) if v == library => Installed::Current,
        Some(v) if compare(v, library) == std::cmp::Ordering::Less => {
            Installed::NeedsUpdate(v.to_string())
        }
        Some(v) => Installed::LibraryTooOld(v.to_string()),
    }
}

/// `extversion` of ruvector_healing in this database.
pub fn installed_version() -> Option<String> {
    crate::sql::get_one::<String>(
        "SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'ruvector_healing'",
        &[],
    )
    .ok()
    .flatten()
}

pub fn state() -> Installed {
    classify(installed_version().as_deref(), LIBRARY_VERSION)
}

/// What a user reads about a version mismatch: message and hint.
pub fn mismatch_text(s: &Installed) -> Option<(String, String)> {
    match s {
        Installed::NeedsUpdate(v) => Some((
            format!(
                "ruvector_healing {v} is installed in this database, but the loaded library is {LIBRARY_VERSION}"
            ),
            format!("run {UPDATE_COMMAND} in this database (it keeps every row of history)"),
        )),
        Installed::LibraryTooOld(v) => Some((
            format!(
                "ruvector_healing {v} is installed in this database, but the loaded library is the older {LIBRARY_VERSION}"
            ),
            format!("install the ruvector_healing {v} library and restart the server"),
        )),
        _ => None,
    }
}

/// Refuses to go on when the installed objects do not match the library.
/// Every SQL function calls it first. While `CREATE/ALTER EXTENSION` runs
/// its scripts the check is skipped (the version is changing).
pub fn require_current() {
    if unsafe { pgrx::pg_sys::creating_extension } {
        return;
    }
    if let Some((msg, hint)) = mismatch_text(&state()) {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &msg,
            &hint,
        );
    }
}

/// Resolves the OIDs of rows restored from a dump again by name (see
/// `ruvector_healing.adopt_restored()` in `sql/schema.sql`); logs what it
/// did. Run by the cycle and the repair workers before they read a row.
pub fn adopt_restored() {
    let n = Spi::get_one::<i64>("SELECT ruvector_healing.adopt_restored()")
        .ok()
        .flatten()
        .unwrap_or(0);
    if n > 0 {
        pgrx::log!(
            "ruvector_healing: the history was written in another database (a restore or a copy): {n} rows resolved again by name"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(compare("0.1.0", "0.2.0"), Less);
        assert_eq!(compare("0.10.0", "0.9.1"), Greater);
        assert_eq!(compare("1.0", "1.0.0"), Equal);
        assert_eq!(compare("0.2.0", "0.2.0"), Equal);
    }

    #[test]
    fn installed_versions_are_classified() {
        assert_eq!(classify(None, "0.2.0"), Installed::Absent);
        assert_eq!(classify(Some("0.2.0"), "0.2.0"), Installed::Current);
        assert_eq!(
            classify(Some("0.1.0"), "0.2.0"),
            Installed::NeedsUpdate("0.1.0".into())
        );
        assert_eq!(
            classify(Some("0.3.0"), "0.2.0"),
            Installed::LibraryTooOld("0.3.0".into())
        );
        let (msg, hint) = mismatch_text(&Installed::NeedsUpdate("0.1.0".into())).unwrap();
        assert!(
            msg.contains("0.1.0") && msg.contains(LIBRARY_VERSION),
            "{msg}"
        );
        assert!(hint.contains(UPDATE_COMMAND), "{hint}");
        assert!(mismatch_text(&Installed::Current).is_none());
    }
}
