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

/// Runs `f` in a subtransaction: an ERROR inside rolls back only what `f`
/// did (a trial's temporary table and index, say) and comes back as the
/// error's message, as a PL/pgSQL `EXCEPTION` block would.
pub fn subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    use pgrx::pg_sys;
    use pgrx::pg_sys::panic::CaughtError;
    let mut f = Some(f);
    unsafe {
        let cx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let r = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
            Ok((f.take().expect("runs once"))())
        }))
        .catch_others(|e| {
            Err(match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                    r.message().to_string()
                }
                CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
            })
        })
        .execute();
        if r.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(cx);
        pg_sys::CurrentResourceOwner = owner;
        r
    }
}
