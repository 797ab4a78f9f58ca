//! Fuzz target: see [`kith_fuzz::record`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::record(data));
