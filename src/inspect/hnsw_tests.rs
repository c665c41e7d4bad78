//! Tests of the HNSW walk on synthetic pages (`hnsw.rs`).

use super::super::layout::testpage::*;
use super::super::MemPages;
use super::*;

fn tid(block: u32, offset: u16) -> Tid {
    Tid { block, offset }
}
fn heap(n: u16) -> Vec<Tid> {
    vec![tid(1000, n)]
}

/// A four-element graph with m = 2 over two pages:
/// A(level 1, entry) <-> B, B -> C, D is live but nobody points at it,
/// Z is a zombie reachable from C, X a deleted slot.
fn graph() -> MemPages {
    let m = 2;
    let mut meta = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    meta.set_contents(&hnsw_meta(2, m, 8, tid(1, 1), 1));
    let mut p1 = PageBuilder::new(HNSW_PAGE_ID, 2);
    let mut p2 = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    let v = [0.0f32, 1.0];
    // page 1: A(1,1) list (1,2); B(1,3) list (2,6) (on a later page);
    // C(1,4) list (1,5)
    p1.add(&hnsw_element(1, false, &heap(1), tid(1, 2), &v));
    p1.add(&hnsw_neighbors(1, m, &[vec![tid(1, 3)], vec![tid(1, 3)]]));
    p1.add(&hnsw_element(0, false, &heap(2), tid(2, 6), &v));
    p1.add(&hnsw_element(0, false, &heap(3), tid(1, 5), &v));
    p1.add(&hnsw_neighbors(0, m, &[vec![tid(2, 1)]]));
    // page 2: Z(2,1) list (2,2); D(2,3) list (2,4); X(2,5) deleted;
    // B's list at (2,6): A and C, plus an edge to the deleted X.
    p2.add(&hnsw_element(0, false, &[], tid(2, 2), &v));
    p2.add(&hnsw_neighbors(0, m, &[vec![tid(1, 4)]]));
    p2.add(&hnsw_element(0, false, &heap(4), tid(2, 4), &v));
    p2.add(&hnsw_neighbors(0, m, &[vec![tid(1, 1)]]));
    p2.add(&hnsw_element(0, true, &[], Tid::default(), &v));
    p2.add(&hnsw_neighbors(
        0,
        m,
        &[vec![tid(1, 1), tid(1, 4), tid(2, 5)]],
    ));
    MemPages::new(vec![meta.b, p1.b, p2.b])
}

#[test]
fn counts_states_and_reachability() {
    let mut src = graph();
    let s = walk(&mut src).unwrap();
    assert_eq!(s.elements_total, 6);
    assert_eq!(s.elements_live, 4);
    assert_eq!(s.elements_zombie, 1);
    assert_eq!(s.elements_deleted, 1);
    assert_eq!(s.heap_tids, 4);
    // A, B, C reachable; D has no in-edge.
    assert_eq!(s.reachable_live, 3);
    assert_eq!(s.unreachable(), 1);
    assert_eq!(s.reachable_zombie, 1);
    assert_eq!(s.dangling_edges, 1);
    assert_eq!(s.edges_to_zombies, 1);
    assert_eq!(s.layers[0].live_in_layer, 4);
    assert_eq!(s.layers[1].live_in_layer, 1);
    assert_eq!(s.layers[1].live_top, 1);
    assert_eq!(s.entry_state, Some(ElementState::Live));
    assert_eq!(s.max_live_level, Some(1));
    // Layer 0 degrees of live elements: A 1, B 3, C 1, D 1.
    assert_eq!(s.layers[0].degree_sum, 6);
    assert_eq!(s.stale_neighbor_lists, 0);
    assert_eq!(s.missing_neighbor_lists, 0);
    // Growth expands A's list (page 1), which reaches B: two of the
    // five elements, the target; the full sweep does the rest.
    assert_eq!(s.growth_reads, 1);
    assert_eq!(s.sweeps, 1);
    // Without growth nor kept lists: C's list on page 1 was swept
    // before C was reached, so a second sweep revisits page 1.
    let bare = Tuning {
        grow_share: (0, 1),
        kept_bytes_per_element: 0,
    };
    let b = walk_with(&mut graph(), bare).unwrap();
    assert_eq!((b.growth_reads, b.sweeps), (0, 2));
    assert_eq!(b.reachable_live, 3);
    // With kept lists instead, reaching C expands its kept list.
    let kept = Tuning {
        grow_share: (0, 1),
        kept_bytes_per_element: 64,
    };
    let k = walk_with(&mut graph(), kept).unwrap();
    assert_eq!((k.growth_reads, k.sweeps, k.reachable_live), (0, 1, 3));
    let un = unreachable_elements(&mut graph(), 10).unwrap();
    assert_eq!(un.len(), 1);
    assert_eq!(un[0].element, tid(2, 3));
    assert_eq!(un[0].heap_tids, heap(4));
}

