//! Buckler's global allocator: mimalloc, called the way its fast paths expect.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`, whatever the
//! alignment. In mimalloc v3 that call only takes the fast path for blocks of at most 1 KiB
//! whose free block happens to be aligned; anything larger whose size class is not a power of
//! two goes through `mi_theap_malloc_zero_aligned_at_overalloc`, which allocates `size +
//! alignment - 1` bytes and aligns inside them. The proxy's per-request futures, header maps and
//! 8 KiB I/O buffers are such allocations: in the load comparison's profile they made an average
//! allocation cost ~124 instructions.
//!
//! Every block mimalloc hands out from `mi_malloc` is aligned to its size class, which for sizes
//! of 16 bytes and more is a multiple of 16 (`MI_MAX_ALIGN_SIZE`), and to 8 below that. So when
//! the requested alignment is at most 16 and at most the size — the rule `std::alloc::System`
//! applies to glibc's `malloc` — plain `mi_malloc` / `mi_zalloc` / `mi_realloc` are correct, and
//! only larger alignments take the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The largest alignment every block of at least that size from `mi_malloc` already has.
const MALLOC_ALIGNMENT: usize = 16;

/// mimalloc as the global allocator. Use it with
/// `#[global_allocator] static ALLOCATOR: buckler_alloc::Allocator = buckler_alloc::Allocator;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

/// Whether a block of `size` bytes from plain `mi_malloc` is aligned to `align`.
#[inline]
fn malloc_aligns(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGNMENT && align <= size
}

// SAFETY: every method returns either null or a block from mimalloc satisfying the layout
// (see `malloc_aligns` and the module documentation), and frees only blocks mimalloc made.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if malloc_aligns(layout.align(), layout.size()) {
            // SAFETY: mimalloc's malloc accepts any size.
            unsafe { mi_malloc(layout.size()) as *mut u8 }
        } else {
            // SAFETY: `Layout` guarantees a power-of-two alignment.
            unsafe { mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if malloc_aligns(layout.align(), layout.size()) {
            // SAFETY: as in `alloc`.
            unsafe { mi_zalloc(layout.size()) as *mut u8 }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned; mimalloc frees aligned
        // and plain blocks alike.
        unsafe { mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if malloc_aligns(layout.align(), new_size) {
            // SAFETY: `ptr` came from this allocator; the new block keeps the alignment.
            unsafe { mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            // SAFETY: as above, with the alignment asked for explicitly.
            unsafe { mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: &[usize] = &[
        1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 48, 63, 64, 65, 80, 100, 127, 200, 513, 1000, 1025,
        1500, 3000, 4097, 8192, 12_345, 70_000, 300_000, 5_000_000,
    ];
    const ALIGNS: &[usize] = &[1, 2, 4, 8, 16, 32, 64, 128, 4096, 65_536];

    fn aligned(ptr: *mut u8, align: usize) -> bool {
        (ptr as usize).is_multiple_of(align)
    }

    #[test]
    #[allow(unsafe_code)]
    fn every_block_has_the_layouts_alignment_and_size() {
        let mut live = Vec::new();
        // Many blocks of each layout, kept alive together, so a misaligned block further into
        // a page would show, not only the first.
        for &size in SIZES {
            for &align in ALIGNS {
                let layout = Layout::from_size_align(size, align).unwrap();
                for _ in 0..8 {
                    // SAFETY: non-zero size; freed below with the same layout.
                    let ptr = unsafe { Allocator.alloc(layout) };
                    assert!(!ptr.is_null(), "{layout:?}");
                    assert!(aligned(ptr, align), "{layout:?} gave {ptr:p}");
                    // SAFETY: the block is `size` bytes long.
                    unsafe { std::ptr::write_bytes(ptr, 0xA5, size) };
                    live.push((ptr, layout));
                }
            }
        }
        for (ptr, layout) in live {
            // SAFETY: allocated above with this layout.
            unsafe {
                assert_eq!(*ptr.add(layout.size() - 1), 0xA5);
                Allocator.dealloc(ptr, layout);
            }
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn zeroed_blocks_are_zero() {
        for &size in SIZES {
            for &align in ALIGNS {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size; freed below.
                unsafe {
                    // Dirty a block of the same size first, so a reused block must be cleared.
                    let dirty = Allocator.alloc(layout);
                    std::ptr::write_bytes(dirty, 0xFF, size);
                    Allocator.dealloc(dirty, layout);
                    let ptr = Allocator.alloc_zeroed(layout);
                    assert!(aligned(ptr, align), "{layout:?}");
                    let bytes = std::slice::from_raw_parts(ptr, size);
                    assert!(bytes.iter().all(|&b| b == 0), "{layout:?}");
                    Allocator.dealloc(ptr, layout);
                }
            }
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn realloc_keeps_contents_and_alignment() {
        for &align in ALIGNS {
            let mut size = 1;
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: grown and shrunk within the sizes allocated; freed with the last layout.
            unsafe {
                let mut ptr = Allocator.alloc(layout);
                *ptr = 7;
                for &new_size in SIZES.iter().skip(1).chain(SIZES.iter().rev().skip(1)) {
                    let old = Layout::from_size_align(size, align).unwrap();
                    ptr = Allocator.realloc(ptr, old, new_size);
                    assert!(!ptr.is_null());
                    assert!(aligned(ptr, align), "align {align}, {size} -> {new_size}");
                    assert_eq!(*ptr, 7, "align {align}, {size} -> {new_size}");
                    size = new_size;
                }
                Allocator.dealloc(ptr, Layout::from_size_align(size, align).unwrap());
            }
        }
    }
}
