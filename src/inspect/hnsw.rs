//! Walks a pgvector HNSW index page by page and measures its graph.
//!
//! Pass 1 follows the page chain from block 1 and records, per line pointer,
//! a 12-byte slot: what the item is (live/zombie/deleted element or neighbor
//! list), its level and version, and a link (element -> its neighbor tuple,
//! neighbor tuple -> its owner). Nothing else is kept, so memory stays near
//! 24 bytes per element whatever `m` is.
//!
//! Reachability is a breadth-first search over the union of every layer from
//! the meta page's entry point, done as sweeps over pages instead of a queue
//! of nodes: sweep 1 visits every page in block order (and gathers the
//! neighbor-list statistics on the way); an element reached after its
//! neighbor page was swept marks that page dirty, and later sweeps revisit
//! only dirty pages. A page is read under a share lock one at a time by the
//! [`PageSource`]; the walk itself never holds a lock.

use super::layout::*;
use super::PageSource;

const KIND_UNKNOWN: u8 = 0;
const KIND_LIVE: u8 = 1;
const KIND_ZOMBIE: u8 = 2;
const KIND_DELETED: u8 = 3;
const KIND_NEIGHBORS: u8 = 4;

const REACHED: u8 = 1;
const EXPANDED: u8 = 2;

#[derive(Clone, Copy, Default)]
struct Slot {
    kind: u8,
    level: u8,
    version: u8,
    flags: u8,
    link_block: u32,
    link_offset: u16,
}

impl Slot {
    fn link(&self) -> Option<Tid> {
        (self.link_offset != 0).then_some(Tid {
            block: self.link_block,
            offset: self.link_offset,
        })
    }
    fn is_element(&self) -> bool {
        matches!(self.kind, KIND_LIVE | KIND_ZOMBIE)
    }
}

/// Per-layer figures (layer `l` holds every element whose level is >= l).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStats {
    /// Live elements whose top level is exactly this one.
    pub live_top: u64,
    /// Live elements present in this layer.
    pub live_in_layer: u64,
    /// Sum of valid neighbors over live elements of this layer (with a valid list).
    pub degree_sum: u64,
    /// Live elements of this layer whose neighbor list was read and valid.
    pub degree_count: u64,
}

/// Everything the walk measured.
#[derive(Debug, Clone, Default)]
pub struct HnswScan {
    pub meta: Option<HnswMeta>,
    pub pages: u64,
    pub chain_pages: u64,
    pub elements_total: u64,
    pub elements_live: u64,
    pub elements_zombie: u64,
    pub elements_deleted: u64,
    pub heap_tids: u64,
    pub neighbor_tuples: u64,
    /// Neighbor lists whose version or count does not match their element.
    pub stale_neighbor_lists: u64,
    /// Live or zombie elements whose neighbor tuple could not be found.
    pub missing_neighbor_lists: u64,
    pub edges: u64,
    /// Edges (from live or zombie elements) to anything but a live or zombie element.
    pub dangling_edges: u64,
    /// Edges to zombie elements (vacuum will repair them).
    pub edges_to_zombies: u64,
    pub layers: Vec<LayerStats>,
    pub layer0_used: u64,
    pub layer0_lists: u64,
    pub reachable_live: u64,
    pub reachable_zombie: u64,
    pub entry_state: Option<ElementState>,
    pub entry_level_actual: Option<u8>,
    pub max_live_level: Option<u8>,
    pub sweeps: u32,
    pub page_reads: u64,
    /// Bytes of the slot table, the walk's only per-element memory.
    pub slot_bytes: u64,
    /// Items seen in a sweep that pass 1 did not know (concurrent inserts).
    pub concurrent_items: u64,
    pub free_bytes: u64,
}

impl HnswScan {
    pub fn unreachable(&self) -> u64 {
        self.elements_live - self.reachable_live
    }
}

struct Walk<'s, S: PageSource> {
    src: &'s mut S,
    nblocks: u32,
    m: u16,
    blocks: Vec<Vec<Slot>>,
    dirty: Vec<bool>,
    buf: Vec<u8>,
    scan: HnswScan,
}

