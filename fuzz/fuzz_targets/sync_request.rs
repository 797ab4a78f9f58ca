//! Fuzz target: see [`kith_fuzz::sync_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::sync_request(data));