#[test]
fn empty_index_and_refusals() {
    let mut meta = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    meta.set_contents(&hnsw_meta(2, 16, 64, Tid::default(), -1));
    let p1 = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    let s = walk(&mut MemPages::new(vec![meta.b.clone(), p1.b])).unwrap();
    assert_eq!(s.elements_total, 0);
    assert_eq!(s.unreachable(), 0);
    assert_eq!(s.entry_state, None);

    let looping = PageBuilder::new(HNSW_PAGE_ID, 1);
    let e = walk(&mut MemPages::new(vec![meta.b.clone(), looping.b])).unwrap_err();
    assert!(e.contains("loops"), "{e}");
    let wrong = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
    assert!(walk(&mut MemPages::new(vec![meta.b, wrong.b])).is_err());
}

#[test]
fn stale_list_is_ignored() {
    let m = 2;
    let mut meta = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    meta.set_contents(&hnsw_meta(2, m, 8, tid(1, 1), 0));
    let mut p1 = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    p1.add(&hnsw_element(0, false, &heap(1), tid(1, 2), &[0.0]));
    // Wrong count: a level-1 list for a level-0 element.
    p1.add(&hnsw_neighbors(1, m, &[vec![tid(1, 3)], vec![]]));
    p1.add(&hnsw_element(0, false, &heap(2), tid(1, 4), &[0.0]));
    p1.add(&hnsw_neighbors(0, m, &[vec![tid(1, 1)]]));
    let s = walk(&mut MemPages::new(vec![meta.b, p1.b])).unwrap();
    assert_eq!(s.stale_neighbor_lists, 1);
    assert_eq!(s.reachable_live, 1);
    assert_eq!(s.unreachable(), 1);
}

#[test]
fn long_backward_chain_needs_many_sweeps_and_finds_all() {
    // Element i on page i+1 points to element i-1 (a backward chain);
    // the entry point is the last element.
    let m = 2;
    let n = 30u32;
    let mut pages = vec![];
    let mut meta = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    meta.set_contents(&hnsw_meta(1, m, 8, tid(n, 1), 0));
    pages.push(meta.b);
    for i in 1..=n {
        let next = if i == n { INVALID_BLOCK } else { i + 1 };
        let mut p = PageBuilder::new(HNSW_PAGE_ID, next);
        p.add(&hnsw_element(0, false, &heap(i as u16), tid(i, 2), &[0.0]));
        let ns = if i > 1 { vec![tid(i - 1, 1)] } else { vec![] };
        p.add(&hnsw_neighbors(0, m, &[ns]));
        pages.push(p.b);
    }
    let s = walk(&mut MemPages::new(pages)).unwrap();
    assert_eq!(s.reachable_live, n as u64);
    assert_eq!(s.unreachable(), 0);
}

