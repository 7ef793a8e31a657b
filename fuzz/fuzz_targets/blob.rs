#![no_main]
//! cargo-fuzz target `blob`; the harness is `offsite_fuzz::blob`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::blob(data));
