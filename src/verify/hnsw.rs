//! HNSW invariants. Pass 1 reads every page in block order and records,
//! per line pointer, what it holds (12 bytes a slot); pass 2 reads the
//! pages again and checks each neighbor list against its element and every
//! neighbor TID against the slot it names. Then the page chain and the
//! entry point.
//!
//! Inserts may run meanwhile (the check takes only share locks on pages):
//! a TID that names a slot pass 1 did not see is looked up again on its
//! page before it counts as a violation, a list whose version no longer
//! matches its element is counted as stale (pgvector ignores such a list
//! too), and the meta page is read again at the end.

use crate::inspect::layout::{
    HnswElement, HnswMeta, HnswNeighbors, Page, Tid, HNSW_ELEMENT_TYPE, HNSW_NEIGHBOR_TYPE,
    HNSW_PAGE_ID, INVALID_BLOCK,
};
use crate::inspect::PageSource;

use super::{check_heap_tid, header_problem, item_bytes, tid_key, Verification};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Empty,
    Element {
        level: u8,
        deleted: bool,
        version: u8,
        ntid: Tid,
    },
    Neighbors,
    /// An item that is neither (reported in pass 1).
    Other,
}

/// What pass 1 recorded: per block, one slot per line pointer.
struct Slots {
    blocks: Vec<Vec<Slot>>,
}

impl Slots {
    fn get(&self, t: Tid) -> Option<Slot> {
        let b = self.blocks.get(t.block as usize)?;
        b.get((t.offset as usize).checked_sub(1)?).copied()
    }
}

/// What an item is, from its bytes.
fn classify(t: &[u8]) -> Result<Slot, String> {
    match t.first() {
        Some(&HNSW_ELEMENT_TYPE) => {
            let e = HnswElement::parse(t).map_err(|e| e.to_string())?;
            Ok(Slot::Element {
                level: e.level,
                deleted: e.deleted,
                version: e.version,
                ntid: e.neighbortid,
            })
        }
        Some(&HNSW_NEIGHBOR_TYPE) => {
            HnswNeighbors::parse(t).map_err(|e| e.to_string())?;
            Ok(Slot::Neighbors)
        }
        Some(other) => Err(format!("unknown tuple type {other}")),
        None => Err("empty item".into()),
    }
}

/// Reads the slot `t` names now (for TIDs pass 1 did not see).
fn slot_now<S: PageSource>(src: &mut S, t: Tid) -> Slot {
    if t.block == 0 || t.block >= src.nblocks() {
        return Slot::Empty;
    }
    src.with_page(t.block, |b| {
        let Ok(p) = Page::new(b) else {
            return Slot::Other;
        };
        if p.check_page_id(HNSW_PAGE_ID).is_err() || header_problem(&p).is_some() {
            return Slot::Other;
        }
        match item_bytes(&p, t.offset) {
            Ok(Some(bytes)) => classify(bytes).unwrap_or(Slot::Other),
            Ok(None) => Slot::Empty,
            Err(_) => Slot::Other,
        }
    })
    .unwrap_or(Slot::Empty)
}

