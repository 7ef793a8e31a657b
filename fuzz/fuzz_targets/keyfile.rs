#![no_main]
//! cargo-fuzz target `keyfile`; the harness is `offsite_fuzz::keyfile`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::keyfile(data));
