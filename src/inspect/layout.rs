//! A byte-level mirror of pgvector's on-disk format (0.8.x, format version 1).
//!
//! Everything here works on the bytes of one 8 kB page (lent in place
//! under a share lock, or a copy), so it is plain Rust: no Postgres calls,
//! no locks, and unit tests build pages by hand.
//! Field offsets follow `hnsw.h` / `ivfflat.h`; see `../shared/DESIGN.md`.

use std::fmt;

pub const BLCKSZ: usize = 8192;
/// `SizeOfPageHeaderData`; also where `PageGetContents` starts (MAXALIGN'd).
pub const PAGE_HEADER: usize = 24;
pub const INVALID_BLOCK: u32 = 0xFFFF_FFFF;

pub const HNSW_MAGIC: u32 = 0xA953_A953;
pub const HNSW_VERSION: u32 = 1;
pub const HNSW_PAGE_ID: u16 = 0xFF90;
pub const HNSW_HEAPTIDS: usize = 10;
pub const HNSW_ELEMENT_TYPE: u8 = 1;
pub const HNSW_NEIGHBOR_TYPE: u8 = 2;
/// Offset of the value inside an element tuple.
pub const HNSW_ELEMENT_VALUE_OFFSET: usize = 72;

pub const IVFFLAT_MAGIC: u32 = 0x014F_F1A7;
pub const IVFFLAT_VERSION: u32 = 1;
pub const IVFFLAT_PAGE_ID: u16 = 0xFF84;

/// Why a page or tuple could not be understood.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutError {
    ShortPage,
    NotPgvectorPage { page_id: u16, expected: u16 },
    BadMagic { found: u32, expected: u32 },
    UnknownVersion { found: u32, supported: u32 },
    BadTuple(&'static str),
    ChainLoop(u32),
    BlockOutOfRange(u32),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::ShortPage => write!(f, "page is shorter than {BLCKSZ} bytes"),
            LayoutError::NotPgvectorPage { page_id, expected } => write!(
                f,
                "page identifier 0x{page_id:04X} is not pgvector's 0x{expected:04X}"
            ),
            LayoutError::BadMagic { found, expected } => write!(
                f,
                "meta page magic number 0x{found:08X} is not pgvector's 0x{expected:08X}"
            ),
            LayoutError::UnknownVersion { found, supported } => write!(
                f,
                "pgvector index format version {found} is not supported (this build reads version {supported})"
            ),
            LayoutError::BadTuple(what) => write!(f, "malformed index tuple: {what}"),
            LayoutError::ChainLoop(b) => write!(f, "page chain loops back to block {b}"),
            LayoutError::BlockOutOfRange(b) => {
                write!(f, "page chain points past the end of the index (block {b})")
            }
        }
    }
}

#[inline]
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
#[inline]
fn i16_at(b: &[u8], o: usize) -> i16 {
    i16::from_le_bytes([b[o], b[o + 1]])
}
#[inline]
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
#[inline]
pub(crate) fn i32_at(b: &[u8], o: usize) -> i32 {
    i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
#[inline]
pub(crate) fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
#[inline]
pub(crate) fn u16_le(b: &[u8], o: usize) -> u16 {
    u16_at(b, o)
}

/// `ItemPointerData`: block number split in two u16 halves, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tid {
    pub block: u32,
    pub offset: u16,
}

impl Tid {
    #[inline]
    pub fn parse(b: &[u8], o: usize) -> Tid {
        let hi = u16_at(b, o) as u32;
        let lo = u16_at(b, o + 2) as u32;
        Tid {
            block: (hi << 16) | lo,
            offset: u16_at(b, o + 4),
        }
    }
    /// `ItemPointerIsValid`: offset 0 is `InvalidOffsetNumber`.
    #[inline]
    pub fn is_valid(&self) -> bool {
        self.offset != 0
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.block, self.offset)
    }
}

/// One line pointer (`ItemIdData`): 15-bit offset, 2-bit flags, 15-bit length.
#[derive(Debug, Clone, Copy)]
pub struct ItemId {
    pub off: usize,
    pub flags: u8,
    pub len: usize,
}

pub const LP_NORMAL: u8 = 1;

/// The bytes of one page.
pub struct Page<'a> {
    b: &'a [u8],
}

