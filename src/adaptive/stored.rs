//! The per-index values as the healer reads and writes them (it runs as a
//! superuser: no privilege check here; requests are checked before).

use pgrx::pg_sys;

/// The value stored for an index (by name), if any.
pub fn value_of(schema: &str, name: &str) -> Option<i32> {
    crate::sql::get_one::<i32>(
        "SELECT search_value FROM ruvector_healing.index_policies
          WHERE scope = 'index' AND schema_name = $1 AND object_name = $2",
        &[schema.into(), name.into()],
    )
    .ok()
    .flatten()
}

/// The value stored for an index by OID, if any.
pub fn value_of_oid(index: pg_sys::Oid) -> Option<i32> {
    crate::sql::get_one::<i32>(
        "SELECT p.search_value FROM ruvector_healing.index_policies p
           JOIN pg_catalog.pg_class c ON c.relname::text = p.object_name
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname::text = p.schema_name
          WHERE p.scope = 'index' AND c.oid = $1",
        &[index.into()],
    )
    .ok()
    .flatten()
}

/// Stores (or with None removes) an index's value; the calling session
/// sees it at once, others within a second.
pub fn store(schema: &str, name: &str, value: Option<i32>) {
    pgrx::spi::Spi::run_with_args(
        "INSERT INTO ruvector_healing.index_policies AS p (scope, schema_name, object_name, search_value)
         VALUES ('index', $1, $2, $3)
         ON CONFLICT (scope, schema_name, object_name) DO UPDATE
            SET search_value = $3, updated_at = now()",
        &[schema.into(), name.into(), value.into()],
    )
    .expect("store the index's search setting");
    super::hooks::forget();
}
