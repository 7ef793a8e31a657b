#![no_main]
//! cargo-fuzz target `payload`; the harness is `offsite_fuzz::payload`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::payload(data));
