//! Reading pgvector indexes: the on-disk layout (`layout`), value types and
//! distances (`vectors`), the HNSW graph walk (`hnsw`), the IVFFlat list
//! walk (`ivfflat`), and the thin Postgres side that lends pages out of
//! shared buffers (`pages`) and resolves an index (`relation`).

pub mod hnsw;
pub mod ivfflat;
pub mod layout;
pub mod metrics;
pub mod pages;
pub mod relation;
pub mod report;
pub mod vectors;

/// Where pages come from: shared buffers in the server, memory in tests.
///
/// Pages are handed out in place, under a share lock (server) that is held
/// only while the callback runs: callbacks are plain Rust over the page's
/// bytes, never call into Postgres and never check for interrupts (the
/// source does that between pages, with no lock held). At most one page is
/// locked at a time.
pub trait PageSource {
    /// Current number of blocks in the relation (it may grow during a walk).
    fn nblocks(&mut self) -> u32;
    /// Runs `f` on block `blk` (`BLCKSZ` bytes) in place.
    fn with_page<R>(&mut self, blk: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, String>;
    /// Runs `f(blk, page)` on blocks `start..end` in block order, reading
    /// ahead (the server uses a read stream, whose reads the I/O workers
    /// do). Stops after the first call that returns `Ok(false)` or an error,
    /// which is passed on.
    fn stream(
        &mut self,
        start: u32,
        end: u32,
        mut f: impl FnMut(u32, &[u8]) -> Result<bool, String>,
    ) -> Result<(), String> {
        for blk in start..end {
            self.check_interrupts();
            if !self.with_page(blk, |p| f(blk, p))?? {
                break;
            }
        }
        Ok(())
    }
    /// Copies block `blk` into `buf` (at least `BLCKSZ` bytes).
    fn read_page(&mut self, blk: u32, buf: &mut [u8]) -> Result<(), String> {
        self.with_page(blk, |p| buf[..p.len()].copy_from_slice(p))
    }
    /// A place to honour query cancellation between pages.
    fn check_interrupts(&mut self) {}
    /// Where block `blk`'s bytes probably are in memory, to prefetch them:
    /// a hint only (the page may have been replaced since), never read.
    fn page_hint(&mut self, _blk: u32) -> Option<*const u8> {
        None
    }
}

/// Asks the CPU to bring `len` bytes from `p` into its caches (a hint: no
/// read happens, whatever the memory holds).
#[inline(always)]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for o in (0..len).step_by(64) {
        // SAFETY: a prefetch never faults and reads nothing for the program.
        unsafe {
            core::arch::x86_64::_mm_prefetch(
                p.wrapping_add(o) as *const i8,
                core::arch::x86_64::_MM_HINT_T0,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Reads block 0 and parses it as a meta page with `parse`. Both index
/// kinds start this way; an empty relation was never built.
pub fn read_meta<S: PageSource, M>(
    src: &mut S,
    parse: impl Fn(&layout::Page) -> Result<M, layout::LayoutError>,
) -> Result<(M, u32), String> {
    let nblocks = src.nblocks();
    if nblocks == 0 {
        return Err("index has no pages (it was never built)".into());
    }
    let meta = src.with_page(0, |b| {
        layout::Page::new(b)
            .and_then(|page| parse(&page))
            .map_err(|e| e.to_string())
    })??;
    Ok((meta, nblocks))
}

/// Pages held in memory (unit tests and synthetic fixtures).
#[cfg(test)]
pub struct MemPages {
    pages: Vec<Vec<u8>>,
}

#[cfg(test)]
impl MemPages {
    pub fn new(pages: Vec<Vec<u8>>) -> MemPages {
        MemPages { pages }
    }
}

#[cfg(test)]
impl PageSource for MemPages {
    fn nblocks(&mut self) -> u32 {
        self.pages.len() as u32
    }
    fn with_page<R>(&mut self, blk: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let p = self
            .pages
            .get(blk as usize)
            .ok_or_else(|| format!("block {blk} out of range"))?;
        Ok(f(p))
    }
    fn page_hint(&mut self, blk: u32) -> Option<*const u8> {
        self.pages.get(blk as usize).map(|p| p.as_ptr())
    }
}

#[cfg(test)]
mod filebench {
    //! Offline timing on a relation file: RV_HNSW_FILE=... cargo test --release --lib filebench -- --ignored --nocapture
    use super::*;
    fn load(path: &str) -> MemPages {
        let data = std::fs::read(path).unwrap();
        MemPages::new(data.chunks(layout::BLCKSZ).map(|c| c.to_vec()).collect())
    }
    #[test]
    #[ignore]
    fn filebench_hnsw() {
        let Ok(p) = std::env::var("RV_HNSW_FILE") else {
            return;
        };
        let mut src = load(&p);
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let s = hnsw::walk(&mut src).unwrap();
            println!(
                "hnsw {:.1} ms reads {} growth {} sweeps {} reach {} edges {} mem {}",
                t.elapsed().as_secs_f64() * 1e3,
                s.page_reads,
                s.growth_reads,
                s.sweeps,
                s.reachable_live,
                s.edges,
                s.slot_bytes
            );
        }
    }

    #[test]
    #[ignore]
    fn filebench_ivfflat() {
        use super::vectors::{Metric, VectorType};
        let Ok(p) = std::env::var("RV_IVF_FILE") else {
            return;
        };
        struct Plain;
        impl ivfflat::ValueDecoder for Plain {
            fn decode(&mut self, raw: &[u8]) -> Result<Option<Vec<f32>>, String> {
                match layout::varlena(raw).map_err(|e| e.to_string())? {
                    layout::Varlena::Plain(p) => Ok(vectors::decode_dense(VectorType::Vector, p)),
                    layout::Varlena::Compressed(_) => Err("compressed".into()),
                }
            }
        }
        let mut src = load(&p);
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let s = ivfflat::walk(
                &mut src,
                Metric::L2,
                VectorType::Vector,
                Some(&mut Plain),
                1000,
            )
            .unwrap();
            let t1 = t.elapsed();
            let q = metrics::centroid_quality(&s, Metric::L2);
            let d = metrics::centroid_drift(&s);
            println!(
                "ivfflat walk {:.1} ms + metrics {:.1} ms, tuples {} quality {:?} drift {:?}",
                t1.as_secs_f64() * 1e3,
                (t.elapsed() - t1).as_secs_f64() * 1e3,
                s.tuples(),
                q,
                d
            );
        }
    }
}
