//! Reading pgvector indexes: the on-disk layout (`layout`), value types and
//! distances (`vectors`), the HNSW graph walk (`hnsw`), the IVFFlat list
//! walk (`ivfflat`), and the thin Postgres side that copies pages out of
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
pub trait PageSource {
    /// Current number of blocks in the relation (it may grow during a walk).
    fn nblocks(&mut self) -> u32;
    /// Copies block `blk` into `buf` (`BLCKSZ` bytes). Implementations hold
    /// a share lock only for the copy.
    fn read_page(&mut self, blk: u32, buf: &mut [u8]) -> Result<(), String>;
    /// A place to honour query cancellation between pages.
    fn check_interrupts(&mut self) {}
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
    let mut buf = vec![0u8; layout::BLCKSZ];
    src.read_page(0, &mut buf)?;
    let page = layout::Page::new(&buf).map_err(|e| e.to_string())?;
    let meta = parse(&page).map_err(|e| e.to_string())?;
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
    fn read_page(&mut self, blk: u32, buf: &mut [u8]) -> Result<(), String> {
        let p = self
            .pages
            .get(blk as usize)
            .ok_or_else(|| format!("block {blk} out of range"))?;
        buf[..p.len()].copy_from_slice(p);
        Ok(())
    }
}
