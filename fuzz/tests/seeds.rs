//! Every harness runs (on stable) over the committed seeds and a few trivial inputs, so the
//! harnesses themselves stay correct when the fuzzer is not run.

use std::path::Path;

#[test]
fn every_harness_accepts_its_seeds_without_panicking() {
    for (name, harness) in offsite_fuzz::TARGETS {
        for trivial in [&b""[..], b"\0", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff"] {
            harness(trivial);
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let bytes = std::fs::read(entry.expect("dir entry").path()).expect("read seed");
            harness(&bytes);
            n += 1;
        }
        assert!(n > 0, "no seeds for {name}");
    }
}
