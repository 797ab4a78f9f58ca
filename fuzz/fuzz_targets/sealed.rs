//! Fuzz target: see [`kith_fuzz::sealed`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::sealed(data));
