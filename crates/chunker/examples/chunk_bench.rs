//! Measures the cut-search throughput of the chunker on 512 MiB of
//! pseudo-random data held in memory, with the default and the small test
//! parameters.
//!
//! Run with `cargo run --release -p offsite-chunker --example chunk_bench`;
//! an optional argument gives the data size in MiB. Reports the best of three
//! passes, by wall time and by the thread's on-CPU time (Linux
//! `/proc/thread-self/schedstat`, which is not inflated when the machine is
//! oversubscribed). "input" counts every byte of the data; "hashed" excludes
//! the `min_size - 63` bytes at the start of each chunk that the cut search
//! skips.

use std::time::Instant;

use offsite_chunker::{Chunker, ChunkerParams};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Nanoseconds this thread has spent on a CPU, if the kernel reports it.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(512);
    let mut data = vec![0u8; mib << 20];
    ChaCha20Rng::seed_from_u64(1).fill_bytes(&mut data);
    let configs = [
        ("default 512K/1M/8M", ChunkerParams::default()),
        ("small 2K/8K/64K", ChunkerParams { min_size: 2 << 10, avg_size: 8 << 10, max_size: 64 << 10 }),
    ];
    for (name, params) in configs {
        let chunker = Chunker::new(&[7u8; 32], params);
        let _ = chunker.cut_all(&data[..data.len().min(64 << 20)]);
        let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
        let mut chunks = 0;
        for _ in 0..3 {
            let c0 = cpu_ns();
            let t = Instant::now();
            chunks = chunker.cut_all(&data).len();
            wall = wall.min(t.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (c0, cpu_ns()) {
                cpu = cpu.min((b - a) as f64 / 1e9);
            }
        }
        let input = data.len() as f64 / 1e6;
        let skipped = chunks.saturating_sub(1) * (params.min_size - 63);
        let hashed = (data.len() - skipped.min(data.len())) as f64 / 1e6;
        println!(
            "{name}: {mib} MiB, {chunks} chunks (mean {:.0} B); wall: {:.0} MB/s input, {:.0} MB/s hashed; on-cpu: {:.0} MB/s input, {:.0} MB/s hashed",
            data.len() as f64 / chunks as f64,
            input / wall,
            hashed / wall,
            input / cpu,
            hashed / cpu
        );
    }
}
