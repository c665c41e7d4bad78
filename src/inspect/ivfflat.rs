//! Walks a pgvector IVFFlat index: the list pages (one center per list),
//! then each list's chain of entry pages.
//!
//! Per list it counts entries and pages and, for dense types, the mean
//! distance of entries to their center and the mean of the entries (to see
//! how far the data has moved from the center trained at build time). A
//! fixed-seed reservoir sample of entries is kept for the centroid-quality
//! check. Memory: lists x dimensions for centers and sums, plus the sample.

use super::layout::*;
use super::vectors::{
    decode_dense_into, dot, dot_norm_fast, l1_fast, l2_squared_fast, Metric, VectorType,
};
use super::PageSource;

/// Turns a raw varlena from a page into floats (`None`: not decodable).
/// The server implementation detoasts inline-compressed values.
pub trait ValueDecoder {
    fn decode(&mut self, raw: &[u8]) -> Result<Option<Vec<f32>>, String>;
}

/// Per-list figures.
#[derive(Debug, Clone, Default)]
pub struct ListStats {
    pub list: u32,
    pub start_page: u32,
    pub insert_page: u32,
    pub tuples: u64,
    pub pages: u64,
    pub dead_items: u64,
    /// Sum of distances of decoded entries to the center.
    pub distance_sum: f64,
    pub decoded: u64,
    /// Sum of decoded entries, component-wise (drift check); empty when skipped.
    pub sum: Vec<f64>,
    /// Euclidean distances of decoded entries to the center, summed, and how
    /// many entries `sum` and this hold (drift is measured in Euclidean
    /// terms whatever the index's metric: `<#>` distances are negative).
    pub l2_sum: f64,
    pub summed: u64,
    pub center: Option<Vec<f32>>,
    /// Squared norm of the center (cosine distances).
    pub center_norm: f64,
}

impl ListStats {
    pub fn mean_distance(&self) -> Option<f64> {
        (self.decoded > 0).then(|| self.distance_sum / self.decoded as f64)
    }
}

#[derive(Debug, Clone, Default)]
pub struct IvfScan {
    pub meta: Option<IvfMeta>,
    pub pages: u64,
    pub list_pages: u64,
    pub lists: Vec<ListStats>,
    /// Sampled `(list, vector)` pairs.
    pub sample: Vec<(u32, Vec<f32>)>,
    pub page_reads: u64,
    pub free_bytes: u64,
    /// Why the component sums were not kept (too large), if so.
    pub drift_skipped: Option<String>,
    /// Centers are unit vectors (inner product, cosine): drift compares
    /// them with the mean direction of the normalised entries.
    pub spherical: bool,
}

impl IvfScan {
    pub fn tuples(&self) -> u64 {
        self.lists.iter().map(|l| l.tuples).sum()
    }
}

/// Above this many (lists x dimensions) the per-list sums are not kept.
pub const MAX_DRIFT_CELLS: usize = 8 << 20;

/// Small deterministic generator (SplitMix64) for reservoir sampling, so
/// that two inspections of an unchanged index report the same figures.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `v` scaled to unit length (`None` for a zero vector).
pub fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    (n > 0.0).then(|| v.iter().map(|x| (*x as f64 / n) as f32).collect())
}

/// Where the walk is: list `li`, whose next page is `blk` (the lists in
/// order, each list's pages in chain order, as the figures are summed).
struct Cursor {
    li: usize,
    blk: u32,
}

/// The entry pages' part of the walk: per-list figures and the sample.
struct Entries {
    metric: Metric,
    ty: VectorType,
    decode: bool,
    spherical: bool,
    sample_size: usize,
    lists: Vec<ListStats>,
    sample: Vec<(u32, Vec<f32>)>,
    rng: SplitMix,
    seen_entries: u64,
    /// Per block: already walked (a chain looping back is an error).
    seen: Vec<bool>,
    /// The value being looked at, and the page's sums in f32 (added to the
    /// list's f64 sums once per page).
    value: Vec<f32>,
    acc: Vec<f32>,
    pages: u64,
    free_bytes: u64,
    cur: Cursor,
}

/// What looking at a page in place gave.
enum Looked {
    /// Done; the next block of its list's chain.
    Next(u32),
    /// Stopped at item `off`, a value Postgres compressed: the rest is to be
    /// decoded (detoasted) from `copy`, without a page lock.
    Compressed { off: u16, copy: Vec<u8> },
}

