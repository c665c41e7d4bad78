//! Walks a pgvector HNSW index page by page and measures its graph.
//!
//! Pass 1 reads the page chain from block 1 (in block order through
//! [`PageSource::stream`], a read stream in the server, while each page's
//! next pointer is the following block, which is how pgvector appends
//! pages; following the chain page by page otherwise) and records, per line
//! pointer, 7 bytes in flat arrays: what the item is (live/zombie/deleted
//! element or neighbor list) with the search's flags, its level and
//! version, and a link (element -> its neighbor tuple, neighbor tuple -> its
//! owner) as an index into the same arrays. Per block it keeps where its
//! slots start and two bits per line pointer (live element? reached?),
//! which is all the inner loop over edges reads. Nothing else grows with
//! the index but a bounded set of kept lists (below): about 17 bytes per
//! element whatever `m` is; the graph is never materialised.
//!
//! Reachability is a breadth-first search over the union of every layer
//! from the meta page's entry point, done page by page: visiting a page
//! expands every reached, not yet expanded element whose neighbor list lies
//! on it (a small worklist catches elements reached meanwhile on the same
//! page). Three phases keep page visits and neighbor lookups low:
//!
//! 1. growth: pages in breadth-first order (a queue of pages) until half
//!    the elements are reached, expanding lists only;
//! 2. the full sweep: every page in block order, counting every list
//!    (degrees, dangling edges, ...) and expanding the reached ones in the
//!    same lookups. A list whose owner is not reached yet keeps its targets
//!    that are not reached either (within a budget of 8 bytes per element):
//!    reaching the owner later expands that instead of the page;
//! 3. partial sweeps over the pages holding lists of elements reached after
//!    their page was swept and not kept, until none is left (none at all on
//!    the indexes we measured).
//!
//! A page is read under a share lock one at a time by the [`PageSource`],
//! and only for the callback: the walk never calls Postgres while it looks
//! at a page.

use std::collections::VecDeque;

use super::layout::*;
use super::PageSource;

const KIND_MASK: u8 = 0x07;
const KIND_UNKNOWN: u8 = 0;
const KIND_LIVE: u8 = 1;
const KIND_ZOMBIE: u8 = 2;
const KIND_DELETED: u8 = 3;
const KIND_NEIGHBORS: u8 = 4;

const REACHED: u8 = 0x08;
/// The element's list needs no (further) expansion: expanded, or every
/// target was already reached when the list was looked at.
const EXPANDED: u8 = 0x10;
/// The element's list's unreached targets are kept in memory.
const KEPT: u8 = 0x20;
/// The element's list is on the element's page (the usual case): reaching
/// it needs no look at its link.
const OWN_PAGE: u8 = 0x40;

/// No slot (a link that does not lead anywhere, a block not recorded).
const NONE: u32 = u32::MAX;

/// The walk's two knobs (tests try others).
#[derive(Clone, Copy, Debug)]
struct Tuning {
    /// The growth phase stops once this share of the elements (numerator,
    /// denominator) is reached; see [`Walk::grow`].
    grow_share: (u64, u64),
    /// Budget of the full sweep's kept lists, in bytes per element.
    kept_bytes_per_element: usize,
}

/// Half the elements reached before the full sweep. On the 200,000-element
/// bench index growth then visits 13 % of the pages, and the sweep keeps
/// 17,000 lists with 28,000 targets (0.35 MB of the 1.6 MB budget) and
/// needs no partial sweep; growing less keeps more, growing more visits
/// more pages twice, for about the same time.
const TUNING: Tuning = Tuning {
    grow_share: (1, 2),
    kept_bytes_per_element: 8,
};

fn is_element(state: u8) -> bool {
    matches!(state & KIND_MASK, KIND_LIVE | KIND_ZOMBIE)
}

/// The slots of one recorded block: `count` line pointers from `start`.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    count: u32,
}

const UNRECORDED: Span = Span {
    start: NONE,
    count: 0,
};

/// One slot per line pointer of every recorded page, as parallel arrays
/// (the edge loop touches only `spans` and `state`, which stay in cache).
#[derive(Default)]
struct Slots {
    spans: Vec<Span>,
    /// Kind (low 3 bits), `REACHED`, `EXPANDED`.
    state: Vec<u8>,
    level: Vec<u8>,
    version: Vec<u8>,
    /// Element: slot of its neighbor tuple; neighbor tuple: slot of its owner.
    link: Vec<u32>,
}

