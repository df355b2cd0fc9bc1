//! The policy's heap: a bump allocator for instances that live for one evaluation.
//!
//! The discount host gives every evaluation a fresh instance and throws it away
//! afterwards, so memory freed during an evaluation never needs to be reused. Bumping
//! a pointer replaces dlmalloc's bookkeeping, which costs a policy more than its own
//! logic: a 20-line-item session arrives as about 130 separate allocations. Freeing or
//! growing the most recent allocation still works in place, so building a `String` or
//! `Vec` does not waste memory. Everything an evaluation allocates counts against the
//! policy's memory cap; a policy that churns through more than that in one evaluation,
//! or a host that reuses instances, should turn off the `single-use-allocator` feature.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;

const PAGE: usize = 65_536;

/// A bump allocator over wasm linear memory; frees only the most recent allocation.
pub(crate) struct SingleUseAllocator {
    heap: UnsafeCell<Heap>,
}

struct Heap {
    /// First free byte.
    next: usize,
    /// End of the memory this allocator owns (memory grown by it).
    end: usize,
}

// wasm32 without the atomics feature has one thread.
unsafe impl Sync for SingleUseAllocator {}

impl SingleUseAllocator {
    /// An allocator that has not taken any memory yet.
    pub(crate) const fn new() -> Self {
        SingleUseAllocator {
            heap: UnsafeCell::new(Heap { next: 0, end: 0 }),
        }
    }
}

/// What [`Heap::reserve`] managed.
enum Reserve {
    /// `[.., new_next)` is ours.
    Done,
    /// Memory was grown by other code since our last grow (or this is the first
    /// use): the heap now starts at the pages just grown; recompute and retry.
    Moved,
    /// Memory cannot grow.
    Failed,
}

impl Heap {
    /// Makes `[.., new_next)` usable, growing memory when needed.
    fn reserve(&mut self, new_next: usize) -> Reserve {
        if new_next <= self.end {
            return Reserve::Done;
        }
        let pages = (new_next - self.end).div_ceil(PAGE);
        let old = wasm32::memory_grow(0, pages);
        if old == usize::MAX {
            return Reserve::Failed;
        }
        let Some(grown_end) = (old + pages).checked_mul(PAGE) else {
            return Reserve::Failed;
        };
        if old * PAGE != self.end {
            self.next = old * PAGE;
            self.end = grown_end;
            return Reserve::Moved;
        }
        self.end = grown_end;
        Reserve::Done
    }

    #[inline]
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // `align` is a power of two; wasm32 addresses stay far below `usize::MAX`.
        let mask = layout.align() - 1;
        let start = self.next.saturating_add(mask) & !mask;
        let new_next = start.saturating_add(layout.size());
        if new_next <= self.end {
            self.next = new_next;
            return start as *mut u8;
        }
        self.alloc_growing(layout)
    }

    #[cold]
    fn alloc_growing(&mut self, layout: Layout) -> *mut u8 {
        let mask = layout.align() - 1;
        for _ in 0..2 {
            let start = self.next.saturating_add(mask) & !mask;
            match self.reserve(start.saturating_add(layout.size())) {
                Reserve::Done => {
                    self.next = start + layout.size();
                    return start as *mut u8;
                }
                Reserve::Moved => continue,
                Reserve::Failed => return core::ptr::null_mut(),
            }
        }
        core::ptr::null_mut()
    }
}

unsafe impl GlobalAlloc for SingleUseAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one thread, and no allocator call re-enters another.
        unsafe { &mut *self.heap.get() }.alloc(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let heap = unsafe { &mut *self.heap.get() };
        if ptr as usize + layout.size() == heap.next {
            heap.next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let heap = unsafe { &mut *self.heap.get() };
        let start = ptr as usize;
        if start + layout.size() == heap.next {
            // The most recent allocation grows or shrinks in place.
            if let Some(new_next) = start.checked_add(new_size) {
                if let Reserve::Done = heap.reserve(new_next) {
                    heap.next = new_next;
                    return ptr;
                }
            }
        } else if new_size <= layout.size() {
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let new = heap.alloc(new_layout);
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct; the old one is `layout.size()` long.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}
