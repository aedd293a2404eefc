//! Where the NIF's memory comes from: small blocks from the C library's `malloc`, blocks of
//! 16 KiB and more (message buffers) from the Erlang VM's allocator (`enif_alloc`).
//!
//! With `malloc` alone a 64 KiB message cost more in the kernel than in the cipher: each
//! scheduler thread has its own malloc arena, and freeing a message's buffers at the top of it
//! gave the pages back (`madvise`), so the next message faulted in and zeroed fresh pages, with
//! TLB shootdowns across threads (`perf` of `make bench-http`, 64 KiB PUT with 16 clients:
//! ~8 % of the node's CPU in page faults and unmapping, none with plain CouchDB). The VM's
//! allocators keep their carriers, and what they hold shows in `erlang:memory()`. With
//! `enif_alloc` alone, though, code that makes many small blocks (a JSON tree, sequoia's
//! packet structures) ran up to 3x slower (canonical JSON of a 4 KiB record, A/B in one
//! node), so small blocks stay with `malloc`'s per-thread caches. The size decides, and
//! `dealloc` and `realloc` are given the same size, so every block returns where it came from.
//!
//! `enif_alloc` aligns to 8 bytes; larger alignments are over-allocated and the block's start
//! is kept just before the aligned pointer. A failed allocation returns null, which Rust turns
//! into its allocation-error handler (an abort), as with `malloc`.
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr;

use rustler::sys::{enif_alloc, enif_free, enif_realloc};

/// What `enif_alloc` guarantees (ERTS aligns every block to 8 bytes on 64-bit systems).
const VM_ALIGN: usize = 8;
const HEADER: usize = std::mem::size_of::<usize>();
/// Blocks of at least this many bytes come from the VM.
const LARGE: usize = 16 * 1024;

fn large(size: usize) -> bool {
    size >= LARGE
}

pub struct NifAllocator;

#[global_allocator]
static ALLOCATOR: NifAllocator = NifAllocator;

unsafe impl GlobalAlloc for NifAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !large(layout.size()) {
            return System.alloc(layout);
        }
        if layout.align() <= VM_ALIGN {
            return enif_alloc(layout.size()).cast();
        }
        // Room for the start pointer and for moving to the next aligned address.
        let Some(total) = layout
            .size()
            .checked_add(HEADER + layout.align() - 1)
        else {
            return ptr::null_mut();
        };
        let start: *mut u8 = enif_alloc(total).cast();
        if start.is_null() {
            return start;
        }
        let after_header = start.add(HEADER);
        let aligned = after_header.add(after_header.align_offset(layout.align()));
        aligned.sub(HEADER).cast::<usize>().write_unaligned(start as usize);
        aligned
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !large(layout.size()) {
            return System.alloc_zeroed(layout);
        }
        let p = self.alloc(layout);
        if !p.is_null() {
            ptr::write_bytes(p, 0, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if large(layout.size()) {
            enif_free(block_start(ptr, layout));
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (large(layout.size()), large(new_size)) {
            (false, false) => return System.realloc(ptr, layout, new_size),
            (true, true) if layout.align() <= VM_ALIGN => {
                return enif_realloc(ptr.cast(), new_size).cast();
            }
            _ => {}
        }
        // From one allocator to the other, or over-aligned (the VM would not keep the
        // alignment): moved by hand.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let new = self.alloc(new_layout);
        if !new.is_null() {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

/// The pointer `enif_alloc` returned for a block handed out as `ptr`.
unsafe fn block_start(ptr: *mut u8, layout: Layout) -> *mut c_void {
    if layout.align() <= VM_ALIGN {
        ptr.cast()
    } else {
        ptr.sub(HEADER).cast::<usize>().read_unaligned() as *mut c_void
    }
}
