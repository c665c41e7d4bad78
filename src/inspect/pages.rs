//! The server side of [`PageSource`]: copies one page at a time out of
//! shared buffers under a share lock, and decodes values that Postgres
//! compressed inline.

use pgrx::pg_sys;

use super::ivfflat::ValueDecoder;
use super::layout::{varlena, Varlena, BLCKSZ};
use super::vectors::{decode_dense, VectorType};
use super::PageSource;

/// Reads the main fork of an open relation through the buffer manager.
pub struct BufferPages {
    rel: pg_sys::Relation,
}

impl BufferPages {
    /// # Safety
    /// `rel` must be an open relation that stays open while this is used.
    pub unsafe fn new(rel: pg_sys::Relation) -> BufferPages {
        BufferPages { rel }
    }
}

impl PageSource for BufferPages {
    fn nblocks(&mut self) -> u32 {
        unsafe {
            pg_sys::RelationGetNumberOfBlocksInFork(self.rel, pg_sys::ForkNumber::MAIN_FORKNUM)
        }
    }

    fn read_page(&mut self, blk: u32, buf: &mut [u8]) -> Result<(), String> {
        assert!(buf.len() >= BLCKSZ);
        unsafe {
            let b = pg_sys::ReadBufferExtended(
                self.rel,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                blk,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            // One page lock at a time, held only for the copy.
            pg_sys::LockBuffer(b, pg_sys::BUFFER_LOCK_SHARE as i32);
            let page = pg_sys::BufferGetPage(b) as *const u8;
            std::ptr::copy_nonoverlapping(page, buf.as_mut_ptr(), BLCKSZ);
            pg_sys::UnlockReleaseBuffer(b);
        }
        Ok(())
    }

    fn check_interrupts(&mut self) {
        pg_sys::check_for_interrupts!();
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
