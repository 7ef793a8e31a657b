#![no_main]
//! cargo-fuzz target `selector`; the harness is `offsite_fuzz::selector`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::selector(data));