/// Verifies an HNSW index. `heap_blocks`: the table's size in blocks (heap
/// TIDs must fall inside it); `collect_heap`: keep the heap TIDs of the
/// elements for `heapallindexed`.
pub fn verify<S: PageSource>(src: &mut S, heap_blocks: u32, collect_heap: bool) -> Verification {
    let mut v = Verification::default();
    let meta = match src.with_page(0, |b| Page::new(b).and_then(|p| HnswMeta::parse(&p))) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            v.page("bad_meta", 0, e.to_string());
            return v;
        }
        Err(e) => {
            v.page("bad_meta", 0, e);
            return v;
        }
    };
    let m = meta.m;
    let nblocks = src.nblocks();
    v.pages = nblocks as u64;
    let mut slots = Slots {
        blocks: vec![Vec::new(); nblocks as usize],
    };
    let mut next = vec![INVALID_BLOCK; nblocks as usize];
    let mut heap = Vec::new();

    // Pass 1: what every line pointer holds.
    let _ = src.stream(1, nblocks, |blk, bytes| {
        let p = match Page::new(bytes) {
            Ok(p) => p,
            Err(e) => {
                v.page("bad_page", blk, e.to_string());
                return Ok(true);
            }
        };
        if let Err(e) = p.check_page_id(HNSW_PAGE_ID) {
            v.page("bad_page", blk, e.to_string());
            return Ok(true);
        }
        if let Some(why) = header_problem(&p) {
            v.page("bad_page", blk, why);
            return Ok(true);
        }
        next[blk as usize] = p.next_block();
        let max = p.max_offset();
        let mut row = Vec::with_capacity(max as usize);
        for off in 1..=max {
            let slot = match item_bytes(&p, off) {
                Ok(None) => Slot::Empty,
                Ok(Some(t)) => match classify(t) {
                    Ok(s) => s,
                    Err(why) => {
                        v.at("bad_item", blk, off, why);
                        Slot::Other
                    }
                },
                Err(why) => {
                    v.at("bad_item", blk, off, why);
                    Slot::Other
                }
            };
            if let Slot::Element { deleted, .. } = slot {
                v.items += 1;
                let e = HnswElement::parse(item_bytes(&p, off).ok().flatten().unwrap_or(&[]));
                if let (Ok(e), false) = (e, deleted) {
                    for t in &e.heaptids {
                        check_heap_tid(&mut v, *t, heap_blocks, blk, off);
                        if collect_heap {
                            heap.push(tid_key(*t));
                        }
                    }
                }
            }
            row.push(slot);
        }
        slots.blocks[blk as usize] = row;
        Ok(true)
    });

    // Elements by the block of their neighbor tuple, for pass 2.
    let mut owners: Vec<Vec<(Tid, u8, u8)>> = vec![Vec::new(); nblocks as usize];
    for (b, row) in slots.blocks.iter().enumerate() {
        for (i, s) in row.iter().enumerate() {
            let Slot::Element {
                level,
                deleted: false,
                version,
                ntid,
            } = *s
            else {
                continue;
            };
            let at = Tid {
                block: b as u32,
                offset: i as u16 + 1,
            };
            match slots.get(ntid) {
                Some(Slot::Neighbors) => owners[ntid.block as usize].push((at, level, version)),
                // Written meanwhile (on a page added since the count, its
                // list is left unchecked).
                _ if matches!(slot_now(src, ntid), Slot::Neighbors) => {
                    if let Some(o) = owners.get_mut(ntid.block as usize) {
                        o.push((at, level, version));
                    }
                }
                _ => v.at(
                    "neighbor_tuple_missing",
                    at.block,
                    at.offset,
                    format!("the element's neighbor TID {ntid} does not name a neighbor tuple"),
                ),
            }
        }
    }

    // Pass 2: every neighbor list against its element, every edge
    // against the slot it names.
    let mut late: Vec<(Tid, Tid, u8)> = Vec::new(); // (owner, target, layer) to look up again
    let _ = src.stream(1, nblocks, |blk, bytes| {
        let list_owners = &owners[blk as usize];
        if list_owners.is_empty() {
            return Ok(true);
        }
        let Ok(p) = Page::new(bytes) else {
            return Ok(true);
        };
        for &(owner, level, version) in list_owners {
            let Some(Slot::Element { ntid, .. }) = slots.get(owner) else {
                continue;
            };
            let Ok(Some(t)) = item_bytes(&p, ntid.offset) else {
                continue; // reported as missing above, or gone meanwhile
            };
            let Ok(n) = HnswNeighbors::parse(t) else {
                continue;
            };
            if n.version != version {
                v.stale_lists += 1;
                continue;
            }
            v.lists += 1;
            let want = (level as usize + 2) * m as usize;
            if n.count as usize != want {
                v.at(
                    "neighbor_count",
                    blk,
                    ntid.offset,
                    format!(
                        "the list of element {owner} (level {level}) holds {} TIDs, (level + 2) × m = {want}",
                        n.count
                    ),
                );
                continue;
            }
            for lc in 0..=level {
                for target in n.layer(level, lc, m) {
                    v.edges += 1;
                    if target == owner {
                        v.at(
                            "self_neighbor",
                            blk,
                            ntid.offset,
                            format!("element {owner} lists itself in layer {lc}"),
                        );
                        continue;
                    }
                    if target.block == 0 || target.block >= nblocks {
                        late.push((owner, target, lc));
                        continue;
                    }
                    match slots.get(target) {
                        Some(Slot::Element { level: tl, deleted, .. }) => {
                            if deleted {
                                v.edges_to_deleted += 1;
                            }
                            if tl < lc {
                                v.at(
                                    "neighbor_level",
                                    blk,
                                    ntid.offset,
                                    format!(
                                        "element {owner} lists {target} (level {tl}) in layer {lc}"
                                    ),
                                );
                            }
                        }
                        _ => late.push((owner, target, lc)),
                    }
                }
            }
        }
        Ok(true)
    });

    // TIDs pass 1 could not place: inserted meanwhile, or broken.
    for (owner, target, lc) in late {
        let nb = src.nblocks();
        let ntid_place = match slots.get(owner) {
            Some(Slot::Element { ntid, .. }) => ntid,
            _ => owner,
        };
        if target.block >= nb {
            v.at(
                "neighbor_past_end",
                ntid_place.block,
                ntid_place.offset,
                format!(
                    "element {owner} lists {target} in layer {lc}, past the index's {nb} blocks"
                ),
            );
            continue;
        }
        match slot_now(src, target) {
            Slot::Element { level: tl, .. } if tl >= lc => {}
            Slot::Element { level: tl, .. } => v.at(
                "neighbor_level",
                ntid_place.block,
                ntid_place.offset,
                format!("element {owner} lists {target} (level {tl}) in layer {lc}"),
            ),
            other => v.at(
                "neighbor_not_element",
                ntid_place.block,
                ntid_place.offset,
                format!(
                    "element {owner} lists {target} in layer {lc}, which holds {}",
                    match other {
                        Slot::Neighbors => "a neighbor tuple",
                        Slot::Empty if target.block == 0 => "the meta page",
                        Slot::Empty => "no item",
                        _ => "no element",
                    }
                ),
            ),
        }
    }

    check_chain(&mut v, &next, nblocks);
    check_entry(src, &mut v, &slots, &meta);
    if collect_heap {
        heap.sort_unstable();
        heap.dedup();
        v.heap_tids = heap;
    }
    v
}

