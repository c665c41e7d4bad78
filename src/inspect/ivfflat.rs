//! Walks a pgvector IVFFlat index: the list pages (one center per list),
//! then each list's chain of entry pages.
//!
//! Per list it counts entries and pages and, for dense types, the mean
//! distance of entries to their center and the mean of the entries (to see
//! how far the data has moved from the center trained at build time). A
//! fixed-seed reservoir sample of entries is kept for the centroid-quality
//! check. Memory: lists x dimensions for centers and sums, plus the sample.

use super::layout::*;
use super::vectors::{Metric, VectorType};
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

/// Walks the index. `decoder` is `None` when values are not decoded (bit,
/// sparsevec); then only structure is measured.
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

    // List pages.
    let mut seen = vec![false; nblocks as usize];
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
            scan.lists.push(ListStats {
                list: scan.lists.len() as u32,
                start_page: l.start_page,
                insert_page: l.insert_page,
                sum: if keep_sums && center.is_some() {
                    vec![0.0; meta.dimensions as usize]
                } else {
                    Vec::new()
                },
                center,
                ..Default::default()
            });
        }
        blk = page.next_block();
    }

    // Entry pages of each list.
    let mut rng = SplitMix(0x005E_ED1D_F1A7_u64);
    let mut seen_entries = 0u64;
    for li in 0..scan.lists.len() {
        let mut blk = scan.lists[li].start_page;
        while blk != INVALID_BLOCK {
            if blk >= nblocks {
                // The index grew after we read its size; catch up once.
                let now = src.nblocks();
                if blk >= now {
                    return Err(LayoutError::BlockOutOfRange(blk).to_string());
                }
                seen.resize(now as usize, false);
            }
            if std::mem::replace(&mut seen[blk as usize], true) {
                return Err(LayoutError::ChainLoop(blk).to_string());
            }
            src.check_interrupts();
            src.read_page(blk, &mut buf)?;
            scan.page_reads += 1;
            let page = Page::new(&buf).map_err(|e| e.to_string())?;
            page.check_page_id(IVFFLAT_PAGE_ID)
                .map_err(|e| format!("block {blk}: {e}"))?;
            scan.free_bytes += page.free_space() as u64;
            let list = &mut scan.lists[li];
            list.pages += 1;
            for off in 1..=page.max_offset() {
                let Some(id) = page.item_id(off) else {
                    continue;
                };
                if id.flags != LP_NORMAL {
                    list.dead_items += (id.flags == 3) as u64;
                    continue;
                }
                let Some(t) = page.item(off) else { continue };
                list.tuples += 1;
                let Some(d) = decoder.as_deref_mut().filter(|_| decode) else {
                    continue;
                };
                let it = IndexTuple::parse(t).map_err(|e| e.to_string())?;
                let Some(v) = d.decode(it.value)? else {
                    continue;
                };
                if let Some(c) = &list.center {
                    let dist = metric.distance(&v, c);
                    if dist.is_finite() {
                        list.distance_sum += dist;
                        list.decoded += 1;
                    }
                }
                if let (false, Some(c)) = (list.sum.is_empty(), &list.center) {
                    // Inner-product and cosine centers come from spherical
                    // k-means on normalised vectors: compare like with like.
                    let u = if spherical { unit(&v) } else { Some(v.clone()) };
                    if let Some(u) = u {
                        for (s, x) in list.sum.iter_mut().zip(&u) {
                            *s += *x as f64;
                        }
                        list.l2_sum += Metric::L2.distance(&u, c);
                        list.summed += 1;
                    }
                }
                // Reservoir sampling (Algorithm R).
                seen_entries += 1;
                if scan.sample.len() < sample_size {
                    scan.sample.push((li as u32, v));
                } else {
                    let j = rng.below(seen_entries) as usize;
                    if j < sample_size {
                        scan.sample[j] = (li as u32, v);
                    }
                }
            }
            blk = page.next_block();
        }
    }
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
}
