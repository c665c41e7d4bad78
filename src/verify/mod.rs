//! Verification of a pgvector index's invariants, the way amcheck's
//! `bt_index_check` verifies a B-tree: every page read once or twice under a
//! share lock, nothing written, violations reported with their place
//! instead of an error at the first one. Plain Rust over a [`PageSource`]
//! (`hnsw`, `ivfflat`); the Postgres side (`server`) opens the relations,
//! checks with an MVCC snapshot that every visible row is indexed
//! (`heapallindexed`), and shapes the SQL result.

pub mod hnsw;
pub mod ivfflat;
pub mod server;

use serde::Serialize;

use crate::inspect::layout::{Page, Tid, BLCKSZ, LP_NORMAL, PAGE_HEADER};

/// Violations kept in full; more are only counted (a badly damaged index
/// would otherwise return millions of rows).
pub const MAX_REPORTED: usize = 1000;

/// The largest offset a heap page can hold (`MaxHeapTuplesPerPage` for
/// 8 kB pages).
pub const MAX_HEAP_OFFSET: u16 = 291;

/// One broken invariant, with its place in the index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub kind: &'static str,
    pub block: Option<u32>,
    pub offset: Option<u16>,
    pub detail: String,
}

/// What a verification found and how much it looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub violations: Vec<Violation>,
    /// All violations, also those beyond `MAX_REPORTED`.
    pub violation_count: u64,
    pub pages: u64,
    /// HNSW: element tuples; IVFFlat: entries.
    pub items: u64,
    /// HNSW: neighbor lists checked; IVFFlat: lists.
    pub lists: u64,
    /// HNSW: neighbor TIDs checked.
    pub edges: u64,
    /// HNSW: edges to elements vacuum marked deleted (pgvector's scans skip
    /// them; not a violation), and lists whose version no longer matches
    /// their element (pgvector ignores such a list).
    pub edges_to_deleted: u64,
    pub stale_lists: u64,
    /// The heap TIDs the index holds, sorted (for `heapallindexed`).
    #[serde(skip)]
    pub heap_tids: Vec<u64>,
    /// IVFFlat: share of sampled entries not in the list of their nearest
    /// center (floating-point ties make it a figure, not a violation).
    pub misplaced_share: Option<f64>,
    /// The entries that share was measured on.
    pub misplaced_sampled: u64,
    /// `heapallindexed`: visible rows checked.
    pub heap_rows_checked: Option<u64>,
    /// Heap TIDs past the table's size when the check started, with their
    /// place: rows inserted meanwhile, unless still past it at the end.
    #[serde(skip)]
    pub heap_beyond: Vec<(Tid, u32, u16)>,
}

impl Verification {
    pub fn add(
        &mut self,
        kind: &'static str,
        block: Option<u32>,
        offset: Option<u16>,
        detail: String,
    ) {
        self.violation_count += 1;
        if self.violations.len() < MAX_REPORTED {
            self.violations.push(Violation {
                kind,
                block,
                offset,
                detail,
            });
        }
    }

    pub fn at(&mut self, kind: &'static str, blk: u32, off: u16, detail: String) {
        self.add(kind, Some(blk), Some(off), detail);
    }

    pub fn page(&mut self, kind: &'static str, blk: u32, detail: String) {
        self.add(kind, Some(blk), None, detail);
    }

    /// Reports the heap TIDs that are past the table's `heap_blocks` now.
    pub fn settle_heap(&mut self, heap_blocks: u32) {
        for (t, blk, off) in std::mem::take(&mut self.heap_beyond) {
            if t.block >= heap_blocks {
                self.at(
                    "heap_tid_invalid",
                    blk,
                    off,
                    format!("heap TID {t} is past the table's {heap_blocks} blocks"),
                );
            }
        }
    }
}

/// A heap TID as one sortable number.
pub fn tid_key(t: Tid) -> u64 {
    ((t.block as u64) << 16) | t.offset as u64
}

pub fn key_tid(k: u64) -> Tid {
    Tid {
        block: (k >> 16) as u32,
        offset: (k & 0xFFFF) as u16,
    }
}

/// Checks a heap TID an index tuple holds: a valid offset within a heap
/// page, a block the table has (`heap_blocks` when the check started; see
/// [`Verification::settle_heap`]).
pub fn check_heap_tid(v: &mut Verification, t: Tid, heap_blocks: u32, blk: u32, off: u16) {
    if t.offset == 0 || t.offset > MAX_HEAP_OFFSET {
        v.at(
            "heap_tid_invalid",
            blk,
            off,
            format!("heap TID {t} has an offset outside 1..{MAX_HEAP_OFFSET}"),
        );
    } else if t.block >= heap_blocks {
        v.heap_beyond.push((t, blk, off));
    }
}

/// The page header's own invariants (`PageHeaderIsValid` and the line
/// pointer array within the page): `None` when sound, else why not.
pub fn header_problem(p: &Page) -> Option<String> {
    let (lower, upper, special) = (p.lower(), p.upper(), p.special());
    if lower < PAGE_HEADER || lower > upper || upper > special || special > BLCKSZ - 8 {
        return Some(format!(
            "page header out of order: lower {lower}, upper {upper}, special {special}"
        ));
    }
    None
}

/// A line pointer's bytes: `Ok(None)` for an unused or dead slot,
/// `Err` when a normal item lies outside the page's item area.
pub fn item_bytes<'a>(p: &Page<'a>, off: u16) -> Result<Option<&'a [u8]>, String> {
    let Some(id) = p.item_id(off) else {
        return Ok(None);
    };
    if id.flags != LP_NORMAL {
        return Ok(None);
    }
    if id.len == 0 || id.off < p.upper() || id.off + id.len > p.special() {
        return Err(format!(
            "item at {}..{} outside the item area {}..{}",
            id.off,
            id.off + id.len,
            p.upper(),
            p.special()
        ));
    }
    Ok(Some(&p.bytes()[id.off..id.off + id.len]))
}
