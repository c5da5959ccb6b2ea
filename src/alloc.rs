//! The binary's global allocator: mimalloc, asked for plain blocks when the alignment is one a
//! plain block already has.
//!
//! The `mimalloc` crate's allocator asks for every block through `mi_malloc_aligned`. In
//! mimalloc v3 that call takes the ordinary fast path only when the size class's current page
//! has a free block; otherwise, for a size that is not a power of two (24, 40, 48 bytes: most
//! Rust structs), it over-allocates `size + align - 1` from the next size class instead of
//! refilling the page. In `meshmedic analyze` at 5,000 services, 246,000 of 1.35 million
//! allocations took that path: larger blocks, slower frees, and the size class whose page ran
//! out kept running out (README, Benchmarks). mimalloc's own `mi_malloc` returns blocks aligned
//! to at least a word for any size of a word or more, and to the size itself below that, so an
//! alignment of at most a word that the size covers needs nothing more.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc as the global allocator (`src/main.rs`).
pub struct Mimalloc;

/// Whether `mi_malloc(size)` is already aligned to `align`: mimalloc's size classes are whole
/// words, so every block is word-aligned.
fn plain(align: usize, size: usize) -> bool {
    align <= std::mem::align_of::<usize>() && align <= size
}

/// A block for `layout` from `plain_block` (`mi_malloc`, `mi_zalloc`) when its alignment is one
/// a plain block has, else from `aligned_block`.
///
/// # Safety
/// `layout` has a non-zero size (GlobalAlloc's contract).
#[inline]
unsafe fn block(
    layout: Layout,
    plain_block: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_block: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: plain C allocation calls; mimalloc returns null on failure, as required.
    unsafe {
        if plain(layout.align(), layout.size()) {
            plain_block(layout.size()).cast()
        } else {
            aligned_block(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: each method forwards to the mimalloc function with the same contract; blocks from
// either family are freed by `mi_free` and resized by `mi_realloc*`, which mimalloc allows.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: a non-zero size.
        unsafe { block(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block is aligned as asked, holds what was written, and keeps it when resized, for
    /// sizes around mimalloc's size classes and alignments from 1 to a page, zeroed or not.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let sizes = [
            1usize, 2, 3, 7, 8, 9, 15, 16, 17, 24, 40, 48, 56, 72, 100, 1000, 1024, 1025, 4000,
            70_000,
        ];
        let alignments = [1usize, 2, 4, 8, 16, 32, 64, 4096];
        for &align in &alignments {
            for &size in &sizes {
                // Several blocks at once, so that a size class's page runs out in between.
                let layout = Layout::from_size_align(size, align).unwrap();
                let mut blocks = Vec::new();
                for round in 0..300usize {
                    let zeroed = round % 2 == 0;
                    // SAFETY: non-zero size; freed below with the same layout.
                    let p = unsafe {
                        if zeroed {
                            Mimalloc.alloc_zeroed(layout)
                        } else {
                            Mimalloc.alloc(layout)
                        }
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    // SAFETY: `p` holds `size` bytes.
                    let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
                    if zeroed {
                        assert!(bytes.iter().all(|&b| b == 0), "size {size} align {align}");
                    }
                    bytes.fill((round % 251) as u8);
                    blocks.push((p, round));
                }
                for (p, round) in blocks {
                    let grown = size * 3 + 5;
                    // SAFETY: `p` came from `alloc` with `layout`; the new size is non-zero.
                    let q = unsafe { Mimalloc.realloc(p, layout, grown) };
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "grown {grown} align {align}");
                    // SAFETY: the first `size` bytes were kept by `realloc`.
                    let kept = unsafe { std::slice::from_raw_parts(q, size) };
                    assert!(kept.iter().all(|&b| b == (round % 251) as u8));
                    let grown_layout = Layout::from_size_align(grown, align).unwrap();
                    // SAFETY: `q` came from `realloc` with `grown_layout`.
                    unsafe { Mimalloc.dealloc(q, grown_layout) };
                }
            }
        }
    }

    #[test]
    fn plain_blocks_only_where_mimalloc_aligns_them() {
        assert!(plain(8, 24));
        assert!(plain(1, 1));
        assert!(plain(4, 4));
        assert!(!plain(8, 4), "a 4-byte block need not be 8-aligned");
        assert!(
            !plain(16, 48),
            "more than a word is asked of mi_malloc_aligned"
        );
    }
}
