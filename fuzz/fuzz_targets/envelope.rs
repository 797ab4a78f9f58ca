//! Fuzz target: see [`kith_fuzz::envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::envelope(data));
