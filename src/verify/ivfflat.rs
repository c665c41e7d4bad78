//! IVFFlat invariants: the list pages chain from block 1 and hold one list
//! tuple per list the meta page counts; each list's entry pages chain from
//! its start page without a loop and end, no page belongs to two lists,
//! every page is an IVFFlat page with a sound header, every entry is a
//! well-formed index tuple whose heap TID fits the table. (Whether entries
//! sit in the list of their nearest center is a figure, measured on a
//! sample by the inspection: floating-point ties make it no invariant.)

use crate::inspect::layout::{IndexTuple, IvfList, IvfMeta, Page, INVALID_BLOCK, IVFFLAT_PAGE_ID};
use crate::inspect::PageSource;

use super::{check_heap_tid, header_problem, item_bytes, tid_key, Verification};

/// A page read through `src`, checked as an IVFFlat page: its next block,
/// or `None` (reported) when it is not one.
fn page_ok<S: PageSource, R>(
    src: &mut S,
    v: &mut Verification,
    blk: u32,
    mut f: impl FnMut(&Page, &mut Verification) -> R,
) -> Option<(u32, R)> {
    let r = src.with_page(blk, |b| {
        let p = match Page::new(b) {
            Ok(p) => p,
            Err(e) => return Err(e.to_string()),
        };
        if let Err(e) = p.check_page_id(IVFFLAT_PAGE_ID) {
            return Err(e.to_string());
        }
        if let Some(why) = header_problem(&p) {
            return Err(why);
        }
        let mut local = Verification::default();
        let r = f(&p, &mut local);
        Ok((p.next_block(), r, local))
    });
    match r {
        Ok(Ok((next, r, local))) => {
            for x in local.violations {
                v.add(x.kind, x.block, x.offset, x.detail);
            }
            v.items += local.items;
            v.heap_tids.extend(local.heap_tids);
            v.heap_beyond.extend(local.heap_beyond);
            Some((next, r))
        }
        Ok(Err(why)) | Err(why) => {
            v.page("bad_page", blk, why);
            None
        }
    }
}