/// An independent, plain reading of the same pages: every item in
/// maps, a queue-based breadth-first search, the figures counted one
/// list at a time. The walk must agree with it on everything.
fn reference(pages: &[Vec<u8>]) -> (HnswScan, Vec<Unreachable>) {
    use std::collections::{HashMap, HashSet};
    #[derive(Clone, Copy, PartialEq)]
    enum Item {
        Element,
        List,
        Other,
    }
    let meta = HnswMeta::parse(&Page::new(&pages[0]).unwrap()).unwrap();
    let m = meta.m;
    let nblocks = pages.len() as u32;
    let mut s = HnswScan {
        pages: nblocks as u64,
        ..Default::default()
    };
    // Pass over the chain.
    let mut chain = vec![];
    let mut blk = 1;
    while blk != INVALID_BLOCK {
        chain.push(blk);
        blk = Page::new(&pages[blk as usize]).unwrap().next_block();
    }
    let mut items: HashMap<Tid, (Item, &[u8])> = HashMap::new();
    let mut elements: Vec<(Tid, HnswElement)> = vec![];
    for &b in &chain {
        let page = Page::new(&pages[b as usize]).unwrap();
        s.free_bytes += page.free_space() as u64;
        for off in 1..=page.max_offset() {
            let t = tid(b, off);
            let Some(bytes) = page.item(off) else {
                items.insert(t, (Item::Other, &[]));
                continue;
            };
            let kind = match bytes[0] {
                HNSW_ELEMENT_TYPE if bytes.len() >= HNSW_ELEMENT_VALUE_OFFSET => {
                    let e = HnswElement::parse(bytes).unwrap();
                    s.elements_total += 1;
                    match HnswElement::state_of(bytes) {
                        ElementState::Live => {
                            s.elements_live += 1;
                            s.heap_tids += e.heaptids.len() as u64;
                            let l = e.level as usize;
                            if s.layers.len() <= l {
                                s.layers.resize(l + 1, LayerStats::default());
                            }
                            s.layers[l].live_top += 1;
                            for layer in &mut s.layers[..=l] {
                                layer.live_in_layer += 1;
                            }
                            s.max_live_level = s.max_live_level.max(Some(e.level));
                        }
                        ElementState::Zombie => s.elements_zombie += 1,
                        ElementState::Deleted => s.elements_deleted += 1,
                    }
                    elements.push((t, e));
                    Item::Element
                }
                HNSW_NEIGHBOR_TYPE => {
                    s.neighbor_tuples += 1;
                    Item::List
                }
                _ => Item::Other,
            };
            items.insert(t, (kind, bytes));
        }
    }
    s.chain_pages = chain.len() as u64;
    let state = |t: Tid| -> Option<ElementState> {
        match items.get(&t) {
            Some((Item::Element, b)) => Some(HnswElement::state_of(b)),
            _ => None,
        }
    };
    let is_el = |t: Tid| matches!(state(t), Some(ElementState::Live | ElementState::Zombie));
    // Owners: the last element (in chain order) pointing at a list.
    let mut owner: HashMap<Tid, Tid> = HashMap::new();
    for (t, e) in &elements {
        if !is_el(*t) {
            continue;
        }
        if matches!(items.get(&e.neighbortid), Some((Item::List, _))) {
            owner.insert(e.neighbortid, *t);
        } else {
            s.missing_neighbor_lists += 1;
        }
    }
    let element = |t: Tid| HnswElement::parse(items[&t].1).unwrap();
    // A list's valid neighbors per layer, if it matches its owner.
    let layers_of = |l: Tid| -> Option<Vec<Vec<Tid>>> {
        let o = element(owner[&l]);
        let list = HnswNeighbors::parse(items[&l].1).ok()?;
        list.matches(o.level, o.version, m).then(|| {
            (0..=o.level)
                .map(|lc| list.layer(o.level, lc, m).collect())
                .collect()
        })
    };
    // Figures of every owned list.
    for (&l, &o) in &owner {
        let Ok(list) = HnswNeighbors::parse(items[&l].1) else {
            continue;
        };
        let oe = element(o);
        if !list.matches(oe.level, oe.version, m) {
            s.stale_neighbor_lists += 1;
            continue;
        }
        let live = state(o) == Some(ElementState::Live);
        for (lc, targets) in layers_of(l).unwrap().iter().enumerate() {
            for &t in targets {
                s.edges += 1;
                match items.get(&t) {
                    Some((Item::Element, b)) => match HnswElement::state_of(b) {
                        ElementState::Live => {}
                        ElementState::Zombie => s.edges_to_zombies += 1,
                        ElementState::Deleted => s.dangling_edges += 1,
                    },
                    Some((Item::List, _)) => s.dangling_edges += 1,
                    Some((Item::Other, _)) => s.concurrent_items += 1,
                    None if t.block >= nblocks => s.dangling_edges += 1,
                    None => s.concurrent_items += 1,
                }
            }
            if live {
                let ls = &mut s.layers[lc];
                ls.degree_sum += targets.len() as u64;
                ls.degree_count += 1;
                if lc == 0 {
                    s.layer0_used += targets.len() as u64;
                    s.layer0_lists += 1;
                }
            }
        }
    }
    // Breadth-first search from the entry point.
    let list_of: HashMap<Tid, Tid> = owner.iter().map(|(l, o)| (*o, *l)).collect();
    let mut reached = HashSet::new();
    let mut queue = std::collections::VecDeque::new();
    if meta.entry_level >= 0 && meta.entry.is_valid() {
        s.entry_state = state(meta.entry);
        s.entry_level_actual = is_el(meta.entry).then(|| element(meta.entry).level);
        if is_el(meta.entry) {
            reached.insert(meta.entry);
            queue.push_back(meta.entry);
        }
    }
    while let Some(e) = queue.pop_front() {
        let Some(layers) = list_of.get(&e).and_then(|&l| layers_of(l)) else {
            continue;
        };
        for t in layers.into_iter().flatten() {
            if is_el(t) && reached.insert(t) {
                queue.push_back(t);
            }
        }
    }
    for t in &reached {
        match state(*t) {
            Some(ElementState::Live) => s.reachable_live += 1,
            _ => s.reachable_zombie += 1,
        }
    }
    let mut unreachable: Vec<Unreachable> = elements
        .iter()
        .filter(|(t, _)| state(*t) == Some(ElementState::Live) && !reached.contains(t))
        .map(|(t, e)| Unreachable {
            element: *t,
            level: e.level,
            heap_tids: e.heaptids.clone(),
        })
        .collect();
    unreachable.sort_by_key(|u| (u.element.block, u.element.offset));
    (s, unreachable)
}

