//! The allocators of the server's processes.
//!
//! Rust's small allocations (up to [`SMALL_MAX`]: request and response parts, header
//! maps, tasks, wakers) go to mimalloc. At 512 connections glibc's malloc cost the runtime
//! thread about 2 µs per request: the requests of one batch allocate more blocks of a size
//! than its per-thread cache holds (7), so most took its slower paths (`_int_malloc`,
//! `unlink_chunk`, consolidation); mimalloc's per-thread free lists have no such limit.
//! Larger blocks (buffers, bodies, the websocket codecs) stay with glibc: its
//! `malloc_trim` returns the free pages inside its heap, where mimalloc keeps a page that
//! still holds one live block, and with every Rust allocation in mimalloc a worker holding
//! 1,000 idle websockets that had compressed a message kept 89 KiB per websocket instead
//! of 54. mimalloc is built without transparent huge pages (`no_thp`): with them it
//! committed 2 MiB pages for its first blocks, 5 MiB more resident memory per process.
//!
//! glibc gives the top of its heap back to the kernel as soon as more than 128 KiB of it is
//! free. A server that allocates and frees request-sized buffers (a 64 KiB upload, the
//! pieces of a streamed response) can then shrink and regrow its heap on every request:
//! a `brk` system call, and a page fault for every page touched again. Measured on the
//! benchmark suite, that halved the throughput of 64 KiB uploads and cost 40 % on streamed
//! responses, depending on where long-lived allocations happened to land. Keeping up to
//! 32 MiB of free heap (the most glibc's own adaptive threshold goes to) makes it stable;
//! allocations up to 4 MiB come from the heap instead of fresh `mmap`s.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// The largest Rust allocation made by mimalloc (glibc's per-thread cache covers the same).
const SMALL_MAX: usize = 1024;

#[global_allocator]
static RUST_ALLOCATOR: SizeSplit = SizeSplit;

/// Sends each Rust allocation to mimalloc or to the C allocator by its size. Rust frees a
/// block with the layout it was made (or last resized) with, so the size alone says
/// which allocator holds it.
struct SizeSplit;

fn is_small(size: usize) -> bool {
    size <= SMALL_MAX
}

// SAFETY: every method forwards to the allocator `is_small` picks for the block's size,
// which is the one that made it (see `SizeSplit`); both are sound global allocators.
unsafe impl GlobalAlloc for SizeSplit {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_small(layout.size()) {
            MiMalloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_small(layout.size()) {
            MiMalloc.alloc_zeroed(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_small(layout.size()) {
            MiMalloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_small(layout.size()), is_small(new_size)) {
            (true, true) => MiMalloc.realloc(ptr, layout, new_size),
            (false, false) => System.realloc(ptr, layout, new_size),
            // Crossing the line: made anew by the other allocator, and the contents moved.
            _ => {
                let grown = Layout::from_size_align_unchecked(new_size, layout.align());
                let moved = self.alloc(grown);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                moved
            }
        }
    }
}

/// Free heap kept before the top is given back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 32 * 1024 * 1024;
/// Allocations from this size up get their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;

/// Applies the settings once per process; the environment's `MALLOC_TRIM_THRESHOLD_` and
/// `MALLOC_MMAP_THRESHOLD_` win when set.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static TUNED: std::sync::Once = std::sync::Once::new();
        TUNED.call_once(|| {
            if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
                // SAFETY: mallopt only changes the allocator's parameters; it is thread-safe
                // (it takes the arena lock) and the value is in its accepted range.
                unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
            }
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
                // SAFETY: as above; 4 MiB is below glibc's 32 MiB maximum for this setting.
                unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            }
        });
    }
}

/// Asks for the heaps' free pages to go back to the kernel in a second, once for all the
/// calls made meanwhile. For memory freed in bulk and likely to stay free (the compressors
/// of websockets that went quiet): both allocators keep freed memory mapped for reuse (
/// mimalloc gives it back when later allocations pass by, which an idle worker does not
/// make), so without this a worker's resident memory stays at its peak. Needs a tokio
/// runtime.
pub fn trim_soon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static SCHEDULED: AtomicBool = AtomicBool::new(false);
        if SCHEDULED.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            // Cleared first: what is freed while the trim runs asks for another.
            SCHEDULED.store(false, Ordering::Release);
            // mimalloc collects the calling thread's pages (and the arenas they go back to):
            // on the runtime's thread, where the compressors were freed.
            // SAFETY: mi_collect only frees and decommits memory mimalloc holds unused; any
            // thread may call it at any time.
            unsafe { libmimalloc_sys::mi_collect(true) };
            // malloc_trim walks every arena: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim only returns free memory to the kernel (it takes each
                // arena's lock); the pad keeps the top of the heap that `tune` keeps anyway.
                unsafe { libc::malloc_trim(TRIM_THRESHOLD as libc::size_t) };
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_resized_across_the_line_keeps_its_contents() {
        let mut bytes: Vec<u8> = (0..=255u8).cycle().take(SMALL_MAX - 24).collect();
        let expected = bytes.clone();
        bytes.reserve_exact(4 * SMALL_MAX); // small -> large: moved from mimalloc to glibc
        assert!(!is_small(bytes.capacity()));
        assert_eq!(bytes, expected);
        bytes.shrink_to_fit(); // large -> small: moved back
        assert!(is_small(bytes.capacity()));
        assert_eq!(bytes, expected);
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides_of_the_line() {
        for size in [16, SMALL_MAX, SMALL_MAX + 1, 64 * 1024] {
            let block = vec![0u64; size / 8];
            assert!(block.iter().all(|&word| word == 0), "{size} bytes");
        }
    }
}