impl<'s, S: PageSource> Walk<'s, S> {
    fn slot_mut(&mut self, t: Tid) -> Option<&mut Slot> {
        if t.offset == 0 {
            return None;
        }
        let b = t.block as usize;
        if b >= self.blocks.len() {
            if !self.block_exists(t.block) {
                return None;
            }
            self.blocks.resize_with(b + 1, Vec::new);
            self.dirty.resize(b + 1, false);
        }
        let v = &mut self.blocks[b];
        let i = t.offset as usize - 1;
        if i >= v.len() {
            v.resize(i + 1, Slot::default());
        }
        Some(&mut v[i])
    }

    /// Whether `blk` is inside the index; the index may grow while we walk.
    fn block_exists(&mut self, blk: u32) -> bool {
        if blk < self.nblocks {
            return true;
        }
        self.nblocks = self.src.nblocks();
        blk < self.nblocks
    }

    fn slot(&self, t: Tid) -> Option<Slot> {
        if t.offset == 0 {
            return None;
        }
        self.blocks
            .get(t.block as usize)?
            .get(t.offset as usize - 1)
            .copied()
    }

    fn read(&mut self, blk: u32) -> Result<(), String> {
        self.src.read_page(blk, &mut self.buf)?;
        self.scan.page_reads += 1;
        Ok(())
    }

    /// Pass 1: follow the chain from block 1, record every element.
    fn pass_one(&mut self) -> Result<Vec<u32>, String> {
        let mut seen = vec![false; self.nblocks as usize];
        let mut chain = Vec::new();
        let mut blk = 1u32;
        while blk != INVALID_BLOCK {
            if !self.block_exists(blk) {
                return Err(LayoutError::BlockOutOfRange(blk).to_string());
            }
            if seen.len() <= blk as usize {
                seen.resize(blk as usize + 1, false);
            }
            if std::mem::replace(&mut seen[blk as usize], true) {
                return Err(LayoutError::ChainLoop(blk).to_string());
            }
            self.src.check_interrupts();
            self.read(blk)?;
            chain.push(blk);
            let buf = std::mem::take(&mut self.buf);
            let next = self.record_page(blk, &buf);
            self.buf = buf;
            blk = next?;
        }
        Ok(chain)
    }

    fn record_page(&mut self, blk: u32, buf: &[u8]) -> Result<u32, String> {
        let page = Page::new(buf).map_err(|e| e.to_string())?;
        page.check_page_id(HNSW_PAGE_ID)
            .map_err(|e| format!("block {blk}: {e}"))?;
        self.scan.free_bytes += page.free_space() as u64;
        let max = page.max_offset();
        if self.blocks.len() <= blk as usize {
            self.blocks.resize_with(blk as usize + 1, Vec::new);
            self.dirty.resize(blk as usize + 1, false);
        }
        if self.blocks[blk as usize].len() < max as usize {
            self.blocks[blk as usize].resize(max as usize, Slot::default());
        }
        for off in 1..=max {
            let Some(t) = page.item(off) else { continue };
            let here = Tid {
                block: blk,
                offset: off,
            };
            match t[0] {
                HNSW_ELEMENT_TYPE if t.len() >= HNSW_ELEMENT_VALUE_OFFSET => {
                    let state = HnswElement::state_of(t);
                    let level = t[1];
                    let ntid = Tid::parse(t, 64);
                    self.scan.elements_total += 1;
                    let kind = match state {
                        ElementState::Live => {
                            self.scan.elements_live += 1;
                            self.scan.heap_tids += HnswElement::count_heaptids(t) as u64;
                            let l = level as usize;
                            if self.scan.layers.len() <= l {
                                self.scan.layers.resize(l + 1, LayerStats::default());
                            }
                            self.scan.layers[l].live_top += 1;
                            for layer in &mut self.scan.layers[..=l] {
                                layer.live_in_layer += 1;
                            }
                            self.scan.max_live_level =
                                Some(self.scan.max_live_level.map_or(level, |m| m.max(level)));
                            KIND_LIVE
                        }
                        ElementState::Zombie => {
                            self.scan.elements_zombie += 1;
                            KIND_ZOMBIE
                        }
                        ElementState::Deleted => {
                            self.scan.elements_deleted += 1;
                            KIND_DELETED
                        }
                    };
                    let s = self.slot_mut(here).expect("slot of a read page");
                    s.kind = kind;
                    s.level = level;
                    s.version = t[3];
                    s.link_block = ntid.block;
                    s.link_offset = ntid.offset;
                    if kind != KIND_DELETED {
                        if let Some(n) = self.slot_mut(ntid) {
                            n.kind = KIND_NEIGHBORS;
                            n.link_block = blk;
                            n.link_offset = off;
                        }
                    }
                }
                HNSW_NEIGHBOR_TYPE => {
                    self.scan.neighbor_tuples += 1;
                    let s = self.slot_mut(here).expect("slot of a read page");
                    s.kind = KIND_NEIGHBORS;
                }
                _ => {}
            }
        }
        Ok(page.next_block())
    }

