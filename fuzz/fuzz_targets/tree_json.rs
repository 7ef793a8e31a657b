#![no_main]
//! cargo-fuzz target `tree_json`; the harness is `offsite_fuzz::tree_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::tree_json(data));