impl<'a> Page<'a> {
    #[inline]
    pub fn new(b: &'a [u8]) -> Result<Page<'a>, LayoutError> {
        if b.len() < BLCKSZ {
            return Err(LayoutError::ShortPage);
        }
        Ok(Page { b })
    }
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.b
    }
    #[inline]
    pub fn lower(&self) -> usize {
        u16_at(self.b, 12) as usize
    }
    #[inline]
    pub fn upper(&self) -> usize {
        u16_at(self.b, 14) as usize
    }
    #[inline]
    pub fn special(&self) -> usize {
        u16_at(self.b, 16) as usize
    }
    /// Number of line pointers (`PageGetMaxOffsetNumber`).
    #[inline]
    pub fn max_offset(&self) -> u16 {
        let lower = self.lower();
        if lower <= PAGE_HEADER || lower > BLCKSZ {
            0
        } else {
            ((lower - PAGE_HEADER) / 4) as u16
        }
    }
    #[inline]
    pub fn free_space(&self) -> usize {
        self.upper().saturating_sub(self.lower())
    }
    /// pgvector's special area: `{u32 nextblkno, u16 unused, u16 page_id}`.
    #[inline]
    pub fn next_block(&self) -> u32 {
        let s = self.special();
        if s + 8 > BLCKSZ {
            return INVALID_BLOCK;
        }
        u32_at(self.b, s)
    }
    #[inline]
    pub fn page_id(&self) -> u16 {
        let s = self.special();
        if s + 8 > BLCKSZ {
            return 0;
        }
        u16_at(self.b, s + 6)
    }
    pub fn check_page_id(&self, expected: u16) -> Result<(), LayoutError> {
        let page_id = self.page_id();
        if page_id != expected {
            return Err(LayoutError::NotPgvectorPage { page_id, expected });
        }
        Ok(())
    }
    #[inline]
    pub fn item_id(&self, offset: u16) -> Option<ItemId> {
        if offset == 0 || offset > self.max_offset() {
            return None;
        }
        let raw = u32_at(self.b, PAGE_HEADER + (offset as usize - 1) * 4);
        Some(ItemId {
            off: (raw & 0x7FFF) as usize,
            flags: ((raw >> 15) & 0x3) as u8,
            len: (raw >> 17) as usize,
        })
    }
    /// Bytes of a normal (LP_NORMAL) item, bounds-checked against the page.
    #[inline]
    pub fn item(&self, offset: u16) -> Option<&'a [u8]> {
        let id = self.item_id(offset)?;
        if id.flags != LP_NORMAL || id.len == 0 || id.off + id.len > BLCKSZ {
            return None;
        }
        Some(&self.b[id.off..id.off + id.len])
    }
    /// The meta struct (`PageGetContents`).
    pub fn contents(&self) -> &'a [u8] {
        &self.b[PAGE_HEADER..]
    }
}

fn check_magic_version(
    magic: u32,
    version: u32,
    want_magic: u32,
    want_version: u32,
) -> Result<(), LayoutError> {
    if magic != want_magic {
        return Err(LayoutError::BadMagic {
            found: magic,
            expected: want_magic,
        });
    }
    if version != want_version {
        return Err(LayoutError::UnknownVersion {
            found: version,
            supported: want_version,
        });
    }
    Ok(())
}

/// `HnswMetaPageData`.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswMeta {
    pub version: u32,
    pub dimensions: u32,
    pub m: u16,
    pub ef_construction: u16,
    pub entry: Tid,
    pub entry_level: i16,
    pub insert_page: u32,
}

impl HnswMeta {
    pub fn parse(page: &Page) -> Result<HnswMeta, LayoutError> {
        page.check_page_id(HNSW_PAGE_ID)?;
        let c = page.contents();
        check_magic_version(u32_at(c, 0), u32_at(c, 4), HNSW_MAGIC, HNSW_VERSION)?;
        Ok(HnswMeta {
            version: u32_at(c, 4),
            dimensions: u32_at(c, 8),
            m: u16_at(c, 12),
            ef_construction: u16_at(c, 14),
            entry: Tid {
                block: u32_at(c, 16),
                offset: u16_at(c, 20),
            },
            entry_level: i16_at(c, 22),
            insert_page: u32_at(c, 24),
        })
    }
}

