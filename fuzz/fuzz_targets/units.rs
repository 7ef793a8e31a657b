#![no_main]
//! cargo-fuzz target `units`; the harness is `offsite_fuzz::units`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::units(data));
