//! Read-only SPI queries. pgrx 0.18's `Spi::get_one*` runs every query as
//! an update and so assigns a transaction id: one XID burnt per call on a
//! primary, and an error on a standby ("cannot assign TransactionIds during
//! recovery"). Every read of the extension goes through these instead;
//! `Spi::run*` and `Spi::get_*` stay for statements that write.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::spi::{self, Spi};

/// The first column of the first row.
pub fn get_one<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid],
) -> spi::Result<Option<A>> {
    Spi::connect(|c| c.select(query, Some(1), args)?.first().get_one::<A>())
}

/// The first two columns of the first row.
pub fn get_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid],
) -> spi::Result<(Option<A>, Option<B>)> {
    Spi::connect(|c| c.select(query, Some(1), args)?.first().get_two::<A, B>())
}

/// The first three columns of the first row.
pub fn get_three<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum, C: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid],
) -> spi::Result<(Option<A>, Option<B>, Option<C>)> {
    Spi::connect(|c| {
        c.select(query, Some(1), args)?
            .first()
            .get_three::<A, B, C>()
    })
}