/// `HnswElementTupleData` without its value.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswElement {
    pub level: u8,
    pub deleted: bool,
    pub version: u8,
    pub heaptids: Vec<Tid>,
    pub neighbortid: Tid,
}

/// State of an element slot, as pgvector's scan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementState {
    /// Not deleted and points at a heap row: returned by scans.
    Live,
    /// Not deleted, but no heap tid left: traversed, never returned.
    Zombie,
    /// Marked deleted by vacuum: a free slot awaiting reuse.
    Deleted,
}

impl HnswElement {
    pub fn parse(t: &[u8]) -> Result<HnswElement, LayoutError> {
        if t.len() < HNSW_ELEMENT_VALUE_OFFSET || t[0] != HNSW_ELEMENT_TYPE {
            return Err(LayoutError::BadTuple("element tuple too short"));
        }
        let heaptids = (0..HNSW_HEAPTIDS)
            .map(|i| Tid::parse(t, 4 + 6 * i))
            .filter(|t| t.is_valid())
            .collect();
        Ok(HnswElement {
            level: t[1],
            deleted: t[2] != 0,
            version: t[3],
            heaptids,
            neighbortid: Tid::parse(t, 64),
        })
    }
    /// Count valid heap tids without allocating (hot path of the walk).
    #[inline]
    pub fn count_heaptids(t: &[u8]) -> usize {
        (0..HNSW_HEAPTIDS)
            .filter(|i| Tid::parse(t, 4 + 6 * i).is_valid())
            .count()
    }
    /// pgvector treats an element as live when `heaptids[0]` is valid.
    #[inline]
    pub fn state_of(t: &[u8]) -> ElementState {
        if t[2] != 0 {
            ElementState::Deleted
        } else if Tid::parse(t, 4).is_valid() {
            ElementState::Live
        } else {
            ElementState::Zombie
        }
    }
    pub fn value(t: &[u8]) -> &[u8] {
        &t[HNSW_ELEMENT_VALUE_OFFSET..]
    }
}

/// `HnswNeighborTupleData`: `(level + 2) * m` tids; layer `lc` starts at
/// slot `(level - lc) * m` and has `2m` slots at layer 0, `m` above.
pub struct HnswNeighbors<'a> {
    t: &'a [u8],
    pub version: u8,
    pub count: u16,
}

impl<'a> HnswNeighbors<'a> {
    pub fn parse(t: &'a [u8]) -> Result<HnswNeighbors<'a>, LayoutError> {
        if t.len() < 4 || t[0] != HNSW_NEIGHBOR_TYPE {
            return Err(LayoutError::BadTuple("neighbor tuple too short"));
        }
        let count = u16_at(t, 2);
        if 4 + count as usize * 6 > t.len() {
            return Err(LayoutError::BadTuple("neighbor count exceeds tuple"));
        }
        Ok(HnswNeighbors {
            t,
            version: t[1],
            count,
        })
    }
    /// Whether this list belongs to an element of this level and version
    /// (pgvector ignores a list that does not match).
    pub fn matches(&self, level: u8, version: u8, m: u16) -> bool {
        self.version == version && self.count as usize == (level as usize + 2) * m as usize
    }
    /// The valid neighbors of layer `lc` (the list ends at the first invalid tid).
    pub fn layer(&self, level: u8, lc: u8, m: u16) -> impl Iterator<Item = Tid> + 'a {
        let m = m as usize;
        let start = (level as usize - lc as usize) * m;
        let len = if lc == 0 { 2 * m } else { m };
        let t = self.t;
        (start..start + len)
            .map(move |i| Tid::parse(t, 4 + 6 * i))
            .take_while(|tid| tid.is_valid())
    }
}

/// `IvfflatMetaPageData`.
#[derive(Debug, Clone, PartialEq)]
pub struct IvfMeta {
    pub version: u32,
    pub dimensions: u16,
    pub lists: u16,
}

