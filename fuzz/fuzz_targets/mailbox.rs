//! Fuzz target: see [`kith_fuzz::mailbox`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kith_fuzz::mailbox(data));
