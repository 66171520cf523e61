//! The C allocator's settings for worker processes.
//!
//! glibc gives the top of its heap back to the kernel as soon as more than 128 KiB of it is
//! free. A server that allocates and frees request-sized buffers (a 64 KiB upload, the
//! pieces of a streamed response) can then shrink and regrow its heap on every request:
//! a `brk` system call, and a page fault for every page touched again. Measured on the
//! benchmark suite, that halved the throughput of 64 KiB uploads and cost 40 % on streamed
//! responses, depending on where long-lived allocations happened to land. Keeping up to
//! 32 MiB of free heap (the most glibc's own adaptive threshold goes to) makes it stable;
//! allocations up to 4 MiB come from the heap instead of fresh `mmap`s.

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

/// Asks for the heap's free pages to go back to the kernel in a second, once for all the
/// calls made meanwhile. For memory freed in bulk and likely to stay free (the compressors
/// of websockets that went quiet): glibc keeps freed chunks inside the heap as they are,
/// so without this a worker's resident memory stays at its peak. Needs a tokio runtime.
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