impl IvfMeta {
    pub fn parse(page: &Page) -> Result<IvfMeta, LayoutError> {
        page.check_page_id(IVFFLAT_PAGE_ID)?;
        let c = page.contents();
        check_magic_version(u32_at(c, 0), u32_at(c, 4), IVFFLAT_MAGIC, IVFFLAT_VERSION)?;
        Ok(IvfMeta {
            version: u32_at(c, 4),
            dimensions: u16_at(c, 8),
            lists: u16_at(c, 10),
        })
    }
}

/// `IvfflatListData`: first entry page, insert page, then the center.
pub struct IvfList<'a> {
    pub start_page: u32,
    pub insert_page: u32,
    pub center: &'a [u8],
}

impl<'a> IvfList<'a> {
    pub fn parse(t: &'a [u8]) -> Result<IvfList<'a>, LayoutError> {
        if t.len() < 12 {
            return Err(LayoutError::BadTuple("list tuple too short"));
        }
        Ok(IvfList {
            start_page: u32_at(t, 0),
            insert_page: u32_at(t, 4),
            center: &t[8..],
        })
    }
}

/// An IVFFlat entry: an ordinary `IndexTuple` with one key column.
pub struct IndexTuple<'a> {
    pub heap_tid: Tid,
    pub value: &'a [u8],
}

impl<'a> IndexTuple<'a> {
    pub fn parse(t: &'a [u8]) -> Result<IndexTuple<'a>, LayoutError> {
        if t.len() < 9 {
            return Err(LayoutError::BadTuple("index tuple too short"));
        }
        let info = u16_at(t, 6);
        let has_nulls = info & 0x8000 != 0;
        // MAXALIGN(sizeof(IndexTupleData) [+ null bitmap for one column]).
        let data = if has_nulls { 16 } else { 8 };
        if data >= t.len() {
            return Err(LayoutError::BadTuple("index tuple has no value"));
        }
        Ok(IndexTuple {
            heap_tid: Tid::parse(t, 0),
            value: &t[data..],
        })
    }
}

/// A varlena as stored inline in a page.
#[derive(Debug, PartialEq)]
pub enum Varlena<'a> {
    /// Payload after the header (1- or 4-byte header), uncompressed.
    Plain(&'a [u8]),
    /// Inline-compressed (`VARATT_IS_4B_C`): whole datum, header included.
    Compressed(&'a [u8]),
}

pub fn varlena(b: &[u8]) -> Result<Varlena<'_>, LayoutError> {
    if b.is_empty() {
        return Err(LayoutError::BadTuple("empty varlena"));
    }
    let first = b[0];
    if first & 0x01 == 0x01 {
        if first == 0x01 {
            return Err(LayoutError::BadTuple(
                "external toast pointer in an index tuple",
            ));
        }
        let len = ((first >> 1) & 0x7F) as usize;
        if len < 1 || len > b.len() {
            return Err(LayoutError::BadTuple("short varlena length"));
        }
        return Ok(Varlena::Plain(&b[1..len]));
    }
    if b.len() < 4 {
        return Err(LayoutError::BadTuple("truncated varlena header"));
    }
    let header = u32_at(b, 0);
    let len = (header >> 2) as usize;
    if len < 4 || len > b.len() {
        return Err(LayoutError::BadTuple("varlena length exceeds tuple"));
    }
    match header & 0x03 {
        0x00 => Ok(Varlena::Plain(&b[4..len])),
        0x02 => Ok(Varlena::Compressed(&b[..len])),
        _ => Err(LayoutError::BadTuple("unknown varlena header")),
    }
}

#[cfg(test)]
pub(crate) mod testpage {
    //! Builds pgvector-shaped pages in memory for unit tests.
    use super::*;

    pub struct PageBuilder {
        pub b: Vec<u8>,
        lower: usize,
        upper: usize,
    }

