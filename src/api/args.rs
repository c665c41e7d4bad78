//! Argument types shared by the SQL functions.

use pgrx::prelude::*;
use pgrx::{pg_sys, FromDatum, IntoDatum};

/// A `regclass` argument kept as a bare OID: unlike `PgRelation` it opens
/// nothing, so a dropped OID or a wrong relation kind gets our own error
/// with a hint instead of a generic "could not open relation".
#[derive(Debug, Clone, Copy)]
pub struct Regclass(pub pg_sys::Oid);

impl FromDatum for Regclass {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            None
        } else {
            pg_sys::Oid::from_datum(datum, false).map(Regclass)
        }
    }
}

impl IntoDatum for Regclass {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

pgrx::impl_sql_translatable!(Regclass, "regclass");

pub fn oid_of(r: Option<Regclass>) -> Option<pg_sys::Oid> {
    r.map(|r| r.0)
}