    /// Processes the neighbor lists of one page; with `stats`, also counts
    /// degrees and dangling edges. Returns whether this page became dirty
    /// again (an element reached here has its list on this page).
    fn sweep_page(&mut self, blk: u32, buf: &[u8], stats: bool) -> Result<bool, String> {
        let page = Page::new(buf).map_err(|e| e.to_string())?;
        let m = self.m;
        let mut again = false;
        for off in 1..=page.max_offset() {
            let Some(t) = page.item(off) else { continue };
            if t[0] != HNSW_NEIGHBOR_TYPE {
                continue;
            }
            let here = Tid {
                block: blk,
                offset: off,
            };
            let Some(me) = self.slot(here) else {
                self.scan.concurrent_items += stats as u64;
                continue;
            };
            let Some(owner_tid) = me.link() else { continue };
            let Some(owner) = self.slot(owner_tid) else {
                continue;
            };
            if !owner.is_element() {
                continue;
            }
            let expand = owner.flags & REACHED != 0 && owner.flags & EXPANDED == 0;
            if !stats && !expand {
                continue;
            }
            let Ok(list) = HnswNeighbors::parse(t) else {
                continue;
            };
            if !list.matches(owner.level, owner.version, m) {
                self.scan.stale_neighbor_lists += stats as u64;
                continue;
            }
            if expand {
                if let Some(o) = self.slot_mut(owner_tid) {
                    o.flags |= EXPANDED;
                }
            }
            for lc in 0..=owner.level {
                let mut degree = 0u64;
                for target in list.layer(owner.level, lc, m) {
                    degree += 1;
                    let ts = self.slot(target);
                    if stats {
                        self.scan.edges += 1;
                        match ts.map(|s| s.kind) {
                            Some(KIND_LIVE) => {}
                            Some(KIND_ZOMBIE) => self.scan.edges_to_zombies += 1,
                            Some(KIND_UNKNOWN) | None if !self.block_exists(target.block) => {
                                self.scan.dangling_edges += 1
                            }
                            Some(KIND_UNKNOWN) | None => self.scan.concurrent_items += 1,
                            _ => self.scan.dangling_edges += 1,
                        }
                    }
                    if expand {
                        again |= self.reach(target, blk);
                    }
                }
                if stats && owner.kind == KIND_LIVE {
                    let layer = &mut self.scan.layers[lc as usize];
                    layer.degree_sum += degree;
                    layer.degree_count += 1;
                    if lc == 0 {
                        self.scan.layer0_used += degree;
                        self.scan.layer0_lists += 1;
                    }
                }
            }
        }
        Ok(again)
    }

    /// Marks `target` reached. Returns true when its list lies on `current`.
    fn reach(&mut self, target: Tid, current: u32) -> bool {
        let Some(s) = self.slot_mut(target) else {
            return false;
        };
        if !s.is_element() || s.flags & REACHED != 0 {
            return false;
        }
        s.flags |= REACHED;
        let Some(list) = s.link() else { return false };
        if list.block == current {
            return true;
        }
        if list.block < current || self.scan.sweeps > 1 {
            if let Some(d) = self.dirty.get_mut(list.block as usize) {
                *d = true;
            }
        }
        false
    }

