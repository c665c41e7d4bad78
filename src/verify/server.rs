//! The Postgres side of verification: the relations opened with
//! `AccessShareLock` (as `bt_index_check`: writers are never blocked), an
//! MVCC snapshot registered before the index is read, and, with
//! `heapallindexed`, the table scanned with that snapshot the way
//! `CREATE INDEX CONCURRENTLY`'s first scan does (amcheck's method): every
//! visible row whose indexed value is not NULL, that satisfies a partial
//! index's predicate and that pgvector would index at all, must have its
//! TID (the root of a HOT chain) among the index's heap TIDs. The index's
//! TIDs are kept exactly, sorted (8 bytes a row), not in a Bloom filter:
//! no false negative, and the missing rows are named.

use std::ffi::c_void;

use pgrx::pg_sys;

use super::{key_tid, tid_key, Verification};
use crate::inspect::layout::Tid;
use crate::inspect::pages::BufferPages;
use crate::inspect::relation::{Am, IndexTarget, OpenIndex};
use crate::inspect::vectors::{decode_dense, Metric, VectorType};

/// Verifies one leaf index (a partitioned index: each leaf on its own).
pub fn verify_index(t: &IndexTarget, heapallindexed: bool) -> Verification {
    let open = OpenIndex::open(t);
    // Registered before the index is read: every row it sees was in the
    // index before the first page was read.
    let snapshot = heapallindexed
        .then(|| unsafe { pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()) });
    let heap_blocks = || unsafe {
        pg_sys::RelationGetNumberOfBlocksInFork(open.table, pg_sys::ForkNumber::MAIN_FORKNUM)
    };
    let start_blocks = heap_blocks();
    let mut v = {
        let mut src = unsafe { BufferPages::new(open.rel) };
        match t.am {
            Am::Hnsw => super::hnsw::verify(&mut src, start_blocks, heapallindexed),
            Am::IvfFlat => super::ivfflat::verify(&mut src, start_blocks, heapallindexed),
        }
    };
    // Rows inserted meanwhile may sit on pages added since.
    v.settle_heap(heap_blocks());
    if let Some(snap) = snapshot {
        let cosine = t.metric == Some(Metric::Cosine);
        unsafe { heap_all_indexed(&open, snap, t.vector_type, cosine, &mut v) };
        unsafe { pg_sys::UnregisterSnapshot(snap) };
    }
    open.close();
    // On sound pages only (a corrupt one would stop the walk with an error).
    if t.am == Am::IvfFlat
        && v.violation_count == 0
        && t.vector_type.is_some_and(|ty| ty.decodable())
    {
        let (scan, _) = crate::inspect::report::ivf_scan(t);
        let metric = t.metric.unwrap_or(Metric::L2);
        v.misplaced_share =
            crate::inspect::metrics::centroid_quality(&scan, metric).map(|q| 1.0 - q);
        v.misplaced_sampled = scan.sample.len() as u64;
    }
    v
}

struct Scan<'a> {
    index_tids: &'a [u64],
    missing: Vec<u64>,
    checked: u64,
    ty: Option<VectorType>,
    cosine: bool,
}

/// Whether pgvector leaves this value out of the index: a vector of zero
/// norm under a cosine operator class.
unsafe fn not_indexed_by_pgvector(s: &Scan, value: pg_sys::Datum) -> bool {
    if !s.cosine {
        return false;
    }
    let raw = pg_sys::pg_detoast_datum(value.cast_mut_ptr::<pg_sys::varlena>()) as *const u8;
    let header = u32::from_le_bytes([*raw, *raw.add(1), *raw.add(2), *raw.add(3)]);
    let len = (header >> 2) as usize;
    let payload = std::slice::from_raw_parts(raw.add(4), len.saturating_sub(4));
    match s.ty {
        Some(VectorType::SparseVec) => payload.len() >= 8 && payload[4..8] == [0, 0, 0, 0],
        Some(ty) => decode_dense(ty, payload).is_some_and(|x| x.iter().all(|f| *f == 0.0)),
        None => false,
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn present(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut c_void,
) {
    let s = &mut *(state as *mut Scan);
    if *isnull {
        return;
    }
    let t = &*tid;
    let key = tid_key(Tid {
        block: ((t.ip_blkid.bi_hi as u32) << 16) | t.ip_blkid.bi_lo as u32,
        offset: t.ip_posid,
    });
    s.checked += 1;
    if s.index_tids.binary_search(&key).is_err() && !not_indexed_by_pgvector(s, *values) {
        s.missing.push(key);
    }
}

unsafe fn heap_all_indexed(
    open: &OpenIndex,
    snapshot: pg_sys::Snapshot,
    ty: Option<VectorType>,
    cosine: bool,
    v: &mut Verification,
) {
    let info = pg_sys::BuildIndexInfo(open.rel);
    // As the first scan of CREATE INDEX CONCURRENTLY: visible rows only.
    (*info).ii_Concurrent = true;
    (*info).ii_Unique = false;
    (*info).ii_ExclusionOps = std::ptr::null_mut();
    (*info).ii_ExclusionProcs = std::ptr::null_mut();
    (*info).ii_ExclusionStrats = std::ptr::null_mut();
    let am = (*open.table).rd_tableam;
    let flags = pg_sys::ScanOptions::SO_TYPE_SEQSCAN
        | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE
        | pg_sys::ScanOptions::SO_ALLOW_STRAT
        | pg_sys::ScanOptions::SO_ALLOW_SYNC;
    let scan = (*am).scan_begin.expect("scan_begin")(
        open.table,
        snapshot,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        flags,
    );
    let mut state = Scan {
        index_tids: &v.heap_tids,
        missing: Vec::new(),
        checked: 0,
        ty,
        cosine,
    };
    // Ends the scan itself; expressions and the predicate run as the
    // table's owner.
    crate::owner::as_table_owner(open.table, || {
        (*am)
            .index_build_range_scan
            .expect("index_build_range_scan")(
            open.table,
            open.rel,
            info,
            true,
            false,
            false,
            0,
            pg_sys::InvalidBlockNumber,
            Some(present),
            &mut state as *mut Scan as *mut c_void,
            scan,
        )
    });
    let (missing, checked) = (state.missing, state.checked);
    v.heap_rows_checked = Some(checked);
    for key in missing {
        let t = key_tid(key);
        v.add(
            "heap_row_not_indexed",
            Some(t.block),
            Some(t.offset),
            format!(
                "table row {t} is visible, its value is not NULL, and the index does not hold it (block and offset are the row's)"
            ),
        );
    }
}