/// Two bits per line pointer of every block, addressed by the tid alone:
/// whether the item is a live element, whether it is a reached element.
/// All the edge loop needs for most targets, in one small array that stays
/// in cache, without a lookup of the block's slots first. Each word covers
/// 32 line pointers (live in the low half, reached in the high half), with
/// `words` words per block.
#[derive(Default)]
struct Bits {
    words: usize,
    w: Vec<u64>,
}

impl Bits {
    /// Word and live bit of `t` (its reached bit is 32 higher), if covered.
    #[inline(always)]
    fn pos(&self, t: Tid) -> Option<(usize, u64)> {
        let i = (t.offset as usize).wrapping_sub(1);
        let w = i / 32;
        let k = t.block as usize * self.words + w;
        if w < self.words && k < self.w.len() {
            Some((k, 1 << (i % 32)))
        } else {
            None
        }
    }

    fn bytes(&self) -> u64 {
        (self.w.capacity() * 8) as u64
    }
}

impl Slots {
    #[inline(always)]
    fn index(&self, t: Tid) -> Option<usize> {
        let s = *self.spans.get(t.block as usize)?;
        let i = (t.offset as u32).wrapping_sub(1);
        if i < s.count {
            Some((s.start + i) as usize)
        } else {
            None
        }
    }

    fn recorded(&self, blk: u32) -> bool {
        self.spans
            .get(blk as usize)
            .is_some_and(|s| s.start != NONE)
    }

    fn bytes(&self) -> u64 {
        (self.spans.capacity() * std::mem::size_of::<Span>()
            + self.state.capacity()
            + self.level.capacity()
            + self.version.capacity()
            + self.link.capacity() * 4) as u64
    }
}

/// The item id of a neighbor tid: 6 bytes, block split in two halves.
#[inline(always)]
fn tid6(c: &[u8]) -> Tid {
    let c: &[u8; 6] = c.try_into().expect("6 bytes");
    Tid {
        block: (u16::from_le_bytes([c[0], c[1]]) as u32) << 16
            | u16::from_le_bytes([c[2], c[3]]) as u32,
        offset: u16::from_le_bytes([c[4], c[5]]),
    }
}