    fn sweep(&mut self, order: &[u32], stats: bool) -> Result<bool, String> {
        self.scan.sweeps += 1;
        let mut any = false;
        for &blk in order {
            let was_dirty = std::mem::replace(&mut self.dirty[blk as usize], false);
            if !stats && !was_dirty {
                continue;
            }
            self.src.check_interrupts();
            self.read(blk)?;
            any = true;
            let buf = std::mem::take(&mut self.buf);
            let mut first = true;
            let mut result = Ok(());
            loop {
                match self.sweep_page(blk, &buf, stats && first) {
                    Ok(true) => first = false,
                    Ok(false) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            self.buf = buf;
            result?;
        }
        Ok(any)
    }
}

/// Reads the meta page, runs pass 1 and every sweep. Block 0 must be the meta page.
fn run<S: PageSource>(src: &mut S) -> Result<(Walk<'_, S>, Vec<u32>), String> {
    let (meta, nblocks) = super::read_meta(src, HnswMeta::parse)?;
    let buf = vec![0u8; BLCKSZ];
    if meta.m < 2 {
        return Err(format!(
            "meta page has m = {}, pgvector requires m >= 2",
            meta.m
        ));
    }
    let mut w = Walk {
        src,
        nblocks,
        m: meta.m,
        blocks: Vec::with_capacity(nblocks as usize),
        dirty: vec![false; nblocks as usize],
        buf,
        scan: HnswScan {
            pages: nblocks as u64,
            page_reads: 1,
            ..Default::default()
        },
    };
    let mut order = w.pass_one()?;
    w.scan.chain_pages = order.len() as u64;
    order.sort_unstable();

    // Seed the search with the entry point, as every scan does.
    if meta.entry_level >= 0 && meta.entry.is_valid() {
        if let Some(e) = w.slot(meta.entry) {
            w.scan.entry_state = match e.kind {
                KIND_LIVE => Some(ElementState::Live),
                KIND_ZOMBIE => Some(ElementState::Zombie),
                KIND_DELETED => Some(ElementState::Deleted),
                _ => None,
            };
            w.scan.entry_level_actual = e.is_element().then_some(e.level);
        }
        w.reach(meta.entry, INVALID_BLOCK);
    }
    w.sweep(&order, true)?;
    while w.sweep(&order, false)? {}
    w.scan.pages = w.nblocks as u64;
    w.scan.meta = Some(meta);
    Ok((w, order))
}

/// Walks the index behind `src` and measures it.
pub fn walk<S: PageSource>(src: &mut S) -> Result<HnswScan, String> {
    let (mut w, _) = run(src)?;
    let mut missing = 0u64;
    for v in &w.blocks {
        for s in v {
            if !s.is_element() {
                continue;
            }
            if s.flags & REACHED != 0 {
                match s.kind {
                    KIND_LIVE => w.scan.reachable_live += 1,
                    _ => w.scan.reachable_zombie += 1,
                }
            }
            let has_list = s
                .link()
                .and_then(|l| w.slot(l))
                .is_some_and(|n| n.kind == KIND_NEIGHBORS);
            if !has_list {
                missing += 1;
            }
        }
    }
    w.scan.missing_neighbor_lists = missing;
    w.scan.slot_bytes = w
        .blocks
        .iter()
        .map(|v| {
            (v.capacity() * std::mem::size_of::<Slot>() + std::mem::size_of::<Vec<Slot>>()) as u64
        })
        .sum::<u64>()
        + w.dirty.len() as u64;
    Ok(w.scan)
}

/// An element the walk could not reach from the entry point.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreachable {
    pub element: Tid,
    pub level: u8,
    pub heap_tids: Vec<Tid>,
}

/// Lists up to `limit` live elements that no scan can reach, with their heap
/// tids: the same walk, then one more read of the pages that hold them.
pub fn unreachable_elements<S: PageSource>(
    src: &mut S,
    limit: usize,
) -> Result<Vec<Unreachable>, String> {
    let (mut w, order) = run(src)?;
    let mut out = Vec::new();
    for &blk in &order {
        let wanted: Vec<u16> = w.blocks[blk as usize]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == KIND_LIVE && s.flags & REACHED == 0)
            .map(|(i, _)| i as u16 + 1)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        w.read(blk)?;
        let page = Page::new(&w.buf).map_err(|e| e.to_string())?;
        for off in wanted {
            let Some(e) = page.item(off).and_then(|t| HnswElement::parse(t).ok()) else {
                continue;
            };
            if e.deleted || e.heaptids.is_empty() {
                continue; // changed since pass 1
            }
            out.push(Unreachable {
                element: Tid {
                    block: blk,
                    offset: off,
                },
                level: e.level,
                heap_tids: e.heaptids,
            });
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
        // B's list sits on page 2 and C's list on page 1 was swept before C
        // was reached, so a second sweep revisits page 1.
        assert!(s.sweeps >= 2);
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
}
