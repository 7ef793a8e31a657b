#![no_main]
//! cargo-fuzz target `exclude`; the harness is `offsite_fuzz::exclude`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::exclude(data));
