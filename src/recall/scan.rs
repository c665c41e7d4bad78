//! The Postgres side of recall measurement. Everything runs under the
//! caller's active snapshot, with the table and index open under
//! `AccessShareLock` (the locks of a SELECT):
//!
//! - [`sample`]: a uniform reservoir sample of the values the index holds
//!   (one heap pass, evaluating the index's expression and predicate);
//! - [`ann`]: real index scans through the measured index (`index_beginscan`
//!   with an ORDER BY key, exactly what the executor does for
//!   `ORDER BY col <-> q LIMIT k`), under search settings applied with a
//!   GUC nest level and restored afterwards;
//! - [`exact_pass`]: one heap pass feeding every row to the batched exact
//!   search;
//! - [`RowFetcher`]: the value of one row by TID (to score an ANN answer
//!   that is not among the exact top-k: it may tie the k-th distance).

use std::ffi::{CStr, CString};
use std::time::Instant;

use pgrx::pg_sys;

use super::exact::ExactSearch;
use crate::inspect::layout::{varlena, Varlena};
use crate::inspect::relation::OpenIndex;
use crate::inspect::vectors::{decode_dense, VectorType};

pub fn tid_key(t: pg_sys::ItemPointerData) -> u64 {
    let (block, offset) = pgrx::itemptr::item_pointer_get_both(t);
    ((block as u64) << 16) | offset as u64
}

fn tid_of(key: u64) -> pg_sys::ItemPointerData {
    let mut ip = pg_sys::ItemPointerData::default();
    pgrx::itemptr::item_pointer_set_all(&mut ip, (key >> 16) as u32, (key & 0xFFFF) as u16);
    ip
}

/// Bytes of a (detoasted or short-header) varlena at `p`.
unsafe fn varlena_bytes<'a>(p: *const u8) -> &'a [u8] {
    let first = *p;
    let len = if first & 0x01 == 0x01 {
        (first >> 1) as usize
    } else {
        (u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) >> 2) as usize
    };
    std::slice::from_raw_parts(p, len)
}

/// Decodes the index key value of one row (`vector` or `halfvec`).
fn decode(ty: VectorType, bytes: &[u8]) -> Option<Vec<f32>> {
    match varlena(bytes).ok()? {
        Varlena::Plain(payload) => decode_dense(ty, payload),
        Varlena::Compressed(_) => None,
    }
}

/// Evaluates the index's key (column or expression) and predicate for rows
/// of the table, the way index builds do.
struct KeyEval {
    info: *mut pg_sys::IndexInfo,
    estate: *mut pg_sys::EState,
    econtext: *mut pg_sys::ExprContext,
    predicate: *mut pg_sys::ExprState,
    slot: *mut pg_sys::TupleTableSlot,
}

impl KeyEval {
    unsafe fn new(open: &OpenIndex) -> KeyEval {
        let info = pg_sys::BuildIndexInfo(open.rel);
        let estate = pg_sys::CreateExecutorState();
        let econtext = pg_sys::MakePerTupleExprContext(estate);
        let slot = pg_sys::table_slot_create(open.table, std::ptr::null_mut());
        (*econtext).ecxt_scantuple = slot;
        let predicate = if (*info).ii_Predicate.is_null() {
            std::ptr::null_mut()
        } else {
            pg_sys::ExecPrepareQual((*info).ii_Predicate, estate)
        };
        KeyEval {
            info,
            estate,
            econtext,
            predicate,
            slot,
        }
    }

    /// The key of the row in `self.slot`, detoasted, in per-tuple memory
    /// (valid until [`KeyEval::reset`]); `None` for rows the index skips.
    unsafe fn key(&mut self) -> Option<&[u8]> {
        let old = pg_sys::MemoryContextSwitchTo((*self.econtext).ecxt_per_tuple_memory);
        let mut out = None;
        if self.predicate.is_null() || pg_sys::ExecQual(self.predicate, self.econtext) {
            let mut values = [pg_sys::Datum::from(0usize); pg_sys::INDEX_MAX_KEYS as usize];
            let mut isnull = [false; pg_sys::INDEX_MAX_KEYS as usize];
            pg_sys::FormIndexDatum(
                self.info,
                self.slot,
                self.estate,
                values.as_mut_ptr(),
                isnull.as_mut_ptr(),
            );
            if !isnull[0] {
                let p =
                    pg_sys::pg_detoast_datum_packed(values[0].cast_mut_ptr::<pg_sys::varlena>());
                out = Some(varlena_bytes(p as *const u8));
            }
        }
        pg_sys::MemoryContextSwitchTo(old);
        out
    }

