use super::*;
use crate::inspect::layout::testpage::*;
use crate::inspect::layout::{BLCKSZ, HNSW_PAGE_ID, INVALID_BLOCK};
use crate::inspect::MemPages;

const M: u16 = 2;

fn tid(block: u32, offset: u16) -> Tid {
    Tid { block, offset }
}

/// How the test graph is spoiled.
#[derive(Default, Clone)]
struct Spoil {
    /// B's layer-0 list.
    b_list: Option<Vec<Tid>>,
    /// A's layer-1 list.
    a_top: Option<Vec<Tid>>,
    b_count: Option<u16>,
    a_deleted: bool,
    next_of_1: Option<u32>,
    c_heap: Option<Tid>,
}

/// A (level 1, the entry point), B and C (level 0) on page 1, each
/// followed by its neighbor list; every element lists the other two.
fn index(s: Spoil) -> Vec<Vec<u8>> {
    let (a, b, c) = (tid(1, 1), tid(1, 3), tid(1, 5));
    let mut meta = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    meta.set_contents(&hnsw_meta(2, M, 8, a, 1));
    let mut p = PageBuilder::new(HNSW_PAGE_ID, s.next_of_1.unwrap_or(INVALID_BLOCK));
    p.add(&hnsw_element(
        1,
        s.a_deleted,
        &[tid(0, 1)],
        tid(1, 2),
        &[0.0, 0.0],
    ));
    p.add(&hnsw_neighbors(
        1,
        M,
        &[vec![b, c], s.a_top.unwrap_or_default()],
    ));
    p.add(&hnsw_element(
        0,
        false,
        &[tid(0, 2)],
        tid(1, 4),
        &[1.0, 0.0],
    ));
    let mut bn = hnsw_neighbors(0, M, &[s.b_list.unwrap_or(vec![a, c])]);
    if let Some(n) = s.b_count {
        bn[2..4].copy_from_slice(&n.to_le_bytes());
    }
    p.add(&bn);
    p.add(&hnsw_element(
        0,
        false,
        &[s.c_heap.unwrap_or(tid(0, 3))],
        tid(1, 6),
        &[0.0, 1.0],
    ));
    p.add(&hnsw_neighbors(0, M, &[vec![a, b]]));
    vec![meta.b, p.b]
}

fn check(s: Spoil) -> Verification {
    let mut v = verify(&mut MemPages::new(index(s)), 1, true);
    v.settle_heap(1);
    v
}

fn kinds(v: &Verification) -> Vec<(&'static str, Option<u32>, Option<u16>)> {
    v.violations
        .iter()
        .map(|x| (x.kind, x.block, x.offset))
        .collect()
}

#[test]
fn a_sound_graph_has_no_violation() {
    let v = check(Spoil::default());
    assert!(v.violations.is_empty(), "{:?}", v.violations);
    assert_eq!((v.items, v.lists, v.edges), (3, 3, 6));
    assert_eq!(v.heap_tids, vec![1, 2, 3]);
}

#[test]
fn each_broken_invariant_is_reported_at_its_place() {
    let b_list = |l: Vec<Tid>| Spoil {
        b_list: Some(l),
        ..Spoil::default()
    };
    // A neighbor TID naming the meta page, one past the end, B itself.
    assert_eq!(
        kinds(&check(b_list(vec![tid(0, 1)]))),
        vec![("neighbor_not_element", Some(1), Some(4))]
    );
    assert_eq!(
        kinds(&check(b_list(vec![tid(9, 1)]))),
        vec![("neighbor_past_end", Some(1), Some(4))]
    );
    assert_eq!(
        kinds(&check(b_list(vec![tid(1, 3)]))),
        vec![("self_neighbor", Some(1), Some(4))]
    );
    // B's list naming a neighbor tuple.
    assert_eq!(
        kinds(&check(b_list(vec![tid(1, 2)]))),
        vec![("neighbor_not_element", Some(1), Some(4))]
    );
    // A level-0 element in A's layer-1 list.
    let v = check(Spoil {
        a_top: Some(vec![tid(1, 3)]),
        ..Spoil::default()
    });
    assert_eq!(kinds(&v), vec![("neighbor_level", Some(1), Some(2))]);
    // A truncated list.
    let v = check(Spoil {
        b_count: Some(3),
        ..Spoil::default()
    });
    assert_eq!(kinds(&v), vec![("neighbor_count", Some(1), Some(4))]);
    // The entry point deleted.
    let v = check(Spoil {
        a_deleted: true,
        ..Spoil::default()
    });
    assert!(
        kinds(&v).contains(&("entry_deleted", Some(0), None)),
        "{:?}",
        v.violations
    );
    // A page chained to itself.
    let v = check(Spoil {
        next_of_1: Some(1),
        ..Spoil::default()
    });
    assert_eq!(kinds(&v), vec![("chain_cycle", Some(1), None)]);
    // A heap TID past the table.
    let v = check(Spoil {
        c_heap: Some(tid(5, 1)),
        ..Spoil::default()
    });
    assert_eq!(kinds(&v), vec![("heap_tid_invalid", Some(1), Some(5))]);
}

#[test]
fn damaged_pages_are_reported_never_a_panic() {
    let mut pages = index(Spoil::default());
    pages[1] = vec![0xFF; BLCKSZ];
    let v = verify(&mut MemPages::new(pages), 1, false);
    assert_eq!(v.violations[0].kind, "bad_page");
    // Bytes of the item area flipped one at a time, then in bursts: every
    // outcome is a report.
    let sound = index(Spoil::default());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..3000 {
        let mut pages = sound.clone();
        let flips = if round < 1000 { 1 } else { 16 };
        for _ in 0..flips {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % BLCKSZ;
            pages[1][at] ^= (x >> 32) as u8 | 1;
        }
        let _ = verify(&mut MemPages::new(pages), 1, true);
    }
}
