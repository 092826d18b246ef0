//! The `tocsin` binary: parse the command line and hand over to the library.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc (v3) option numbers, from `mimalloc.h`'s `mi_option_e`.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_MS: std::ffi::c_long = 100;

#[allow(unsafe_code)]
fn main() -> std::process::ExitCode {
    // Freed pages go back to the kernel 100 ms after they are freed, and at once when a
    // runtime thread goes idle (`collect_freed_memory`). Returning them at once under load
    // too (delay 0) cost 10–15 % of the CPU in batches, in page faults, page clearing and the
    // TLB-flush interrupts of unmapping (measured: 84–106k events/s instead of 104–143k, with
    // the same resident memory once settled after 1,000,000 events: 63–68 MiB either way).
    // MIMALLOC_* variables still override.
    // SAFETY: sets two integer options before any other thread exists.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
    tocsin::cli::main_with_idle_hook(collect_freed_memory)
}

/// Memory freed by other threads waits on the owning thread's lists until that thread
/// allocates again; a thread that went idle after a burst would keep it forever. Runtime
/// threads run this as they park, the log and writer threads when their queue is empty (that
/// took the settled memory after a 1,000,000-event fill from 54–65 MiB to 50–57 MiB).
/// SQLite allocates through glibc's malloc, which keeps what it freed until trimmed (measured
/// after a 1,000,000-event fill and its full-text indexing: 8.7 MiB, 4.2 once trimmed); once a
/// second at most, an idle thread trims it.
#[allow(unsafe_code)]
fn collect_freed_memory() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static LAST_TRIM_SECOND: AtomicU64 = AtomicU64::new(0);
    // SAFETY: mi_collect only walks this thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
    let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if LAST_TRIM_SECOND.swap(second, Ordering::Relaxed) != second {
        // SAFETY: malloc_trim only returns glibc's free pages to the kernel; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
