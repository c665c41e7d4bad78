//! The server side of [`PageSource`]: lends one page at a time out of
//! shared buffers under a share lock, and decodes values that Postgres
//! compressed inline.

use std::ffi::c_void;

use pgrx::pg_sys;

use super::ivfflat::ValueDecoder;
use super::layout::{varlena, Varlena, BLCKSZ};
use super::vectors::{decode_dense, VectorType};
use super::PageSource;

/// Reads the main fork of an open relation through the buffer manager.
pub struct BufferPages {
    rel: pg_sys::Relation,
    /// Per block, the buffer that last held it: `ReadRecentBuffer` pins it
    /// again without a lookup in the buffer mapping table, after checking
    /// that it still holds the block (else a normal read).
    recent: Vec<pg_sys::Buffer>,
}

impl BufferPages {
    /// # Safety
    /// `rel` must be an open relation that stays open while this is used.
    pub unsafe fn new(rel: pg_sys::Relation) -> BufferPages {
        BufferPages {
            rel,
            recent: Vec::new(),
        }
    }

    fn remember(&mut self, blk: u32, b: pg_sys::Buffer) {
        let i = blk as usize;
        if i >= self.recent.len() {
            // Sized once for the whole relation in the common case.
            let n = (i + 1).max(self.nblocks() as usize);
            self.recent
                .resize(n, pg_sys::InvalidBuffer as pg_sys::Buffer);
        }
        self.recent[i] = b;
    }

    /// Pins block `blk`: through its recent buffer if it still holds it.
    unsafe fn pin(&mut self, blk: u32) -> pg_sys::Buffer {
        let recent = self
            .recent
            .get(blk as usize)
            .copied()
            .unwrap_or(pg_sys::InvalidBuffer as pg_sys::Buffer);
        if recent != pg_sys::InvalidBuffer as pg_sys::Buffer
            && pg_sys::ReadRecentBuffer(
                (*self.rel).rd_locator,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                blk,
                recent,
            )
        {
            return recent;
        }
        let b = pg_sys::ReadBufferExtended(
            self.rel,
            pg_sys::ForkNumber::MAIN_FORKNUM,
            blk,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            std::ptr::null_mut(),
        );
        self.remember(blk, b);
        b
    }
}

/// Runs `f` on the page of pinned buffer `b` under a share lock, then
/// releases lock and pin. Between `LockBuffer` and `UnlockReleaseBuffer`
/// only `f` runs: plain Rust over the page's bytes, no Postgres call. (Should
/// `f` panic, the transaction abort releases the lock and the pin.)
unsafe fn lend<R>(b: pg_sys::Buffer, f: impl FnOnce(&[u8]) -> R) -> R {
    pg_sys::LockBuffer(b, pg_sys::BUFFER_LOCK_SHARE as i32);
    let page = std::slice::from_raw_parts(pg_sys::BufferGetPage(b) as *const u8, BLCKSZ);
    let r = f(page);
    pg_sys::UnlockReleaseBuffer(b);
    r
}

/// Read stream callback: the blocks of a [`pg_sys::BlockRangeReadStreamPrivate`]
/// in order (what `block_range_read_stream_cb` does; no Postgres call).
unsafe extern "C-unwind" fn next_in_range(
    _stream: *mut pg_sys::ReadStream,
    private: *mut c_void,
    _per_buffer_data: *mut c_void,
) -> pg_sys::BlockNumber {
    let r = &mut *(private as *mut pg_sys::BlockRangeReadStreamPrivate);
    if r.current_blocknum < r.last_exclusive {
        r.current_blocknum += 1;
        r.current_blocknum - 1
    } else {
        pg_sys::InvalidBlockNumber
    }
}

impl PageSource for BufferPages {
    fn nblocks(&mut self) -> u32 {
        unsafe {
            pg_sys::RelationGetNumberOfBlocksInFork(self.rel, pg_sys::ForkNumber::MAIN_FORKNUM)
        }
    }

