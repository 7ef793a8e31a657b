#![no_main]
//! cargo-fuzz target `pack_header_plaintext`; the harness is `offsite_fuzz::pack_header_plaintext`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::pack_header_plaintext(data));
