#![no_main]
//! cargo-fuzz target `keyset`; the harness is `offsite_fuzz::keyset`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::keyset(data));
