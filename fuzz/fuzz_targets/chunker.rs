#![no_main]
//! cargo-fuzz target `chunker`; the harness is `offsite_fuzz::chunker`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::chunker(data));
