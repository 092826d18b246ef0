//! What a thread does as it goes idle, chosen by the binary (which chose the allocator): hand
//! back memory freed during the burst it just finished. Run by the runtime's threads as they
//! park, and by the store's own threads (commit log, SQLite writer) when their queue is empty;
//! each thread at most every 100 ms, so a busy thread pays for it rarely.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ON_IDLE: OnceLock<fn()> = OnceLock::new();

/// Sets what idle threads run; the first call wins.
pub fn set_hook(on_idle: fn()) {
    let _ = ON_IDLE.set(on_idle);
}

/// Runs the hook, unless this thread ran it less than 100 ms ago. A thread's last idle moment
/// after a burst may fall inside that interval, so the interval bounds what stays uncollected.
pub fn going_idle() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let Some(on_idle) = ON_IDLE.get() else { return };
    LAST.with(|last| {
        let now = Instant::now();
        if last.get().is_none_or(|at| now.duration_since(at) >= Duration::from_millis(100)) {
            last.set(Some(now));
            on_idle();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static RUNS: Cell<u32> = const { Cell::new(0) };
    }

    fn count() {
        RUNS.with(|runs| runs.set(runs.get() + 1));
    }

    #[test]
    fn each_thread_runs_the_hook_at_most_every_100_ms() {
        set_hook(count);
        // Other tests' store threads may go idle too; they count on their own threads.
        std::thread::spawn(|| {
            going_idle();
            going_idle();
            assert_eq!(RUNS.with(Cell::get), 1);
            std::thread::sleep(Duration::from_millis(110));
            going_idle();
            assert_eq!(RUNS.with(Cell::get), 2);
        })
        .join()
        .unwrap();
        std::thread::spawn(|| {
            going_idle();
            assert_eq!(RUNS.with(Cell::get), 1, "a thread of its own runs it at once");
        })
        .join()
        .unwrap();
    }
}