    unsafe fn reset(&mut self) {
        pg_sys::MemoryContextReset((*self.econtext).ecxt_per_tuple_memory);
    }

    /// Calls `f(tid, key bytes)` for every row of the table the index holds.
    unsafe fn for_each_row(
        &mut self,
        open: &OpenIndex,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let snapshot = pg_sys::GetActiveSnapshot();
        let scan = pg_sys::table_beginscan(open.table, snapshot, 0, std::ptr::null_mut());
        let mut result = Ok(());
        while pg_sys::table_scan_getnextslot(
            scan,
            pg_sys::ScanDirection::ForwardScanDirection,
            self.slot,
        ) {
            pgrx::check_for_interrupts!();
            let tid = tid_key((*self.slot).tts_tid);
            if let Some(bytes) = self.key() {
                result = f(tid, bytes);
            }
            self.reset();
            if result.is_err() {
                break;
            }
        }
        pg_sys::table_endscan(scan);
        result
    }
}

impl Drop for KeyEval {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // the aborting transaction frees it all
        }
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::FreeExecutorState(self.estate);
        }
    }
}

/// Sampled query vectors: the row, its value as Postgres stores it (for
/// the index scan key) and decoded (for the exact search).
pub struct Sample {
    pub tids: Vec<u64>,
    pub raw: Vec<Vec<u8>>,
    pub vectors: Vec<Vec<f32>>,
    /// Rows the index holds (non-null keys passing the predicate).
    pub population: u64,
}

/// A uniform random sample of `n` of the rows the index holds (reservoir
/// sampling over one heap pass).
pub fn sample(open: &OpenIndex, ty: VectorType, n: usize, seed: u64) -> Result<Sample, String> {
    let mut rng = crate::inspect::ivfflat::SplitMix(seed);
    let mut s = Sample {
        tids: Vec::new(),
        raw: Vec::new(),
        vectors: Vec::new(),
        population: 0,
    };
    unsafe {
        crate::owner::as_table_owner(open.table, || {
            let mut eval = KeyEval::new(open);
            eval.for_each_row(open, |tid, bytes| {
                s.population += 1;
                let slot = if s.tids.len() < n {
                    s.tids.push(0);
                    s.raw.push(Vec::new());
                    s.vectors.push(Vec::new());
                    s.tids.len() - 1
                } else {
                    let j = rng.below(s.population) as usize;
                    if j >= n {
                        return Ok(());
                    }
                    j
                };
                let v = decode(ty, bytes).ok_or("a value could not be decoded")?;
                s.tids[slot] = tid;
                s.raw[slot] = bytes.to_vec();
                s.vectors[slot] = v;
                Ok(())
            })
        })?;
    }
    Ok(s)
}

/// Feeds every row the index holds to `search`.
pub fn exact_pass(
    open: &OpenIndex,
    ty: VectorType,
    search: &mut ExactSearch,
) -> Result<(), String> {
    unsafe {
        crate::owner::as_table_owner(open.table, || {
            let mut eval = KeyEval::new(open);
            eval.for_each_row(open, |tid, bytes| {
                let v = decode(ty, bytes).ok_or("a value could not be decoded")?;
                search.add_row(tid, &v)
            })
        })?;
    }
    search.flush();
    Ok(())
}

/// Reads single rows by TID under the active snapshot.
pub struct RowFetcher {
    eval: KeyEval,
    table: pg_sys::Relation,
    ty: VectorType,
}

impl RowFetcher {
    pub fn new(open: &OpenIndex, ty: VectorType) -> RowFetcher {
        RowFetcher {
            eval: unsafe { crate::owner::as_table_owner(open.table, || KeyEval::new(open)) },
            table: open.table,
            ty,
        }
    }

