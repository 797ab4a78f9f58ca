//! Fuzz target: see [`kith_fuzz::control_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::control_request(data));
