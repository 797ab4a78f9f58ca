//! The allocator: mimalloc rather than glibc's malloc (see the workspace Cargo.toml), told
//! to give the memory it frees back to the system at once.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option `purge_delay` (`mi_option_purge_delay` in mimalloc.h, v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[allow(unsafe_code)]
mod ffi {
    extern "C" {
        pub(super) fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
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
}
