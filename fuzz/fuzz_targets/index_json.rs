#![no_main]
//! cargo-fuzz target `index_json`; the harness is `offsite_fuzz::index_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::index_json(data));