/// How values are turned into floats.
enum Decode<'d> {
    /// In place, without Postgres (stops at a compressed value).
    InPlace,
    /// Through the decoder, from a copy of the page.
    Decoder(&'d mut dyn ValueDecoder),
}

/// The floats of a plain `vector` payload, read in place when they are
/// aligned (they are, in pages: values start at MAXALIGNed offsets).
fn floats_in_place(ty: VectorType, payload: &[u8]) -> Option<&[f32]> {
    if ty != VectorType::Vector || cfg!(target_endian = "big") || payload.len() < 4 {
        return None;
    }
    let dim = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    let bytes = payload.get(4..4 + 4 * dim)?;
    // SAFETY: every bit pattern is a valid f32; align_to only hands out
    // the aligned middle part, which must then be all of it.
    let (head, floats, tail) = unsafe { bytes.align_to::<f32>() };
    (head.is_empty() && tail.is_empty()).then_some(floats)
}

impl Entries {
    /// Moves the cursor past a page whose next pointer is `next`.
    fn advance(&mut self, next: u32) {
        self.cur.blk = next;
        while self.cur.blk == INVALID_BLOCK && self.cur.li + 1 < self.lists.len() {
            self.cur.li += 1;
            self.cur.blk = self.lists[self.cur.li].start_page;
        }
        if self.cur.blk == INVALID_BLOCK {
            self.cur.li = self.lists.len();
        }
    }

    /// Looks at the cursor's page `blk` in place (under its lock: no
    /// Postgres call), up to a value only the decoder can read, if any.
    fn look(&mut self, blk: u32, bytes: &[u8]) -> Result<Looked, String> {
        let page = Page::new(bytes).map_err(|e| e.to_string())?;
        page.check_page_id(IVFFLAT_PAGE_ID)
            .map_err(|e| format!("block {blk}: {e}"))?;
        self.begin(blk, &page)?;
        match self.items(&page, 1, Decode::InPlace)? {
            None => Ok(Looked::Next(self.end(&page))),
            Some(off) => Ok(Looked::Compressed {
                off,
                copy: bytes.to_vec(),
            }),
        }
    }

    /// Counts a page of list `self.cur.li` and readies its sums.
    fn begin(&mut self, blk: u32, page: &Page) -> Result<(), String> {
        if std::mem::replace(&mut self.seen[blk as usize], true) {
            return Err(LayoutError::ChainLoop(blk).to_string());
        }
        let li = self.cur.li;
        self.pages += 1;
        self.free_bytes += page.free_space() as u64;
        self.lists[li].pages += 1;
        if !self.lists[li].sum.is_empty() {
            self.acc.clear();
            self.acc.resize(self.lists[li].sum.len(), 0.0);
        }
        Ok(())
    }

    /// Adds the page's sums to the list's; returns the next block.
    fn end(&mut self, page: &Page) -> u32 {
        let list = &mut self.lists[self.cur.li];
        for (s, a) in list.sum.iter_mut().zip(&self.acc) {
            *s += *a as f64;
        }
        page.next_block()
    }

    /// The items of a page from `from` on. In place, stops at (and returns)
    /// the first item whose value needs the decoder.
    fn items(&mut self, page: &Page, from: u16, mut how: Decode) -> Result<Option<u16>, String> {
        let li = self.cur.li;
        let mut value = std::mem::take(&mut self.value);
        let mut stop = None;
        // The values fill the page: ask for all of it at once, so that its
        // cache misses overlap.
        super::prefetch_bytes(page.bytes().as_ptr(), BLCKSZ);
        for off in from..=page.max_offset() {
            let Some(id) = page.item_id(off) else {
                continue;
            };
            if id.flags != LP_NORMAL {
                self.lists[li].dead_items += (id.flags == 3) as u64;
                continue;
            }
            let Some(t) = page.item(off) else { continue };
            if !self.decode {
                self.lists[li].tuples += 1;
                continue;
            }
            let it = IndexTuple::parse(t).map_err(|e| e.to_string())?;
            let v: &[f32] = match &mut how {
                Decode::InPlace => {
                    let Ok(Varlena::Plain(p)) = varlena(it.value) else {
                        stop = Some(off);
                        break;
                    };
                    self.lists[li].tuples += 1;
                    match floats_in_place(self.ty, p) {
                        Some(v) => v,
                        None if decode_dense_into(self.ty, p, &mut value) => &value,
                        None => continue,
                    }
                }
                Decode::Decoder(d) => {
                    self.lists[li].tuples += 1;
                    match d.decode(it.value)? {
                        Some(v) => {
                            value = v;
                            &value
                        }
                        None => continue,
                    }
                }
            };
            self.entry(li, v);
        }
        self.value = value;
        Ok(stop)
    }

