#![no_main]
//! cargo-fuzz target `snapshot_json`; the harness is `offsite_fuzz::snapshot_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| offsite_fuzz::snapshot_json(data));
