#![no_main]
//! cargo-fuzz target `record`; the harness is `offsite_fuzz::record`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::record(data));
