#![no_main]
//! cargo-fuzz target `pack`; the harness is `offsite_fuzz::pack`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::pack(data));