    /// The decoded key of row `tid`, if visible and held by the index.
    pub fn get(&mut self, tid: u64) -> Option<Vec<f32>> {
        unsafe {
            let mut ip = tid_of(tid);
            let found = pg_sys::table_tuple_fetch_row_version(
                self.table,
                &mut ip,
                pg_sys::GetActiveSnapshot(),
                self.eval.slot,
            );
            let v = if found {
                let (eval, ty) = (&mut self.eval, self.ty);
                crate::owner::as_table_owner(self.table, || eval.key().and_then(|b| decode(ty, b)))
            } else {
                None
            };
            self.eval.reset();
            v
        }
    }
}

/// Settings applied for the duration of a measurement: a GUC nest level,
/// as Postgres uses for a function's `SET` clause; dropping it restores the
/// caller's values.
pub struct LocalSettings {
    nest_level: i32,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalSettings {
    pub fn new() -> LocalSettings {
        LocalSettings {
            nest_level: unsafe { pg_sys::NewGUCNestLevel() },
        }
    }

    pub fn set(&self, name: &str, value: &str) {
        set_option(
            name,
            value,
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
    }
}

/// Sets a setting for this session (`GUC_ACTION_SET`) or until the
/// current GUC nest level ends (`GUC_ACTION_SAVE`); an invalid value is an
/// ERROR, as for `SET`. `context`: the rights it is set with
/// (`PGC_USERSET` for a user's measurement, `PGC_SUSET` for a worker).
pub fn set_option(
    name: &str,
    value: &str,
    context: pg_sys::GucContext::Type,
    action: pg_sys::GucAction::Type,
) {
    let name = CString::new(name).expect("setting name");
    let value = CString::new(value).expect("setting value");
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

impl Drop for LocalSettings {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}

/// The current value of a setting, if it exists.
pub fn setting(name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    unsafe {
        let v = pg_sys::GetConfigOptionByName(name.as_ptr(), std::ptr::null_mut(), true);
        (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// Answers of the index for every query.
pub struct AnnResult {
    pub ids: Vec<Vec<u64>>,
    pub elapsed_ms: f64,
    /// Queries that returned fewer than k rows.
    pub short_results: usize,
}

/// Runs one ORDER BY index scan per query through the measured index and
/// keeps the first `k` visible rows of each.
pub fn ann(open: &OpenIndex, queries: &[Vec<u8>], k: usize) -> AnnResult {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(queries.len());
    let mut short_results = 0;
    unsafe {
        // The type the operator class indexes (vector or halfvec).
        let key_type = *(*open.rel).rd_opcintype;
        let snapshot = pg_sys::GetActiveSnapshot();
        let scan =
            pg_sys::index_beginscan(open.table, open.rel, snapshot, std::ptr::null_mut(), 0, 1);
        let slot = pg_sys::table_slot_create(open.table, std::ptr::null_mut());
        for q in queries {
            // A 4-byte-aligned copy with a 4-byte header, as a Datum.
            let datum = aligned_varlena(q);
            let mut key = pg_sys::ScanKeyData::default();
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                pg_sys::SK_ORDER_BY as i32,
                1,
                1,
                key_type,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::Datum::from(datum),
            );
            pg_sys::index_rescan(scan, std::ptr::null_mut(), 0, &mut key, 1);
            let mut got = Vec::with_capacity(k);
            while got.len() < k
                && pg_sys::index_getnext_slot(
                    scan,
                    pg_sys::ScanDirection::ForwardScanDirection,
                    slot,
                )
            {
                got.push(tid_key((*slot).tts_tid));
            }
            if got.len() < k {
                short_results += 1;
            }
            ids.push(got);
            pg_sys::pfree(datum as *mut std::ffi::c_void);
            pgrx::check_for_interrupts!();
        }
        pg_sys::index_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
    AnnResult {
        ids,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        short_results,
    }
}

/// A palloc'd copy of a varlena with a 4-byte header (short headers are
/// expanded), so the index AM can read it as a plain, aligned datum.
unsafe fn aligned_varlena(bytes: &[u8]) -> *mut u8 {
    let payload = match varlena(bytes) {
        Ok(Varlena::Plain(p)) => p,
        _ => &bytes[bytes.len()..],
    };
    let total = payload.len() + 4;
    let p = pg_sys::palloc(total) as *mut u8;
    let header = (total as u32) << 2;
    std::ptr::copy_nonoverlapping(header.to_le_bytes().as_ptr(), p, 4);
    std::ptr::copy_nonoverlapping(payload.as_ptr(), p.add(4), payload.len());
    p
}
