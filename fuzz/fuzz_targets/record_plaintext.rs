#![no_main]
//! cargo-fuzz target `record_plaintext`; the harness is `offsite_fuzz::record_plaintext`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::record_plaintext(data));
