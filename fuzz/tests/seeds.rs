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

#[test]
fn record_and_pack_seeds_are_valid_under_the_harness_keys() {
    use offsite_format::{decode_pack, open_record, RecordType};
    let seeds = |t: &str| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(t);
        std::fs::read_dir(dir)
            .expect("seed dir")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
    };
    let types = [
        RecordType::Config,
        RecordType::Index,
        RecordType::Snapshot,
        RecordType::ForgetRecord,
        RecordType::Lock,
    ];
    for bytes in seeds("record") {
        let ok =
            types.iter().any(|t| open_record::<serde_json::Value>(*t, offsite_fuzz::keys(), &bytes).is_ok());
        assert!(ok, "record seed does not open under the harness keys");
    }
    for bytes in seeds("pack") {
        assert!(decode_pack(offsite_fuzz::keys(), &bytes).is_ok());
    }
}
