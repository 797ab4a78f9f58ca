//! Fuzz target: see [`kith_fuzz::terminal_text`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::terminal_text(data));