    impl PageBuilder {
        pub fn new(page_id: u16, next: u32) -> PageBuilder {
            let mut b = vec![0u8; BLCKSZ];
            let special = BLCKSZ - 8;
            b[12..14].copy_from_slice(&(PAGE_HEADER as u16).to_le_bytes());
            b[14..16].copy_from_slice(&(special as u16).to_le_bytes());
            b[16..18].copy_from_slice(&(special as u16).to_le_bytes());
            b[special..special + 4].copy_from_slice(&next.to_le_bytes());
            b[special + 6..special + 8].copy_from_slice(&page_id.to_le_bytes());
            PageBuilder {
                b,
                lower: PAGE_HEADER,
                upper: special,
            }
        }
        pub fn set_contents(&mut self, c: &[u8]) {
            self.b[PAGE_HEADER..PAGE_HEADER + c.len()].copy_from_slice(c);
        }
        /// Appends an item, returns its offset number.
        pub fn add(&mut self, t: &[u8]) -> u16 {
            let len = t.len();
            self.upper = (self.upper - len) & !7;
            self.b[self.upper..self.upper + len].copy_from_slice(t);
            let raw: u32 = (self.upper as u32) | ((LP_NORMAL as u32) << 15) | ((len as u32) << 17);
            self.b[self.lower..self.lower + 4].copy_from_slice(&raw.to_le_bytes());
            self.lower += 4;
            self.b[12..14].copy_from_slice(&(self.lower as u16).to_le_bytes());
            self.b[14..16].copy_from_slice(&(self.upper as u16).to_le_bytes());
            ((self.lower - PAGE_HEADER) / 4) as u16
        }
    }

    pub fn tid_bytes(t: Tid) -> [u8; 6] {
        let mut o = [0u8; 6];
        o[0..2].copy_from_slice(&((t.block >> 16) as u16).to_le_bytes());
        o[2..4].copy_from_slice(&((t.block & 0xFFFF) as u16).to_le_bytes());
        o[4..6].copy_from_slice(&t.offset.to_le_bytes());
        o
    }

    pub fn hnsw_meta(dims: u32, m: u16, efc: u16, entry: Tid, entry_level: i16) -> Vec<u8> {
        let mut c = vec![0u8; 28];
        c[0..4].copy_from_slice(&HNSW_MAGIC.to_le_bytes());
        c[4..8].copy_from_slice(&HNSW_VERSION.to_le_bytes());
        c[8..12].copy_from_slice(&dims.to_le_bytes());
        c[12..14].copy_from_slice(&m.to_le_bytes());
        c[14..16].copy_from_slice(&efc.to_le_bytes());
        c[16..20].copy_from_slice(&entry.block.to_le_bytes());
        c[20..22].copy_from_slice(&entry.offset.to_le_bytes());
        c[22..24].copy_from_slice(&entry_level.to_le_bytes());
        c
    }

    pub fn vector_varlena(v: &[f32]) -> Vec<u8> {
        let len = 8 + 4 * v.len();
        let mut o = ((len as u32) << 2).to_le_bytes().to_vec();
        o.extend_from_slice(&(v.len() as i16).to_le_bytes());
        o.extend_from_slice(&0i16.to_le_bytes());
        for x in v {
            o.extend_from_slice(&x.to_le_bytes());
        }
        o
    }

    pub fn hnsw_element(level: u8, deleted: bool, heap: &[Tid], ntid: Tid, v: &[f32]) -> Vec<u8> {
        let mut t = vec![HNSW_ELEMENT_TYPE, level, deleted as u8, 0];
        for i in 0..HNSW_HEAPTIDS {
            let tid = heap.get(i).copied().unwrap_or_default();
            t.extend_from_slice(&tid_bytes(tid));
        }
        t.extend_from_slice(&tid_bytes(ntid));
        t.extend_from_slice(&[0, 0]);
        t.extend_from_slice(&vector_varlena(v));
        t
    }