/// A random index: `m` 2 to 4, up to 3 levels, live, zombie and
/// deleted elements, up to 60 items a page, lists on the element's page
/// or the next, stale lists, edges to deleted elements, to lists, past
/// the end of a page or of the index, unknown items, a page left out of
/// the chain, and sometimes a chain out of block order.
fn random_index(seed: u64) -> Vec<Vec<u8>> {
    use super::super::ivfflat::SplitMix;
    let mut r = SplitMix(seed);
    let m = 2 + r.below(3) as u16;
    let npages = 1 + r.below(12) as u32;
    let pairs_max = [3, 12, 30][r.below(3) as usize];
    // Layout: per page, items in order.
    #[derive(Clone, Copy)]
    enum Spec {
        Element(usize),
        List(usize),
        Orphan,
        Unknown,
    }
    struct El {
        level: u8,
        state: u8, // 0 live, 1 zombie, 2 deleted
        version: u8,
        at: Tid,
        list: Tid,
    }
    let mut layout: Vec<Vec<Spec>> = vec![vec![]; npages as usize + 2];
    let mut els: Vec<El> = vec![];
    let mut carry: Vec<usize> = vec![];
    for (b, specs) in layout
        .iter_mut()
        .enumerate()
        .take(npages as usize + 1)
        .skip(1)
    {
        for e in std::mem::take(&mut carry) {
            specs.push(Spec::List(e));
        }
        for _ in 0..1 + r.below(pairs_max) {
            let level = match r.below(20) {
                0 => 2,
                1..=4 => 1,
                _ => 0,
            };
            let state = match r.below(10) {
                0 => 1,
                1 => 2,
                _ => 0,
            };
            let e = els.len();
            els.push(El {
                level,
                state,
                version: r.below(3) as u8,
                at: Tid::default(),
                list: Tid::default(),
            });
            specs.push(Spec::Element(e));
            if b < npages as usize && r.below(8) == 0 {
                carry.push(e);
            } else {
                specs.push(Spec::List(e));
            }
            match r.below(30) {
                0 => specs.push(Spec::Orphan),
                1 => specs.push(Spec::Unknown),
                _ => {}
            }
        }
    }
    // A page outside the chain, after the last one.
    let outside = npages as usize + 1;
    layout[outside].push(Spec::Element(els.len()));
    els.push(El {
        level: 0,
        state: 0,
        version: 0,
        at: Tid::default(),
        list: Tid::default(),
    });
    layout[outside].push(Spec::List(els.len() - 1));
    let mut lists_at = vec![];
    for (b, specs) in layout.iter().enumerate() {
        for (i, spec) in specs.iter().enumerate() {
            let t = tid(b as u32, i as u16 + 1);
            match *spec {
                Spec::Element(e) => els[e].at = t,
                Spec::List(e) => els[e].list = t,
                Spec::Orphan => lists_at.push(t),
                Spec::Unknown => {}
            }
        }
    }
    lists_at.extend(els.iter().map(|e| e.list));
    let nblocks = npages + 2;
    let target = |r: &mut SplitMix| -> Tid {
        match r.below(40) {
            0 => lists_at[r.below(lists_at.len() as u64) as usize],
            1 => tid(nblocks + r.below(3) as u32, 1),
            2 => tid(1 + r.below(npages as u64) as u32, 100 + r.below(5) as u16),
            _ => els[r.below(els.len() as u64) as usize].at,
        }
    };
    // Chain order.
    let mut chain: Vec<u32> = (1..=npages).collect();
    if r.below(4) == 0 {
        for i in (2..chain.len()).rev() {
            let j = 1 + r.below(i as u64) as usize;
            chain.swap(i, j);
        }
    }
    let mut next = vec![INVALID_BLOCK; nblocks as usize];
    for w in chain.windows(2) {
        next[w[0] as usize] = w[1];
    }
    let entry = if r.below(10) == 0 {
        Tid::default()
    } else {
        els[r.below(els.len() as u64) as usize].at
    };
    let entry_level = if entry.is_valid() {
        els.iter().find(|e| e.at == entry).unwrap().level as i16
    } else {
        -1
    };
    let mut meta = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
    meta.set_contents(&hnsw_meta(2, m, 8, entry, entry_level));
    let mut pages = vec![meta.b];
    for b in 1..nblocks as usize {
        let mut p = PageBuilder::new(HNSW_PAGE_ID, next[b]);
        for spec in &layout[b] {
            match *spec {
                Spec::Element(e) => {
                    let el = &els[e];
                    let heap: Vec<Tid> = match el.state {
                        0 => (0..1 + r.below(3))
                            .map(|i| tid(5000, 1 + i as u16))
                            .collect(),
                        _ => vec![],
                    };
                    let ntid = if el.state == 2 && r.below(2) == 0 {
                        Tid::default()
                    } else if r.below(30) == 0 {
                        target(&mut r) // not its list: a missing list
                    } else {
                        el.list
                    };
                    let mut t = hnsw_element(el.level, el.state == 2, &heap, ntid, &[0.5, 1.0]);
                    t[3] = el.version;
                    p.add(&t);
                }
                Spec::List(e) => {
                    let el = &els[e];
                    // Stale now and then: another version or level.
                    let (level, version) = match r.below(25) {
                        0 => (el.level, el.version.wrapping_add(1)),
                        1 => (el.level + 1, el.version),
                        _ => (el.level, el.version),
                    };
                    let layers: Vec<Vec<Tid>> = (0..=level)
                        .map(|lc| {
                            let cap = if lc == 0 { 2 * m } else { m } as u64;
                            (0..r.below(cap + 1)).map(|_| target(&mut r)).collect()
                        })
                        .collect();
                    let mut t = hnsw_neighbors(level, m, &layers);
                    t[1] = version;
                    p.add(&t);
                }
                Spec::Orphan => {
                    let t = target(&mut r);
                    p.add(&hnsw_neighbors(0, m, &[vec![t]]));
                }
                Spec::Unknown => {
                    p.add(&[9, 9, 9, 9]);
                }
            }
        }
        pages.push(p.b);
    }
    pages
}