    /// One decoded entry `v` of list `li`.
    fn entry(&mut self, li: usize, v: &[f32]) {
        let list = &mut self.lists[li];
        if let Some(c) = list.center.as_ref().filter(|c| c.len() != v.len()) {
            // A value of another size than its center (damage): the plain
            // per-component way, which these figures were defined with.
            let dist = self.metric.distance(v, c);
            if dist.is_finite() {
                list.distance_sum += dist;
                list.decoded += 1;
            }
            if !list.sum.is_empty() {
                let u = if self.spherical {
                    unit(v)
                } else {
                    Some(v.to_vec())
                };
                if let Some(u) = u {
                    for (a, x) in self.acc.iter_mut().zip(&u) {
                        *a += *x;
                    }
                    list.l2_sum += Metric::L2.distance(&u, c);
                    list.summed += 1;
                }
            }
        } else if let Some(c) = &list.center {
            // One pass for what the metric and the drift need.
            let (l2, dot, norm) = match self.metric {
                Metric::L2 | Metric::L1 => (l2_squared_fast(v, c).sqrt(), 0.0, 0.0),
                _ => {
                    let (dot, norm) = dot_norm_fast(v, c);
                    (f64::NAN, dot, norm)
                }
            };
            let dist = match self.metric {
                Metric::L2 => l2,
                Metric::L1 => l1_fast(v, c),
                Metric::InnerProduct => -dot,
                Metric::Cosine => {
                    let denom = (norm * list.center_norm).sqrt();
                    if denom == 0.0 {
                        f64::NAN
                    } else {
                        1.0 - (dot / denom).clamp(-1.0, 1.0)
                    }
                }
                Metric::Hamming | Metric::Jaccard => f64::NAN,
            };
            if dist.is_finite() {
                list.distance_sum += dist;
                list.decoded += 1;
            }
            if !list.sum.is_empty() {
                if !self.spherical {
                    for (a, x) in self.acc.iter_mut().zip(v) {
                        *a += *x;
                    }
                    list.l2_sum += l2;
                    list.summed += 1;
                } else if norm > 0.0 {
                    // Inner-product and cosine centers come from spherical
                    // k-means on normalised vectors: compare like with like.
                    let inv = (1.0 / norm.sqrt()) as f32;
                    let mut d2 = 0f32;
                    for ((a, x), y) in self.acc.iter_mut().zip(v).zip(c) {
                        let u = *x * inv;
                        *a += u;
                        d2 += (u - y) * (u - y);
                    }
                    list.l2_sum += (d2 as f64).sqrt();
                    list.summed += 1;
                }
            }
        }
        // Reservoir sampling (Algorithm R).
        self.seen_entries += 1;
        if self.sample.len() < self.sample_size {
            self.sample.push((li as u32, v.to_vec()));
        } else {
            let j = self.rng.below(self.seen_entries) as usize;
            if j < self.sample_size {
                self.sample[j] = (li as u32, v.to_vec());
            }
        }
    }
}