pub fn verify<S: PageSource>(src: &mut S, heap_blocks: u32, collect_heap: bool) -> Verification {
    let mut v = Verification::default();
    let meta = match src.with_page(0, |b| Page::new(b).and_then(|p| IvfMeta::parse(&p))) {
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
    let nblocks = src.nblocks();
    v.pages = nblocks as u64;
    // Which list (or the list pages, u32::MAX - 1) each page belongs to.
    const LIST_PAGES: u32 = u32::MAX - 1;
    let mut owner = vec![u32::MAX; nblocks as usize];

    // The list pages.
    let mut starts: Vec<u32> = Vec::new();
    let mut blk = 1u32;
    while blk != INVALID_BLOCK {
        if blk == 0 || blk >= nblocks {
            v.page(
                "chain_past_end",
                blk,
                format!("a list page's next page {blk} is outside the index"),
            );
            break;
        }
        if owner[blk as usize] != u32::MAX {
            v.page("chain_cycle", blk, "the list pages loop".into());
            break;
        }
        owner[blk as usize] = LIST_PAGES;
        let got = page_ok(src, &mut v, blk, |p, local| {
            let mut found = Vec::new();
            for off in 1..=p.max_offset() {
                match item_bytes(p, off) {
                    Ok(Some(t)) => match IvfList::parse(t) {
                        Ok(l) => found.push(l.start_page),
                        Err(e) => local.at("bad_item", blk, off, e.to_string()),
                    },
                    Ok(None) => {}
                    Err(why) => local.at("bad_item", blk, off, why),
                }
            }
            found
        });
        let Some((next, found)) = got else { break };
        starts.extend(found);
        blk = next;
    }
    v.lists = starts.len() as u64;
    if starts.len() != meta.lists as usize {
        v.page(
            "lists_count",
            0,
            format!(
                "the meta page counts {} lists, the list pages hold {}",
                meta.lists,
                starts.len()
            ),
        );
    }

    // Each list's entry pages.
    for (list, start) in starts.iter().enumerate() {
        let list = list as u32;
        let mut blk = *start;
        let mut prev: Option<u32> = None;
        while blk != INVALID_BLOCK {
            let from = prev.unwrap_or(0);
            if blk == 0 || blk >= src.nblocks() {
                v.page(
                    "chain_past_end",
                    from,
                    format!("list {list}: next page {blk} is outside the index"),
                );
                break;
            }
            if (blk as usize) < owner.len() && owner[blk as usize] != u32::MAX {
                let kind = if owner[blk as usize] == list {
                    "chain_cycle"
                } else {
                    "page_in_two_lists"
                };
                let whose = match owner[blk as usize] {
                    LIST_PAGES => "the list pages".to_string(),
                    o if o == list => "this list already".to_string(),
                    o => format!("list {o}"),
                };
                v.page(
                    kind,
                    from,
                    format!("list {list}: next page {blk} belongs to {whose}"),
                );
                break;
            }
            if let Some(o) = owner.get_mut(blk as usize) {
                *o = list;
            }
            let here = blk;
            let got = page_ok(src, &mut v, blk, |p, local| {
                for off in 1..=p.max_offset() {
                    match item_bytes(p, off) {
                        Ok(Some(t)) => match IndexTuple::parse(t) {
                            Ok(e) => {
                                local.items += 1;
                                check_heap_tid(local, e.heap_tid, heap_blocks, here, off);
                                if collect_heap {
                                    local.heap_tids.push(tid_key(e.heap_tid));
                                }
                            }
                            Err(e) => local.at("bad_item", here, off, e.to_string()),
                        },
                        Ok(None) => {}
                        Err(why) => local.at("bad_item", here, off, why),
                    }
                }
            });
            let Some((next, ())) = got else { break };
            prev = Some(blk);
            blk = next;
        }
    }
    v.heap_tids.sort_unstable();
    v.heap_tids.dedup();
    v
}

/// The same with the heap TIDs settled against `heap_blocks` (tests).
#[cfg(test)]
fn verify_settled<S: PageSource>(src: &mut S, heap_blocks: u32, collect: bool) -> Verification {
    let mut v = verify(src, heap_blocks, collect);
    v.settle_heap(heap_blocks);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::layout::testpage::*;
    use crate::inspect::layout::{Tid, IVFFLAT_MAGIC, IVFFLAT_VERSION};
    use crate::inspect::MemPages;

    fn meta(lists: u16) -> Vec<u8> {
        let mut p = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        let mut c = vec![0u8; 12];
        c[0..4].copy_from_slice(&IVFFLAT_MAGIC.to_le_bytes());
        c[4..8].copy_from_slice(&IVFFLAT_VERSION.to_le_bytes());
        c[8..10].copy_from_slice(&2u16.to_le_bytes());
        c[10..12].copy_from_slice(&lists.to_le_bytes());
        p.set_contents(&c);
        p.b
    }

    fn list_tuple(start: u32) -> Vec<u8> {
        let mut t = start.to_le_bytes().to_vec();
        t.extend_from_slice(&start.to_le_bytes());
        t.extend_from_slice(&vector_varlena(&[0.0, 0.0]));
        t
    }

    fn entry(heap: Tid) -> Vec<u8> {
        let mut t = tid_bytes(heap).to_vec();
        let v = vector_varlena(&[1.0, 2.0]);
        let size = (8 + v.len()) as u16;
        t.extend_from_slice(&size.to_le_bytes());
        t.extend_from_slice(&v);
        t
    }

    /// Meta, one list page with two lists, list 0 on pages 2 -> 3, list 1
    /// on page 4.
    fn index(next_of_3: u32) -> Vec<Vec<u8>> {
        let mut lp = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        lp.add(&list_tuple(2));
        lp.add(&list_tuple(4));
        let mut p2 = PageBuilder::new(IVFFLAT_PAGE_ID, 3);
        p2.add(&entry(Tid {
            block: 0,
            offset: 1,
        }));
        let mut p3 = PageBuilder::new(IVFFLAT_PAGE_ID, next_of_3);
        p3.add(&entry(Tid {
            block: 0,
            offset: 2,
        }));
        let mut p4 = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        p4.add(&entry(Tid {
            block: 1,
            offset: 1,
        }));
        vec![meta(2), lp.b, p2.b, p3.b, p4.b]
    }

    #[test]
    fn a_sound_index_has_no_violation() {
        let v = verify(&mut MemPages::new(index(INVALID_BLOCK)), 2, true);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.lists, v.items), (2, 3));
        assert_eq!(v.heap_tids, vec![1, 2, (1 << 16) | 1]);
    }

    #[test]
    fn loops_foreign_pages_and_bad_tids_are_reported_with_their_place() {
        let v = verify(&mut MemPages::new(index(2)), 2, false);
        assert_eq!(v.violations[0].kind, "chain_cycle");
        assert_eq!(v.violations[0].block, Some(3));
        let v = verify(&mut MemPages::new(index(4)), 2, false);
        assert_eq!(v.violations[0].kind, "page_in_two_lists");
        let v = verify(&mut MemPages::new(index(99)), 2, false);
        assert_eq!(v.violations[0].kind, "chain_past_end");
        // The table has one block: (1,1) is past it.
        let v = verify_settled(&mut MemPages::new(index(INVALID_BLOCK)), 1, false);
        assert_eq!(v.violations[0].kind, "heap_tid_invalid");
        assert_eq!(
            (v.violations[0].block, v.violations[0].offset),
            (Some(4), Some(1))
        );
        // Fewer list tuples than the meta page counts.
        let mut pages = index(INVALID_BLOCK);
        pages[0] = meta(3);
        let v = verify(&mut MemPages::new(pages), 2, false);
        assert_eq!(v.violations[0].kind, "lists_count");
        // Garbage instead of a page.
        let mut pages = index(INVALID_BLOCK);
        pages[3] = vec![0xFF; crate::inspect::layout::BLCKSZ];
        let v = verify(&mut MemPages::new(pages), 2, false);
        assert_eq!(v.violations[0].kind, "bad_page");
        assert_eq!(v.violations[0].block, Some(3));
    }
}
