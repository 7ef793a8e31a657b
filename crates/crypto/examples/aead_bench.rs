//! Throughput of the candidate primitives on this machine: encrypts 256 MiB
//! in 1 MiB messages with AES-256-GCM and XChaCha20-Poly1305, hashes the same
//! amount with keyed BLAKE3 and SHA-256, and times Argon2id derivations for
//! a few key-file parameter choices. Each figure is the best of 3 rounds, so
//! other load on the machine disturbs it less.
//!
//! Run: `cargo run --release -p offsite-crypto --example aead_bench`

use std::hint::black_box;
use std::time::Instant;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use offsite_crypto::{counter_nonce, derive_wrapping_key, Aead, KdfParams, Key32, KeySet};

const MSG: usize = 1 << 20;
const TOTAL: usize = 256 << 20;
const ROUNDS: usize = 3;

/// Runs `f` (which processes 256 MiB) `ROUNDS` times and prints the best rate.
fn bench(name: &str, mut f: impl FnMut()) {
    f(); // warm-up: caches, page faults, CPU-feature detection
    let best = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name:<24} {:>6.0} MB/s  ({best:.3} s per 256 MiB)", TOTAL as f64 / best / 1e6);
}

fn main() {
    let plaintext: Vec<u8> = (0..MSG).map(|i| (i * 131 + 7) as u8).collect();
    let mut buf = Vec::with_capacity(MSG + 16);
    let n = TOTAL / MSG;

    let aes = Aead::new(&Key32::random());
    bench("AES-256-GCM seal (ring, used)", || {
        for i in 0..n {
            buf.clear();
            buf.extend_from_slice(&plaintext);
            aes.seal_into(&counter_nonce(i as u64), b"ad", &mut buf);
            black_box(&buf);
        }
    });

    let ct = aes.seal(&counter_nonce(1), b"ad", &plaintext);
    bench("AES-256-GCM open (ring, used)", || {
        for _ in 0..n {
            black_box(aes.open(&counter_nonce(1), b"ad", &ct).expect("authentic"));
        }
    });

    let rc = aes_gcm::Aes256Gcm::new(&(*Key32::random().as_bytes()).into());
    bench("AES-256-GCM seal, RustCrypto aes-gcm", || {
        for i in 0..n {
            buf.clear();
            buf.extend_from_slice(&plaintext);
            let nonce = counter_nonce(i as u64);
            aes_gcm::aead::AeadInPlace::encrypt_in_place(&rc, (&nonce).into(), b"ad", &mut buf)
                .expect("message is small");
            black_box(&buf);
        }
    });

    let chacha = XChaCha20Poly1305::new(&(*Key32::random().as_bytes()).into());
    bench("XChaCha20-Poly1305 seal", || {
        for i in 0..n {
            buf.clear();
            buf.extend_from_slice(&plaintext);
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
            chacha.encrypt_in_place(XNonce::from_slice(&nonce), b"ad", &mut buf).expect("message is small");
            black_box(&buf);
        }
    });

    let keys = KeySet::generate();
    bench("BLAKE3 keyed (1 thread)", || {
        for _ in 0..n {
            black_box(keys.blob_id(black_box(&plaintext)));
        }
    });

    bench("SHA-256", || {
        for _ in 0..n {
            black_box(offsite_crypto::sha256(black_box(&plaintext)));
        }
    });

    let default = KdfParams::new_default();
    let candidates = [(64 * 1024, 3), (128 * 1024, 3), (128 * 1024, 4), (256 * 1024, 2), (512 * 1024, 1)];
    for (m, t) in candidates {
        let params = KdfParams { m_cost_kib: m, t_cost: t, ..default.clone() };
        let best = (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                black_box(derive_wrapping_key(b"passphrase", &params).expect("valid params"));
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let is_default = if params == default { " (default)" } else { "" };
        println!(
            "Argon2id m={:>3} MiB t={} p={}: {best:.3} s per derivation{is_default}",
            m / 1024,
            t,
            params.p_cost,
        );
    }
}