/// The pages form one chain from block 1 that ends and never loops.
fn check_chain(v: &mut Verification, next: &[u32], nblocks: u32) {
    if nblocks <= 1 {
        return;
    }
    let mut seen = vec![false; nblocks as usize];
    let mut blk = 1u32;
    loop {
        seen[blk as usize] = true;
        let n = next[blk as usize];
        if n == INVALID_BLOCK {
            break;
        }
        if n == 0 || n >= nblocks {
            // A page added since the count is past it, not broken.
            if n != nblocks {
                v.page(
                    "chain_past_end",
                    blk,
                    format!("next page {n} is outside blocks 1..{}", nblocks - 1),
                );
            }
            break;
        }
        if seen[n as usize] {
            v.page(
                "chain_cycle",
                blk,
                format!("next page {n} was already in the chain"),
            );
            break;
        }
        blk = n;
    }
}

/// The entry point exists, is not deleted and has the top level; no
/// element is above it. The meta page is read again first (an insert may
/// have raised the entry point during the check).
fn check_entry<S: PageSource>(src: &mut S, v: &mut Verification, slots: &Slots, first: &HnswMeta) {
    let meta = src
        .with_page(0, |b| Page::new(b).and_then(|p| HnswMeta::parse(&p)).ok())
        .ok()
        .flatten()
        .unwrap_or_else(|| first.clone());
    let any = slots
        .blocks
        .iter()
        .flatten()
        .any(|s| matches!(s, Slot::Element { deleted: false, .. }));
    if !meta.entry.is_valid() {
        if any {
            v.page(
                "entry_missing",
                0,
                "the meta page has no entry point, but the index has elements".into(),
            );
        }
        return;
    }
    let entry = meta.entry;
    let slot = match slots.get(entry) {
        Some(s @ Slot::Element { .. }) => s,
        _ => slot_now(src, entry),
    };
    match slot {
        Slot::Element { deleted: true, .. } => v.page(
            "entry_deleted",
            0,
            format!("the entry point {entry} is a deleted element"),
        ),
        Slot::Element { level, .. } if level as i16 != meta.entry_level => v.page(
            "entry_level",
            0,
            format!(
                "the entry point {entry} has level {level}, the meta page says {}",
                meta.entry_level
            ),
        ),
        Slot::Element { .. } => {}
        _ => v.page(
            "entry_missing",
            0,
            format!("the entry point {entry} is not an element"),
        ),
    }
    for (b, row) in slots.blocks.iter().enumerate() {
        for (i, s) in row.iter().enumerate() {
            if let Slot::Element {
                level,
                deleted: false,
                ..
            } = *s
            {
                if level as i16 > meta.entry_level {
                    v.at(
                        "entry_level",
                        b as u32,
                        i as u16 + 1,
                        format!(
                            "element of level {level} above the entry point's level {}",
                            meta.entry_level
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "hnsw_tests.rs"]
mod tests;