/// Item `i` (0-based) of a page whose line pointers are `lps`: what
/// `Page::item` returns, with the page already checked.
#[inline(always)]
fn item_at<'a>(bytes: &'a [u8], lps: &[u8], i: usize) -> Option<&'a [u8]> {
    let lp = u32::from_le_bytes(lps[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let (o, len) = ((lp & 0x7FFF) as usize, (lp >> 17) as usize);
    if (lp >> 15) & 3 != LP_NORMAL as u32 || len == 0 || o + len > BLCKSZ {
        return None;
    }
    Some(&bytes[o..o + len])
}

/// Asks the CPU to fetch the first `lines` cache lines of `t`.
#[inline(always)]
fn prefetch(t: &[u8], lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for o in (0..t.len().min(lines * 64)).step_by(64) {
        // SAFETY: `o` is inside `t`; prefetching only affects caches.
        unsafe {
            core::arch::x86_64::_mm_prefetch(
                t.as_ptr().add(o) as *const i8,
                core::arch::x86_64::_MM_HINT_T0,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (t, lines);
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
    /// Passes over pages in block order: the full sweep and the partial
    /// ones after it.
    pub sweeps: u32,
    /// Pages visited in breadth-first order before the full sweep.
    pub growth_reads: u64,
    pub page_reads: u64,
    /// Bytes of the walk's own structures (slot arrays, per-page state),
    /// its only memory that grows with the index.
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

/// The walk's state apart from the page source, so that page callbacks can
/// borrow it while the source is busy lending them a page.
struct State {
    nblocks: u32,
    m: u16,
    slots: Slots,
    bits: Bits,
    /// Recorded blocks in chain order (the order their slots were
    /// allocated, and the order of the sweeps).
    order: Vec<u32>,
    /// Per block: holds the list of a reached element not expanded yet.
    dirty: Vec<bool>,
    /// Growth phase: dirty blocks in the order they became dirty.
    queue: VecDeque<u32>,
    queueing: bool,
    queue_peak: usize,
    /// The block being visited, and lists reached on it meanwhile.
    current: u32,
    work: Vec<u32>,
    /// Edge targets on blocks at or past `nblocks`, classified after the visit.
    beyond: Vec<u32>,
    /// Elements whose neighbor tuple is on a block not recorded yet.
    deferred: Vec<(u32, Tid)>,
    /// The full sweep keeps, for a list whose owner is not reached yet, the
    /// targets not reached yet, so that reaching the owner later needs no
    /// second visit of the page: `(list slot, start in kept_targets)` in
    /// list slot order, within a budget of `kept_budget` bytes.
    kept: Vec<(u32, u32)>,
    kept_targets: Vec<Tid>,
    kept_budget: usize,
    /// Reached owners of kept lists, to expand.
    stack: Vec<u32>,
    reached: u64,
    scan: HnswScan,
}

impl State {
    /// Pass 1 for one page: records its line pointers. Returns the next
    /// block of the chain.
    fn record_page(&mut self, blk: u32, bytes: &[u8]) -> Result<u32, String> {
        let page = Page::new(bytes).map_err(|e| e.to_string())?;
        page.check_page_id(HNSW_PAGE_ID)
            .map_err(|e| format!("block {blk}: {e}"))?;
        let b = blk as usize;
        if self.slots.spans.len() <= b {
            self.slots.spans.resize(b + 1, UNRECORDED);
            self.dirty.resize(b + 1, false);
        }
        if self.slots.spans[b].start != NONE {
            return Err(LayoutError::ChainLoop(blk).to_string());
        }
        self.scan.free_bytes += page.free_space() as u64;
        let max = page.max_offset();
        let lps = &bytes[PAGE_HEADER..PAGE_HEADER + 4 * max as usize];
        for i in 0..max as usize {
            if let Some(t) = item_at(bytes, lps, i) {
                prefetch(t, 2);
            }
        }
        let start = self.slots.state.len();
        let end = start + max as usize;
        if end >= NONE as usize {
            return Err("index has too many items for the walk".into());
        }
        self.slots.spans[b] = Span {
            start: start as u32,
            count: max as u32,
        };
        self.order.push(blk);
        let s = &mut self.slots;
        s.state.resize(end, KIND_UNKNOWN);
        s.level.resize(end, 0);
        s.version.resize(end, 0);
        s.link.resize(end, NONE);
        for k in 0..max as usize {
            let Some(t) = item_at(bytes, lps, k) else {
                continue;
            };
            let len = t.len();
            let i = start + k;
            match t[0] {
                HNSW_ELEMENT_TYPE if len >= HNSW_ELEMENT_VALUE_OFFSET => {
                    // HnswElementTupleData: type, level, deleted, version,
                    // 10 heap tids (offset number at 8 + 6i), neighbor tid.
                    let h: &[u8; HNSW_ELEMENT_VALUE_OFFSET] =
                        t[..HNSW_ELEMENT_VALUE_OFFSET].try_into().expect("header");
                    let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
                    let level = h[1];
                    self.scan.elements_total += 1;
                    let kind = if h[2] != 0 {
                        self.scan.elements_deleted += 1;
                        KIND_DELETED
                    } else if u16_at(8) != 0 {
                        self.scan.elements_live += 1;
                        let tids = (0..HNSW_HEAPTIDS).filter(|i| u16_at(8 + 6 * i) != 0);
                        self.scan.heap_tids += tids.count() as u64;
                        let l = level as usize;
                        if self.scan.layers.len() <= l {
                            self.scan.layers.resize(l + 1, LayerStats::default());
                        }
                        self.scan.layers[l].live_top += 1;
                        KIND_LIVE
                    } else {
                        self.scan.elements_zombie += 1;
                        KIND_ZOMBIE
                    };
                    s.state[i] = kind;
                    s.level[i] = level;
                    s.version[i] = h[3];
                    if kind != KIND_DELETED {
                        let ntid = Tid {
                            block: (u16_at(64) as u32) << 16 | u16_at(66) as u32,
                            offset: u16_at(68),
                        };
                        match s.index(ntid) {
                            Some(j) => s.link[i] = j as u32,
                            None if ntid.is_valid() && !s.recorded(ntid.block) => {
                                self.deferred.push((i as u32, ntid))
                            }
                            None => {}
                        }
                    }
                }
                HNSW_NEIGHBOR_TYPE => {
                    self.scan.neighbor_tuples += 1;
                    s.state[i] = KIND_NEIGHBORS;
                    // Where it sits in the page (level and version are an
                    // element's): lets the sweep ask for it ahead of time.
                    let at = (t.as_ptr() as usize - bytes.as_ptr() as usize) as u16;
                    [s.level[i], s.version[i]] = at.to_le_bytes();
                }
                _ => {}
            }
        }
        Ok(page.next_block())
    }

    /// After pass 1: resolves links to pages recorded later, then points
    /// each neighbor tuple at its owner. An element whose link does not
    /// lead to a neighbor tuple has no list (`missing_neighbor_lists`).
    fn link_owners(&mut self) {
        let s = &mut self.slots;
        for (i, t) in std::mem::take(&mut self.deferred) {
            if let Some(j) = s.index(t) {
                s.link[i as usize] = j as u32;
            }
        }
        for &b in &self.order {
            let span = s.spans[b as usize];
            let own = span.start..span.start + span.count;
            for i in own.clone() {
                let i = i as usize;
                if !is_element(s.state[i]) {
                    continue;
                }
                let j = s.link[i];
                if j == NONE {
                    continue;
                }
                if s.state[j as usize] & KIND_MASK == KIND_NEIGHBORS {
                    s.link[j as usize] = i as u32;
                    if own.contains(&j) {
                        s.state[i] |= OWN_PAGE;
                    }
                } else {
                    s.link[i] = NONE;
                }
            }
        }
    }

    /// The block holding slot `l`; `hint` is a block to try first.
    fn block_of(&self, l: u32, hint: u32) -> u32 {
        if let Some(s) = self.slots.spans.get(hint as usize) {
            if l.wrapping_sub(s.start) < s.count {
                return hint;
            }
        }
        // Slots were allocated in chain order: the last block starting at
        // or before `l` holds it (an empty block shares its successor's start).
        let i = self
            .order
            .partition_point(|&b| self.slots.spans[b as usize].start <= l);
        self.order[i - 1]
    }

    /// Marks slot `g` of block `blk` reached; an element's list joins the
    /// worklist when it lies on the page being visited, else marks its page.
    #[inline]
    fn reach(&mut self, g: usize, blk: u32) {
        let st = self.slots.state[g];
        if st & REACHED != 0 || !is_element(st) {
            return;
        }
        self.slots.state[g] = st | REACHED;
        let off = g as u32 - self.slots.spans[blk as usize].start + 1;
        if let Some((k, bit)) = self.bits.pos(Tid {
            block: blk,
            offset: off as u16,
        }) {
            self.bits.w[k] |= bit << 32;
        }
        self.reached += 1;
        if st & EXPANDED != 0 {
            return;
        }
        if st & KEPT != 0 {
            self.stack.push(g as u32);
            return;
        }
        let lb = if st & OWN_PAGE != 0 {
            blk
        } else {
            let l = self.slots.link[g];
            if l == NONE {
                return;
            }
            self.block_of(l, blk)
        };
        if lb == self.current {
            self.work.push(self.slots.link[g]);
        } else if !std::mem::replace(&mut self.dirty[lb as usize], true) && self.queueing {
            self.queue.push_back(lb);
            self.queue_peak = self.queue_peak.max(self.queue.len());
        }
    }

    /// Asks for the neighbor lists of block `blk`, whose page is (likely)
    /// at `p`, from where pass 1 saw them.
    /// `all`: every list, else those of reached, unexpanded owners.
    fn prefetch_lists(&self, blk: u32, p: *const u8, all: bool) {
        let span = self.slots.spans[blk as usize];
        let s = &self.slots;
        super::prefetch_bytes(p, PAGE_HEADER + 4 * span.count as usize);
        for i in span.start as usize..(span.start + span.count) as usize {
            if s.state[i] & KIND_MASK == KIND_NEIGHBORS && (all || self.pending(i)) {
                let at = u16::from_le_bytes([s.level[i], s.version[i]]) as usize;
                super::prefetch_bytes(p.wrapping_add(at.min(BLCKSZ - 256)), 256);
            }
        }
    }

    /// Visits a page: with `stats`, counts every neighbor list on it; in
    /// any case expands the lists of reached elements not expanded yet.
    fn visit(&mut self, blk: u32, bytes: &[u8], stats: bool) -> Result<(), String> {
        let page = Page::new(bytes).map_err(|e| e.to_string())?;
        let span = self.slots.spans[blk as usize];
        let max = page.max_offset() as usize;
        let n = (span.count as usize).min(max);
        let lps = &bytes[PAGE_HEADER..PAGE_HEADER + 4 * max];
        let start = span.start as usize;
        self.current = blk;
        // Ask for the lists to look at first, so that their cache misses
        // overlap.
        for i in 0..n {
            if self.slots.state[start + i] & KIND_MASK == KIND_NEIGHBORS
                && (stats || self.pending(start + i))
            {
                if let Some(t) = item_at(bytes, lps, i) {
                    prefetch(t, 4);
                }
            }
        }
        for i in 0..n {
            if self.slots.state[start + i] & KIND_MASK == KIND_NEIGHBORS {
                self.list(start + i, item_at(bytes, lps, i), stats);
            }
        }
        // Lists reached meanwhile on this page, and kept lists reached.
        loop {
            while let Some(l) = self.work.pop() {
                let t = item_at(bytes, lps, l as usize - start);
                self.list(l as usize, t, false);
            }
            if self.stack.is_empty() {
                break;
            }
            self.expand_kept();
        }
        if stats {
            // Neighbor tuples added since pass 1.
            for i in n..max {
                if item_at(bytes, lps, i).is_some_and(|t| t[0] == HNSW_NEIGHBOR_TYPE) {
                    self.scan.concurrent_items += 1;
                }
            }
        }
        self.current = INVALID_BLOCK;
        Ok(())
    }

    /// Whether the list in slot `l` has an owner that is reached and not
    /// expanded yet.
    fn pending(&self, l: usize) -> bool {
        let o = self.slots.link[l];
        o != NONE && {
            let os = self.slots.state[o as usize];
            is_element(os) && os & (REACHED | EXPANDED) == REACHED
        }
    }

    /// One neighbor tuple: slot `l`, bytes `t` (what the page holds there now).
    #[inline]
    fn list(&mut self, l: usize, t: Option<&[u8]>, stats: bool) {
        let o = self.slots.link[l];
        if o == NONE {
            return;
        }
        let o = o as usize;
        let os = self.slots.state[o];
        if !is_element(os) {
            return;
        }
        let expand = os & (REACHED | EXPANDED) == REACHED;
        if !stats && !expand {
            return;
        }
        // The page may have changed since pass 1: check what is there now.
        let Some(t) = t else { return };
        if t[0] != HNSW_NEIGHBOR_TYPE {
            return;
        }
        let Ok(list) = HnswNeighbors::parse(t) else {
            return;
        };
        let (level, version) = (self.slots.level[o], self.slots.version[o]);
        if !list.matches(level, version, self.m) {
            self.scan.stale_neighbor_lists += stats as u64;
            return;
        }
        if expand {
            self.slots.state[o] |= EXPANDED;
        }
        let keep = stats && os & (REACHED | EXPANDED) == 0;
        let kept_from = self.kept_targets.len();
        let live = os & KIND_MASK == KIND_LIVE;
        let tids = &t[4..4 + list.count as usize * 6];
        let m = self.m as usize;
        for lc in 0..=level {
            let first = (level - lc) as usize * m;
            let len = if lc == 0 { 2 * m } else { m };
            let layer = &tids[first * 6..(first + len) * 6];
            let degree = match (stats, expand, keep) {
                (true, true, _) => self.edges::<true, true, false>(layer),
                (true, false, true) => self.edges::<true, false, true>(layer),
                (true, false, false) => self.edges::<true, false, false>(layer),
                _ => self.edges::<false, true, false>(layer),
            };
            if stats && live {
                let ls = &mut self.scan.layers[lc as usize];
                ls.degree_sum += degree;
                ls.degree_count += 1;
                if lc == 0 {
                    self.scan.layer0_used += degree;
                    self.scan.layer0_lists += 1;
                }
            }
        }
        if keep {
            self.keep(l as u32, o, kept_from);
        }
    }

    /// Ends keeping the list in slot `l` (owner `o`), whose unreached
    /// targets were appended to `kept_targets` from `from`.
    fn keep(&mut self, l: u32, o: usize, from: usize) {
        let n = self.kept_targets.len() - from;
        if n == 0 {
            // Every target is reached already: nothing left to expand.
            self.slots.state[o] |= EXPANDED;
        } else if (self.kept.len() + 1) * 8 + self.kept_targets.len() * 8 <= self.kept_budget {
            self.kept.push((l, from as u32));
            self.slots.state[o] |= KEPT;
        } else {
            // Over budget: the page is visited again if the owner is reached.
            self.kept_targets.truncate(from);
        }
    }

    /// Expands the kept lists of the owners on `stack` (and of the owners
    /// with kept lists that this reaches in turn).
    fn expand_kept(&mut self) {
        while let Some(o) = self.stack.pop() {
            let o = o as usize;
            self.slots.state[o] |= EXPANDED;
            let l = self.slots.link[o];
            let Ok(k) = self.kept.binary_search_by_key(&l, |e| e.0) else {
                continue;
            };
            let from = self.kept[k].1 as usize;
            let to = self
                .kept
                .get(k + 1)
                .map_or(self.kept_targets.len(), |e| e.1 as usize);
            for j in from..to {
                let t = self.kept_targets[j];
                if let Some(g) = self.slots.index(t) {
                    self.reach(g, t.block);
                }
            }
        }
    }

    /// An edge target that is not a live element: to a zombie, to
    /// something else (dangling), or to an item pass 1 did not see. Targets
    /// past the end of the index as known are settled after the visit.
    #[cold]
    fn classify(&mut self, t: Tid, zombies: &mut u64, dangling: &mut u64, unknown: &mut u64) {
        match self.slots.index(t).map(|g| self.slots.state[g] & KIND_MASK) {
            Some(KIND_LIVE) => {}
            Some(KIND_ZOMBIE) => *zombies += 1,
            Some(KIND_UNKNOWN) => *unknown += 1,
            Some(_) => *dangling += 1,
            None if t.block >= self.nblocks => self.beyond.push(t.block),
            None => *unknown += 1,
        }
    }

    /// Sets up the bit arrays from the slots once pass 1 is done.
    fn fill_bits(&mut self) {
        let s = &self.slots;
        let max = s.spans.iter().map(|sp| sp.count).max().unwrap_or(0) as usize;
        let words = max.div_ceil(32).max(1);
        let mut w = vec![0u64; s.spans.len() * words];
        for (b, sp) in s.spans.iter().enumerate() {
            for i in 0..sp.count as usize {
                if s.state[sp.start as usize + i] & KIND_MASK == KIND_LIVE {
                    w[b * words + i / 32] |= 1 << (i % 32);
                }
            }
        }
        self.bits = Bits { words, w };
    }

    /// The valid neighbors of one layer of a list (up to the first invalid
    /// tid): counted and classified with `STATS`, reached with `EXPAND`.
    /// Returns how many there are.
    #[inline(always)]
    fn edges<const STATS: bool, const EXPAND: bool, const KEEP: bool>(
        &mut self,
        layer: &[u8],
    ) -> u64 {
        let mut degree = 0u64;
        let (mut zombies, mut dangling, mut unknown) = (0u64, 0u64, 0u64);
        for c in layer.chunks_exact(6) {
            let t = tid6(c);
            if t.offset == 0 {
                break;
            }
            degree += 1;
            let Some((k, bit)) = self.bits.pos(t) else {
                // Not an item of a recorded page.
                if STATS {
                    self.classify(t, &mut zombies, &mut dangling, &mut unknown);
                }
                continue;
            };
            let w = self.bits.w[k];
            if STATS && w & bit == 0 {
                self.classify(t, &mut zombies, &mut dangling, &mut unknown);
            }
            if (EXPAND || KEEP) && w & (bit << 32) == 0 {
                if let Some(g) = self.slots.index(t) {
                    if EXPAND {
                        self.reach(g, t.block);
                    } else if is_element(self.slots.state[g]) {
                        self.kept_targets.push(t);
                    }
                }
            }
        }
        if STATS {
            self.scan.edges += degree;
            self.scan.edges_to_zombies += zombies;
            self.scan.dangling_edges += dangling;
            self.scan.concurrent_items += unknown;
        }
        degree
    }
}

struct Walk<'s, S: PageSource> {
    src: &'s mut S,
    st: State,
}

impl<'s, S: PageSource> Walk<'s, S> {
    /// Whether `blk` is inside the index; the index may grow while we walk.
    fn block_exists(&mut self, blk: u32) -> bool {
        if blk < self.st.nblocks {
            return true;
        }
        self.st.nblocks = self.src.nblocks();
        blk < self.st.nblocks
    }

    /// Pass 1: the chain from block 1, streamed in block order while the
    /// chain follows it, then followed page by page.
    fn pass_one(&mut self) -> Result<(), String> {
        let Walk { src, st } = self;
        let mut next = 1u32;
        let mut reads = 0u64;
        src.stream(1, st.nblocks, |blk, page| {
            if blk != next {
                return Ok(false);
            }
            reads += 1;
            next = st.record_page(blk, page)?;
            Ok(next == blk + 1)
        })?;
        self.st.scan.page_reads += reads;
        let mut blk = next;
        while blk != INVALID_BLOCK {
            if !self.block_exists(blk) {
                return Err(LayoutError::BlockOutOfRange(blk).to_string());
            }
            if self.st.slots.recorded(blk) {
                return Err(LayoutError::ChainLoop(blk).to_string());
            }
            self.src.check_interrupts();
            let st = &mut self.st;
            blk = self.src.with_page(blk, |p| st.record_page(blk, p))??;
            self.st.scan.page_reads += 1;
        }
        self.st.link_owners();
        Ok(())
    }

    /// Visits block `blk` (recorded), then classifies edge targets that lay
    /// past the end of the index as it was known.
    fn visit(&mut self, blk: u32, stats: bool) -> Result<(), String> {
        self.src.check_interrupts();
        let st = &mut self.st;
        self.src.with_page(blk, |p| st.visit(blk, p, stats))??;
        self.st.scan.page_reads += 1;
        if !self.st.beyond.is_empty() {
            let beyond = std::mem::take(&mut self.st.beyond);
            for &b in &beyond {
                if self.block_exists(b) {
                    self.st.scan.concurrent_items += 1;
                } else {
                    self.st.scan.dangling_edges += 1;
                }
            }
            self.st.beyond = beyond;
            self.st.beyond.clear();
        }
        Ok(())
    }

    /// Growth: visits dirty pages in the order they became dirty until
    /// `target` elements are reached. Early on each visit expands one or
    /// two lists, so this stops while that is still cheap: lists expanded
    /// here are looked at again by the full sweep for their figures.
    fn grow(&mut self, target: u64) -> Result<(), String> {
        self.st.queueing = true;
        while self.st.reached < target {
            let Some(b) = self.st.queue.pop_front() else {
                break;
            };
            if !std::mem::replace(&mut self.st.dirty[b as usize], false) {
                continue;
            }
            if let Some(&next) = self.st.queue.front() {
                if let Some(p) = self.src.page_hint(next) {
                    self.st.prefetch_lists(next, p, false);
                }
            }
            self.visit(b, false)?;
            self.st.scan.growth_reads += 1;
        }
        self.st.queueing = false;
        self.st.queue = VecDeque::new();
        Ok(())
    }

    /// One pass over the recorded blocks in block order: every page with
    /// `stats`, else only dirty ones. Returns whether it visited any page.
    fn sweep(&mut self, stats: bool) -> Result<bool, String> {
        let mut any = false;
        for k in 0..self.st.order.len() {
            let blk = self.st.order[k];
            let was_dirty = std::mem::replace(&mut self.st.dirty[blk as usize], false);
            if !stats && !was_dirty {
                continue;
            }
            if stats {
                // The next page's lists: their cache misses overlap this
                // page's work (the addresses are a hint, nothing is read).
                if let Some(&next) = self.st.order.get(k + 1) {
                    if let Some(p) = self.src.page_hint(next) {
                        self.st.prefetch_lists(next, p, true);
                    }
                }
            }
            self.visit(blk, stats)?;
            any = true;
        }
        self.st.scan.sweeps += any as u32;
        Ok(any)
    }

    fn memory(&self) -> u64 {
        let st = &self.st;
        st.slots.bytes()
            + st.bits.bytes()
            + (st.order.capacity() * 4
                + st.kept.capacity() * 8
                + st.kept_targets.capacity() * 8
                + st.stack.capacity() * 4
                + st.dirty.capacity()
                + st.queue_peak * 4
                + st.work.capacity() * 4
                + st.beyond.capacity() * 4) as u64
    }
}

/// Reads the meta page, runs pass 1 and the search. Block 0 must be the
/// meta page.
fn run<S: PageSource>(src: &mut S, tuning: Tuning) -> Result<Walk<'_, S>, String> {
    let (meta, nblocks) = super::read_meta(src, HnswMeta::parse)?;
    if meta.m < 2 {
        return Err(format!(
            "meta page has m = {}, pgvector requires m >= 2",
            meta.m
        ));
    }
    let slots = Slots {
        spans: vec![UNRECORDED; nblocks as usize],
        ..Default::default()
    };
    let mut w = Walk {
        src,
        st: State {
            nblocks,
            m: meta.m,
            slots,
            bits: Bits::default(),
            order: Vec::with_capacity(nblocks as usize),
            dirty: vec![false; nblocks as usize],
            queue: VecDeque::new(),
            queueing: false,
            queue_peak: 0,
            current: INVALID_BLOCK,
            work: Vec::new(),
            beyond: Vec::new(),
            deferred: Vec::new(),
            kept: Vec::new(),
            kept_targets: Vec::new(),
            kept_budget: 0,
            stack: Vec::new(),
            reached: 0,
            scan: HnswScan {
                pages: nblocks as u64,
                page_reads: 1,
                ..Default::default()
            },
        },
    };
    w.pass_one()?;
    w.st.fill_bits();
    let st = &mut w.st;
    // Layer l holds every live element of level >= l.
    let mut above = 0;
    for l in st.scan.layers.iter_mut().rev() {
        above += l.live_top;
        l.live_in_layer = above;
    }
    st.scan.max_live_level = st
        .scan
        .layers
        .iter()
        .rposition(|l| l.live_top > 0)
        .map(|l| l as u8);
    st.scan.chain_pages = st.order.len() as u64;
    for v in [
        &mut st.slots.state,
        &mut st.slots.level,
        &mut st.slots.version,
    ] {
        v.shrink_to_fit();
    }
    st.slots.link.shrink_to_fit();

    // Seed the search with the entry point, as every scan does.
    st.queueing = true;
    if meta.entry_level >= 0 && meta.entry.is_valid() {
        if let Some(e) = st.slots.index(meta.entry) {
            let es = st.slots.state[e];
            st.scan.entry_state = match es & KIND_MASK {
                KIND_LIVE => Some(ElementState::Live),
                KIND_ZOMBIE => Some(ElementState::Zombie),
                KIND_DELETED => Some(ElementState::Deleted),
                _ => None,
            };
            st.scan.entry_level_actual = is_element(es).then_some(st.slots.level[e]);
            st.reach(e, meta.entry.block);
        }
    }
    let elements = st.scan.elements_live + st.scan.elements_zombie;
    st.kept_budget = tuning.kept_bytes_per_element * elements as usize;
    let (num, den) = tuning.grow_share;
    w.grow(elements * num / den)?;
    w.sweep(true)?;
    while w.sweep(false)? {}
    w.st.scan.pages = w.st.nblocks as u64;
    w.st.scan.meta = Some(meta);
    w.st.scan.slot_bytes = w.memory();
    w.st.kept = Vec::new();
    w.st.kept_targets = Vec::new();
    Ok(w)
}

/// Walks the index behind `src` and measures it.
pub fn walk<S: PageSource>(src: &mut S) -> Result<HnswScan, String> {
    walk_with(src, TUNING)
}

fn walk_with<S: PageSource>(src: &mut S, tuning: Tuning) -> Result<HnswScan, String> {
    let w = run(src, tuning)?;
    let mut scan = w.st.scan;
    let s = &w.st.slots;
    for (i, &st) in s.state.iter().enumerate() {
        if !is_element(st) {
            continue;
        }
        if st & REACHED != 0 {
            match st & KIND_MASK {
                KIND_LIVE => scan.reachable_live += 1,
                _ => scan.reachable_zombie += 1,
            }
        }
        if s.link[i] == NONE {
            scan.missing_neighbor_lists += 1;
        }
    }
    Ok(scan)
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
    let w = run(src, TUNING)?;
    let mut out = Vec::new();
    let mut blocks = w.st.order.clone();
    blocks.sort_unstable();
    for blk in blocks {
        let span = w.st.slots.spans[blk as usize];
        let s = &w.st.slots.state[span.start as usize..(span.start + span.count) as usize];
        let wanted: Vec<u16> = s
            .iter()
            .enumerate()
            .filter(|(_, &st)| st & KIND_MASK == KIND_LIVE && st & REACHED == 0)
            .map(|(i, _)| i as u16 + 1)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        w.src.check_interrupts();
        let found = w
            .src
            .with_page(blk, |b| -> Result<Vec<Unreachable>, String> {
                let page = Page::new(b).map_err(|e| e.to_string())?;
                let mut found = Vec::new();
                for off in wanted {
                    let Some(e) = page.item(off).and_then(|t| HnswElement::parse(t).ok()) else {
                        continue;
                    };
                    if e.deleted || e.heaptids.is_empty() {
                        continue; // changed since pass 1
                    }
                    found.push(Unreachable {
                        element: Tid {
                            block: blk,
                            offset: off,
                        },
                        level: e.level,
                        heap_tids: e.heaptids,
                    });
                }
                Ok(found)
            })??;
        for u in found {
            out.push(u);
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "hnsw_tests.rs"]
mod tests;
