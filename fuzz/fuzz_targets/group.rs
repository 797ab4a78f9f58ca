//! Fuzz target: see [`kith_fuzz::group`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::group(data));
