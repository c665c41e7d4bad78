//! In-database tests (`cargo pgrx test`): behaviour that needs a server.

use pgrx::prelude::*;

#[pg_test]
fn settings_are_registered_with_ranges() {
    assert_eq!(
        Spi::get_one::<String>("SHOW ruvector.dag_healing_threshold").unwrap(),
        Some("0.3".into())
    );
}