/// Walks the index. `decoder` is `None` when values are not decoded (bit,
/// sparsevec); then only structure is measured.
///
/// The entry pages are streamed in block order ([`PageSource::stream`]) and
/// looked at as they arrive while that is the walk's order (lists in
/// order, each list's chain), as after a build; once it is not (pages a
/// list got later are appended at the end of the index), the stream only
/// reads ahead and the rest of the walk follows the chains page by page.
pub fn walk<S: PageSource>(
    src: &mut S,
    metric: Metric,
    ty: VectorType,
    mut decoder: Option<&mut dyn ValueDecoder>,
    sample_size: usize,
) -> Result<IvfScan, String> {
    let (meta, nblocks) = super::read_meta(src, IvfMeta::parse)?;
    let mut buf = vec![0u8; BLCKSZ];
    let mut scan = IvfScan {
        pages: nblocks as u64,
        page_reads: 1,
        ..Default::default()
    };
    let decode = decoder.is_some() && ty.decodable();
    let spherical = matches!(metric, Metric::InnerProduct | Metric::Cosine);
    scan.spherical = spherical;
    let keep_sums = decode && meta.lists as usize * meta.dimensions as usize <= MAX_DRIFT_CELLS;
    if decode && !keep_sums {
        scan.drift_skipped = Some(format!(
            "lists x dimensions = {} exceeds {MAX_DRIFT_CELLS}",
            meta.lists as usize * meta.dimensions as usize
        ));
    }

    // List pages (a few): copied, so that centers are decoded without a lock.
    let mut seen = vec![false; nblocks as usize];
    let mut lists: Vec<ListStats> = Vec::new();
    let mut blk = 1u32;
    while blk != INVALID_BLOCK {
        if blk >= nblocks {
            return Err(LayoutError::BlockOutOfRange(blk).to_string());
        }
        if std::mem::replace(&mut seen[blk as usize], true) {
            return Err(LayoutError::ChainLoop(blk).to_string());
        }
        src.check_interrupts();
        src.read_page(blk, &mut buf)?;
        scan.page_reads += 1;
        scan.list_pages += 1;
        let page = Page::new(&buf).map_err(|e| e.to_string())?;
        page.check_page_id(IVFFLAT_PAGE_ID)
            .map_err(|e| format!("block {blk}: {e}"))?;
        for off in 1..=page.max_offset() {
            let Some(t) = page.item(off) else { continue };
            let l = IvfList::parse(t).map_err(|e| e.to_string())?;
            let center = match (&mut decoder, decode) {
                (Some(d), true) => d.decode(l.center)?,
                _ => None,
            };
            lists.push(ListStats {
                list: lists.len() as u32,
                start_page: l.start_page,
                insert_page: l.insert_page,
                sum: if keep_sums && center.is_some() {
                    vec![0.0; meta.dimensions as usize]
                } else {
                    Vec::new()
                },
                center_norm: center.as_ref().map_or(0.0, |c| dot(c, c)),
                center,
                ..Default::default()
            });
        }
        blk = page.next_block();
    }

    // Entry pages of each list.
    let mut e = Entries {
        metric,
        ty,
        decode,
        spherical,
        sample_size,
        lists,
        sample: Vec::new(),
        rng: SplitMix(0x005E_ED1D_F1A7_u64),
        seen_entries: 0,
        seen,
        value: Vec::new(),
        acc: Vec::new(),
        pages: 0,
        free_bytes: 0,
        cur: Cursor {
            li: 0,
            blk: INVALID_BLOCK,
        },
    };
    if let Some(first) = e.lists.first() {
        e.advance(first.start_page);
    }
    let mut in_order = true;
    let mut pending = None;
    src.stream(1, nblocks, |blk, bytes| {
        if e.cur.blk == INVALID_BLOCK {
            return Ok(false); // walked every list
        }
        if !in_order || blk < e.cur.blk || e.seen[blk as usize] {
            return Ok(true); // not the walk's next page (yet): read ahead
        }
        if blk > e.cur.blk {
            in_order = false; // the walk's next page is behind the stream
            return Ok(true);
        }
        match e.look(blk, bytes)? {
            Looked::Next(next) => e.advance(next),
            compressed => {
                pending = Some(compressed);
                in_order = false;
            }
        }
        Ok(true)
    })?;
    // The rest in the walk's order, a page at a time.
    let mut nblocks = nblocks;
    loop {
        if let Some(Looked::Compressed { off, copy }) = pending.take() {
            let page = Page::new(&copy).map_err(|e| e.to_string())?;
            let d = decoder.as_deref_mut().expect("decoding");
            e.items(&page, off, Decode::Decoder(d))?;
            let next = e.end(&page);
            e.advance(next);
        }
        if e.cur.blk == INVALID_BLOCK {
            break;
        }
        let blk = e.cur.blk;
        if blk >= nblocks {
            // The index grew after we read its size; catch up.
            nblocks = src.nblocks();
            if blk >= nblocks {
                return Err(LayoutError::BlockOutOfRange(blk).to_string());
            }
            e.seen.resize(nblocks as usize, false);
        }
        if e.seen[blk as usize] {
            return Err(LayoutError::ChainLoop(blk).to_string());
        }
        src.check_interrupts();
        match src.with_page(blk, |bytes| e.look(blk, bytes))?? {
            Looked::Next(next) => e.advance(next),
            compressed => pending = Some(compressed),
        }
    }
    scan.page_reads += e.pages;
    scan.free_bytes = e.free_bytes;
    scan.lists = e.lists;
    scan.sample = e.sample;
    scan.meta = Some(meta);
    Ok(scan)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::layout::testpage::*;
    use super::super::vectors::decode_dense;
    use super::super::MemPages;
    use super::*;

    pub struct PlainDecoder;
    impl ValueDecoder for PlainDecoder {
        fn decode(&mut self, raw: &[u8]) -> Result<Option<Vec<f32>>, String> {
            match varlena(raw).map_err(|e| e.to_string())? {
                Varlena::Plain(p) => Ok(decode_dense(VectorType::Vector, p)),
                Varlena::Compressed(_) => Err("compressed".into()),
            }
        }
    }

    fn ivf_meta(dims: u16, lists: u16) -> Vec<u8> {
        let mut c = vec![0u8; 12];
        c[0..4].copy_from_slice(&IVFFLAT_MAGIC.to_le_bytes());
        c[4..8].copy_from_slice(&IVFFLAT_VERSION.to_le_bytes());
        c[8..10].copy_from_slice(&dims.to_le_bytes());
        c[10..12].copy_from_slice(&lists.to_le_bytes());
        c
    }
    fn list_tuple(start: u32, center: &[f32]) -> Vec<u8> {
        let mut t = start.to_le_bytes().to_vec();
        t.extend_from_slice(&start.to_le_bytes());
        t.extend_from_slice(&vector_varlena(center));
        t
    }
    fn entry(heap: u16, v: &[f32]) -> Vec<u8> {
        let mut t = tid_bytes(Tid {
            block: 0,
            offset: heap,
        })
        .to_vec();
        let val = vector_varlena(v);
        let size = (8 + val.len()) as u16;
        t.extend_from_slice(&(size | 0x4000).to_le_bytes());
        t.extend_from_slice(&val);
        t
    }

    /// Two lists: centers (0,0) and (10,0). List 0 holds 3 entries over two
    /// pages, list 1 holds one entry that is really nearer to center 0.
    pub fn two_lists() -> MemPages {
        let mut meta = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        meta.set_contents(&ivf_meta(2, 2));
        let mut lists = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        lists.add(&list_tuple(2, &[0.0, 0.0]));
        lists.add(&list_tuple(4, &[10.0, 0.0]));
        let mut a = PageBuilder::new(IVFFLAT_PAGE_ID, 3);
        a.add(&entry(1, &[1.0, 0.0]));
        a.add(&entry(2, &[-1.0, 0.0]));
        let mut b = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        b.add(&entry(3, &[0.0, 2.0]));
        let mut c = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        c.add(&entry(4, &[1.0, 0.0]));
        MemPages::new(vec![meta.b, lists.b, a.b, b.b, c.b])
    }

    #[test]
    fn walks_lists_and_entries() {
        let mut src = two_lists();
        let s = walk(
            &mut src,
            Metric::L2,
            VectorType::Vector,
            Some(&mut PlainDecoder),
            10,
        )
        .unwrap();
        assert_eq!(s.lists.len(), 2);
        assert_eq!(s.tuples(), 4);
        assert_eq!(s.lists[0].tuples, 3);
        assert_eq!(s.lists[0].pages, 2);
        assert_eq!(s.lists[1].pages, 1);
        assert!((s.lists[0].mean_distance().unwrap() - 4.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.lists[1].mean_distance(), Some(9.0));
        assert_eq!(s.lists[0].sum, vec![0.0, 2.0]);
        assert_eq!(s.sample.len(), 4);
        assert_eq!(s.page_reads, 5);
    }

    #[test]
    fn structure_only_without_decoder() {
        let s = walk(&mut two_lists(), Metric::Hamming, VectorType::Bit, None, 10).unwrap();
        assert_eq!(s.tuples(), 4);
        assert!(s.sample.is_empty());
        assert_eq!(s.lists[0].mean_distance(), None);
    }

    #[test]
    fn reservoir_is_bounded_and_deterministic() {
        let a = walk(
            &mut two_lists(),
            Metric::L2,
            VectorType::Vector,
            Some(&mut PlainDecoder),
            2,
        )
        .unwrap();
        let b = walk(
            &mut two_lists(),
            Metric::L2,
            VectorType::Vector,
            Some(&mut PlainDecoder),
            2,
        )
        .unwrap();
        assert_eq!(a.sample.len(), 2);
        assert_eq!(a.sample, b.sample);
    }

    /// Decodes plain values, and "compressed" ones that merely carry the
    /// plain payload after a compressed header (enough to exercise the walk's
    /// path for pages it must copy before decoding).
    struct FakeDetoast;
    impl ValueDecoder for FakeDetoast {
        fn decode(&mut self, raw: &[u8]) -> Result<Option<Vec<f32>>, String> {
            match varlena(raw).map_err(|e| e.to_string())? {
                Varlena::Plain(p) => Ok(decode_dense(VectorType::Vector, p)),
                Varlena::Compressed(w) => Ok(decode_dense(VectorType::Vector, &w[4..])),
            }
        }
    }

    /// The walk as it was written first: chains followed page by page,
    /// every value through the decoder, sums in f64.
    fn reference(pages: &[Vec<u8>], metric: Metric, sample_size: usize) -> IvfScan {
        let meta = IvfMeta::parse(&Page::new(&pages[0]).unwrap()).unwrap();
        let spherical = matches!(metric, Metric::InnerProduct | Metric::Cosine);
        let mut d = FakeDetoast;
        let mut s = IvfScan {
            pages: pages.len() as u64,
            page_reads: 1,
            spherical,
            ..Default::default()
        };
        let mut blk = 1;
        while blk != INVALID_BLOCK {
            let page = Page::new(&pages[blk as usize]).unwrap();
            s.page_reads += 1;
            s.list_pages += 1;
            for off in 1..=page.max_offset() {
                let l = IvfList::parse(page.item(off).unwrap()).unwrap();
                let center = d.decode(l.center).unwrap();
                s.lists.push(ListStats {
                    list: s.lists.len() as u32,
                    start_page: l.start_page,
                    insert_page: l.insert_page,
                    sum: vec![0.0; meta.dimensions as usize],
                    center,
                    ..Default::default()
                });
            }
            blk = page.next_block();
        }
        let mut rng = SplitMix(0x005E_ED1D_F1A7_u64);
        let mut seen = 0u64;
        for li in 0..s.lists.len() {
            let mut blk = s.lists[li].start_page;
            while blk != INVALID_BLOCK {
                let page = Page::new(&pages[blk as usize]).unwrap();
                s.page_reads += 1;
                s.free_bytes += page.free_space() as u64;
                let list = &mut s.lists[li];
                list.pages += 1;
                for off in 1..=page.max_offset() {
                    let id = page.item_id(off).unwrap();
                    if id.flags != LP_NORMAL {
                        list.dead_items += (id.flags == 3) as u64;
                        continue;
                    }
                    list.tuples += 1;
                    let it = IndexTuple::parse(page.item(off).unwrap()).unwrap();
                    let Some(v) = d.decode(it.value).unwrap() else {
                        continue;
                    };
                    let c = list.center.as_ref().unwrap();
                    let dist = metric.distance(&v, c);
                    if dist.is_finite() {
                        list.distance_sum += dist;
                        list.decoded += 1;
                    }
                    let u = if spherical { unit(&v) } else { Some(v.clone()) };
                    if let Some(u) = u {
                        for (s, x) in list.sum.iter_mut().zip(&u) {
                            *s += *x as f64;
                        }
                        list.l2_sum += Metric::L2.distance(&u, c);
                        list.summed += 1;
                    }
                    seen += 1;
                    if s.sample.len() < sample_size {
                        s.sample.push((li as u32, v));
                    } else {
                        let j = rng.below(seen) as usize;
                        if j < sample_size {
                            s.sample[j] = (li as u32, v);
                        }
                    }
                }
                blk = page.next_block();
            }
        }
        s.meta = Some(meta);
        s
    }

    /// A random index: up to 6 lists (some empty), up to 9 dimensions,
    /// chains in block order as built or with pages appended at the end
    /// later, dead items, values of the wrong size, compressed values.
    fn random_index(seed: u64) -> Vec<Vec<u8>> {
        let mut r = SplitMix(seed);
        let dims = 1 + r.below(9) as u16;
        let nlists = 1 + r.below(6) as usize;
        let f = |r: &mut SplitMix| (r.below(2001) as f32 - 1000.0) / 250.0;
        let centers: Vec<Vec<f32>> = (0..nlists)
            .map(|_| (0..dims).map(|_| f(&mut r)).collect())
            .collect();
        // Entry pages per list: counts, then block numbers.
        let counts: Vec<usize> = (0..nlists).map(|_| r.below(4) as usize).collect();
        let total: usize = counts.iter().sum();
        let appended = r.below(2) == 0;
        // Block order: as built, list by list; with `appended`, the last page
        // of some lists goes to the end instead.
        let mut order: Vec<(usize, usize)> = vec![]; // (list, page number in its chain)
        let mut late = vec![];
        for (li, &n) in counts.iter().enumerate() {
            for k in 0..n {
                if appended && k + 1 == n && k > 0 && r.below(2) == 0 {
                    late.push((li, k));
                } else {
                    order.push((li, k));
                }
            }
        }
        order.extend(late);
        assert_eq!(order.len(), total);
        let block_of = |li: usize, k: usize| -> u32 {
            2 + order.iter().position(|&p| p == (li, k)).unwrap() as u32
        };
        let mut meta = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        meta.set_contents(&ivf_meta(dims, nlists as u16));
        let mut listp = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        for (li, c) in centers.iter().enumerate() {
            let start = if counts[li] > 0 {
                block_of(li, 0)
            } else {
                INVALID_BLOCK
            };
            listp.add(&list_tuple(start, c));
        }
        let mut pages = vec![meta.b, listp.b];
        let mut heap = 0u16;
        for &(li, k) in &order {
            let next = if k + 1 < counts[li] {
                block_of(li, k + 1)
            } else {
                INVALID_BLOCK
            };
            let mut p = PageBuilder::new(IVFFLAT_PAGE_ID, next);
            for _ in 0..r.below(6) {
                heap += 1;
                let n = if r.below(15) == 0 { dims + 1 } else { dims };
                let v: Vec<f32> = (0..n)
                    .map(|i| centers[li].get(i as usize).copied().unwrap_or(0.0) + f(&mut r) / 4.0)
                    .collect();
                let mut t = entry(heap, &v);
                if r.below(12) == 0 {
                    // Mark the varlena compressed (FakeDetoast reads it anyway).
                    t[8] |= 0x02;
                }
                let off = p.add(&t);
                if r.below(12) == 0 {
                    // LP_DEAD
                    let at = PAGE_HEADER + 4 * (off as usize - 1);
                    let mut lp = u32::from_le_bytes(p.b[at..at + 4].try_into().unwrap());
                    lp |= 3 << 15;
                    p.b[at..at + 4].copy_from_slice(&lp.to_le_bytes());
                }
            }
            pages.push(p.b);
        }
        pages
    }

    #[test]
    fn agrees_with_the_page_by_page_walk() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0) || a == b;
        let mut compared = 0;
        for seed in 0..300 {
            let pages = random_index(seed);
            let metric =
                [Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1][seed as usize % 4];
            let want = reference(&pages, metric, 7);
            let got = walk(
                &mut MemPages::new(pages),
                metric,
                VectorType::Vector,
                Some(&mut FakeDetoast),
                7,
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let ctx = format!("seed {seed} {metric:?}");
            assert_eq!(got.page_reads, want.page_reads, "{ctx}");
            assert_eq!(got.list_pages, want.list_pages, "{ctx}");
            assert_eq!(got.free_bytes, want.free_bytes, "{ctx}");
            assert_eq!(got.sample, want.sample, "{ctx}");
            assert_eq!(got.lists.len(), want.lists.len(), "{ctx}");
            for (g, w) in got.lists.iter().zip(&want.lists) {
                assert_eq!(
                    (g.tuples, g.pages, g.dead_items, g.decoded, g.summed),
                    (w.tuples, w.pages, w.dead_items, w.decoded, w.summed),
                    "{ctx} list {}",
                    w.list
                );
                assert!(close(g.distance_sum, w.distance_sum), "{ctx}");
                assert!(close(g.l2_sum, w.l2_sum), "{ctx}");
                assert_eq!(g.sum.len(), w.sum.len(), "{ctx}");
                for (a, b) in g.sum.iter().zip(&w.sum) {
                    assert!(close(*a, *b), "{ctx}: sums {:?} {:?}", g.sum, w.sum);
                }
                compared += g.decoded;
            }
        }
        assert!(compared > 1000, "{compared}");
    }
}