#[test]
fn agrees_with_a_plain_breadth_first_search() {
    let tunings = [
        TUNING,
        Tuning {
            grow_share: (0, 1),
            kept_bytes_per_element: 0,
        },
        Tuning {
            grow_share: (0, 1),
            kept_bytes_per_element: 1000,
        },
        Tuning {
            grow_share: (1, 5),
            kept_bytes_per_element: 3,
        },
        Tuning {
            grow_share: (1, 1),
            kept_bytes_per_element: 8,
        },
    ];
    let mut reached_some = 0;
    for seed in 0..400 {
        let pages = random_index(seed);
        let (want, want_un) = reference(&pages);
        reached_some += (want.reachable_live > 1) as u32;
        for tuning in tunings {
            let got = walk_with(&mut MemPages::new(pages.clone()), tuning)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let ctx = format!("seed {seed}, {tuning:?}");
            assert_eq!(got.elements_total, want.elements_total, "{ctx}");
            assert_eq!(got.elements_live, want.elements_live, "{ctx}");
            assert_eq!(got.elements_zombie, want.elements_zombie, "{ctx}");
            assert_eq!(got.elements_deleted, want.elements_deleted, "{ctx}");
            assert_eq!(got.heap_tids, want.heap_tids, "{ctx}");
            assert_eq!(got.neighbor_tuples, want.neighbor_tuples, "{ctx}");
            assert_eq!(got.chain_pages, want.chain_pages, "{ctx}");
            assert_eq!(got.pages, want.pages, "{ctx}");
            assert_eq!(got.free_bytes, want.free_bytes, "{ctx}");
            assert_eq!(
                got.missing_neighbor_lists, want.missing_neighbor_lists,
                "{ctx}"
            );
            assert_eq!(got.stale_neighbor_lists, want.stale_neighbor_lists, "{ctx}");
            assert_eq!(got.edges, want.edges, "{ctx}");
            assert_eq!(got.dangling_edges, want.dangling_edges, "{ctx}");
            assert_eq!(got.edges_to_zombies, want.edges_to_zombies, "{ctx}");
            assert_eq!(got.concurrent_items, want.concurrent_items, "{ctx}");
            assert_eq!(got.layers, want.layers, "{ctx}");
            assert_eq!(got.layer0_used, want.layer0_used, "{ctx}");
            assert_eq!(got.layer0_lists, want.layer0_lists, "{ctx}");
            assert_eq!(got.max_live_level, want.max_live_level, "{ctx}");
            assert_eq!(got.entry_state, want.entry_state, "{ctx}");
            assert_eq!(got.entry_level_actual, want.entry_level_actual, "{ctx}");
            assert_eq!(got.reachable_live, want.reachable_live, "{ctx}");
            assert_eq!(got.reachable_zombie, want.reachable_zombie, "{ctx}");
        }
        let un = unreachable_elements(&mut MemPages::new(pages), usize::MAX).unwrap();
        assert_eq!(un, want_un, "seed {seed}");
    }
    // The random graphs are not all trivial.
    assert!(reached_some > 200, "{reached_some}");
}
