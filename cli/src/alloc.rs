//! The allocator: mimalloc rather than glibc's malloc (see the workspace Cargo.toml), told
//! to give the memory it frees back to the system at once, and asked by the async
//! runtime's worker threads, when they go idle, to give back what they were left holding.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option `purge_delay` (`mi_option_purge_delay` in mimalloc.h, v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[allow(unsafe_code)]
mod ffi {
    extern "C" {
        pub(super) fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
        pub(super) fn mi_collect(force: bool);
        #[cfg(test)]
        pub(super) fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }
}

/// Makes mimalloc return the memory it frees to the system at once (`purge_delay`,
/// 1,000 ms by default, set to 0), unless `MIMALLOC_PURGE_DELAY` in the environment says
/// otherwise. Called first thing in `main`, before any other thread exists. With the
/// delay, an idle daemon on a store of 1,000,000 records kept about 17 MiB more resident
/// (docs/benchmarks.md, "The store at scale"): sled's cache and its segment cleaner free
/// and allocate all the time, and the freed pages waited.
#[allow(unsafe_code)]
pub(crate) fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: a call into the linked mimalloc with one of its options, made before any
    // other thread of this process runs (mimalloc's options are not thread safe).
    unsafe { ffi::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// A worker thread collects at most this often (see [`collect_when_idle`]).
const COLLECT_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Makes each worker thread of `builder`'s runtime run `mi_collect` when it goes idle
/// (parks), and sled's own threads (its flusher, its I/O pool) when they have done work
/// and wait again, each at most once every [`COLLECT_AT_MOST_EVERY`]: mimalloc frees a page of memory
/// only when the thread that owns it looks at it again, so the blocks other threads freed
/// into a worker's pages (the replies, records and sled pages of the requests it served,
/// dropped wherever the task ended) stayed resident while that worker slept. An idle
/// daemon on a store of 1,000,000 records sat at 68-105 MiB after serving feeds instead of
/// about 55 (docs/benchmarks.md, "The store at scale"). Nothing is added while nothing
/// happens: a worker that does not wake does not collect; the idle daemon's own wake-ups
/// (about 5 a second) pay for at most two collections a second, tens of microseconds.
pub(crate) fn collect_when_idle(builder: &mut tokio::runtime::Builder) {
    builder.on_thread_park(collect_if_due);
    kith_node::store::set_store_thread_idle_hook(collect_if_due);
}

/// Collects on this thread if it last did a second ago or more.
fn collect_if_due() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if LAST.with(|last| collect_due(last, now)) {
        collect();
    }
}

/// Whether a thread that last collected at `last` collects at `now` (and if so, `now`
/// becomes its last).
fn collect_due(last: &Cell<Option<Instant>>, now: Instant) -> bool {
    let due = last.get().is_none_or(|t| now.saturating_duration_since(t) >= COLLECT_AT_MOST_EVERY);
    if due {
        last.set(Some(now));
    }
    due
}

/// Frees this thread's empty pages, taking in the blocks other threads freed into them,
/// and returns what is free to the system (`purge_delay` 0).
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: mimalloc's own call for the calling thread's heap; no pointer is passed.
    unsafe { ffi::mi_collect(false) }
}

#[cfg(test)]
mod tests {
    /// The option set is mimalloc's `purge_delay` (1,000 ms by default in v3), and it is
    /// 0 afterwards: fails if the option's number moves in another mimalloc.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_is_set_to_zero() {
        // SAFETY: reads one option; the only test of this binary that touches them.
        let get = || unsafe { super::ffi::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(get(), 1000);
        super::purge_freed_memory_at_once();
        assert_eq!(get(), 0);
    }

    /// A thread collects the first time it parks, then not again within a second.
    #[test]
    fn a_worker_collects_at_most_once_a_second() {
        use std::{cell::Cell, time::Duration};
        let last = Cell::new(None);
        let t0 = std::time::Instant::now();
        assert!(super::collect_due(&last, t0));
        assert!(!super::collect_due(&last, t0 + Duration::from_millis(999)));
        assert!(super::collect_due(&last, t0 + Duration::from_secs(1)));
        assert!(!super::collect_due(&last, t0 + Duration::from_millis(1500)));
        assert!(super::collect_due(&last, t0 + Duration::from_millis(2500)));
    }

    /// The hook runs on a real runtime's workers, and mimalloc's collect is callable.
    #[test]
    fn a_runtime_with_the_hook_runs() {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        super::collect_when_idle(&mut builder);
        let rt = builder.build().expect("a runtime");
        let sum = rt.block_on(async {
            let tasks: Vec<_> = (0..8u64)
                .map(|i| tokio::spawn(async move { vec![i; 10_000].iter().sum::<u64>() }))
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.expect("the task ends");
            }
            sum
        });
        assert_eq!(sum, 28 * 10_000);
    }
}