    fn with_page<R>(&mut self, blk: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        unsafe {
            let b = self.pin(blk);
            Ok(lend(b, f))
        }
    }

    /// A read stream over the range, as `pg_prewarm` uses: with the default
    /// `io_method = worker` the I/O workers read (and verify) the pages in
    /// combined reads ahead of this backend, which only looks at them.
    fn stream(
        &mut self,
        start: u32,
        end: u32,
        mut f: impl FnMut(u32, &[u8]) -> Result<bool, String>,
    ) -> Result<(), String> {
        if start >= end {
            return Ok(());
        }
        let mut range = pg_sys::BlockRangeReadStreamPrivate {
            current_blocknum: start,
            last_exclusive: end,
        };
        let mut result = Ok(());
        unsafe {
            // Normal buffer replacement (no ring): the walk revisits pages.
            let stream = pg_sys::read_stream_begin_relation(
                (pg_sys::READ_STREAM_MAINTENANCE
                    | pg_sys::READ_STREAM_FULL
                    | pg_sys::READ_STREAM_USE_BATCHING) as i32,
                std::ptr::null_mut(),
                self.rel,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                Some(next_in_range),
                &mut range as *mut pg_sys::BlockRangeReadStreamPrivate as *mut c_void,
                0,
            );
            loop {
                let b = pg_sys::read_stream_next_buffer(stream, std::ptr::null_mut());
                if b == pg_sys::InvalidBuffer as pg_sys::Buffer {
                    break;
                }
                let blk = pg_sys::BufferGetBlockNumber(b);
                self.remember(blk, b);
                match lend(b, |page| f(blk, page)) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                pg_sys::check_for_interrupts!();
            }
            pg_sys::read_stream_end(stream);
        }
        result
    }

    fn check_interrupts(&mut self) {
        pg_sys::check_for_interrupts!();
    }

    /// The memory of the buffer that last held `blk` (it may hold another
    /// page by now: the caller only prefetches it).
    fn page_hint(&mut self, blk: u32) -> Option<*const u8> {
        let b = *self.recent.get(blk as usize)?;
        // SAFETY: `b` is a buffer number this backend got from the buffer
        // manager; BufferGetPage is address arithmetic (no pin is needed
        // for an address that is never dereferenced).
        (b != pg_sys::InvalidBuffer as pg_sys::Buffer)
            .then(|| unsafe { pg_sys::BufferGetPage(b) as *const u8 })
    }
}

/// Decodes `vector` and `halfvec` values, detoasting inline-compressed ones
/// (an IVFFlat entry over 512 bytes may be compressed by `index_form_tuple`).
pub struct ServerDecoder {
    pub ty: VectorType,
}

impl ValueDecoder for ServerDecoder {
    fn decode(&mut self, raw: &[u8]) -> Result<Option<Vec<f32>>, String> {
        match varlena(raw).map_err(|e| e.to_string())? {
            Varlena::Plain(p) => Ok(decode_dense(self.ty, p)),
            Varlena::Compressed(whole) => unsafe {
                let copy = pg_sys::palloc(whole.len()) as *mut u8;
                std::ptr::copy_nonoverlapping(whole.as_ptr(), copy, whole.len());
                let out = pg_sys::pg_detoast_datum(copy as *mut pg_sys::varlena) as *const u8;
                let header = u32::from_le_bytes([*out, *out.add(1), *out.add(2), *out.add(3)]);
                let len = (header >> 2) as usize;
                let payload = std::slice::from_raw_parts(out.add(4), len.saturating_sub(4));
                let v = decode_dense(self.ty, payload);
                if !std::ptr::eq(out, copy) {
                    pg_sys::pfree(out as *mut std::ffi::c_void);
                }
                pg_sys::pfree(copy as *mut std::ffi::c_void);
                Ok(v)
            },
        }
    }
}