    /// `layers[lc]` lists the neighbors of layer lc.
    pub fn hnsw_neighbors(level: u8, m: u16, layers: &[Vec<Tid>]) -> Vec<u8> {
        let count = (level as usize + 2) * m as usize;
        let mut tids = vec![Tid::default(); count];
        for (lc, ns) in layers.iter().enumerate() {
            let start = (level as usize - lc) * m as usize;
            for (i, n) in ns.iter().enumerate() {
                tids[start + i] = *n;
            }
        }
        let mut t = vec![HNSW_NEIGHBOR_TYPE, 0];
        t.extend_from_slice(&(count as u16).to_le_bytes());
        for tid in tids {
            t.extend_from_slice(&tid_bytes(tid));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::testpage::*;
    use super::*;

    #[test]
    fn meta_round_trip_and_refusals() {
        let mut p = PageBuilder::new(HNSW_PAGE_ID, INVALID_BLOCK);
        p.set_contents(&hnsw_meta(
            3,
            16,
            64,
            Tid {
                block: 1,
                offset: 1,
            },
            2,
        ));
        let meta = HnswMeta::parse(&Page::new(&p.b).unwrap()).unwrap();
        assert_eq!(meta.m, 16);
        assert_eq!(meta.ef_construction, 64);
        assert_eq!(
            meta.entry,
            Tid {
                block: 1,
                offset: 1
            }
        );
        assert_eq!(meta.entry_level, 2);

        let mut bad = p.b.clone();
        bad[PAGE_HEADER] ^= 0xFF;
        assert!(matches!(
            HnswMeta::parse(&Page::new(&bad).unwrap()),
            Err(LayoutError::BadMagic { .. })
        ));
        let mut v2 = p.b.clone();
        v2[PAGE_HEADER + 4] = 2;
        assert_eq!(
            HnswMeta::parse(&Page::new(&v2).unwrap()),
            Err(LayoutError::UnknownVersion {
                found: 2,
                supported: 1
            })
        );
        let ivf = PageBuilder::new(IVFFLAT_PAGE_ID, INVALID_BLOCK);
        assert!(matches!(
            HnswMeta::parse(&Page::new(&ivf.b).unwrap()),
            Err(LayoutError::NotPgvectorPage { .. })
        ));
    }

    #[test]
    fn element_and_neighbor_tuples() {
        let heap = [
            Tid {
                block: 7,
                offset: 3,
            },
            Tid {
                block: 70000,
                offset: 1,
            },
        ];
        let e = hnsw_element(
            1,
            false,
            &heap,
            Tid {
                block: 2,
                offset: 9,
            },
            &[1.0, 2.0],
        );
        let parsed = HnswElement::parse(&e).unwrap();
        assert_eq!(parsed.heaptids, heap.to_vec());
        assert_eq!(
            parsed.neighbortid,
            Tid {
                block: 2,
                offset: 9
            }
        );
        assert_eq!(HnswElement::state_of(&e), ElementState::Live);
        assert_eq!(HnswElement::count_heaptids(&e), 2);
        let z = hnsw_element(
            0,
            false,
            &[],
            Tid {
                block: 2,
                offset: 9,
            },
            &[1.0],
        );
        assert_eq!(HnswElement::state_of(&z), ElementState::Zombie);
        let d = hnsw_element(0, true, &[], Tid::default(), &[1.0]);
        assert_eq!(HnswElement::state_of(&d), ElementState::Deleted);

        let a = Tid {
            block: 1,
            offset: 1,
        };
        let b = Tid {
            block: 1,
            offset: 3,
        };
        let n = hnsw_neighbors(1, 2, &[vec![a, b], vec![b]]);
        let nb = HnswNeighbors::parse(&n).unwrap();
        assert!(nb.matches(1, 0, 2));
        assert!(!nb.matches(0, 0, 2));
        assert_eq!(nb.layer(1, 0, 2).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(nb.layer(1, 1, 2).collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn varlena_headers() {
        let v = vector_varlena(&[1.5]);
        assert_eq!(varlena(&v).unwrap(), Varlena::Plain(&v[4..]));
        // 1-byte header: length 5 (header + 4 bytes).
        let short = [5u8 << 1 | 1, 1, 2, 3, 4, 99];
        assert_eq!(varlena(&short).unwrap(), Varlena::Plain(&short[1..5]));
        assert!(varlena(&[0x01, 0, 0]).is_err());
        let mut c = vec![0u8; 12];
        c[0..4].copy_from_slice(&((12u32 << 2) | 0x02).to_le_bytes());
        assert!(matches!(varlena(&c).unwrap(), Varlena::Compressed(_)));
    }

    #[test]
    fn page_items_are_bounds_checked() {
        let mut p = PageBuilder::new(HNSW_PAGE_ID, 5);
        let off = p.add(&[1, 2, 3]);
        let page = Page::new(&p.b).unwrap();
        assert_eq!(page.max_offset(), 1);
        assert_eq!(page.item(off), Some(&[1u8, 2, 3][..]));
        assert_eq!(page.item(2), None);
        assert_eq!(page.next_block(), 5);
        assert!(Page::new(&[0u8; 10]).is_err());
    }
}
